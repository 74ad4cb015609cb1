// Package search is search-service: full-text product search. Products
// come from product-service's events (ProductCreated, ProductUpdated,
// PriceChanged) through kit's idempotent consumers; popularity from
// orders (the lines of OrderCreated, counted when OrderConfirmed arrives,
// in whichever order the two come). Queries take text, category and price
// filters, facets, and sort by relevance, price or popularity.
//
// The engine is an Index (Bleve embedded, package bleveindex); the
// service keeps its own table of what the index holds, written in the same
// transaction as each event's processed mark, and writes the index from
// that table inside the transaction, so a redelivered event rewrites the
// same document. An index that is lost (empty) or corrupt at start is
// rebuilt: the catalog from product-service's list API, popularity from
// the table. POST /admin/reindex does the same on demand.
//
// API:
//
//	GET  /search?q=&category=&minPrice=&maxPrice=&sort=relevance|price|-price|popularity&limit=&offset=&facets=
//	POST /admin/reindex     an admin's token (Authorization: Bearer) → 202, the rebuild's status
//	GET  /admin/reindex     an admin's token → the last rebuild's status
//
// The admin routes check the token like every other service's admin
// routes: a JWT of user-service (USER_URL, for its JWKS) whose role is
// admin; the gateway checks the same before it forwards.
package search

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"sync"
	"time"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/order"
	"github.com/flotilla-ci/flotilla/shop/product"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Service is the service's name in flotilla.yaml.
const Service = "search-service"

// Deps are the synchronous dependencies (short names).
var Deps = []string{"product"}

// Config is search-service's configuration.
type Config struct {
	Kit kit.Config
	// Open opens the index (cmd/search: bleveindex at INDEX_DIR); an
	// error wrapping ErrCorrupt makes the service call Reset and Open
	// again, then rebuild.
	Open  func() (Index, error)
	Reset func() error
	// Users is user-service's base URL (USER_URL), for the JWKS that
	// verifies the admin tokens of /admin/reindex; without it those
	// routes answer 503.
	Users string
	// RetryEvery is how long a failed start-up rebuild waits before it
	// tries again (product-service may start later); default 2s.
	RetryEvery time.Duration
}

// Main runs search-service.
type Main struct {
	Config Config

	app      *kit.App
	idx      Index
	products *kit.Client

	// writers hold mu's read lock around a consumer's transaction; a
	// rebuild holds the write lock while it writes one page, so no event's
	// document is overwritten by an older copy.
	mu sync.RWMutex

	stMu    sync.Mutex
	status  RebuildStatus
	running bool
}

// RebuildStatus reports the last rebuild.
type RebuildStatus struct {
	Running    bool       `json:"running"`
	Reason     string     `json:"reason,omitempty"`
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	Listed     int        `json:"listed"`  // products read from product-service
	Indexed    int        `json:"indexed"` // documents written
	Error      string     `json:"error,omitempty"`
}

// consumed are the events search-service reads (flotilla.yaml), with the
// producer schemas they are read with.
var consumed = []struct {
	event  string
	schema func() fs.FS
}{
	{"ProductCreated", product.Schemas}, {"ProductUpdated", product.Schemas}, {"PriceChanged", product.Schemas},
	{"OrderCreated", order.Schemas}, {"OrderConfirmed", order.Schemas},
}

// Start opens everything, rebuilds the index in the background when it is
// empty or was corrupt, and serves.
func (m *Main) Start(ctx context.Context) error {
	if m.Config.Open == nil {
		return errors.New("start search-service: no index (Config.Open)")
	}
	if m.Config.RetryEvery <= 0 {
		m.Config.RetryEvery = 2 * time.Second
	}
	mig, _ := fs.Sub(migrationFS, "migrations")
	app, err := kit.Start(ctx, m.Config.Kit, mig, nil)
	if err != nil {
		return err
	}
	m.app = app
	fail := func(err error) error {
		if m.idx != nil {
			_ = m.idx.Close()
		}
		_ = app.Close()
		return fmt.Errorf("start %s: %w", Service, err)
	}
	for _, c := range consumed {
		body, err := fs.ReadFile(c.schema(), c.event+".avsc")
		if err != nil {
			return fail(err)
		}
		if err := app.Codec.Add(ctx, c.event, string(body)); err != nil {
			return fail(err)
		}
	}
	reason := ""
	m.idx, err = m.Config.Open()
	if errors.Is(err, ErrCorrupt) && m.Config.Reset != nil {
		app.Log.WarnContext(ctx, "search index corrupt: starting a fresh one and rebuilding", "err", err)
		if err := m.Config.Reset(); err != nil {
			return fail(fmt.Errorf("reset index: %w", err))
		}
		m.idx, err = m.Config.Open()
		reason = "index was corrupt"
	}
	if err != nil {
		return fail(err)
	}
	if reason == "" {
		n, err := m.idx.Count(ctx)
		if err != nil {
			return fail(fmt.Errorf("count index: %w", err))
		}
		if n == 0 {
			reason = "index was empty"
		}
	}
	m.products = m.Config.Kit.Client("product-service", "product")
	handlers := map[string]kit.ConsumeFunc{
		"ProductCreated": m.onCreated, "ProductUpdated": m.onUpdated, "PriceChanged": m.onPrice,
		"OrderCreated": m.onOrderCreated, "OrderConfirmed": m.onOrderConfirmed,
	}
	for _, c := range consumed {
		if err := m.consume(ctx, c.event, handlers[c.event]); err != nil {
			return fail(err)
		}
	}
	app.Mux.Handle("GET /search", kit.Handle(m.search))
	admin := func(h kit.HandlerFunc) http.Handler {
		return kit.Handle(func(w http.ResponseWriter, r *http.Request) error {
			return kit.Errorf(http.StatusServiceUnavailable, "auth_unavailable", "USER_URL is not set: %s cannot verify admin tokens", Service)
		})
	}
	if m.Config.Users != "" {
		v := kit.NewVerifier(m.Config.Users)
		admin = func(h kit.HandlerFunc) http.Handler { return kit.Handle(v.Auth(h, kit.RoleAdmin)) }
	} else {
		app.Log.Warn("USER_URL is not set: /admin/reindex answers 503")
	}
	app.Mux.Handle("POST /admin/reindex", admin(m.reindex))
	app.Mux.Handle("GET /admin/reindex", admin(func(w http.ResponseWriter, r *http.Request) error {
		kit.WriteJSON(w, http.StatusOK, m.Status())
		return nil
	}))
	if reason != "" {
		app.Go(func(ctx context.Context) {
			for {
				if m.setRunning(reason) {
					if err := m.rebuild(ctx); err == nil {
						return
					}
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(m.Config.RetryEvery):
				}
			}
		})
	}
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

// Index is the running index.
func (m *Main) Index() Index { return m.idx }

// Close drains and stops the service, then closes the index.
func (m *Main) Close() error {
	if m.app == nil {
		return nil
	}
	err := m.app.Close()
	if m.idx != nil {
		err = errors.Join(err, m.idx.Close())
		m.idx = nil
	}
	return err
}

// consume subscribes an idempotent handler that holds the rebuild lock's
// read side around its whole transaction (taken before the transaction
// begins, so a waiting handler holds no database connection).
func (m *Main) consume(ctx context.Context, topic string, fn kit.ConsumeFunc) error {
	h := kit.Idempotent(m.app.DB, Service, func(ctx context.Context, tx *sqldb.Tx, msg bus.Message) error {
		err := fn(ctx, tx, msg)
		if errors.Is(err, kit.ErrPoison) {
			return bus.Permanent(err)
		}
		return err
	}, m.app.Crash)
	_, err := m.app.Bus.Subscribe(ctx, bus.Subscription{Topic: topic, Group: Service, Handler: func(ctx context.Context, msg bus.Message) error {
		m.mu.RLock()
		defer m.mu.RUnlock()
		err := h(ctx, msg)
		if err != nil && !bus.IsPermanent(err) {
			m.app.Log.WarnContext(ctx, "consume", "topic", topic, "event_id", msg.ID(), "delivery", msg.Delivery, "err", err)
		}
		return err
	}})
	return err
}

type createdEvent struct {
	SKU         string    `avro:"sku"`
	Name        string    `avro:"name"`
	Description string    `avro:"description"`
	Category    string    `avro:"category"`
	Price       int64     `avro:"price"`
	Currency    string    `avro:"currency"`
	SellerID    string    `avro:"sellerId"`
	Timestamp   time.Time `avro:"timestamp"`
	Version     int       `avro:"version"`
}

type updatedEvent struct {
	SKU         string    `avro:"sku"`
	Name        string    `avro:"name"`
	Description string    `avro:"description"`
	Category    string    `avro:"category"`
	Active      bool      `avro:"active"`
	Timestamp   time.Time `avro:"timestamp"`
	Version     int       `avro:"version"`
}

type priceEvent struct {
	SKU       string    `avro:"sku"`
	OldPrice  int64     `avro:"oldPrice"`
	NewPrice  int64     `avro:"newPrice"`
	Currency  string    `avro:"currency"`
	Timestamp time.Time `avro:"timestamp"`
	Version   int       `avro:"version"`
}

type orderLine struct {
	SKU       string `avro:"sku" json:"sku"`
	Quantity  int    `avro:"quantity" json:"quantity"`
	UnitPrice int64  `avro:"unitPrice" json:"-"`
}

type orderCreatedEvent struct {
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

type orderConfirmedEvent struct {
	OrderID       string    `avro:"orderId"`
	UserID        string    `avro:"userId"`
	Total         int64     `avro:"total"`
	Currency      string    `avro:"currency"`
	PaymentID     string    `avro:"paymentId"`
	ReservationID string    `avro:"reservationId"`
	Timestamp     time.Time `avro:"timestamp"`
	Version       int       `avro:"version"`
}

// row is one search_products row; -1 in a _ms field means "this change
// does not carry that group of fields".
type row struct {
	SKU, Name, Description, Category string
	Active                           bool
	DetailsMS                        int64
	Price                            int64
	Currency                         string
	PriceMS                          int64
	Popularity                       int64
}

func (r row) indexable() bool { return r.Active && r.DetailsMS >= 0 && r.PriceMS >= 0 }

func (r row) doc() Doc {
	return Doc{SKU: r.SKU, Name: r.Name, Description: r.Description, Category: r.Category, Price: r.Price, Currency: r.Currency, Popularity: r.Popularity}
}

// upsertSQL keeps, per group of fields, the newer of the stored and the
// incoming version (>=: an equal time rewrites the same values).
const upsertSQL = `INSERT INTO search_products (sku, name, description, category, active, details_ms, price, currency, price_ms, popularity, listed)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10)
ON CONFLICT (sku) DO UPDATE SET
	name = CASE WHEN excluded.details_ms >= search_products.details_ms THEN excluded.name ELSE search_products.name END,
	description = CASE WHEN excluded.details_ms >= search_products.details_ms THEN excluded.description ELSE search_products.description END,
	category = CASE WHEN excluded.details_ms >= search_products.details_ms THEN excluded.category ELSE search_products.category END,
	active = CASE WHEN excluded.details_ms >= search_products.details_ms THEN excluded.active ELSE search_products.active END,
	details_ms = CASE WHEN excluded.details_ms >= search_products.details_ms THEN excluded.details_ms ELSE search_products.details_ms END,
	price = CASE WHEN excluded.price_ms >= search_products.price_ms THEN excluded.price ELSE search_products.price END,
	currency = CASE WHEN excluded.price_ms >= search_products.price_ms THEN excluded.currency ELSE search_products.currency END,
	price_ms = CASE WHEN excluded.price_ms >= search_products.price_ms THEN excluded.price_ms ELSE search_products.price_ms END,
	listed = CASE WHEN excluded.listed <> 0 THEN excluded.listed ELSE search_products.listed END`

func upsert(ctx context.Context, tx *sqldb.Tx, r row, listed int64) error {
	_, err := tx.ExecContext(ctx, upsertSQL, r.SKU, r.Name, r.Description, r.Category, r.Active, r.DetailsMS, r.Price, r.Currency, r.PriceMS, listed)
	if err != nil {
		return fmt.Errorf("upsert %s: %w", r.SKU, err)
	}
	return nil
}

const rowCols = `sku, name, description, category, active, details_ms, price, currency, price_ms, popularity`

func scanRow(s interface{ Scan(...any) error }) (row, error) {
	var r row
	err := s.Scan(&r.SKU, &r.Name, &r.Description, &r.Category, &r.Active, &r.DetailsMS, &r.Price, &r.Currency, &r.PriceMS, &r.Popularity)
	return r, err
}

// sync writes the current rows of skus to the index: indexable ones put,
// the rest deleted.
func (m *Main) sync(ctx context.Context, tx *sqldb.Tx, skus ...string) error {
	var put []Doc
	var del []string
	for _, sku := range skus {
		r, err := scanRow(tx.QueryRowContext(ctx, `SELECT `+rowCols+` FROM search_products WHERE sku = $1`, sku))
		if err != nil {
			return fmt.Errorf("read %s: %w", sku, err)
		}
		if r.indexable() {
			put = append(put, r.doc())
		} else {
			del = append(del, sku)
		}
	}
	if err := m.idx.Put(ctx, put...); err != nil {
		return err
	}
	return m.idx.Delete(ctx, del...)
}

func (m *Main) onCreated(ctx context.Context, tx *sqldb.Tx, msg bus.Message) error {
	var e createdEvent
	if err := m.app.Codec.Decode(ctx, msg.Topic, msg.Payload, &e); err != nil {
		return err
	}
	ms := e.Timestamp.UnixMilli()
	if err := upsert(ctx, tx, row{SKU: e.SKU, Name: e.Name, Description: e.Description, Category: e.Category, Active: true,
		DetailsMS: ms, Price: e.Price, Currency: e.Currency, PriceMS: ms}, 0); err != nil {
		return err
	}
	return m.sync(ctx, tx, e.SKU)
}

func (m *Main) onUpdated(ctx context.Context, tx *sqldb.Tx, msg bus.Message) error {
	var e updatedEvent
	if err := m.app.Codec.Decode(ctx, msg.Topic, msg.Payload, &e); err != nil {
		return err
	}
	if err := upsert(ctx, tx, row{SKU: e.SKU, Name: e.Name, Description: e.Description, Category: e.Category, Active: e.Active,
		DetailsMS: e.Timestamp.UnixMilli(), PriceMS: -1}, 0); err != nil {
		return err
	}
	return m.sync(ctx, tx, e.SKU)
}

func (m *Main) onPrice(ctx context.Context, tx *sqldb.Tx, msg bus.Message) error {
	var e priceEvent
	if err := m.app.Codec.Decode(ctx, msg.Topic, msg.Payload, &e); err != nil {
		return err
	}
	if err := upsert(ctx, tx, row{SKU: e.SKU, DetailsMS: -1, Price: e.NewPrice, Currency: e.Currency, PriceMS: e.Timestamp.UnixMilli()}, 0); err != nil {
		return err
	}
	return m.sync(ctx, tx, e.SKU)
}

func (m *Main) onOrderCreated(ctx context.Context, tx *sqldb.Tx, msg bus.Message) error {
	var e orderCreatedEvent
	if err := m.app.Codec.Decode(ctx, msg.Topic, msg.Payload, &e); err != nil {
		return err
	}
	lines := e.Lines
	if len(lines) == 0 { // a writer of the scenario's first version: SKUs only
		for _, sku := range e.Items {
			lines = append(lines, orderLine{SKU: sku, Quantity: 1})
		}
	}
	data, _ := json.Marshal(lines)
	if _, err := tx.ExecContext(ctx, `INSERT INTO search_orders (order_id, lines) VALUES ($1, $2)
		ON CONFLICT (order_id) DO UPDATE SET lines = excluded.lines`, e.OrderID, string(data)); err != nil {
		return fmt.Errorf("record order %s: %w", e.OrderID, err)
	}
	return m.countOrder(ctx, tx, e.OrderID)
}

func (m *Main) onOrderConfirmed(ctx context.Context, tx *sqldb.Tx, msg bus.Message) error {
	var e orderConfirmedEvent
	if err := m.app.Codec.Decode(ctx, msg.Topic, msg.Payload, &e); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO search_orders (order_id, confirmed) VALUES ($1, $2)
		ON CONFLICT (order_id) DO UPDATE SET confirmed = excluded.confirmed`, e.OrderID, true); err != nil {
		return fmt.Errorf("confirm order %s: %w", e.OrderID, err)
	}
	return m.countOrder(ctx, tx, e.OrderID)
}

// countOrder adds a confirmed order's quantities to its products'
// popularity, once, when both its lines and its confirmation are known.
func (m *Main) countOrder(ctx context.Context, tx *sqldb.Tx, orderID string) error {
	var lines *string
	var confirmed, counted bool
	if err := tx.QueryRowContext(ctx, `SELECT lines, confirmed, counted FROM search_orders WHERE order_id = $1`, orderID).Scan(&lines, &confirmed, &counted); err != nil {
		return fmt.Errorf("read order %s: %w", orderID, err)
	}
	if lines == nil || !confirmed || counted {
		return nil
	}
	var ls []orderLine
	if err := json.Unmarshal([]byte(*lines), &ls); err != nil {
		return fmt.Errorf("order %s lines: %w", orderID, err)
	}
	var skus []string
	for _, l := range ls {
		if l.SKU == "" || l.Quantity <= 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO search_products (sku, name, description, category, active, details_ms, price, currency, price_ms, popularity)
			VALUES ($1, '', '', '', $2, -1, 0, '', -1, $3)
			ON CONFLICT (sku) DO UPDATE SET popularity = search_products.popularity + excluded.popularity`, l.SKU, false, l.Quantity); err != nil {
			return fmt.Errorf("popularity of %s: %w", l.SKU, err)
		}
		skus = append(skus, l.SKU)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE search_orders SET counted = $1 WHERE order_id = $2`, true, orderID); err != nil {
		return err
	}
	return m.sync(ctx, tx, skus...)
}

func (m *Main) search(w http.ResponseWriter, r *http.Request) error {
	q, err := ParseQuery(r.URL.Query())
	var qe *QueryError
	if errors.As(err, &qe) {
		return kit.Errorf(http.StatusBadRequest, "bad_query", "%s", qe.Error())
	}
	if err != nil {
		return err
	}
	res, err := m.idx.Search(r.Context(), q)
	if err != nil && r.Context().Err() != nil {
		return nil // the client is gone: no one to answer
	}
	if errors.Is(err, ErrBadQuery) {
		return kit.Errorf(http.StatusBadRequest, "bad_query", "%v", err)
	}
	if err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, res)
	return nil
}

func (m *Main) reindex(w http.ResponseWriter, r *http.Request) error {
	if !m.setRunning("requested by an admin") {
		return kit.Conflict("rebuild_running", "a rebuild is already running; GET /admin/reindex for its progress")
	}
	m.app.Go(func(ctx context.Context) { _ = m.rebuild(ctx) })
	kit.WriteJSON(w, http.StatusAccepted, m.Status())
	return nil
}

// Status is the last rebuild's status.
func (m *Main) Status() RebuildStatus {
	m.stMu.Lock()
	defer m.stMu.Unlock()
	return m.status
}

// setRunning marks a rebuild started; false if one is running already.
func (m *Main) setRunning(reason string) bool {
	m.stMu.Lock()
	defer m.stMu.Unlock()
	if m.running {
		return false
	}
	now := time.Now().UTC()
	m.running = true
	m.status = RebuildStatus{Running: true, Reason: reason, StartedAt: &now}
	return true
}

func (m *Main) progress(listed, indexed int) {
	m.stMu.Lock()
	m.status.Listed, m.status.Indexed = listed, indexed
	m.stMu.Unlock()
}

func (m *Main) finish(err error) {
	m.stMu.Lock()
	defer m.stMu.Unlock()
	now := time.Now().UTC()
	m.running = false
	m.status.Running = false
	m.status.FinishedAt = &now
	if err != nil {
		m.status.Error = err.Error()
	}
}
