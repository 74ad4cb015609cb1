package controlplane_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/identity"
	"github.com/flotilla-ci/flotilla/mesh"
	"github.com/flotilla-ci/flotilla/shop/kit"
)

// The gateway exposes what flotilla.yaml declares and nothing else: each
// route with its auth (a token; admin routes the admin role claim), the
// services' probes, rate limits on, with the services' token leeway; its
// JWKS is user-service's, through the mesh.
func TestGatewayConfig(t *testing.T) {
	m, _, err := graph.Load("../flotilla.yaml")
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{}
	for i, s := range m.Services {
		addrs[s.Name] = "127.0.0.1:" + strconv.Itoa(7500+i)
	}
	gwc := controlplane.GatewayConfig(m.Services, addrs)
	if err := gwc.Validate(); err != nil {
		t.Fatal(err)
	}
	if want := "http://" + addrs["user-service"] + kit.JWKSPath; gwc.JWT.JWKSURL != want || gwc.JWT.Issuer != kit.TokenIssuer || gwc.JWT.Audience != kit.TokenAudience {
		t.Errorf("jwt %+v, want %s, issuer %s, audience %s", gwc.JWT, want, kit.TokenIssuer, kit.TokenAudience)
	}
	if time.Duration(gwc.JWT.Leeway) != kit.TokenLeeway {
		t.Errorf("gateway leeway %s, services' %s: a token one accepts the other must", time.Duration(gwc.JWT.Leeway), kit.TokenLeeway)
	}
	if gwc.RateLimit.RequestsPerSecond <= 0 {
		t.Errorf("rate limits off: %+v", gwc.RateLimit)
	}
	// By route: methods, path → public, admin.
	type auth struct{ public, admin bool }
	got := map[string]auth{}
	for _, r := range gwc.Routes {
		if !r.Exact {
			t.Errorf("route %s is a prefix: every route is declared exactly", r.Path)
		}
		got[strings.Join(r.Methods, ",")+" "+r.Path] = auth{r.Public, r.Claims["role"] == "admin"}
	}
	for route, want := range map[string]auth{
		"POST /api/user/users": {public: true}, "POST /api/user/login": {public: true}, "GET,HEAD /api/user" + kit.JWKSPath: {public: true},
		"GET,HEAD /api/product/products/{sku}": {public: true}, "GET,HEAD /api/search/search": {public: true}, "GET,HEAD /api/order/ready": {public: true},
		"POST /api/product/products": {admin: true}, "GET,HEAD /api/analytics/stats": {admin: true}, "POST /api/inventory/stock/{sku}": {admin: true},
		"GET,HEAD /api/order/orders/{id}": {}, "GET,HEAD /api/payment/payments/{id}": {}, "GET,HEAD /api/user/users/me": {},
	} {
		if a, ok := got[route]; !ok || a != want {
			t.Errorf("route %s: %+v (declared %v), want %+v", route, a, ok, want)
		}
	}
	for _, internal := range []string{"POST /api/payment/payments", "POST /api/payment/payments/{id}/refund", "POST /api/inventory/reservations",
		"POST /api/inventory/reservations/{id}/return", "GET,HEAD /api/user/users/{id}", "DELETE /api/cart/carts/{user}"} {
		if _, ok := got[internal]; ok {
			t.Errorf("internal route %s is exposed", internal)
		}
	}

	// Without user-service there are no keys: only public routes.
	gwc = controlplane.GatewayConfig(m.Services, map[string]string{"analytics-service": "127.0.0.1:7509", "product-service": "127.0.0.1:7501"})
	if err := gwc.Validate(); err != nil || gwc.JWT.JWKSURL != "" {
		t.Errorf("without user-service: %v, jwks %q; want a valid config with public routes only", err, gwc.JWT.JWKSURL)
	}
	for _, r := range gwc.Routes {
		if !r.Public {
			t.Errorf("without user-service: route %s %s needs a token", r.Methods, r.Path)
		}
	}
}

// call sends a request and returns its status, WWW-Authenticate and body.
func call(t *testing.T, method, url, token string, header http.Header) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	withToken(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), strings.TrimSpace(string(body))
}

// checkEdge checks the platform's gateway: anonymous and forged requests
// to a route that needs a signed-in user get the gateway's 401, the demo
// user's token passes, and browsing needs no token, while writing to the
// catalog or search does.
func checkEdge(t *testing.T, gateway string) {
	t.Helper()
	body := `{"email":"` + controlplane.DemoUserEmail + `","password":"` + controlplane.DemoUserPassword + `"}`
	resp, err := http.Post(gateway+"/api/user/login", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var login struct{ Token string }
	err = json.NewDecoder(resp.Body).Decode(&login)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || login.Token == "" {
		t.Fatalf("demo login through the gateway: %d %v", resp.StatusCode, err)
	}

	// A token of the right shape, signed by another key under the real
	// key's id, and one under an unknown key id.
	parsed, _, err := jwt.NewParser().ParseUnverified(login.Token, &jwt.RegisteredClaims{})
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	forge := func(kid string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.RegisteredClaims{Issuer: kit.TokenIssuer, Audience: jwt.ClaimStrings{kit.TokenAudience},
			Subject: "someone-else", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))})
		tok.Header["kid"] = kid
		s, err := tok.SignedString(priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	kid, _ := parsed.Header["kid"].(string)

	orders := gateway + "/api/order/orders"
	for _, c := range []struct {
		name, token string
		want        int
		fromGateway bool
	}{
		{"anonymous", "", http.StatusUnauthorized, true},
		{"forged signature", forge(kid), http.StatusUnauthorized, true},
		{"unknown key", forge("forged-kid"), http.StatusUnauthorized, true},
		{"garbage", "not-a-jwt", http.StatusUnauthorized, true},
		{"the demo user", login.Token, http.StatusOK, false},
	} {
		st, auth, body := call(t, "GET", orders, c.token, nil)
		// The gateway's 401 says Bearer realm="flotilla"; a service's would not.
		if st != c.want || strings.Contains(auth, `realm="flotilla"`) != c.fromGateway {
			t.Errorf("GET /api/order/orders, %s: %d (WWW-Authenticate %q) %s; want %d from the gateway: %v", c.name, st, auth, body, c.want, c.fromGateway)
		}
	}
	for _, path := range []string{"/api/cart/carts/me", "/api/payment/payments/x", "/api/shipping/shipments/x", "/api/notification/notifications",
		"/api/inventory/stock/DEMO-MUG", "/api/analytics/stats", "/api/user/ready/../users/me/../../../cart/carts/me",
		"/api/user/users/me", "/api/user/users/me/addresses"} {
		if st, auth, _ := call(t, "GET", gateway+path, "", nil); st != http.StatusUnauthorized || !strings.Contains(auth, `realm="flotilla"`) {
			t.Errorf("anonymous GET %s: %d (WWW-Authenticate %q); want the gateway's 401", path, st, auth)
		}
	}
	// The shop's figures are the admin's: a customer's token gets 403.
	if st, _, body := call(t, "GET", gateway+"/api/analytics/stats", login.Token, nil); st != http.StatusForbidden {
		t.Errorf("GET /api/analytics/stats with the demo user's token: %d %s; want 403", st, body)
	}
	// Internal endpoints are not there at all.
	for _, c := range []struct{ method, path string }{
		{"POST", "/api/payment/payments"}, {"POST", "/api/payment/payments/p-1/refund"}, {"POST", "/api/inventory/reservations"},
		{"POST", "/api/inventory/reservations/r-1/return"}, {"GET", "/api/user/users/u-1/addresses"},
	} {
		if st, _, body := call(t, c.method, gateway+c.path, login.Token, nil); st != http.StatusNotFound {
			t.Errorf("%s %s (internal) with the demo user's token: %d %s; want 404", c.method, c.path, st, body)
		}
	}
	for _, path := range []string{"/api/product/products?limit=5", "/api/product/products/DEMO-MUG", "/api/search/search?q=mug",
		"/api/user" + kit.JWKSPath, "/api/order/ready", "/api/cart/health"} {
		if st, _, body := call(t, "GET", gateway+path, "", nil); st != http.StatusOK {
			t.Errorf("anonymous GET %s: %d %s; want 200 (public)", path, st, body)
		}
	}
	if st, _, body := call(t, "HEAD", gateway+"/api/product/products/DEMO-MUG", "", nil); st != http.StatusOK {
		t.Errorf("anonymous HEAD /api/product/products/DEMO-MUG: %d %s; want 200 (public)", st, body)
	}
	// Reads of the catalog and search are public, their writes are not:
	// the gateway refuses them before the services see them.
	for _, c := range []struct{ method, path string }{
		{"POST", "/api/product/products"}, {"PUT", "/api/product/products/DEMO-MUG"}, {"PUT", "/api/product/products/DEMO-MUG/price"},
		{"DELETE", "/api/product/products/DEMO-MUG"}, {"POST", "/api/search/admin/reindex"},
	} {
		if st, auth, body := call(t, c.method, gateway+c.path, "", nil); st != http.StatusUnauthorized || !strings.Contains(auth, `realm="flotilla"`) {
			t.Errorf("anonymous %s %s: %d (WWW-Authenticate %q) %s; want the gateway's 401", c.method, c.path, st, auth, body)
		}
	}
	// A signed-in customer's write to the catalog is refused at the
	// gateway: the route is the admin's (403).
	if st, _, body := call(t, "POST", gateway+"/api/product/products", login.Token, nil); st != http.StatusForbidden || !strings.Contains(body, `"code":"forbidden"`) {
		t.Errorf("POST /api/product/products with the demo user's token: %d %s; want the gateway's 403", st, body)
	}
}

// deniedCalls sums the mesh's refused-call counter at the API's /metrics.
func deniedCalls(t *testing.T, api string) float64 {
	t.Helper()
	st, _, body := call(t, "GET", api+"/metrics", "", nil)
	if st != http.StatusOK {
		t.Fatalf("GET /metrics: %d", st)
	}
	var n float64
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "flotilla_mesh_authz_denied_total{") {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			n += v
		}
	}
	return n
}

// checkAuthz checks the platform's mesh and services know callers by
// their certificates (strict mutual TLS) and enforce the graph: a call
// payment-service does not declare (to cart-service) is refused with 403
// and counted, a declared one (order-service's) goes through to the
// service; a process without a certificate gets no connection, whatever
// header it sends; and cart-service's own listener lets in neither
// plaintext nor payment-service's certificate.
func checkAuthz(t *testing.T, info controlplane.PlatformInfo) {
	t.Helper()
	addr := map[string]string{}
	for _, s := range info.Services {
		addr[s.Name] = s.Mesh
	}
	before := deniedCalls(t, info.API)
	cart := "http://" + addr["cart-service"] + "/carts/me"
	as := func(service string) *http.Client { return serviceClient(t, info.Data, service) }
	if st, body := callWith(t, as("payment-service"), "GET", cart); st != http.StatusForbidden {
		t.Errorf("payment-service calling cart-service (undeclared): %d %s; want 403 from the mesh", st, body)
	}
	// Declared: cart-service answers itself (no token: 401).
	if st, body := callWith(t, as("order-service"), "GET", cart); st != http.StatusUnauthorized {
		t.Errorf("order-service calling cart-service (declared): %d %s; want cart-service's own 401", st, body)
	}
	if d := deniedCalls(t, info.API) - before; d != 1 {
		t.Errorf("the refused-call counter went up by %v, want 1", d)
	}
	// A header is no identity: without a certificate, no connection.
	req, _ := http.NewRequest("GET", cart, nil)
	req.Header.Set(mesh.CallerHeader, "order-service")
	req.Header.Set(mesh.PeerHeader, "spiffe://cluster.local/ns/default/sa/order-service")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_ = resp.Body.Close()
		t.Errorf("a plaintext call claiming order-service: %s; want the connection refused", resp.Status)
	}
	// The instance's own listener.
	st, err := apiClient(t, info).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Services {
		if s.Service != "cart-service" || len(s.Instances) == 0 {
			continue
		}
		inst := "http://" + s.Instances[0].Addr + "/ready"
		if resp, err := as("payment-service").Get(inst); err == nil {
			_ = resp.Body.Close()
			t.Errorf("payment-service's certificate straight to a cart-service instance: %s; want refused", resp.Status)
		}
		if resp, err := http.Get(inst); err == nil {
			_ = resp.Body.Close()
			t.Errorf("plaintext to a cart-service instance: %s; want refused", resp.Status)
		}
	}
}

// serviceClient calls with service's SVID from the platform's CA (issued
// if the platform has not, when the service is not deployed), read from
// the data directory as the service's process reads it.
func serviceClient(t *testing.T, data, service string) *http.Client {
	t.Helper()
	dir := controlplane.IdentityDir(data)
	ca, err := identity.OpenCA(filepath.Join(dir, "ca"), identity.DefaultTrustDomain, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &identity.Workloads{CA: ca, Dir: filepath.Join(dir, "workloads")}
	id, err := identity.WorkloadID(ca.TrustDomain(), identity.DefaultNamespace, service)
	if err != nil {
		t.Fatal(err)
	}
	wd, err := w.Ensure(id)
	if err != nil {
		t.Fatal(err)
	}
	src, err := identity.NewSource(wd)
	if err != nil {
		t.Fatal(err)
	}
	d := &identity.Dialer{Config: identity.ClientConfig(src, identity.AllowTrustDomain(src.TrustDomain()))}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

func callWith(t *testing.T, c *http.Client, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// systemClient calls with the SVID of a platform workload (identity.Smoke,
// ...), as the platform issued it in the data directory.
func systemClient(t *testing.T, data, name string) *http.Client {
	t.Helper()
	src, err := identity.NewSource(identity.WorkloadDir(filepath.Join(controlplane.IdentityDir(data), "workloads"), identity.SystemNamespace, name))
	if err != nil {
		t.Fatal(err)
	}
	d := &identity.Dialer{Config: identity.ClientConfig(src, identity.AllowTrustDomain(src.TrustDomain()))}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}
