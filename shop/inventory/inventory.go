// Package inventory is inventory-service: stock per SKU and reservations
// with expiry (reserve, commit, release). Stock never oversells: a
// reservation takes stock with one conditional update per SKU inside one
// transaction, so concurrent reservations of the last units cannot both
// succeed, and the table's CHECK constraints hold available + reserved +
// committed = received at every commit. A sweeper releases reservations
// past their expiry. SKUs are validated with product-service. It publishes
// StockReserved, StockReleased and StockDepleted.
//
// API (stock needs a bearer token, and changes the admin role; the
// reservations are internal, for order-service, which names the order's
// user in X-Shop-User):
//
//	GET  /stock/{sku}
//	POST /stock/{sku}                admin: {add} receives units
//	POST /reservations               {orderId, items: [{sku, quantity}], ttlSeconds} → 201 (200 if the order already has one)
//	GET  /reservations/{id}          and GET /reservations?orderId=
//	POST /reservations/{id}/commit   the reserved units are sold
//	POST /reservations/{id}/release  the reserved units go back to available
//	POST /reservations/{id}/return   committed (sold) units come back to available: the order could not be shipped
package inventory

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/shop/kit"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

//go:embed schemas/*.avsc
var schemaFS embed.FS

// Schemas are the event schemas inventory-service publishes.
func Schemas() fs.FS { s, _ := fs.Sub(schemaFS, "schemas"); return s }

// Service is the service's name in flotilla.yaml.
const Service = "inventory-service"

// Deps are the synchronous dependencies (short names).
var Deps = []string{"product"}

// Reservation statuses.
const (
	Reserved  = "RESERVED"
	Committed = "COMMITTED"
	Released  = "RELEASED"
	Expired   = "EXPIRED"
	Returned  = "RETURNED"
)

// Config is inventory-service's configuration.
type Config struct {
	Kit           kit.Config
	DefaultTTL    time.Duration // RESERVATION_TTL, default 15m
	SweepInterval time.Duration // SWEEP_INTERVAL, default 5s
	// Users is user-service's base URL for the JWKS (USER_URL); inventory
	// verifies tokens but makes no other call to user-service.
	Users string
}

// Main runs inventory-service.
type Main struct {
	Config   Config
	app      *kit.App
	products *kit.Client

	skuMu sync.Mutex
	skus  map[string]time.Time // SKU → validated until
}

// Line is a quantity of one SKU.
type Line struct {
	SKU      string `json:"sku" avro:"sku"`
	Quantity int    `json:"quantity" avro:"quantity"`
}

// Reservation is stock set aside for an order.
type Reservation struct {
	ID        string    `json:"id"`
	OrderID   string    `json:"orderId"`
	UserID    string    `json:"userId"`
	Status    string    `json:"status"`
	Reason    string    `json:"reason,omitempty"`
	Items     []Line    `json:"items"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// Stock is one SKU's counts.
type Stock struct {
	SKU       string `json:"sku"`
	Received  int64  `json:"received"`
	Available int64  `json:"available"`
	Reserved  int64  `json:"reserved"`
	Committed int64  `json:"committed"`
}

// Start opens everything and serves.
func (m *Main) Start(ctx context.Context) error {
	if m.Config.DefaultTTL <= 0 {
		m.Config.DefaultTTL = 15 * time.Minute
	}
	if m.Config.SweepInterval <= 0 {
		m.Config.SweepInterval = 5 * time.Second
	}
	mig, _ := fs.Sub(migrationFS, "migrations")
	app, err := kit.Start(ctx, m.Config.Kit, mig, Schemas())
	if err != nil {
		return err
	}
	m.app = app
	m.skus = map[string]time.Time{}
	m.products = m.Config.Kit.Client("product-service", "product")
	users := m.Config.Users
	if users == "" {
		users = m.Config.Kit.Deps["user"]
	}
	v := kit.NewVerifier(users)
	mux := app.Mux
	mux.Handle("GET /stock/{sku}", kit.Handle(v.Auth(m.getStock)))
	mux.Handle("POST /stock/{sku}", kit.Handle(v.Auth(m.receive, kit.RoleAdmin)))
	// The reservations are the order saga's steps: internal, for
	// order-service only (acting for the order's user, kit.OnBehalfOfHeader).
	saga := func(h kit.HandlerFunc) http.Handler { return kit.Handle(kit.Internal(h, "order-service")) }
	mux.Handle("POST /reservations", saga(m.reserve))
	mux.Handle("GET /reservations", saga(m.findByOrder))
	mux.Handle("GET /reservations/{id}", saga(m.getReservation))
	mux.Handle("POST /reservations/{id}/commit", saga(m.commit))
	mux.Handle("POST /reservations/{id}/release", saga(m.release))
	mux.Handle("POST /reservations/{id}/return", saga(m.returnStock))
	app.Go(m.sweepLoop)
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

// checkSKU asks product-service whether sku is an active product (cached
// for a minute).
func (m *Main) checkSKU(ctx context.Context, sku string) error {
	m.skuMu.Lock()
	until, ok := m.skus[sku]
	m.skuMu.Unlock()
	if ok && time.Now().Before(until) {
		return nil
	}
	var p struct {
		Active bool `json:"active"`
	}
	err := m.products.Do(ctx, "GET", "/products/"+url.PathEscape(sku), "", nil, nil, &p)
	var ue *kit.UpstreamError
	if errors.As(err, &ue) && ue.Status == http.StatusNotFound {
		return kit.Errorf(http.StatusUnprocessableEntity, "unknown_sku", "sku %s is not in the catalog", sku)
	}
	if err != nil {
		return kit.Upstream(err, "validate sku %s", sku)
	}
	if !p.Active {
		return kit.Errorf(http.StatusUnprocessableEntity, "unavailable_sku", "sku %s is withdrawn from the catalog", sku)
	}
	m.skuMu.Lock()
	m.skus[sku] = time.Now().Add(time.Minute)
	m.skuMu.Unlock()
	return nil
}

func (m *Main) getStock(w http.ResponseWriter, r *http.Request) error {
	s, err := loadStock(r.Context(), m.app.DB, r.PathValue("sku"))
	if err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, s)
	return nil
}

func loadStock(ctx context.Context, db *sqldb.DB, sku string) (Stock, error) {
	s := Stock{SKU: sku}
	err := db.QueryRowContext(ctx, `SELECT received, available, reserved, committed FROM stock WHERE sku = $1`, sku).Scan(&s.Received, &s.Available, &s.Reserved, &s.Committed)
	if sqldb.IsNoRows(err) {
		return s, kit.NotFound("no stock recorded for sku %s", sku)
	}
	return s, err
}

// MaxQuantity bounds any one quantity in a request.
const MaxQuantity = 1_000_000

func (m *Main) receive(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Add int64 `json:"add"`
	}
	if err := kit.Decode(r, &in); err != nil {
		return err
	}
	if in.Add <= 0 || in.Add > MaxQuantity {
		return kit.BadRequest("add %d: want a quantity from 1 to %d", in.Add, MaxQuantity)
	}
	sku := r.PathValue("sku")
	if err := m.checkSKU(r.Context(), sku); err != nil {
		return err
	}
	ctx := r.Context()
	err := m.app.Tx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE stock SET received = received + $1, available = available + $1 WHERE sku = $2`, in.Add, sku)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			_, err = tx.ExecContext(ctx, `INSERT INTO stock (sku, received, available, reserved, committed) VALUES ($1, $2, $2, 0, 0)`, sku, in.Add)
		}
		return err
	})
	if err != nil {
		return err
	}
	s, err := loadStock(ctx, m.app.DB, sku)
	if err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, s)
	return nil
}

type reservedEvent struct {
	ReservationID string    `avro:"reservationId"`
	OrderID       string    `avro:"orderId"`
	Items         []Line    `avro:"items"`
	ExpiresAt     time.Time `avro:"expiresAt"`
	Timestamp     time.Time `avro:"timestamp"`
	Version       int       `avro:"version"`
}

type releasedEvent struct {
	ReservationID string    `avro:"reservationId"`
	OrderID       string    `avro:"orderId"`
	Items         []Line    `avro:"items"`
	Reason        string    `avro:"reason"`
	Timestamp     time.Time `avro:"timestamp"`
	Version       int       `avro:"version"`
}

type depletedEvent struct {
	SKU       string    `avro:"sku"`
	Timestamp time.Time `avro:"timestamp"`
	Version   int       `avro:"version"`
}

// ReserveRequest is the body of POST /reservations.
type ReserveRequest struct {
	OrderID    string `json:"orderId"`
	Items      []Line `json:"items"`
	TTLSeconds int    `json:"ttlSeconds"`
}

func (m *Main) reserve(w http.ResponseWriter, r *http.Request) error {
	var in ReserveRequest
	if err := kit.Decode(r, &in); err != nil {
		return err
	}
	if err := kit.CheckID("orderId", in.OrderID); err != nil {
		return err
	}
	if len(in.Items) == 0 || len(in.Items) > 100 {
		return kit.BadRequest("items: want 1 to 100 lines")
	}
	if in.TTLSeconds < 0 || in.TTLSeconds > 86400 {
		return kit.BadRequest("ttlSeconds %d: want 0 (the default) to 86400", in.TTLSeconds)
	}
	merged := map[string]int{}
	for i, l := range in.Items {
		if err := kit.CheckSKU(fmt.Sprintf("items[%d].sku", i), l.SKU); err != nil {
			return err
		}
		if l.Quantity <= 0 || l.Quantity > MaxQuantity {
			return kit.BadRequest("items[%d].quantity %d: want 1 to %d", i, l.Quantity, MaxQuantity)
		}
		merged[l.SKU] += l.Quantity
	}
	lines := make([]Line, 0, len(merged))
	for sku, q := range merged {
		lines = append(lines, Line{SKU: sku, Quantity: q})
	}
	// A fixed lock order: two reservations of the same SKUs never deadlock.
	sort.Slice(lines, func(i, j int) bool { return lines[i].SKU < lines[j].SKU })
	ctx := r.Context()
	for _, l := range lines {
		if err := m.checkSKU(ctx, l.SKU); err != nil {
			return err
		}
	}
	if d := m.app.Config.Faults.InventorySlow; d > 0 {
		time.Sleep(d)
	}
	ttl := m.Config.DefaultTTL
	if in.TTLSeconds > 0 {
		ttl = time.Duration(in.TTLSeconds) * time.Second
	}
	claims := kit.ClaimsFrom(ctx)
	now := time.Now().UTC().Truncate(time.Millisecond)
	res := Reservation{ID: kit.NewID(), OrderID: in.OrderID, UserID: claims.UserID(), Status: Reserved, Items: lines, ExpiresAt: now.Add(ttl)}
	existing := false
	err := m.app.Tx(ctx, func(tx *sqldb.Tx) error {
		existing = false
		prev, err := loadReservationBy(ctx, tx, "order_id", in.OrderID)
		if err == nil {
			if prev.UserID != res.UserID {
				return kit.Forbidden("order %s belongs to another user", in.OrderID)
			}
			res, existing = prev, true
			return nil
		}
		if !isNotFound(err) {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO reservations (id, order_id, user_id, status, reason, expires_ms, created_ms, updated_ms) VALUES ($1, $2, $3, $4, '', $5, $6, $6)`,
			res.ID, res.OrderID, res.UserID, Reserved, res.ExpiresAt.UnixMilli(), now.UnixMilli()); err != nil {
			if sqldb.IsUniqueViolation(err) {
				return kit.Conflict("retry", "order %s is being reserved concurrently; retry", in.OrderID)
			}
			return err
		}
		for _, l := range lines {
			// One round trip: the update answers what is left.
			var avail int64
			err := tx.QueryRowContext(ctx, `UPDATE stock SET available = available - $1, reserved = reserved + $1 WHERE sku = $2 AND available >= $1 RETURNING available`, l.Quantity, l.SKU).Scan(&avail)
			if sqldb.IsNoRows(err) {
				_ = tx.QueryRowContext(ctx, `SELECT available FROM stock WHERE sku = $1`, l.SKU).Scan(&avail)
				return kit.Conflict("out_of_stock", "sku %s: %d available, %d requested", l.SKU, avail, l.Quantity)
			}
			if err != nil {
				return err
			}
			if avail == 0 {
				if err := m.app.Emit(ctx, tx, "StockDepleted", l.SKU, depletedEvent{SKU: l.SKU, Timestamp: now, Version: 1}); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO reservation_items (reservation_id, sku, quantity) VALUES ($1, $2, $3)`, res.ID, l.SKU, l.Quantity); err != nil {
				return err
			}
		}
		return m.app.Emit(ctx, tx, "StockReserved", res.OrderID, reservedEvent{ReservationID: res.ID, OrderID: res.OrderID, Items: lines, ExpiresAt: res.ExpiresAt, Timestamp: now, Version: 1})
	})
	if err != nil {
		return err
	}
	m.app.Crash.At("inventory.after_reserve")
	status := http.StatusCreated
	if existing {
		status = http.StatusOK
	}
	w.Header().Set("Location", "/reservations/"+res.ID)
	kit.WriteJSON(w, status, res)
	return nil
}

func isNotFound(err error) bool {
	var e *kit.Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

func loadReservationBy(ctx context.Context, tx *sqldb.Tx, col, val string) (Reservation, error) {
	var res Reservation
	// The reservation and its items in one round trip, the reservation's row
	// locked on PostgreSQL.
	q := `SELECT r.id, r.order_id, r.user_id, r.status, r.reason, r.expires_ms, i.sku, i.quantity
		FROM reservations r LEFT JOIN reservation_items i ON i.reservation_id = r.id WHERE r.` + col + ` = $1 ORDER BY i.sku`
	if tx.Dialect() == sqldb.Postgres {
		q += ` FOR UPDATE OF r`
	}
	rows, err := tx.QueryContext(ctx, q, val)
	if err != nil {
		return res, err
	}
	defer func() { _ = rows.Close() }()
	found := false
	for rows.Next() {
		var exp int64
		var sku sql.NullString
		var qty sql.NullInt64
		if err := rows.Scan(&res.ID, &res.OrderID, &res.UserID, &res.Status, &res.Reason, &exp, &sku, &qty); err != nil {
			return res, err
		}
		found = true
		res.ExpiresAt = time.UnixMilli(exp).UTC()
		if sku.Valid {
			res.Items = append(res.Items, Line{SKU: sku.String, Quantity: int(qty.Int64)})
		}
	}
	if err := rows.Err(); err != nil {
		return res, err
	}
	if !found {
		return res, kit.NotFound("no reservation with %s %s", map[string]string{"id": "id", "order_id": "orderId"}[col], val)
	}
	return res, nil
}

// owned loads a reservation the caller may act on (its user, or an admin).
func owned(ctx context.Context, tx *sqldb.Tx, col, val string) (Reservation, error) {
	res, err := loadReservationBy(ctx, tx, col, val)
	if err != nil {
		return res, err
	}
	if c := kit.ClaimsFrom(ctx); c != nil && !c.MayActFor(res.UserID) {
		return res, kit.Forbidden("reservation %s belongs to another user", res.ID)
	}
	return res, nil
}

func (m *Main) getReservation(w http.ResponseWriter, r *http.Request) error {
	return m.read(w, r, "id", r.PathValue("id"))
}

func (m *Main) findByOrder(w http.ResponseWriter, r *http.Request) error {
	id := r.URL.Query().Get("orderId")
	if id == "" {
		return kit.BadRequest("orderId query parameter is required")
	}
	return m.read(w, r, "order_id", id)
}

func (m *Main) read(w http.ResponseWriter, r *http.Request, col, val string) error {
	var res Reservation
	err := m.app.DB.InTx(r.Context(), func(tx *sqldb.Tx) error {
		var err error
		res, err = owned(r.Context(), tx, col, val)
		return err
	})
	if err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, res)
	return nil
}

func (m *Main) commit(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var res Reservation
	err := m.app.Tx(ctx, func(tx *sqldb.Tx) error {
		var err error
		if res, err = owned(ctx, tx, "id", r.PathValue("id")); err != nil {
			return err
		}
		switch res.Status {
		case Committed:
			return nil
		case Released, Expired:
			return kit.Conflict("reservation_"+lower(res.Status), "reservation %s is %s; reserve again", res.ID, lower(res.Status))
		}
		for _, l := range res.Items {
			if _, err := tx.ExecContext(ctx, `UPDATE stock SET reserved = reserved - $1, committed = committed + $1 WHERE sku = $2`, l.Quantity, l.SKU); err != nil {
				return err
			}
		}
		res.Status = Committed
		_, err = tx.ExecContext(ctx, `UPDATE reservations SET status = $1, updated_ms = $2 WHERE id = $3`, Committed, time.Now().UnixMilli(), res.ID)
		return err
	})
	if err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, res)
	return nil
}

func (m *Main) release(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var res Reservation
	err := m.app.Tx(ctx, func(tx *sqldb.Tx) error {
		var err error
		if res, err = owned(ctx, tx, "id", r.PathValue("id")); err != nil {
			return err
		}
		switch res.Status {
		case Released, Expired:
			return nil
		case Committed:
			return kit.Conflict("reservation_committed", "reservation %s is committed (sold); it cannot be released", res.ID)
		}
		return m.releaseTx(ctx, tx, &res, Released, "released")
	})
	if err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, res)
	return nil
}

// returnStock undoes a commit: the order was cancelled after its stock was
// sold (shipping failed), so its units are available again.
func (m *Main) returnStock(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var res Reservation
	err := m.app.Tx(ctx, func(tx *sqldb.Tx) error {
		var err error
		if res, err = owned(ctx, tx, "id", r.PathValue("id")); err != nil {
			return err
		}
		switch res.Status {
		case Returned:
			return nil
		case Reserved:
			return kit.Conflict("reservation_open", "reservation %s is not committed; release it instead", res.ID)
		case Released, Expired:
			return kit.Conflict("reservation_"+lower(res.Status), "reservation %s is %s: nothing was sold", res.ID, lower(res.Status))
		}
		for _, l := range res.Items {
			if _, err := tx.ExecContext(ctx, `UPDATE stock SET committed = committed - $1, available = available + $1 WHERE sku = $2`, l.Quantity, l.SKU); err != nil {
				return err
			}
		}
		now := time.Now().UTC().Truncate(time.Millisecond)
		res.Status, res.Reason = Returned, "returned"
		if _, err := tx.ExecContext(ctx, `UPDATE reservations SET status = $1, reason = $2, updated_ms = $3 WHERE id = $4`, Returned, "returned", now.UnixMilli(), res.ID); err != nil {
			return err
		}
		return m.app.Emit(ctx, tx, "StockReleased", res.OrderID, releasedEvent{ReservationID: res.ID, OrderID: res.OrderID, Items: res.Items, Reason: "returned", Timestamp: now, Version: 1})
	})
	if err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, res)
	return nil
}

func (m *Main) releaseTx(ctx context.Context, tx *sqldb.Tx, res *Reservation, status, reason string) error {
	for _, l := range res.Items {
		if _, err := tx.ExecContext(ctx, `UPDATE stock SET reserved = reserved - $1, available = available + $1 WHERE sku = $2`, l.Quantity, l.SKU); err != nil {
			return err
		}
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	res.Status, res.Reason = status, reason
	if _, err := tx.ExecContext(ctx, `UPDATE reservations SET status = $1, reason = $2, updated_ms = $3 WHERE id = $4`, status, reason, now.UnixMilli(), res.ID); err != nil {
		return err
	}
	return m.app.Emit(ctx, tx, "StockReleased", res.OrderID, releasedEvent{ReservationID: res.ID, OrderID: res.OrderID, Items: res.Items, Reason: reason, Timestamp: now, Version: 1})
}

func (m *Main) sweepLoop(ctx context.Context) {
	t := time.NewTicker(m.Config.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := m.Sweep(ctx, time.Now()); err != nil && ctx.Err() == nil {
				m.app.Log.WarnContext(ctx, "sweep expired reservations", "err", err)
			}
		}
	}
}

// Sweep releases every reservation that expired before now, returning how
// many it released.
func (m *Main) Sweep(ctx context.Context, now time.Time) (int, error) {
	rows, err := m.app.DB.QueryContext(ctx, `SELECT id FROM reservations WHERE status = $1 AND expires_ms < $2 ORDER BY expires_ms LIMIT 500`, Reserved, now.UnixMilli())
	if err != nil {
		return 0, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			_ = rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	_ = rows.Close()
	n := 0
	for _, id := range ids {
		err := m.app.Tx(ctx, func(tx *sqldb.Tx) error {
			res, err := loadReservationBy(ctx, tx, "id", id)
			if err != nil {
				return err
			}
			if res.Status != Reserved || !res.ExpiresAt.Before(now) {
				return nil // committed or released meanwhile
			}
			n++
			return m.releaseTx(ctx, tx, &res, Expired, "expired")
		})
		if err != nil {
			return n, fmt.Errorf("expire reservation %s: %w", id, err)
		}
	}
	return n, nil
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}
