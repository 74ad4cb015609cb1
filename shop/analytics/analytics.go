// Package analytics is analytics-service: it subscribes to every event of
// every service (flotilla.yaml), reads each with the schema it was written
// with (so any version is read; one no schema can read is stored raw with
// the reason), stores them append-only in batches, and answers aggregate
// queries: orders and GMV per hour, cart-to-order conversion, top
// products, payment failure rate, cancellation reasons. /metrics serves
// the same figures to Prometheus.
//
// API (amounts in minor units):
//
//	GET /stats                 everything below (orders per hour over the last 24 hours)
//	GET /stats/orders?from=&to= confirmed orders and GMV per hour (RFC 3339; default the last 24 hours)
//	GET /stats/totals          all-time confirmed orders and GMV per currency
//	GET /stats/conversion      checkouts (OrderCreated) → confirmed orders
//	GET /stats/top-products?limit=
//	GET /stats/payments        completed, failed, refunded, failure rate
//	GET /stats/cancellations   cancelled orders by reason
//	GET /stats/events          stored events by type (and how many were undecodable)
//	GET /metrics               Prometheus text format
package analytics

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/shop/inventory"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/order"
	"github.com/flotilla-ci/flotilla/shop/payment"
	"github.com/flotilla-ci/flotilla/shop/product"
	"github.com/flotilla-ci/flotilla/shop/shipping"
	"github.com/flotilla-ci/flotilla/shop/user"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Service is the service's name in flotilla.yaml.
const Service = "analytics-service"

// Events are every event analytics-service subscribes to (flotilla.yaml).
var Events = []string{
	"UserRegistered",
	"ProductCreated", "ProductUpdated", "PriceChanged",
	"StockReserved", "StockReleased", "StockDepleted",
	"PaymentCompleted", "PaymentFailed", "PaymentRefunded",
	"OrderCreated", "OrderConfirmed", "OrderCancelled",
	"ShipmentCreated", "ShipmentDelivered", "ShipmentFailed",
}

// Config is analytics-service's configuration.
type Config struct {
	Kit kit.Config
	// Batch is the most events stored in one transaction (BATCH_SIZE);
	// default 500.
	Batch int
}

// Main runs analytics-service.
type Main struct {
	Config Config

	app   *kit.App
	dec   *decoder
	w     *writer
	stats Stats
	subs  []io.Closer
}

// Start opens everything, subscribes to every event and serves.
func (m *Main) Start(ctx context.Context) error {
	if m.Config.Batch <= 0 {
		m.Config.Batch = 500
	}
	mig, _ := fs.Sub(migrationFS, "migrations")
	app, err := kit.Start(ctx, m.Config.Kit, mig, nil)
	if err != nil {
		return err
	}
	m.app = app
	fail := func(err error) error {
		_ = m.Close()
		return fmt.Errorf("start %s: %w", Service, err)
	}
	if m.dec, err = newDecoder(m.Config.Kit.RegistryURL, user.Schemas(), product.Schemas(), inventory.Schemas(),
		payment.Schemas(), order.Schemas(), shipping.Schemas()); err != nil {
		return fail(err)
	}
	m.w = newWriter(app.DB, m.Config.Batch)
	m.stats = Stats{DB: app.DB}
	app.Go(m.w.run)
	for _, ev := range Events {
		sub, err := app.Bus.Subscribe(ctx, bus.Subscription{Topic: ev, Group: Service, Handler: m.handle})
		if err != nil {
			return fail(err)
		}
		m.subs = append(m.subs, sub)
	}
	m.routes()
	app.Serve()
	return nil
}

// handle stores one event and returns once it is committed.
func (m *Main) handle(ctx context.Context, msg bus.Message) error {
	if msg.ID() == "" {
		return bus.Permanent(fmt.Errorf("%s on %s: no %s header", Service, msg.Topic, bus.HeaderEventID))
	}
	r, err := m.dec.toRecord(ctx, msg)
	if err != nil {
		m.app.Log.WarnContext(ctx, "read event", "topic", msg.Topic, "event_id", msg.ID(), "err", err)
		return err
	}
	if !r.Decoded {
		m.app.Log.WarnContext(ctx, "event stored undecoded", "topic", msg.Topic, "event_id", msg.ID(), "schema_id", r.SchemaID, "data", r.Data)
	}
	if err := m.w.store(ctx, r); err != nil {
		if ctx.Err() == nil {
			m.app.Log.WarnContext(ctx, "store event", "topic", msg.Topic, "event_id", msg.ID(), "err", err)
		}
		return err
	}
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

// Stats answers the aggregate queries.
func (m *Main) Stats() Stats { return m.stats }

// Close stops consuming (handlers waiting on a batch finish or are
// redelivered later), then drains and stops the service.
func (m *Main) Close() error {
	for _, s := range m.subs {
		_ = s.Close()
	}
	m.subs = nil
	if m.app == nil {
		return nil
	}
	return m.app.Close()
}

func (m *Main) routes() {
	mux := m.app.Mux
	js := func(f func(r *http.Request) (any, error)) http.Handler {
		return kit.Handle(func(w http.ResponseWriter, r *http.Request) error {
			if err := onlyParams(r, "from", "to", "limit"); err != nil {
				return err
			}
			v, err := f(r)
			if err != nil {
				return err
			}
			kit.WriteJSON(w, http.StatusOK, v)
			return nil
		})
	}
	mux.Handle("GET /stats/orders", js(func(r *http.Request) (any, error) {
		from, to, err := window(r)
		if err != nil {
			return nil, err
		}
		return m.stats.OrdersPerHour(r.Context(), from, to)
	}))
	mux.Handle("GET /stats/totals", js(func(r *http.Request) (any, error) { return m.stats.Totals(r.Context()) }))
	mux.Handle("GET /stats/conversion", js(func(r *http.Request) (any, error) { return m.stats.Conversion(r.Context()) }))
	mux.Handle("GET /stats/top-products", js(func(r *http.Request) (any, error) {
		n, err := limit(r)
		if err != nil {
			return nil, err
		}
		return m.stats.TopProducts(r.Context(), n)
	}))
	mux.Handle("GET /stats/payments", js(func(r *http.Request) (any, error) { return m.stats.Payments(r.Context()) }))
	mux.Handle("GET /stats/cancellations", js(func(r *http.Request) (any, error) { return m.stats.Cancellations(r.Context()) }))
	mux.Handle("GET /stats/events", js(func(r *http.Request) (any, error) { return m.stats.Events(r.Context()) }))
	mux.Handle("GET /stats", js(func(r *http.Request) (any, error) { return m.summary(r) }))
	mux.Handle("GET /metrics", m.metrics())
}

// Summary is every aggregate at once.
type Summary struct {
	OrdersPerHour []Hour         `json:"ordersPerHour"`
	Totals        Totals         `json:"totals"`
	Conversion    Conversion     `json:"conversion"`
	TopProducts   []ProductSales `json:"topProducts"`
	Payments      Payments       `json:"payments"`
	Cancellations []Reason       `json:"cancellations"`
}

func (m *Main) summary(r *http.Request) (Summary, error) {
	ctx := r.Context()
	var s Summary
	var errs [6]error
	now := time.Now()
	s.OrdersPerHour, errs[0] = m.stats.OrdersPerHour(ctx, now.Add(-24*time.Hour).Truncate(time.Hour), now)
	s.Totals, errs[1] = m.stats.Totals(ctx)
	s.Conversion, errs[2] = m.stats.Conversion(ctx)
	s.TopProducts, errs[3] = m.stats.TopProducts(ctx, 10)
	s.Payments, errs[4] = m.stats.Payments(ctx)
	s.Cancellations, errs[5] = m.stats.Cancellations(ctx)
	return s, errors.Join(errs[:]...)
}

func onlyParams(r *http.Request, known ...string) error {
	for k := range r.URL.Query() {
		ok := false
		for _, want := range known {
			ok = ok || k == want
		}
		if !ok {
			return kit.BadRequest("unknown query parameter %q", k)
		}
	}
	return nil
}

func window(r *http.Request) (time.Time, time.Time, error) {
	now := time.Now().UTC()
	from, to := now.Add(-24*time.Hour).Truncate(time.Hour), now
	q := r.URL.Query()
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &from}, {"to", &to}} {
		if s := q.Get(p.name); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return from, to, kit.BadRequest("%s=%q: want an RFC 3339 time such as 2026-11-26T00:00:00Z", p.name, s)
			}
			*p.dst = t
		}
	}
	if !from.Before(to) {
		return from, to, kit.BadRequest("from %s is not before to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	if to.Sub(from) > 366*24*time.Hour {
		return from, to, kit.BadRequest("window over 366 days: ask for less")
	}
	return from, to, nil
}

func limit(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 10, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 1000 {
		return 0, kit.BadRequest("limit=%q: want an integer from 1 to 1000", s)
	}
	return n, nil
}
