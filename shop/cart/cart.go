// Package cart is cart-service: one cart per user; add, update and remove
// items, each validated with product-service (the SKU exists, is on sale,
// and its current price), and totals. It publishes no events.
//
// API (bearer token required; a user reaches only their own cart, an admin
// any cart through /carts/{userId}):
//
//	GET    /carts/me[?refresh=true]   the cart; refresh re-prices every line with product-service
//	POST   /carts/me/items            {sku, quantity} adds to the line
//	PUT    /carts/me/items/{sku}      {quantity} sets the line (0 removes it)
//	DELETE /carts/me/items/{sku}
//	DELETE /carts/me                  empties the cart
//	GET    /carts/{userId}
package cart

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"time"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/cache"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Service is the service's name in flotilla.yaml.
const Service = "cart-service"

// Deps are the synchronous dependencies (short names).
var Deps = []string{"user", "product"}

// MaxQuantity bounds one line.
const MaxQuantity = 1000

// Config is cart-service's configuration.
type Config struct {
	Kit kit.Config
	// Cache holds carts (nil: an in-process LRU; cmd/cart uses Redis when
	// REDIS_URL is set); CacheTTL defaults to DefaultCacheTTL.
	Cache    cache.Cache
	CacheTTL time.Duration
}

// Main runs cart-service.
type Main struct {
	Config   Config
	app      *kit.App
	products *kit.Client
	cache    *cache.Through
}

// Line is one cart line.
type Line struct {
	SKU       string `json:"sku"`
	Name      string `json:"name"`
	Quantity  int64  `json:"quantity"`
	UnitPrice int64  `json:"unitPrice"`
	LineTotal int64  `json:"lineTotal"`
}

// Cart is a user's cart.
type Cart struct {
	UserID   string `json:"userId"`
	Items    []Line `json:"items"`
	Total    int64  `json:"total"`
	Currency string `json:"currency,omitempty"`
}

// Start opens everything and serves.
func (m *Main) Start(ctx context.Context) error {
	mig, _ := fs.Sub(migrationFS, "migrations")
	app, err := kit.Start(ctx, m.Config.Kit, mig, nil)
	if err != nil {
		return err
	}
	m.app = app
	m.initCache()
	m.products = m.Config.Kit.Client("product-service", "product")
	v := kit.NewVerifier(m.Config.Kit.Deps["user"])
	mux := app.Mux
	mux.Handle("GET /carts/me", kit.Handle(v.Auth(m.get)))
	mux.Handle("GET /carts/{user}", kit.Handle(v.AuthOrService(m.get, "order-service")))
	// order-service empties the cart of an order it confirmed.
	mux.Handle("DELETE /carts/{user}", kit.Handle(kit.Internal(m.clear, "order-service")))
	mux.Handle("POST /carts/me/items", kit.Handle(v.Auth(m.add)))
	mux.Handle("PUT /carts/me/items/{sku}", kit.Handle(v.Auth(m.set)))
	mux.Handle("DELETE /carts/me/items/{sku}", kit.Handle(v.Auth(m.remove)))
	mux.Handle("DELETE /carts/me", kit.Handle(v.Auth(m.clear)))
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

type product struct {
	SKU      string `json:"sku"`
	Name     string `json:"name"`
	Price    int64  `json:"price"`
	Currency string `json:"currency"`
	Active   bool   `json:"active"`
}

func (m *Main) product(ctx context.Context, sku string) (product, error) {
	var p product
	err := m.products.Do(ctx, "GET", "/products/"+url.PathEscape(sku), "", nil, nil, &p)
	var ue *kit.UpstreamError
	if errors.As(err, &ue) && ue.Status == http.StatusNotFound {
		return p, kit.Errorf(http.StatusUnprocessableEntity, "unknown_sku", "sku %s is not in the catalog", sku)
	}
	if err != nil {
		return p, kit.Upstream(err, "look up sku %s", sku)
	}
	if !p.Active {
		return p, kit.Errorf(http.StatusUnprocessableEntity, "unavailable_sku", "sku %s is withdrawn from the catalog", sku)
	}
	return p, nil
}

func (m *Main) load(ctx context.Context, user string) (Cart, error) {
	c := Cart{UserID: user, Items: []Line{}}
	rows, err := m.app.DB.QueryContext(ctx, `SELECT sku, name, quantity, unit_price, currency FROM cart_items WHERE user_id = $1 ORDER BY added_ms, sku`, user)
	if err != nil {
		return c, err
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var l Line
		if err := rows.Scan(&l.SKU, &l.Name, &l.Quantity, &l.UnitPrice, &c.Currency); err != nil {
			return c, err
		}
		l.LineTotal = l.Quantity * l.UnitPrice
		c.Total += l.LineTotal
		c.Items = append(c.Items, l)
	}
	return c, rows.Err()
}

func (m *Main) get(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	claims := kit.ClaimsFrom(ctx)
	user := claims.UserID()
	if u := r.PathValue("user"); u != "" {
		if !claims.MayActFor(u) {
			return kit.Forbidden("user %s may not read the cart of user %s", user, u)
		}
		user = u
	}
	if r.URL.Query().Get("refresh") == "true" {
		c, err := m.load(ctx, user)
		if err != nil {
			return err
		}
		c.Total = 0
		for i, l := range c.Items {
			p, err := m.product(ctx, l.SKU)
			if err != nil {
				return err
			}
			if p.Price != l.UnitPrice || p.Name != l.Name {
				if _, err := m.app.DB.ExecContext(ctx, `UPDATE cart_items SET unit_price = $1, name = $2 WHERE user_id = $3 AND sku = $4`, p.Price, p.Name, user, l.SKU); err != nil {
					return err
				}
				c.Items[i].UnitPrice, c.Items[i].Name = p.Price, p.Name
				c.Items[i].LineTotal = l.Quantity * p.Price
			}
			c.Total += c.Items[i].LineTotal
		}
		m.invalidate(ctx, user)
		// The cart just read and repriced is the answer: no second read.
		kit.WriteJSON(w, http.StatusOK, c)
		return nil
	}
	c, err := m.loadCached(ctx, user)
	if err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, c)
	return nil
}

type qty struct {
	SKU      string `json:"sku"`
	Quantity int64  `json:"quantity"`
}

func (m *Main) add(w http.ResponseWriter, r *http.Request) error {
	var in qty
	if err := kit.Decode(r, &in); err != nil {
		return err
	}
	if in.SKU == "" {
		return kit.BadRequest("sku is required")
	}
	if in.Quantity <= 0 || in.Quantity > MaxQuantity {
		return kit.BadRequest("quantity %d: want 1 to %d", in.Quantity, MaxQuantity)
	}
	return m.put(w, r, in.SKU, in.Quantity, true)
}

func (m *Main) set(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Quantity int64 `json:"quantity"`
	}
	if err := kit.Decode(r, &in); err != nil {
		return err
	}
	if in.Quantity < 0 || in.Quantity > MaxQuantity {
		return kit.BadRequest("quantity %d: want 0 (remove) to %d", in.Quantity, MaxQuantity)
	}
	if in.Quantity == 0 {
		return m.remove(w, r)
	}
	return m.put(w, r, r.PathValue("sku"), in.Quantity, false)
}

func (m *Main) put(w http.ResponseWriter, r *http.Request, sku string, q int64, add bool) error {
	// A SKU has a grammar: "DEMO-MUG?x=1" or "../products/DEMO-MUG" is
	// refused here, before it goes near product-service's URL.
	if err := kit.CheckSKU("sku", sku); err != nil {
		return err
	}
	ctx := r.Context()
	user := kit.ClaimsFrom(ctx).UserID()
	p, err := m.product(ctx, sku)
	if err != nil {
		return err
	}
	err = m.app.DB.InTx(ctx, func(tx *sqldb.Tx) error {
		// The cart's currency (from its other lines) and this line's
		// quantity, in one round trip.
		var cur sql.NullString
		var line sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT (SELECT currency FROM cart_items WHERE user_id = $1 AND sku <> $2 LIMIT 1),
			(SELECT quantity FROM cart_items WHERE user_id = $1 AND sku = $2)`, user, sku).Scan(&cur, &line)
		if err != nil {
			return err
		}
		if cur.Valid && cur.String != p.Currency {
			return kit.Conflict("currency_mismatch", "sku %s is priced in %s but the cart is in %s", sku, p.Currency, cur.String)
		}
		have, exists := line.Int64, line.Valid
		if add {
			q += have
		}
		if q > MaxQuantity {
			return kit.BadRequest("quantity %d of %s: at most %d per line", q, sku, MaxQuantity)
		}
		if exists {
			_, err = tx.ExecContext(ctx, `UPDATE cart_items SET quantity = $1, unit_price = $2, name = $3 WHERE user_id = $4 AND sku = $5`, q, p.Price, p.Name, user, sku)
		} else {
			_, err = tx.ExecContext(ctx, `INSERT INTO cart_items (user_id, sku, name, quantity, unit_price, currency, added_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
				user, sku, p.Name, q, p.Price, p.Currency, time.Now().UnixNano())
		}
		return err
	})
	m.invalidate(ctx, user)
	if err != nil {
		return err
	}
	c, err := m.load(ctx, user)
	if err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, c)
	return nil
}

func (m *Main) remove(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	user := kit.ClaimsFrom(ctx).UserID()
	res, err := m.app.DB.ExecContext(ctx, `DELETE FROM cart_items WHERE user_id = $1 AND sku = $2`, user, r.PathValue("sku"))
	m.invalidate(ctx, user)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return kit.NotFound("sku %s is not in the cart", r.PathValue("sku"))
	}
	c, err := m.load(ctx, user)
	if err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, c)
	return nil
}

func (m *Main) clear(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	user := kit.ClaimsFrom(ctx).UserID()
	_, err := m.app.DB.ExecContext(ctx, `DELETE FROM cart_items WHERE user_id = $1`, user)
	m.invalidate(ctx, user)
	if err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, Cart{UserID: user, Items: []Line{}})
	return nil
}
