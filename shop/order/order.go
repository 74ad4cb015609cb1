// Package order is order-service: it places orders from a user's cart and
// orchestrates the order saga across inventory and payment:
//
//	PENDING/RESERVE ─► CHARGE ─► CONFIRM ─► CONFIRMED  (OrderConfirmed)
//	       │              │          │            │ ShipmentFailed (from shipping-service)
//	       │              │          │            ▼
//	       │              │          │          RETURN (sold stock back) ─┐
//	       └──────────────┴──────────┴─► RELEASE ─► REFUND ◄────────────┘─► CANCELLED  (OrderCancelled, with the reason)
//
// A confirmed order whose shipment fails for good goes back in flight
// (PENDING, step RETURN) until its stock is returned and its capture
// refunded.
//
// Every step's outcome is persisted in the same transaction as the events
// it produces (the outbox), so after a crash an in-flight saga resumes from
// its last recorded step; every remote call is idempotent (a reservation
// per order id, a charge per Idempotency-Key "order-<id>", commit, release
// and refund by id), so a step replayed after a crash has no second effect.
// A charge whose answer was lost is resolved by asking payment-service for
// the order's payment before compensating, and the refund step waits until
// the payment is settled, so no capture is left behind on a cancelled order.
//
// API (bearer token required; users see only their own orders, and
// shipping-service, calling as itself, reads the orders it ships):
//
//	POST /orders          [Idempotency-Key: K] places the caller's cart → 201 (settled) or 202 (still running)
//	GET  /orders/{id}
//	GET  /orders          the caller's orders, newest first (?limit=)
package order

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"io/fs"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/shop/kit"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

//go:embed schemas/*.avsc
var schemaFS embed.FS

// The reader schemas of the events order-service consumes.
//
//go:embed readers/ShipmentFailed.avsc
var shipmentFailedSchema string

// Schemas are the event schemas order-service publishes.
func Schemas() fs.FS { s, _ := fs.Sub(schemaFS, "schemas"); return s }

// Service is the service's name in flotilla.yaml.
const Service = "order-service"

// Deps are the synchronous dependencies (short names).
var Deps = []string{"user", "cart", "inventory", "payment"}

// Order statuses.
const (
	Pending   = "PENDING"
	Confirmed = "CONFIRMED"
	Cancelled = "CANCELLED"
)

// Saga steps.
const (
	StepReserve = "RESERVE"
	StepCharge  = "CHARGE"
	StepConfirm = "CONFIRM"
	StepRelease = "RELEASE"
	StepRefund  = "REFUND"
	StepReturn  = "RETURN"
	StepDone    = "DONE"
)

// Config is order-service's configuration.
type Config struct {
	Kit kit.Config
	// Lease is how long a saga driver owns an order before another (the
	// resumer after a crash) may take over; default 10s.
	Lease time.Duration
	// CallTimeout bounds each call to another service; default 3s.
	CallTimeout time.Duration
	// ReservationTTL is asked of inventory; default 5m.
	ReservationTTL time.Duration
	// ResumeInterval is how often in-flight sagas are looked for; default 250ms.
	ResumeInterval time.Duration
	// MaxAttempts of a step before the saga compensates; default 20.
	MaxAttempts int
}

// Main runs order-service.
type Main struct {
	Config Config
	app    *kit.App

	users, carts, inventory, payments *kit.Client

	driving    sync.Map // order id → struct{}: sagas this process is driving
	knownUsers sync.Map // user id → time.Time: checked with user-service until then
}

// Start opens everything, serves, and resumes sagas left in flight.
func (m *Main) Start(ctx context.Context) error {
	c := &m.Config
	if c.Lease <= 0 {
		c.Lease = 10 * time.Second
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 3 * time.Second
	}
	if c.ReservationTTL <= 0 {
		c.ReservationTTL = 5 * time.Minute
	}
	if c.ResumeInterval <= 0 {
		c.ResumeInterval = 250 * time.Millisecond
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 20
	}
	mig, _ := fs.Sub(migrationFS, "migrations")
	app, err := kit.Start(ctx, c.Kit, mig, Schemas())
	if err != nil {
		return err
	}
	m.app = app
	deps := c.Kit.Deps
	m.users = kit.NewClient("user-service", deps["user"])
	m.carts = kit.NewClient("cart-service", deps["cart"])
	m.inventory = kit.NewClient("inventory-service", deps["inventory"])
	m.payments = kit.NewClient("payment-service", deps["payment"])
	for _, cl := range []*kit.Client{m.users, m.carts, m.inventory, m.payments} {
		cl.HTTP.Timeout = c.CallTimeout
	}
	v := kit.NewVerifier(deps["user"])
	app.Mux.Handle("POST /orders", kit.Handle(v.Auth(m.place)))
	app.Mux.Handle("GET /orders", kit.Handle(v.Auth(m.list)))
	// shipping-service reads the order it ships (internal; no user token).
	app.Mux.Handle("GET /orders/{id}", kit.Handle(v.AuthOrService(m.get, "shipping-service")))
	if err := app.Codec.AddReader("ShipmentFailed", shipmentFailedSchema); err != nil {
		_ = app.Close()
		return err
	}
	if err := app.Consume(ctx, "ShipmentFailed", m.shipmentFailed); err != nil {
		_ = app.Close()
		return err
	}
	app.Go(m.resumeLoop)
	app.Serve()
	return nil
}

// Run starts the service and stops it when ctx is done.
func (m *Main) Run(ctx context.Context) error {
	if err := m.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return m.Close()
}

// URL is the service's base URL.
func (m *Main) URL() string { return m.app.URL() }

// App is the running kit.App.
func (m *Main) App() *kit.App { return m.app }

// Close drains and stops the service.
func (m *Main) Close() error {
	if m.app == nil {
		return nil
	}
	return m.app.Close()
}

// Item is one order line.
type Item struct {
	SKU       string `json:"sku"`
	Name      string `json:"name"`
	Quantity  int64  `json:"quantity"`
	UnitPrice int64  `json:"unitPrice"`
}

// Order is an order and where its saga stands.
type Order struct {
	ID            string    `json:"id"`
	UserID        string    `json:"userId"`
	Status        string    `json:"status"`
	Step          string    `json:"step"`
	Reason        string    `json:"reason,omitempty"`
	Total         int64     `json:"total"`
	Currency      string    `json:"currency"`
	ReservationID string    `json:"reservationId,omitempty"`
	PaymentID     string    `json:"paymentId,omitempty"`
	Items         []Item    `json:"items"`
	CreatedAt     time.Time `json:"createdAt"`

	attempts int
	updated  time.Time
}

type orderLine struct {
	SKU       string `avro:"sku"`
	Quantity  int    `avro:"quantity"`
	UnitPrice int64  `avro:"unitPrice"`
}

type createdEvent struct {
	OrderID    string      `avro:"orderId"`
	UserID     string      `avro:"userId"`
	Items      []string    `avro:"items"`
	Total      float64     `avro:"total"`
	Timestamp  int64       `avro:"timestamp"`
	Version    string      `avro:"version"`
	Lines      []orderLine `avro:"lines"`
	TotalMinor int64       `avro:"totalMinor"`
	Currency   string      `avro:"currency"`
}

type confirmedEvent struct {
	OrderID       string    `avro:"orderId"`
	UserID        string    `avro:"userId"`
	Total         int64     `avro:"total"`
	Currency      string    `avro:"currency"`
	PaymentID     string    `avro:"paymentId"`
	ReservationID string    `avro:"reservationId"`
	Timestamp     time.Time `avro:"timestamp"`
	Version       int       `avro:"version"`
}

type cancelledEvent struct {
	OrderID   string    `avro:"orderId"`
	UserID    string    `avro:"userId"`
	Reason    string    `avro:"reason"`
	Total     int64     `avro:"total"`
	Currency  string    `avro:"currency"`
	Timestamp time.Time `avro:"timestamp"`
	Version   int       `avro:"version"`
}

func (m *Main) place(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if r.ContentLength > 0 {
		var in struct{}
		if err := kit.Decode(r, &in); err != nil {
			return err
		}
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > 255 {
		return kit.BadRequest("Idempotency-Key is over 255 characters")
	}
	claims := kit.ClaimsFrom(ctx)
	token := kit.BearerToken(r)
	if key != "" {
		if o, err := m.byKey(ctx, claims.UserID(), key); err == nil {
			return m.answer(w, o, http.StatusOK)
		} else if !sqldb.IsNoRows(err) {
			return err
		}
	}
	// The user must exist (not just hold a token) with a delivery address
	// (checked once a minute), and the cart is priced now.
	if until, ok := m.knownUsers.Load(claims.UserID()); !ok || time.Now().After(until.(time.Time)) {
		var addrs struct {
			Addresses []struct {
				Country string `json:"country"`
			} `json:"addresses"`
		}
		if err := m.users.Do(ctx, "GET", "/users/me/addresses", token, nil, nil, &addrs); err != nil {
			return upstream("check user", err)
		}
		usable := false
		for _, a := range addrs.Addresses {
			usable = usable || len(a.Country) == 2
		}
		if !usable {
			return kit.Errorf(http.StatusUnprocessableEntity, "no_delivery_address", "no delivery address: add one with POST /users/me/addresses before placing an order")
		}
		m.knownUsers.Store(claims.UserID(), time.Now().Add(time.Minute))
	}
	var cart struct {
		Items []struct {
			SKU       string `json:"sku"`
			Name      string `json:"name"`
			Quantity  int64  `json:"quantity"`
			UnitPrice int64  `json:"unitPrice"`
		} `json:"items"`
		Total    int64  `json:"total"`
		Currency string `json:"currency"`
	}
	if err := m.carts.Do(ctx, "GET", "/carts/me?refresh=true", token, nil, nil, &cart); err != nil {
		return upstream("read cart", err)
	}
	if len(cart.Items) == 0 {
		return kit.Errorf(http.StatusUnprocessableEntity, "empty_cart", "the cart is empty: add items with cart-service before placing an order")
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	o := Order{ID: kit.NewID(), UserID: claims.UserID(), Status: Pending, Step: StepReserve, Total: cart.Total, Currency: cart.Currency, CreatedAt: now}
	ev := createdEvent{OrderID: o.ID, UserID: o.UserID, Total: float64(o.Total) / 100, Timestamp: now.UnixMilli(), Version: "1.0", TotalMinor: o.Total, Currency: o.Currency}
	for _, it := range cart.Items {
		o.Items = append(o.Items, Item{SKU: it.SKU, Name: it.Name, Quantity: it.Quantity, UnitPrice: it.UnitPrice})
		ev.Items = append(ev.Items, it.SKU)
		ev.Lines = append(ev.Lines, orderLine{SKU: it.SKU, Quantity: int(it.Quantity), UnitPrice: it.UnitPrice})
	}
	var keyArg any
	if key != "" {
		keyArg = key
	}
	err := m.app.Tx(ctx, func(tx *sqldb.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO orders (id, user_id, idempotency_key, status, step, reason, total, currency, reservation_id, payment_id, attempts, lease_until_ms, next_ms, created_ms, updated_ms)
			VALUES ($1, $2, $3, $4, $5, '', $6, $7, '', '', 0, $8, $9, $9, $9)`,
			o.ID, o.UserID, keyArg, Pending, StepReserve, o.Total, o.Currency, now.Add(m.Config.Lease).UnixMilli(), now.UnixMilli())
		if err != nil {
			if sqldb.IsUniqueViolation(err) {
				return errDuplicateKey
			}
			return err
		}
		for _, it := range o.Items {
			if _, err := tx.ExecContext(ctx, `INSERT INTO order_items (order_id, sku, name, quantity, unit_price) VALUES ($1, $2, $3, $4, $5)`, o.ID, it.SKU, it.Name, it.Quantity, it.UnitPrice); err != nil {
				return err
			}
		}
		if err := logStep(ctx, tx, o.ID, StepReserve, "order placed"); err != nil {
			return err
		}
		return m.app.Emit(ctx, tx, "OrderCreated", o.ID, ev)
	})
	if errors.Is(err, errDuplicateKey) {
		prev, err := m.byKey(ctx, claims.UserID(), key)
		if err != nil {
			return err
		}
		return m.answer(w, prev, http.StatusOK)
	}
	if err != nil {
		return err
	}
	// Drive the saga now, on behalf of the request but not cut short by the
	// client going away: the resumer would finish it anyway.
	final, err := m.drive(context.WithoutCancel(ctx), o.ID, true)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if final.Status == Pending {
		status = http.StatusAccepted
	}
	return m.answer(w, final, status)
}

var errDuplicateKey = errors.New("duplicate idempotency key")

func upstream(what string, err error) error {
	var ue *kit.UpstreamError
	if errors.As(err, &ue) && ue.Status >= 400 && ue.Status < 500 {
		return kit.Errorf(ue.Status, ue.Err.Code, "%s: %s", what, ue.Err.Message)
	}
	return kit.Upstream(err, "%s", what)
}

func (m *Main) answer(w http.ResponseWriter, o Order, status int) error {
	w.Header().Set("Location", "/orders/"+o.ID)
	kit.WriteJSON(w, status, o)
	return nil
}

func (m *Main) byKey(ctx context.Context, user, key string) (Order, error) {
	var id string
	if err := m.app.DB.QueryRowContext(ctx, `SELECT id FROM orders WHERE user_id = $1 AND idempotency_key = $2`, user, key).Scan(&id); err != nil {
		return Order{}, err
	}
	return m.load(ctx, m.app.DB, id)
}

// load reads an order with its items in one query (one round trip: the
// saga reads the order before every step).
func (m *Main) load(ctx context.Context, db *sqldb.DB, id string) (Order, error) {
	var o Order
	rs, err := db.QueryContext(ctx, `SELECT o.id, o.user_id, o.status, o.step, o.reason, o.total, o.currency, o.reservation_id, o.payment_id, o.attempts, o.created_ms, o.updated_ms,
		i.sku, i.name, i.quantity, i.unit_price
		FROM orders o LEFT JOIN order_items i ON i.order_id = o.id WHERE o.id = $1 ORDER BY i.sku`, id)
	if err != nil {
		return o, err
	}
	defer func() { _ = rs.Close() }()
	found := false
	for rs.Next() {
		var created, updated int64
		var sku, name sql.NullString
		var qty, price sql.NullInt64
		if err := rs.Scan(&o.ID, &o.UserID, &o.Status, &o.Step, &o.Reason, &o.Total, &o.Currency, &o.ReservationID, &o.PaymentID, &o.attempts, &created, &updated,
			&sku, &name, &qty, &price); err != nil {
			return o, err
		}
		found = true
		o.CreatedAt, o.updated = time.UnixMilli(created).UTC(), time.UnixMilli(updated)
		if sku.Valid {
			o.Items = append(o.Items, Item{SKU: sku.String, Name: name.String, Quantity: qty.Int64, UnitPrice: price.Int64})
		}
	}
	if err := rs.Err(); err != nil {
		return o, err
	}
	if !found {
		return o, sqldb.ErrNoRows
	}
	return o, nil
}

func (m *Main) get(w http.ResponseWriter, r *http.Request) error {
	o, err := m.load(r.Context(), m.app.DB, r.PathValue("id"))
	if sqldb.IsNoRows(err) {
		return kit.NotFound("order %s does not exist", r.PathValue("id"))
	}
	if err != nil {
		return err
	}
	if c := kit.ClaimsFrom(r.Context()); !c.MayActFor(o.UserID) {
		return kit.Forbidden("order %s belongs to another user", o.ID)
	}
	kit.WriteJSON(w, http.StatusOK, o)
	return nil
}

func (m *Main) list(w http.ResponseWriter, r *http.Request) error {
	limit := 20
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			return kit.BadRequest("limit=%q: want 1 to 100", s)
		}
		limit = n
	}
	rs, err := m.app.DB.QueryContext(r.Context(), `SELECT id FROM orders WHERE user_id = $1 ORDER BY created_ms DESC, id LIMIT $2`, kit.ClaimsFrom(r.Context()).UserID(), limit)
	if err != nil {
		return err
	}
	var ids []string
	for rs.Next() {
		var id string
		if err := rs.Scan(&id); err != nil {
			_ = rs.Close()
			return err
		}
		ids = append(ids, id)
	}
	_ = rs.Close()
	out := []Order{}
	for _, id := range ids {
		o, err := m.load(r.Context(), m.app.DB, id)
		if err != nil {
			return err
		}
		out = append(out, o)
	}
	kit.WriteJSON(w, http.StatusOK, map[string]any{"orders": out})
	return nil
}
