package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/mesh"
	"github.com/flotilla-ci/flotilla/shop/analytics"
	"github.com/flotilla-ci/flotilla/shop/cart"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/shoptest"
	"github.com/flotilla-ci/flotilla/shop/user"
)

// edge is a shop behind the mesh and the edge gateway that `flotilla up`
// configures from flotilla.yaml (controlplane.GatewayConfig): what an
// attacker on the internet reaches.
type edge struct {
	base  string
	shop  *shoptest.Shop
	stats *analytics.Main
	mesh  *mesh.Mesh
	urls  map[string]string
}

func (e *edge) call(t *testing.T, method, path, token string, body any, headers ...string) kittest.Response {
	t.Helper()
	return kittest.Call(t, method, e.base+path, token, body, headers...)
}

// shopState is what an attack must not change.
type shopState struct {
	Stock    int64  // SKU-0001 available
	Reserved int64  // and reserved or sold
	Payments string // every payment's status and refund
	Orders   string // every order's status
	Stats    string // analytics' totals
}

func (e *edge) state(t *testing.T) shopState {
	t.Helper()
	ctx := context.Background()
	var s shopState
	if err := e.shop.Inventory.App().DB.QueryRowContext(ctx, `SELECT available, reserved + committed FROM stock WHERE sku = 'SKU-0001'`).Scan(&s.Stock, &s.Reserved); err != nil {
		t.Fatal(err)
	}
	s.Payments = rows(t, e.shop.Payment.App().DB, `SELECT id || ':' || status || ':' || refunded FROM payments ORDER BY id`)
	s.Orders = rows(t, e.shop.Order.App().DB, `SELECT id || ':' || status FROM orders ORDER BY id`)
	r := kittest.Call(t, "GET", e.stats.URL()+"/stats/totals", "", nil)
	s.Stats = string(r.Body)
	return s
}

func rows(t *testing.T, db *sqldb.DB, q string) string {
	t.Helper()
	rs, err := db.QueryContext(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rs.Close() }()
	var out []string
	for rs.Next() {
		var v string
		if err := rs.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return strings.Join(out, ",")
}

// startEdge runs the order path's services, analytics, the mesh and the
// gateway; user-service's login throttle has a short window.
func startEdge(t *testing.T) *edge {
	t.Helper()
	ctx := context.Background()
	env := kittest.SQLiteEnv(t)
	shop := shoptest.Start(t, env, shoptest.Options{Products: 3,
		UserLimits: user.Limits{AccountFailures: 5, AddressFailures: 50, LoginWindow: 2 * time.Second, MaxHashing: 2}})
	shop.Stock(t, 3, 100)
	stats := &analytics.Main{Config: analytics.Config{Kit: env.Config(t, analytics.Service)}}
	if err := stats.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stats.Close() })
	man, _, err := graph.Load("../../flotilla.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := mesh.New(mesh.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	e := &edge{shop: shop, stats: stats, mesh: m, urls: map[string]string{
		"user-service": shop.User.URL(), "product-service": shop.Product.URL(), "inventory-service": shop.Inventory.URL(),
		"cart-service": shop.Cart.URL(), "payment-service": shop.Payment.URL(), "order-service": shop.Order.URL(),
		"analytics-service": stats.URL(),
	}}
	addrs := map[string]string{}
	for name, u := range e.urls {
		addr, err := m.AddService(ctx, mesh.ServiceConfig{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetSubset(ctx, name, mesh.Subset{Name: "v1", Endpoints: []string{strings.TrimPrefix(u, "http://")}}); err != nil {
			t.Fatal(err)
		}
		addrs[name] = addr
	}
	gw, err := mesh.NewGateway(controlplane.GatewayConfig(man.Services, addrs), m, mesh.GatewayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := gw.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Close(context.Background()) })
	e.base = "http://" + addr
	return e
}

// TestAttacksThroughTheGateway replays, through the gateway of a running
// shop, what an attacker did to the shop before it had trust boundaries:
// each attempt fails with the right status, and stock, payments, orders
// and analytics are as they were.
func TestAttacksThroughTheGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the attacker's suite runs the shop behind the gateway")
	}
	e := startEdge(t)
	login := func(email, password string) (int, string) {
		var l struct{ Token string }
		r := e.call(t, "POST", "/api/user/login", "", map[string]string{"email": email, "password": password})
		_ = json.Unmarshal(r.Body, &l)
		return r.Status, l.Token
	}
	customer := func(email string, address bool) string {
		if r := e.call(t, "POST", "/api/user/users", "", map[string]string{"email": email, "password": "correct horse", "name": "Eve"}); r.Status != 201 {
			t.Fatalf("register %s: %d %s", email, r.Status, r.Body)
		}
		st, tok := login(email, "correct horse")
		if st != 200 {
			t.Fatalf("login %s: %d", email, st)
		}
		if address {
			if r := e.call(t, "POST", "/api/user/users/me/addresses", tok, map[string]string{"line1": "Hauptstr. 1", "city": "Berlin", "postalCode": "10115", "country": "DE"}); r.Status != 201 {
				t.Fatalf("address: %d %s", r.Status, r.Body)
			}
		}
		return tok
	}
	// A real order, whose payment and reservation the attacks aim at.
	alice := customer("alice@shop.test", true)
	if r := e.call(t, "POST", "/api/cart/carts/me/items", alice, map[string]any{"sku": "SKU-0001", "quantity": 2}); r.Status != 200 {
		t.Fatalf("fill the cart: %d %s", r.Status, r.Body)
	}
	var order struct{ ID, Status, PaymentID, ReservationID string }
	r := e.call(t, "POST", "/api/order/orders", alice, nil)
	r.JSON(t, &order)
	if r.Status != 201 || order.Status != "CONFIRMED" {
		t.Fatalf("checkout: %d %s", r.Status, r.Body)
	}
	eve := customer("eve@shop.test", false)
	// Analytics has seen the order's events before the baseline.
	var before shopState
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		before = e.state(t)
		if strings.Contains(before.Stats, `"orders":1`) || time.Now().After(deadline) {
			break
		}
	}

	problem := func(name string, r kittest.Response, status int, code string) {
		t.Helper()
		if r.Status != status || r.ErrorCode() != code || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/problem+json") {
			t.Errorf("%s: %d %s %s; want %d %s as application/problem+json", name, r.Status, r.Header.Get("Content-Type"), r.Body, status, code)
		}
	}
	t.Run("reserved addresses make no admin", func(t *testing.T) {
		problem("register the admin's address", e.call(t, "POST", "/api/user/users", "", map[string]string{"email": "ADMIN@shop.test", "password": "mallory's own", "name": "Mallory"}), 409, "email_taken")
		mallory := customer("Shipping@Shop.Local", false)
		var me struct{ Role string }
		e.call(t, "GET", "/api/user/users/me", mallory, nil).JSON(t, &me)
		if me.Role != kit.RoleCustomer {
			t.Errorf("a service's old address registered as role %q", me.Role)
		}
		problem("a customer creates a product", e.call(t, "POST", "/api/product/products", mallory, map[string]any{"sku": "EVIL-1", "name": "x", "price": 1, "currency": "EUR"}), 403, "forbidden")
		problem("a customer reprices", e.call(t, "PUT", "/api/product/products/SKU-0001/price", mallory, map[string]any{"price": 1, "currency": "EUR"}), 403, "forbidden")
	})
	t.Run("the saga's steps are internal", func(t *testing.T) {
		for _, c := range []struct {
			name, method, path string
			body               any
		}{
			{"refund her own payment", "POST", "/api/payment/payments/" + order.PaymentID + "/refund", nil},
			{"return sold stock", "POST", "/api/inventory/reservations/" + order.ReservationID + "/return", nil},
			{"reserve for no order", "POST", "/api/inventory/reservations", map[string]any{"orderId": "o-fake", "items": []map[string]any{{"sku": "SKU-0001", "quantity": 98}}}},
			{"commit it", "POST", "/api/inventory/reservations/r-fake/commit", nil},
			{"a captured payment with no order", "POST", "/api/payment/payments", map[string]any{"orderId": "o-fake", "amount": 100000, "currency": "EUR"}},
			{"another user's addresses", "GET", "/api/user/users/u-1/addresses", nil},
		} {
			for _, tok := range []string{alice, eve} {
				// Naming a service in the caller header changes nothing:
				// the gateway sets its own.
				problem(c.name, e.call(t, c.method, c.path, tok, c.body, "Idempotency-Key", "k-1", kit.CallerHeader, "order-service", kit.OnBehalfOfHeader, "u-1"), 404, "not_found")
			}
		}
		problem("the shop-wide analytics", e.call(t, "GET", "/api/analytics/stats", eve, nil), 403, "forbidden")
		// A public route reached with a forged service identity is still
		// the user's: eve cannot read alice's order as shipping-service.
		problem("alice's order as shipping-service", e.call(t, "GET", "/api/order/orders/"+order.ID, eve, nil, kit.CallerHeader, "shipping-service"), 403, "forbidden")
		// The same endpoints inside refuse a caller that is not order-service.
		problem("inventory refuses another service", kittest.Call(t, "POST", e.shop.Inventory.URL()+"/reservations/"+order.ReservationID+"/return", "", nil, kit.CallerHeader, "cart-service"), 403, "internal_endpoint")
	})
	t.Run("expired tokens", func(t *testing.T) {
		var me user.User
		e.call(t, "GET", "/api/user/users/me", alice, nil).JSON(t, &me)
		issued := func(pastExpiry time.Duration) string {
			tok, _, err := e.shop.User.IssueAt(me, time.Now().Add(-e.shop.User.Config.TokenTTL-pastExpiry))
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
		// Past its expiry and the leeway: refused at the gateway, as the
		// service would refuse it.
		expired := issued(kit.TokenLeeway + 2*time.Second)
		for _, path := range []string{"/api/user/users/me", "/api/order/orders", "/api/cart/carts/me"} {
			r := e.call(t, "GET", path, expired, nil)
			problem("an expired token on "+path, r, 401, "unauthorized")
			if !strings.Contains(string(r.Body), "expired") {
				t.Errorf("an expired token on %s: %s, want the reason", path, r.Body)
			}
		}
		problem("an expired token at the service", kittest.Call(t, "GET", e.shop.User.URL()+"/users/me", expired, nil), 401, "unauthorized")
		// Within the leeway: the gateway and the service agree to let it in.
		late := issued(kit.TokenLeeway - 3*time.Second)
		if r := e.call(t, "GET", "/api/user/users/me", late, nil); r.Status != 200 {
			t.Errorf("a token %v past expiry (leeway %v) through the gateway: %d %s", kit.TokenLeeway-3*time.Second, kit.TokenLeeway, r.Status, r.Body)
		}
	})
	t.Run("bad input", func(t *testing.T) {
		for _, sku := range []string{"SKU-0001?x=1", "../products/SKU-0001", "SKU-0001\x00", "sku-0001"} {
			problem("a SKU off its grammar: "+sku, e.call(t, "POST", "/api/cart/carts/me/items", eve, map[string]any{"sku": sku, "quantity": 1}), 400, "bad_request")
		}
		problem("checkout without an address", func() kittest.Response {
			if r := e.call(t, "POST", "/api/cart/carts/me/items", eve, map[string]any{"sku": "SKU-0002", "quantity": 1}); r.Status != 200 {
				t.Fatalf("fill eve's cart: %d %s", r.Status, r.Body)
			}
			return e.call(t, "POST", "/api/order/orders", eve, nil)
		}(), 422, "no_delivery_address")
		problem("a name that is markup", e.call(t, "PATCH", "/api/user/users/me", eve, map[string]string{"name": "<script>alert(1)</script>"}), 400, "bad_request")
		var me struct{ Name string }
		if r := e.call(t, "PATCH", "/api/user/users/me", eve, map[string]string{"name": "Eve\r\nBcc: all@shop.test\x00"}); r.Status != 200 {
			t.Errorf("a name with control characters: %d %s", r.Status, r.Body)
		} else if r.JSON(t, &me); me.Name != "EveBcc: all@shop.test" {
			t.Errorf("name stored as %q", me.Name)
		}
		big := bytes.Repeat([]byte("x"), 3<<20)
		problem("a 3 MB body", e.call(t, "POST", "/api/user/users", "", string(big)), 413, "too_large")
		req, _ := http.NewRequest("POST", e.base+"/api/user/users", io.MultiReader(bytes.NewReader(big))) // no length: chunked
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		problem("a 3 MB chunked body", kittest.Response{Status: resp.StatusCode, Body: data, Header: resp.Header}, 413, "too_large")
		problem("no route", e.call(t, "GET", "/nothing/here", "", nil), 404, "not_found")
		problem("wrong method", e.call(t, "DELETE", "/api/order/orders", alice, nil), 405, "method_not_allowed")
	})
	t.Run("an upstream failure names no address", func(t *testing.T) {
		ctx := context.Background()
		if err := e.mesh.SetSubset(ctx, "payment-service", mesh.Subset{Name: "v1", Endpoints: []string{"127.0.0.1:1"}}); err != nil {
			t.Fatal(err)
		}
		r := e.call(t, "GET", "/api/payment/payments/"+order.PaymentID, alice, nil)
		if r.Status < 500 || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/problem+json") || strings.Contains(string(r.Body), "127.0.0.1") {
			t.Errorf("payment-service down: %d %s %s", r.Status, r.Header.Get("Content-Type"), r.Body)
		}
		if err := e.mesh.SetSubset(ctx, "payment-service", mesh.Subset{Name: "v1", Endpoints: []string{strings.TrimPrefix(e.urls["payment-service"], "http://")}}); err != nil {
			t.Fatal(err)
		}
		// A service's own JSON 502 (kit.Upstream: cart-service cannot
		// reach product-service) passes the gateway as it is: it must
		// name the service that failed, not its address or Go's error.
		gone := httptest.NewServer(http.NotFoundHandler())
		gone.Close()
		cc := kittest.SQLiteEnv(t).Config(t, cart.Service)
		cc.Deps["user"], cc.Deps["product"] = e.shop.User.URL(), gone.URL
		lost := &cart.Main{Config: cart.Config{Kit: cc}}
		if err := lost.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = lost.Close() }()
		if err := e.mesh.SetSubset(ctx, "cart-service", mesh.Subset{Name: "v1", Endpoints: []string{strings.TrimPrefix(lost.URL(), "http://")}}); err != nil {
			t.Fatal(err)
		}
		r = e.call(t, "POST", "/api/cart/carts/me/items", alice, map[string]any{"sku": "SKU-0003", "quantity": 1})
		if err := e.mesh.SetSubset(ctx, "cart-service", mesh.Subset{Name: "v1", Endpoints: []string{strings.TrimPrefix(e.urls["cart-service"], "http://")}}); err != nil {
			t.Fatal(err)
		}
		problem("cart-service without product-service", r, 502, "upstream")
		var p kit.Problem
		r.JSON(t, &p)
		port := gone.URL[strings.LastIndex(gone.URL, ":"):]
		for _, sign := range []string{"127.0.0.1", port, "dial", "connect", "refused", "http:", "POST /"} {
			if strings.Contains(p.Detail+p.Title, sign) {
				t.Errorf("cart-service's 502 shows %q through the gateway: %s", sign, r.Body)
			}
		}
		if !strings.Contains(p.Detail, "product-service could not be reached") {
			t.Errorf("cart-service's 502 does not say which service failed: %s", r.Body)
		}
	})
	if after := e.state(t); after != before {
		t.Errorf("the attacks changed the shop:\nbefore %+v\nafter  %+v", before, after)
	}

	t.Run("login flood", func(t *testing.T) {
		var base runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&base)
		var peak atomic.Uint64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			var ms runtime.MemStats
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}()
		var mu sync.Mutex
		statuses := map[int]int{}
		var wg sync.WaitGroup
		sem := make(chan struct{}, 50)
		browse := make(chan int, 1)
		go func() { // other routes keep answering during the flood
			r := kittest.Call(t, "GET", e.base+"/api/product/products/SKU-0002", "", nil)
			browse <- r.Status
		}()
		for i := range 500 {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				body := fmt.Sprintf(`{"email":"alice@shop.test","password":"guess %d"}`, i)
				resp, err := http.Post(e.base+"/api/user/login", "application/json", strings.NewReader(body))
				st := 0
				if err == nil {
					st = resp.StatusCode
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
				mu.Lock()
				statuses[st]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		close(stop)
		<-sampled
		if st := <-browse; st != 200 {
			t.Errorf("browsing during the flood: %d", st)
		}
		grew := int64(peak.Load()) - int64(base.HeapInuse)
		t.Logf("500 wrong logins at concurrency 50: %v; heap in use grew %d MiB at most", statuses, grew>>20)
		if statuses[200] != 0 || statuses[0] != 0 || statuses[502] != 0 || statuses[504] != 0 || statuses[500] != 0 {
			t.Errorf("flood answers %v: want only 401, 429 and 503", statuses)
		}
		if statuses[429] == 0 {
			t.Errorf("flood answers %v: nothing throttled", statuses)
		}
		const bound = 200 << 20 // 2 hashes of 19 MiB at once, and what the collector has not yet taken back
		if grew > bound {
			t.Errorf("heap grew %d MiB during the flood, over the %d MiB bound", grew>>20, bound>>20)
		}
		// Alice logs in once the throttle's window (2 s here; the gateway's
		// bucket refills at 5/s) has passed.
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, _ := login("alice@shop.test", "correct horse")
			if st == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("alice still refused (%d) 10 s after the flood", st)
			}
			time.Sleep(250 * time.Millisecond)
		}
	})
}
