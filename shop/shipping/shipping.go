// Package shipping is shipping-service: when an order is confirmed it
// creates the order's shipment, and a simulated carrier carries it:
//
//	OrderConfirmed ─► PENDING ─► LABEL_CREATED ─► IN_TRANSIT ─► DELIVERED
//	                     │       (ShipmentCreated)              (ShipmentDelivered)
//	                     └─► FAILED (ShipmentFailed: the order saga refunds, releases and cancels)
//
// The consumer only records a PENDING shipment (idempotently, one per
// order); a worker then fetches the order from order-service and the
// delivery address from user-service as itself (internal endpoints that
// take shipping-service's identity from the mesh, no user account), weighs the parcel,
// picks the cheapest carrier of the rate table that serves the address,
// and creates the label. Failures that waiting cannot cure (the user has
// no address, no carrier serves it, the carrier refuses, the order does
// not exist) fail the shipment at once; anything else (an upstream down)
// is retried with backoff. Each transition is a conditional update in the
// same transaction as its event (the outbox), so replicas never emit one
// twice. The carrier advances shipments on a clock (Config.Now) after
// Config.LabelAfter and Config.DeliverAfter.
//
// API (bearer token; the order's owner or an admin):
//
//	GET /orders/{id}/shipment   tracking by order: status, carrier, tracking number, history
//	GET /shipments/{id}
package shipping

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/order"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

//go:embed schemas/*.avsc
var schemaFS embed.FS

// readerFS holds the schemas of the events shipping-service consumes,
// copied from their producers: used to decode, never registered.
//
//go:embed readers/*.avsc
var readerFS embed.FS

// Schemas are the event schemas shipping-service publishes.
func Schemas() fs.FS { s, _ := fs.Sub(schemaFS, "schemas"); return s }

// Service is the service's name in flotilla.yaml.
const Service = "shipping-service"

// Deps are the synchronous dependencies (short names).
var Deps = []string{"order", "user"}

// Shipment statuses.
const (
	Pending      = "PENDING"
	LabelCreated = "LABEL_CREATED"
	InTransit    = "IN_TRANSIT"
	Delivered    = "DELIVERED"
	Failed       = "FAILED"
	Cancelled    = "CANCELLED" // the order was cancelled before it shipped
)

// Failure reasons (ShipmentFailed.reason).
const (
	ReasonNoAddress       = "no_address"
	ReasonUndeliverable   = "undeliverable"
	ReasonCarrierRejected = "carrier_rejected"
	ReasonOrderNotFound   = "order_not_found"
)

// Config is shipping-service's configuration.
type Config struct {
	Kit   kit.Config
	Rates RateTable
	// FailureRate makes the carrier refuse this fraction of parcels
	// (decided per order id), so demos can exercise the compensation path.
	FailureRate float64
	// ItemWeightG is the weight of one unit of any item; default 500.
	ItemWeightG int64
	// LabelAfter is how long a label waits for pickup (LABEL_CREATED →
	// IN_TRANSIT), DeliverAfter how long the carrier takes (IN_TRANSIT →
	// DELIVERED); defaults 2s and 5s of the clock.
	LabelAfter, DeliverAfter time.Duration
	// Tick is how often the worker looks for due work; default 200ms.
	Tick time.Duration
	// Now is the carrier's clock; default time.Now.
	Now func() time.Time
	// CallTimeout bounds each call to another service; default 3s.
	CallTimeout time.Duration
}

// Main runs shipping-service.
type Main struct {
	Config Config

	app    *kit.App
	orders *kit.Client
	users  *kit.Client
	wake   chan struct{}
}

// Start opens everything and serves.
func (m *Main) Start(ctx context.Context) error {
	c := &m.Config
	if c.Rates.Rates == nil {
		c.Rates.Rates = DefaultRates()
	}
	if c.Rates.Home == "" {
		c.Rates.Home = "DE"
	}
	if c.ItemWeightG <= 0 {
		c.ItemWeightG = 500
	}
	if c.LabelAfter <= 0 {
		c.LabelAfter = 2 * time.Second
	}
	if c.DeliverAfter <= 0 {
		c.DeliverAfter = 5 * time.Second
	}
	if c.Tick <= 0 {
		c.Tick = 200 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 3 * time.Second
	}
	if !(c.FailureRate >= 0 && c.FailureRate <= 1) {
		return fmt.Errorf("start %s: failure rate %v: want 0 to 1", Service, c.FailureRate)
	}
	mig, _ := fs.Sub(migrationFS, "migrations")
	app, err := kit.Start(ctx, c.Kit, mig, Schemas())
	if err != nil {
		return err
	}
	m.app = app
	m.wake = make(chan struct{}, 1)
	if err := addReaders(app.Codec, readerFS); err != nil {
		_ = app.Close()
		return fmt.Errorf("start %s: %w", Service, err)
	}
	m.orders = c.Kit.Client("order-service", "order")
	m.users = c.Kit.Client("user-service", "user")
	for _, cl := range []*kit.Client{m.orders, m.users} {
		cl.HTTP.Timeout = c.CallTimeout
	}
	if err := app.Consume(ctx, "OrderConfirmed", m.onConfirmed); err != nil {
		_ = app.Close()
		return fmt.Errorf("start %s: %w", Service, err)
	}
	v := kit.NewVerifier(c.Kit.Deps["user"])
	app.Mux.Handle("GET /orders/{id}/shipment", kit.Handle(v.Auth(m.byOrder)))
	app.Mux.Handle("GET /shipments/{id}", kit.Handle(v.Auth(m.get)))
	app.Go(m.work)
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

// Address is a delivery address as user-service returns it.
type Address struct {
	Line1      string `json:"line1"`
	City       string `json:"city"`
	PostalCode string `json:"postalCode"`
	Country    string `json:"country"`
}

// Step is one entry of a shipment's tracking history.
type Step struct {
	Status string    `json:"status"`
	Note   string    `json:"note"`
	At     time.Time `json:"at"`
}

// Shipment is an order's shipment as the API shows it.
type Shipment struct {
	ID             string    `json:"id"`
	OrderID        string    `json:"orderId"`
	UserID         string    `json:"userId"`
	Status         string    `json:"status"`
	Reason         string    `json:"reason,omitempty"`
	Carrier        string    `json:"carrier,omitempty"`
	Service        string    `json:"service,omitempty"`
	TrackingNumber string    `json:"trackingNumber,omitempty"`
	Rate           int64     `json:"rate"`
	Currency       string    `json:"currency,omitempty"`
	WeightG        int64     `json:"weightG"`
	Address        *Address  `json:"address,omitempty"`
	History        []Step    `json:"history"`
	CreatedAt      time.Time `json:"createdAt"`

	attempts int
}

type confirmedEvent struct {
	OrderID string `avro:"orderId"`
	UserID  string `avro:"userId"`
}

type createdEvent struct {
	ShipmentID     string    `avro:"shipmentId"`
	OrderID        string    `avro:"orderId"`
	UserID         string    `avro:"userId"`
	Carrier        string    `avro:"carrier"`
	Service        string    `avro:"service"`
	TrackingNumber string    `avro:"trackingNumber"`
	Rate           int64     `avro:"rate"`
	Currency       string    `avro:"currency"`
	Country        string    `avro:"country"`
	Timestamp      time.Time `avro:"timestamp"`
	Version        int       `avro:"version"`
}

type deliveredEvent struct {
	ShipmentID     string    `avro:"shipmentId"`
	OrderID        string    `avro:"orderId"`
	UserID         string    `avro:"userId"`
	Carrier        string    `avro:"carrier"`
	TrackingNumber string    `avro:"trackingNumber"`
	Timestamp      time.Time `avro:"timestamp"`
	Version        int       `avro:"version"`
}

type failedEvent struct {
	ShipmentID string    `avro:"shipmentId"`
	OrderID    string    `avro:"orderId"`
	UserID     string    `avro:"userId"`
	Reason     string    `avro:"reason"`
	Detail     string    `avro:"detail"`
	Timestamp  time.Time `avro:"timestamp"`
	Version    int       `avro:"version"`
}

// onConfirmed records the order's shipment as PENDING; the worker does
// the rest, outside the consumer's transaction.
func (m *Main) onConfirmed(ctx context.Context, tx *sqldb.Tx, msg bus.Message) error {
	var ev confirmedEvent
	if err := m.app.Codec.Decode(ctx, "OrderConfirmed", msg.Payload, &ev); err != nil {
		return err
	}
	if ev.OrderID == "" || ev.UserID == "" {
		return fmt.Errorf("OrderConfirmed %s: %w: no order or user id", msg.ID(), kit.ErrPoison)
	}
	now := m.Config.Now().UnixMilli()
	id := kit.NewID()
	res, err := tx.ExecContext(ctx, `INSERT INTO shipments (id, order_id, user_id, status, reason, carrier, service, tracking_number, rate, currency, weight_g, address, attempts, next_ms, created_ms, updated_ms)
		VALUES ($1, $2, $3, $4, '', '', '', '', 0, '', 0, '', 0, $5, $5, $5) ON CONFLICT (order_id) DO NOTHING`, id, ev.OrderID, ev.UserID, Pending, now)
	if err != nil {
		return fmt.Errorf("record shipment of order %s: %w", ev.OrderID, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		if err := addHistory(ctx, tx, id, Pending, "order confirmed", now); err != nil {
			return err
		}
	}
	select {
	case m.wake <- struct{}{}:
	default:
	}
	return nil
}

func addHistory(ctx context.Context, tx *sqldb.Tx, id, status, note string, atMs int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO shipment_history (shipment_id, seq, status, note, at_ms)
		VALUES ($1, (SELECT COUNT(*) FROM shipment_history WHERE shipment_id = $1) + 1, $2, $3, $4)`, id, status, note, atMs)
	return err
}

// work prepares pending shipments and advances the carrier.
func (m *Main) work(ctx context.Context) {
	t := time.NewTicker(m.Config.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.wake:
		}
		if err := m.Pass(ctx); err != nil && ctx.Err() == nil {
			m.app.Log.WarnContext(ctx, "shipping pass", "err", err)
		}
	}
}

// Pass does the work due now: pending shipments are prepared, labels and
// parcels in transit advance. Tests call it to step the carrier.
func (m *Main) Pass(ctx context.Context) error {
	now := m.Config.Now().UnixMilli()
	ids, err := m.due(ctx, `status = $1 AND next_ms <= $2`, Pending, now)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := m.prepare(ctx, id); err != nil {
			return err
		}
	}
	for _, st := range [][2]string{{LabelCreated, InTransit}, {InTransit, Delivered}} {
		ids, err := m.due(ctx, `status = $1 AND next_ms <= $2`, st[0], now)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := m.advance(ctx, id, st[0], st[1]); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *Main) due(ctx context.Context, where string, args ...any) ([]string, error) {
	rs, err := m.app.DB.QueryContext(ctx, `SELECT id FROM shipments WHERE `+where+` ORDER BY next_ms LIMIT 64`, args...)
	if err != nil {
		return nil, fmt.Errorf("due shipments: %w", err)
	}
	defer func() { _ = rs.Close() }()
	var ids []string
	for rs.Next() {
		var id string
		if err := rs.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rs.Err()
}

// permanentErr is a failure waiting cannot cure.
type permanentErr struct{ reason, detail string }

func (e *permanentErr) Error() string { return e.reason + ": " + e.detail }

// prepare fetches the order and address and creates the label, fails the
// shipment for good, or schedules a retry.
func (m *Main) prepare(ctx context.Context, id string) error {
	s, err := m.load(ctx, id)
	if err != nil {
		return err
	}
	quote, addr, weight, err := m.plan(ctx, s)
	now := m.Config.Now()
	var perm *permanentErr
	switch {
	case errors.Is(err, errOrderCancelled):
		return m.transition(ctx, s.ID, Pending, Cancelled, "order cancelled before shipping", func(tx *sqldb.Tx) error {
			_, err := tx.ExecContext(ctx, `UPDATE shipments SET reason = 'order_cancelled' WHERE id = $1`, s.ID)
			return err
		})
	case errors.As(err, &perm):
		m.app.Log.WarnContext(ctx, "shipment failed", "order_id", s.OrderID, "reason", perm.reason, "detail", perm.detail)
		return m.transition(ctx, s.ID, Pending, Failed, perm.detail, func(tx *sqldb.Tx) error {
			if _, err := tx.ExecContext(ctx, `UPDATE shipments SET reason = $1 WHERE id = $2`, perm.reason, s.ID); err != nil {
				return err
			}
			return m.app.Emit(ctx, tx, "ShipmentFailed", s.OrderID, failedEvent{ShipmentID: s.ID, OrderID: s.OrderID, UserID: s.UserID,
				Reason: perm.reason, Detail: perm.detail, Timestamp: now.UTC(), Version: 1})
		})
	case err != nil:
		// Transient: retry with capped exponential backoff and jitter.
		delay := min(100*time.Millisecond<<min(s.attempts, 9), 30*time.Second)
		delay += time.Duration(rand.Int64N(int64(delay)/4 + 1))
		m.app.Log.WarnContext(ctx, "prepare shipment", "order_id", s.OrderID, "attempt", s.attempts+1, "retry_in", delay.String(), "err", err)
		_, uerr := m.app.DB.ExecContext(ctx, `UPDATE shipments SET attempts = attempts + 1, next_ms = $1 WHERE id = $2 AND status = $3`,
			now.Add(delay).UnixMilli(), s.ID, Pending)
		return uerr
	}
	tracking := trackingNumber(quote.Carrier)
	addrJSON, _ := json.Marshal(addr)
	return m.transition(ctx, s.ID, Pending, LabelCreated, fmt.Sprintf("%s %s label %s", quote.Carrier, quote.Service, tracking), func(tx *sqldb.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE shipments SET carrier = $1, service = $2, tracking_number = $3, rate = $4, currency = $5, weight_g = $6, address = $7, next_ms = $8 WHERE id = $9`,
			quote.Carrier, quote.Service, tracking, quote.Price, quote.Currency, weight, string(addrJSON), now.Add(m.Config.LabelAfter).UnixMilli(), s.ID); err != nil {
			return err
		}
		return m.app.Emit(ctx, tx, "ShipmentCreated", s.OrderID, createdEvent{ShipmentID: s.ID, OrderID: s.OrderID, UserID: s.UserID,
			Carrier: quote.Carrier, Service: quote.Service, TrackingNumber: tracking, Rate: quote.Price, Currency: quote.Currency,
			Country: addr.Country, Timestamp: now.UTC(), Version: 1})
	})
}

var errOrderCancelled = errors.New("order cancelled")

// plan fetches what the label needs and quotes it.
func (m *Main) plan(ctx context.Context, s Shipment) (Rate, Address, int64, error) {
	// Its calls name shipping-service (the identity order-service and
	// user-service let read what a label needs), whoever called plan.
	ctx = kit.WithService(ctx, Service)
	var o order.Order
	if err := m.orders.Do(ctx, "GET", "/orders/"+url.PathEscape(s.OrderID), "", nil, nil, &o); err != nil {
		return Rate{}, Address{}, 0, m.upstream(err, ReasonOrderNotFound, "order "+s.OrderID+" does not exist at order-service")
	}
	if o.Status == order.Cancelled {
		return Rate{}, Address{}, 0, errOrderCancelled
	}
	var weight int64
	for _, it := range o.Items {
		weight += it.Quantity * m.Config.ItemWeightG
	}
	var addrs struct {
		Addresses []Address `json:"addresses"`
	}
	if err := m.users.Do(ctx, "GET", "/users/"+url.PathEscape(s.UserID)+"/addresses", "", nil, nil, &addrs); err != nil {
		return Rate{}, Address{}, 0, m.upstream(err, ReasonNoAddress, "user "+s.UserID+" does not exist at user-service")
	}
	if len(addrs.Addresses) == 0 {
		return Rate{}, Address{}, 0, &permanentErr{ReasonNoAddress, "user " + s.UserID + " has no delivery address"}
	}
	addr := addrs.Addresses[0]
	quote, err := m.Config.Rates.Quote(addr.Country, weight)
	if err != nil {
		return Rate{}, Address{}, 0, &permanentErr{ReasonUndeliverable, err.Error()}
	}
	if m.Config.FailureRate > 0 && fraction(s.OrderID) < m.Config.FailureRate {
		return Rate{}, Address{}, 0, &permanentErr{ReasonCarrierRejected, quote.Carrier + " refused the parcel (shipping failure rate)"}
	}
	return quote, addr, weight, nil
}

// upstream classifies a failed call: 404 is permanent (reason), anything
// else is transient.
func (m *Main) upstream(err error, reason, detail string) error {
	var ue *kit.UpstreamError
	if errors.As(err, &ue) {
		switch ue.Status {
		case http.StatusNotFound:
			return &permanentErr{reason, detail}
		case http.StatusForbidden:
			return fmt.Errorf("%s refused shipping-service's identity (is the call allowed in flotilla.yaml's depends_on?): %w", ue.Service, err)
		}
	}
	return err
}

// fraction maps an order id to [0, 1) deterministically.
func fraction(id string) float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	return float64(h.Sum64()>>11) / (1 << 53)
}

func trackingNumber(carrier string) string {
	p := carrier
	if len(p) > 3 {
		p = p[:3]
	}
	return fmt.Sprintf("%s%012d", p, rand.Int64N(1e12))
}

// advance moves a shipment along the carrier's route.
func (m *Main) advance(ctx context.Context, id, from, to string) error {
	s, err := m.load(ctx, id)
	if err != nil {
		return err
	}
	now := m.Config.Now()
	note := "picked up by " + s.Carrier
	if to == Delivered {
		note = "delivered"
		if s.Address != nil {
			note += " in " + s.Address.City
		}
	}
	return m.transition(ctx, id, from, to, note, func(tx *sqldb.Tx) error {
		if to == InTransit {
			_, err := tx.ExecContext(ctx, `UPDATE shipments SET next_ms = $1 WHERE id = $2`, now.Add(m.Config.DeliverAfter).UnixMilli(), id)
			return err
		}
		return m.app.Emit(ctx, tx, "ShipmentDelivered", s.OrderID, deliveredEvent{ShipmentID: s.ID, OrderID: s.OrderID, UserID: s.UserID,
			Carrier: s.Carrier, TrackingNumber: s.TrackingNumber, Timestamp: now.UTC(), Version: 1})
	})
}

// transition moves shipment id from one status to another, if it is still
// in from, with fn's writes and events in the same transaction.
func (m *Main) transition(ctx context.Context, id, from, to, note string, fn func(tx *sqldb.Tx) error) error {
	now := m.Config.Now().UnixMilli()
	err := m.app.Tx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE shipments SET status = $1, updated_ms = $2 WHERE id = $3 AND status = $4`, to, now, id, from)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errMoved
		}
		if err := addHistory(ctx, tx, id, to, note, now); err != nil {
			return err
		}
		return fn(tx)
	})
	if errors.Is(err, errMoved) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("shipment %s %s → %s: %w", id, from, to, err)
	}
	return nil
}

var errMoved = errors.New("shipment moved on")

func (m *Main) load(ctx context.Context, id string) (Shipment, error) {
	return m.loadBy(ctx, "id", id)
}

func (m *Main) loadBy(ctx context.Context, col, v string) (Shipment, error) {
	var s Shipment
	var addr string
	var created int64
	err := m.app.DB.QueryRowContext(ctx, `SELECT id, order_id, user_id, status, reason, carrier, service, tracking_number, rate, currency, weight_g, address, attempts, created_ms
		FROM shipments WHERE `+col+` = $1`, v).Scan(&s.ID, &s.OrderID, &s.UserID, &s.Status, &s.Reason, &s.Carrier, &s.Service, &s.TrackingNumber,
		&s.Rate, &s.Currency, &s.WeightG, &addr, &s.attempts, &created)
	if err != nil {
		return s, err
	}
	s.CreatedAt = time.UnixMilli(created).UTC()
	if addr != "" {
		s.Address = &Address{}
		if err := json.Unmarshal([]byte(addr), s.Address); err != nil {
			return s, fmt.Errorf("shipment %s: stored address: %w", s.ID, err)
		}
	}
	rs, err := m.app.DB.QueryContext(ctx, `SELECT status, note, at_ms FROM shipment_history WHERE shipment_id = $1 ORDER BY seq`, s.ID)
	if err != nil {
		return s, err
	}
	defer func() { _ = rs.Close() }()
	s.History = []Step{}
	for rs.Next() {
		var st Step
		var at int64
		if err := rs.Scan(&st.Status, &st.Note, &at); err != nil {
			return s, err
		}
		st.At = time.UnixMilli(at).UTC()
		s.History = append(s.History, st)
	}
	return s, rs.Err()
}

func (m *Main) byOrder(w http.ResponseWriter, r *http.Request) error {
	return m.answer(w, r, "order_id", r.PathValue("id"), "order")
}

func (m *Main) get(w http.ResponseWriter, r *http.Request) error {
	return m.answer(w, r, "id", r.PathValue("id"), "shipment")
}

func (m *Main) answer(w http.ResponseWriter, r *http.Request, col, v, what string) error {
	s, err := m.loadBy(r.Context(), col, v)
	if sqldb.IsNoRows(err) {
		return kit.NotFound("no shipment for %s %s (yet: shipments are created when the order is confirmed)", what, v)
	}
	if err != nil {
		return err
	}
	if c := kit.ClaimsFrom(r.Context()); c.UserID() != s.UserID && c.Role != kit.RoleAdmin {
		return kit.Forbidden("the shipment of %s %s belongs to another user", what, v)
	}
	kit.WriteJSON(w, http.StatusOK, s)
	return nil
}

// addReaders adds every readers/<Event>.avsc of fsys to codec.
func addReaders(codec *kit.Codec, fsys embed.FS) error {
	entries, err := fsys.ReadDir("readers")
	if err != nil {
		return err
	}
	for _, e := range entries {
		src, err := fsys.ReadFile("readers/" + e.Name())
		if err != nil {
			return err
		}
		if err := codec.AddReader(strings.TrimSuffix(e.Name(), ".avsc"), string(src)); err != nil {
			return err
		}
	}
	return nil
}
