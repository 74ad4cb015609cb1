package controlplane

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// The demo accounts `flotilla up` creates at user-service. The demo user's
// password is printed; the admin's is random, kept in the data
// directory's secrets.json (owner-only), and given to user-service at
// start (ADMIN_EMAIL, ADMIN_PASSWORD), which creates the admin before it
// takes any request: nobody can register the address first.
const (
	DemoUserEmail    = "demo@shop.local"
	DemoUserPassword = "flotilla-demo"
	demoAdminEmail   = "admin@shop.local"
)

// secrets are the platform's generated credentials, stable across runs
// (the services' databases remember the accounts).
type secrets struct {
	AdminPassword string `json:"admin_password"`
	// SigningKeySecret seals user-service's token signing key in its
	// database (SIGNING_KEY_SECRET).
	SigningKeySecret string `json:"signing_key_secret"`
}

func loadSecrets(path string) (*secrets, error) {
	var s secrets
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &s); err != nil {
			return nil, fmt.Errorf("%s: %w (delete it together with the data directory to start over)", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("secrets: %w", err)
	}
	changed := false
	for _, f := range []*string{&s.AdminPassword, &s.SigningKeySecret} {
		if *f == "" {
			b := make([]byte, 12)
			_, _ = rand.Read(b)
			*f, changed = hex.EncodeToString(b), true
		}
	}
	if changed {
		data, _ := json.MarshalIndent(s, "", "  ")
		if err := os.WriteFile(path, append(data, '\n'), 0o600); err != nil {
			return nil, fmt.Errorf("secrets: %w", err)
		}
	}
	return &s, nil
}

// serviceEnv is the platform's environment for each service's instances
// (the orchestrator adds <DEP>_URL for its dependencies, the local target
// PORT, ADDR and DATABASE_URL under the data directory): the bus, the
// registry, and the reference system's accounts.
func (p *Platform) serviceEnv(info *PlatformInfo, s *secrets) func(string) map[string]string {
	return func(service string) map[string]string {
		env := map[string]string{
			"BUS_URL":      info.NATS,
			"REGISTRY_URL": info.Registry,
		}
		for k, v := range p.otel {
			env[k] = v
		}
		switch service {
		case "user-service":
			env["ADMIN_EMAIL"], env["ADMIN_PASSWORD"] = demoAdminEmail, s.AdminPassword
			env["SIGNING_KEY_SECRET"] = s.SigningKeySecret
		}
		return env
	}
}

// DemoData is what LoadDemo put in the shop.
type DemoData struct {
	Products int `json:"products"` // in the catalog
	Stocked  int `json:"stocked"`  // of them with stock at inventory-service
	// Restocked are the products whose stock this run topped up (a first
	// run's stock included).
	Restocked int    `json:"restocked"`
	User      string `json:"user"`     // the demo user's email
	Password  string `json:"password"` // and password
}

// demoProducts is the demo catalog.
var demoProducts = []struct {
	SKU, Name, Category string
	Price               int64
}{
	{"DEMO-MUG", "Enamel camping mug", "kitchen", 1290},
	{"DEMO-KETTLE", "Stovetop kettle", "kitchen", 3490},
	{"DEMO-LAMP", "Clamp desk lamp", "home", 2990},
	{"DEMO-BLANKET", "Wool throw blanket", "home", 6900},
	{"DEMO-TENT", "Two-person tent", "outdoor", 18900},
	{"DEMO-LANTERN", "Rechargeable lantern", "outdoor", 2490},
	{"DEMO-NOTEBOOK", "Dot-grid notebook", "office", 990},
	{"DEMO-PEN", "Fountain pen", "office", 4500},
}

// DemoStock is the units of each demo product in stock: enough for a long
// demo under flotilla load (at 100 requests/s an order every few seconds
// buys one to three units, under one unit a second per product), so
// checkouts are not cancelled out of stock while the load reports no
// errors. Each LoadDemo (each flotilla up) tops a product whose available
// stock fell under DemoRestockBelow up to DemoStock again, through
// inventory-service's own POST /stock/{sku} as the admin.
const (
	DemoStock        = 100_000
	DemoRestockBelow = DemoStock / 2
)

// LoadDemo loads the shop's demo data through the gateway at base, for
// the services that run (names): the demo user and the admin at
// user-service, the demo catalog at product-service, and DemoStock of
// each product in stock at inventory-service. What is there already is
// left alone, but stock that ran low is topped up, so a second run
// changes nothing unless the demo sold half its stock.
func LoadDemo(ctx context.Context, base string, names []string, s *secrets) (*DemoData, error) {
	has := map[string]bool{}
	for _, n := range names {
		has[n] = true
	}
	if !has["user-service"] {
		return nil, nil
	}
	c := &demoClient{base: base, http: &http.Client{Timeout: 30 * time.Second}}
	demo := &DemoData{User: DemoUserEmail, Password: DemoUserPassword}
	for _, acct := range []struct{ email, password, name string }{
		{DemoUserEmail, DemoUserPassword, "Demo User"},
	} {
		st, body, err := c.call(ctx, "POST", "/api/user/users", "", map[string]string{"email": acct.email, "password": acct.password, "name": acct.name})
		if err != nil {
			return nil, err
		}
		if st != http.StatusCreated && st != http.StatusOK && st != http.StatusConflict {
			return nil, fmt.Errorf("register %s at user-service: %d %s", acct.email, st, body)
		}
	}
	// The demo user gets a delivery address: checkout refuses an order
	// without one.
	st, body, err := c.call(ctx, "POST", "/api/user/login", "", map[string]string{"email": DemoUserEmail, "password": DemoUserPassword})
	if err != nil {
		return nil, err
	}
	var demoLogin struct{ Token string }
	if st != http.StatusOK || json.Unmarshal(body, &demoLogin) != nil || demoLogin.Token == "" {
		return nil, fmt.Errorf("log in %s at user-service: %d %s", DemoUserEmail, st, body)
	}
	st, body, err = c.call(ctx, "GET", "/api/user/users/me/addresses", demoLogin.Token, nil)
	if err != nil {
		return nil, err
	}
	var addrs struct{ Addresses []json.RawMessage }
	if st != http.StatusOK || json.Unmarshal(body, &addrs) != nil {
		return nil, fmt.Errorf("addresses of %s at user-service: %d %s", DemoUserEmail, st, body)
	}
	if len(addrs.Addresses) == 0 {
		in := map[string]string{"line1": "Demostr. 1", "city": "Berlin", "postalCode": "10115", "country": "DE"}
		if st, body, err = c.call(ctx, "POST", "/api/user/users/me/addresses", demoLogin.Token, in); err != nil {
			return nil, err
		}
		if st != http.StatusCreated {
			return nil, fmt.Errorf("add an address for %s at user-service: %d %s", DemoUserEmail, st, body)
		}
	}
	if !has["product-service"] {
		return demo, nil
	}
	st, body, err = c.call(ctx, "POST", "/api/user/login", "", map[string]string{"email": demoAdminEmail, "password": s.AdminPassword})
	if err != nil {
		return nil, err
	}
	var login struct{ Token string }
	if st != http.StatusOK || json.Unmarshal(body, &login) != nil || login.Token == "" {
		return nil, fmt.Errorf("log in %s at user-service: %d %s", demoAdminEmail, st, body)
	}
	for _, p := range demoProducts {
		st, body, err := c.call(ctx, "GET", "/api/product/products/"+p.SKU, "", nil)
		if err != nil {
			return nil, err
		}
		if st == http.StatusNotFound {
			in := map[string]any{"sku": p.SKU, "name": p.Name, "category": p.Category, "price": p.Price, "currency": "EUR",
				"description": "Part of flotilla's demo catalog."}
			if st, body, err = c.call(ctx, "POST", "/api/product/products", login.Token, in); err != nil {
				return nil, err
			}
		}
		if st != http.StatusOK && st != http.StatusCreated {
			return nil, fmt.Errorf("product %s at product-service: %d %s", p.SKU, st, body)
		}
		demo.Products++
		if !has["inventory-service"] {
			continue
		}
		added, err := c.restock(ctx, login.Token, p.SKU)
		if err != nil {
			return nil, err
		}
		demo.Stocked++
		if added > 0 {
			demo.Restocked++
		}
	}
	return demo, nil
}

// restock tops sku's available stock up to DemoStock when it is under
// DemoRestockBelow (or there is none yet), and returns the units added.
func (c *demoClient) restock(ctx context.Context, token, sku string) (int64, error) {
	path := "/api/inventory/stock/" + sku
	st, body, err := c.call(ctx, "GET", path, token, nil)
	if err != nil {
		return 0, err
	}
	var stock struct {
		Available int64 `json:"available"`
	}
	switch {
	case st == http.StatusNotFound:
	case st == http.StatusOK && json.Unmarshal(body, &stock) == nil:
		if stock.Available >= DemoRestockBelow {
			return 0, nil
		}
	default:
		return 0, fmt.Errorf("stock of %s at inventory-service: %d %s", sku, st, body)
	}
	add := DemoStock - stock.Available
	st, body, err = c.call(ctx, "POST", path, token, map[string]int64{"add": add})
	if err != nil {
		return 0, err
	}
	if st != http.StatusOK {
		return 0, fmt.Errorf("restock %s at inventory-service: %d %s", sku, st, body)
	}
	return add, nil
}

type demoClient struct {
	base string
	http *http.Client
}

func (c *demoClient) call(ctx context.Context, method, path, token string, in any) (int, []byte, error) {
	var rd io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, bytes.TrimSpace(body), err
}
