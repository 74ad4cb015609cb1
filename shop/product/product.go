// Package product is product-service: the catalog. Admins create, update,
// reprice and withdraw products; anyone lists (paginated, filtered,
// sorted) and reads them. It resolves the acting admin with user-service,
// seeds a demo catalog on request, and publishes ProductCreated,
// ProductUpdated and PriceChanged.
//
// API (prices in minor units, e.g. cents):
//
//	GET    /products?category=&q=&minPrice=&maxPrice=&sort=price|-price|name|-name|created|-created&limit=&offset=
//	GET    /products/{sku}
//	POST   /products               admin: {sku, name, description, category, price, currency} → 201
//	PUT    /products/{sku}         admin: {name, description, category}
//	PUT    /products/{sku}/price   admin: {price, currency}
//	DELETE /products/{sku}         admin: withdraw (active = false)
package product

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/cache"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

//go:embed schemas/*.avsc
var schemaFS embed.FS

// Schemas are the event schemas product-service publishes.
func Schemas() fs.FS { s, _ := fs.Sub(schemaFS, "schemas"); return s }

// Service is the service's name in flotilla.yaml.
const Service = "product-service"

// Deps are the synchronous dependencies (short names).
var Deps = []string{"user"}

// Config is product-service's configuration.
type Config struct {
	Kit  kit.Config
	Seed int // SEED_PRODUCTS: create this many demo products (SKU-0001...) if the catalog is empty
	// Cache holds product reads (nil: an in-process LRU; cmd/product uses
	// Redis when REDIS_URL is set); CacheTTL defaults to DefaultCacheTTL.
	Cache    cache.Cache
	CacheTTL time.Duration
}

// Main runs product-service.
type Main struct {
	Config Config
	app    *kit.App
	users  *kit.Client
	cache  *cache.Through
}

// Product is a catalog entry.
type Product struct {
	SKU         string    `json:"sku"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Category    string    `json:"category"`
	Price       int64     `json:"price"`
	Currency    string    `json:"currency"`
	SellerID    string    `json:"sellerId"`
	SellerName  string    `json:"sellerName"`
	Active      bool      `json:"active"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// Start opens everything and serves.
func (m *Main) Start(ctx context.Context) error {
	mig, _ := fs.Sub(migrationFS, "migrations")
	app, err := kit.Start(ctx, m.Config.Kit, mig, Schemas())
	if err != nil {
		return err
	}
	m.app = app
	m.initCache()
	m.users = m.Config.Kit.Client("user-service", "user")
	v := kit.NewVerifier(m.Config.Kit.Deps["user"])
	mux := app.Mux
	mux.Handle("GET /products", kit.Handle(m.list))
	mux.Handle("GET /products/{sku}", kit.Handle(m.getCached))
	mux.Handle("POST /products", kit.Handle(v.Auth(m.create, kit.RoleAdmin)))
	mux.Handle("PUT /products/{sku}", kit.Handle(v.Auth(m.update, kit.RoleAdmin)))
	mux.Handle("PUT /products/{sku}/price", kit.Handle(v.Auth(m.reprice, kit.RoleAdmin)))
	mux.Handle("DELETE /products/{sku}", kit.Handle(v.Auth(m.withdraw, kit.RoleAdmin)))
	if m.Config.Seed > 0 {
		if err := m.seed(ctx, m.Config.Seed); err != nil {
			_ = app.Close()
			return err
		}
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

// Close drains and stops the service.
func (m *Main) Close() error {
	if m.app == nil {
		return nil
	}
	return m.app.Close()
}

type created struct {
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

type updated struct {
	SKU         string    `avro:"sku"`
	Name        string    `avro:"name"`
	Description string    `avro:"description"`
	Category    string    `avro:"category"`
	Active      bool      `avro:"active"`
	Timestamp   time.Time `avro:"timestamp"`
	Version     int       `avro:"version"`
}

type priceChanged struct {
	SKU       string    `avro:"sku"`
	OldPrice  int64     `avro:"oldPrice"`
	NewPrice  int64     `avro:"newPrice"`
	Currency  string    `avro:"currency"`
	Timestamp time.Time `avro:"timestamp"`
	Version   int       `avro:"version"`
}

var (
	skuRE      = regexp.MustCompile(`^[A-Z0-9][A-Z0-9-]{2,31}$`)
	currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)
)

// MaxPrice bounds prices (minor units): 10 million in major units.
const MaxPrice = 1_000_000_000

func checkText(field, v string, required bool, max int) error {
	if required && strings.TrimSpace(v) == "" {
		return kit.BadRequest("%s is required", field)
	}
	if utf8.RuneCountInString(v) > max {
		return kit.BadRequest("%s is over %d characters", field, max)
	}
	return nil
}

func checkPrice(price int64, currency string) error {
	if price <= 0 || price > MaxPrice {
		return kit.BadRequest("price %d: want minor units from 1 to %d", price, MaxPrice)
	}
	if !currencyRE.MatchString(currency) {
		return kit.BadRequest("currency %q: want an ISO 4217 code such as EUR", currency)
	}
	return nil
}

func (m *Main) create(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		SKU         string `json:"sku"`
		Name        string `json:"name"`
		Description string `json:"description"`
		Category    string `json:"category"`
		Price       int64  `json:"price"`
		Currency    string `json:"currency"`
	}
	if err := kit.Decode(r, &in); err != nil {
		return err
	}
	if !skuRE.MatchString(in.SKU) {
		return kit.BadRequest("sku %q: want 3-32 characters of A-Z, 0-9 and '-', starting with a letter or digit", in.SKU)
	}
	for _, c := range []error{checkText("name", in.Name, true, 200), checkText("description", in.Description, false, 4000),
		checkText("category", in.Category, true, 64), checkPrice(in.Price, in.Currency)} {
		if c != nil {
			return c
		}
	}
	// Resolve the acting admin with user-service (the seller of record).
	var seller struct{ ID, Name string }
	if err := m.users.Do(r.Context(), "GET", "/users/me", kit.BearerToken(r), nil, nil, &seller); err != nil {
		return kit.Upstream(err, "resolve seller")
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	p := Product{SKU: in.SKU, Name: strings.TrimSpace(in.Name), Description: in.Description, Category: strings.TrimSpace(in.Category),
		Price: in.Price, Currency: in.Currency, SellerID: seller.ID, SellerName: seller.Name, Active: true, CreatedAt: now, UpdatedAt: now}
	if err := m.insert(r.Context(), p); err != nil {
		return err
	}
	w.Header().Set("Location", "/products/"+p.SKU)
	kit.WriteJSON(w, http.StatusCreated, p)
	return nil
}

func (m *Main) insert(ctx context.Context, p Product) error {
	return m.app.Tx(ctx, func(tx *sqldb.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO products (sku, name, description, category, price, currency, seller_id, seller_name, active, created_ms, updated_ms)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			p.SKU, p.Name, p.Description, p.Category, p.Price, p.Currency, p.SellerID, p.SellerName, p.Active, p.CreatedAt.UnixMilli(), p.UpdatedAt.UnixMilli())
		if sqldb.IsUniqueViolation(err) {
			return kit.Conflict("sku_taken", "sku %s already exists; update it with PUT /products/%s", p.SKU, p.SKU)
		}
		if err != nil {
			return err
		}
		return m.app.Emit(ctx, tx, "ProductCreated", p.SKU, created{SKU: p.SKU, Name: p.Name, Description: p.Description, Category: p.Category,
			Price: p.Price, Currency: p.Currency, SellerID: p.SellerID, Timestamp: p.CreatedAt, Version: 1})
	})
}

const cols = `sku, name, description, category, price, currency, seller_id, seller_name, active, created_ms, updated_ms`

type scanner interface{ Scan(...any) error }

func scan(s scanner) (Product, error) {
	var p Product
	var c, u int64
	err := s.Scan(&p.SKU, &p.Name, &p.Description, &p.Category, &p.Price, &p.Currency, &p.SellerID, &p.SellerName, &p.Active, &c, &u)
	p.CreatedAt, p.UpdatedAt = time.UnixMilli(c).UTC(), time.UnixMilli(u).UTC()
	return p, err
}

func load(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, sku string, forUpdate bool) (Product, error) {
	query := `SELECT ` + cols + ` FROM products WHERE sku = $1`
	p, err := scan(q.QueryRowContext(ctx, query, sku))
	if sqldb.IsNoRows(err) {
		return p, kit.NotFound("product %s does not exist", sku)
	}
	return p, err
}

func (m *Main) update(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		Category    string `json:"category"`
	}
	if err := kit.Decode(r, &in); err != nil {
		return err
	}
	for _, c := range []error{checkText("name", in.Name, true, 200), checkText("description", in.Description, false, 4000), checkText("category", in.Category, true, 64)} {
		if c != nil {
			return c
		}
	}
	return m.change(w, r, func(ctx context.Context, tx *sqldb.Tx, p *Product) error {
		p.Name, p.Description, p.Category = strings.TrimSpace(in.Name), in.Description, strings.TrimSpace(in.Category)
		if _, err := tx.ExecContext(ctx, `UPDATE products SET name = $1, description = $2, category = $3, updated_ms = $4 WHERE sku = $5`,
			p.Name, p.Description, p.Category, p.UpdatedAt.UnixMilli(), p.SKU); err != nil {
			return err
		}
		return m.app.Emit(ctx, tx, "ProductUpdated", p.SKU, updated{SKU: p.SKU, Name: p.Name, Description: p.Description, Category: p.Category, Active: p.Active, Timestamp: p.UpdatedAt, Version: 1})
	})
}

func (m *Main) withdraw(w http.ResponseWriter, r *http.Request) error {
	return m.change(w, r, func(ctx context.Context, tx *sqldb.Tx, p *Product) error {
		if !p.Active {
			return nil
		}
		p.Active = false
		if _, err := tx.ExecContext(ctx, `UPDATE products SET active = $1, updated_ms = $2 WHERE sku = $3`, false, p.UpdatedAt.UnixMilli(), p.SKU); err != nil {
			return err
		}
		return m.app.Emit(ctx, tx, "ProductUpdated", p.SKU, updated{SKU: p.SKU, Name: p.Name, Description: p.Description, Category: p.Category, Active: false, Timestamp: p.UpdatedAt, Version: 1})
	})
}

func (m *Main) reprice(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Price    int64  `json:"price"`
		Currency string `json:"currency"`
	}
	if err := kit.Decode(r, &in); err != nil {
		return err
	}
	if err := checkPrice(in.Price, in.Currency); err != nil {
		return err
	}
	return m.change(w, r, func(ctx context.Context, tx *sqldb.Tx, p *Product) error {
		if p.Currency != in.Currency {
			return kit.BadRequest("currency %s: product %s is priced in %s", in.Currency, p.SKU, p.Currency)
		}
		if p.Price == in.Price {
			return nil
		}
		old := p.Price
		p.Price = in.Price
		if _, err := tx.ExecContext(ctx, `UPDATE products SET price = $1, updated_ms = $2 WHERE sku = $3`, p.Price, p.UpdatedAt.UnixMilli(), p.SKU); err != nil {
			return err
		}
		return m.app.Emit(ctx, tx, "PriceChanged", p.SKU, priceChanged{SKU: p.SKU, OldPrice: old, NewPrice: p.Price, Currency: p.Currency, Timestamp: p.UpdatedAt, Version: 1})
	})
}

// change loads the product in a transaction (locking its row on
// PostgreSQL), applies fn and answers with the result.
func (m *Main) change(w http.ResponseWriter, r *http.Request, fn func(ctx context.Context, tx *sqldb.Tx, p *Product) error) error {
	ctx := r.Context()
	var out Product
	err := m.app.Tx(ctx, func(tx *sqldb.Tx) error {
		q := `SELECT ` + cols + ` FROM products WHERE sku = $1`
		if tx.Dialect() == sqldb.Postgres {
			q += ` FOR UPDATE`
		}
		p, err := scan(tx.QueryRowContext(ctx, q, r.PathValue("sku")))
		if sqldb.IsNoRows(err) {
			return kit.NotFound("product %s does not exist", r.PathValue("sku"))
		}
		if err != nil {
			return err
		}
		p.UpdatedAt = time.Now().UTC().Truncate(time.Millisecond)
		if err := fn(ctx, tx, &p); err != nil {
			return err
		}
		out = p
		return nil
	})
	if err != nil {
		return err
	}
	m.invalidate(ctx, out.SKU)
	kit.WriteJSON(w, http.StatusOK, out)
	return nil
}

// Page is one page of a listing.
type Page struct {
	Items      []Product `json:"items"`
	Total      int       `json:"total"`
	NextOffset *int      `json:"nextOffset"`
}

var sorts = map[string]string{
	"name": "name ASC, sku ASC", "-name": "name DESC, sku DESC",
	"price": "price ASC, sku ASC", "-price": "price DESC, sku DESC",
	"created": "created_ms ASC, sku ASC", "-created": "created_ms DESC, sku DESC",
	"sku": "sku ASC",
}

func (m *Main) list(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "category", "q", "minPrice", "maxPrice", "sort", "limit", "offset":
		default:
			return kit.BadRequest("unknown query parameter %q; known: category, q, minPrice, maxPrice, sort, limit, offset", k)
		}
	}
	num := func(name string, def, lo, hi int64) (int64, error) {
		s := q.Get(name)
		if s == "" {
			return def, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < lo || n > hi {
			return 0, kit.BadRequest("%s=%q: want an integer from %d to %d", name, s, lo, hi)
		}
		return n, nil
	}
	limit, err := num("limit", 20, 1, 100)
	if err != nil {
		return err
	}
	offset, err := num("offset", 0, 0, 1_000_000)
	if err != nil {
		return err
	}
	minP, err := num("minPrice", 0, 0, MaxPrice)
	if err != nil {
		return err
	}
	maxP, err := num("maxPrice", MaxPrice, 0, MaxPrice)
	if err != nil {
		return err
	}
	order, ok := sorts[q.Get("sort")]
	if q.Get("sort") == "" {
		order, ok = sorts["sku"], true
	}
	if !ok {
		return kit.BadRequest("sort=%q: want one of name, -name, price, -price, created, -created, sku", q.Get("sort"))
	}
	where := []string{"active = $1", "price >= $2", "price <= $3"}
	args := []any{true, minP, maxP}
	if c := q.Get("category"); c != "" {
		args = append(args, c)
		where = append(where, fmt.Sprintf("category = $%d", len(args)))
	}
	if s := q.Get("q"); s != "" {
		if len(s) > 100 {
			return kit.BadRequest("q is over 100 characters")
		}
		args = append(args, "%"+strings.ToLower(s)+"%")
		where = append(where, fmt.Sprintf("LOWER(name) LIKE $%d", len(args)))
	}
	cond := strings.Join(where, " AND ")
	var page Page
	if err := m.app.DB.QueryRowContext(r.Context(), `SELECT COUNT(*) FROM products WHERE `+cond, args...).Scan(&page.Total); err != nil {
		return err
	}
	args = append(args, limit, offset)
	rows, err := m.app.DB.QueryContext(r.Context(), fmt.Sprintf(`SELECT %s FROM products WHERE %s ORDER BY %s LIMIT $%d OFFSET $%d`, cols, cond, order, len(args)-1, len(args)), args...)
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	page.Items = []Product{}
	for rows.Next() {
		p, err := scan(rows)
		if err != nil {
			return err
		}
		page.Items = append(page.Items, p)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if next := int(offset) + len(page.Items); next < page.Total {
		page.NextOffset = &next
	}
	kit.WriteJSON(w, http.StatusOK, page)
	return nil
}

var demoCategories = []string{"books", "garden", "kitchen", "music", "toys"}

// seed creates n demo products if the catalog is empty.
func (m *Main) seed(ctx context.Context, n int) error {
	var have int
	if err := m.app.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM products`).Scan(&have); err != nil {
		return err
	}
	if have > 0 {
		return nil
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	for i := 1; i <= n; i++ {
		p := Product{SKU: fmt.Sprintf("SKU-%04d", i), Name: fmt.Sprintf("Demo product %d", i), Description: "Seeded demo product.",
			Category: demoCategories[i%len(demoCategories)], Price: int64(500 + (i*737)%9500), Currency: "EUR",
			SellerID: "seed", SellerName: "demo catalog", Active: true, CreatedAt: now, UpdatedAt: now}
		if err := m.insert(ctx, p); err != nil {
			return fmt.Errorf("seed %s: %w", p.SKU, err)
		}
	}
	return nil
}
