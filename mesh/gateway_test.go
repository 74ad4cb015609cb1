package mesh

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
)

// keyServer is a real JWKS endpoint whose keys the test can change.
type keyServer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    []map[string]string
	fetches atomic.Int64
	// status and body, when set, are answered instead of the keys (a
	// key server that fails or serves garbage).
	status int
	body   string
}

func newKeyServer(t *testing.T) *keyServer {
	k := &keyServer{}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.fetches.Add(1)
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.status != 0 || k.body != "" {
			if k.status != 0 {
				w.WriteHeader(k.status)
			}
			_, _ = w.Write([]byte(k.body))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": k.keys})
	}))
	t.Cleanup(k.srv.Close)
	return k
}

// answer makes the key server answer status and body (0 and "": the
// keys again).
func (k *keyServer) answer(status int, body string) {
	k.mu.Lock()
	k.status, k.body = status, body
	k.mu.Unlock()
}

func (k *keyServer) add(kid string, pub crypto.PublicKey) {
	b64 := base64.RawURLEncoding.EncodeToString
	var jwk map[string]string
	switch p := pub.(type) {
	case *rsa.PublicKey:
		jwk = map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(p.N.Bytes()), "e": b64(big.NewInt(int64(p.E)).Bytes())}
	case ed25519.PublicKey:
		jwk = map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig", "alg": "EdDSA", "x": b64(p)}
	}
	k.mu.Lock()
	k.keys = append(k.keys, jwk)
	k.mu.Unlock()
}

var (
	rsaOnce         sync.Once
	rsaKey, rsaKey2 *rsa.PrivateKey
)

func rsaKeys(t *testing.T) (*rsa.PrivateKey, *rsa.PrivateKey) {
	rsaOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
		if rsaKey2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
	})
	return rsaKey, rsaKey2
}

func sign(t *testing.T, method jwt.SigningMethod, kid string, key any, sub string, exp time.Time) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, jwt.RegisteredClaims{
		Subject: sub, Issuer: "shop-user-service", Audience: jwt.ClaimStrings{"shop"},
		ExpiresAt: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(exp.Add(-time.Hour)),
	})
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type gwFixture struct {
	m     *Mesh
	gw    *Gateway
	clock *fakeClock
	keys  *keyServer
	seen  chan *http.Request // what the order service received
	h     http.Handler
	logs  syncBuffer // the access log, JSON lines
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(s.b.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(l, &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func newGateway(t *testing.T, mutate func(*GatewayConfig)) *gwFixture {
	t.Helper()
	f := &gwFixture{clock: newClock(), keys: newKeyServer(t), seen: make(chan *http.Request, 100)}
	f.m = newTestMesh(t, Config{Now: f.clock.Now, Authz: AuthzConfig{Mode: AuthzEnforce, Unknown: UnknownDeny, Policy: shopPolicy}})
	orders := newUpstream(t, "orders", func(w http.ResponseWriter, r *http.Request) {
		select {
		case f.seen <- r.Clone(context.Background()):
		default:
		}
		_, _ = w.Write([]byte(r.URL.Path))
	})
	products := newUpstream(t, "products", nil)
	addService(t, f.m, ServiceConfig{Name: "order-service"},
		Subset{Name: "v1", Endpoints: []string{orders.addr()}},
		Subset{Name: "v2", Canary: true, Endpoints: []string{products.addr()}})
	addService(t, f.m, ServiceConfig{Name: "product-service"}, Subset{Name: "v1", Endpoints: []string{products.addr()}})
	cfg := DefaultGatewayConfig()
	cfg.JWT.JWKSURL = f.keys.srv.URL + "/.well-known/jwks.json"
	cfg.JWT.Issuer, cfg.JWT.Audience = "shop-user-service", "shop"
	cfg.JWT.RefetchInterval = Duration(time.Second)
	cfg.Routes = []RouteEntry{
		{Path: "/api/orders/**", Service: "order-service", Rewrite: "/orders"},
		{Path: "/api/products/**", Service: "product-service", Public: true, Methods: []string{"GET"}},
		{Path: "/api/public/**", Service: "order-service", Public: true},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	gw, err := NewGateway(cfg, f.m, GatewayOptions{Logger: slog.New(slog.NewJSONHandler(&f.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f.gw = gw
	f.h = gw
	return f
}

func (f *gwFixture) do(method, target, token string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	req.RemoteAddr = "203.0.113.7:5555"
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

func TestGatewayJWT(t *testing.T) {
	f := newGateway(t, nil)
	r1, r2 := rsaKeys(t)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	_, otherEd, _ := ed25519.GenerateKey(rand.Reader)
	f.keys.add("rsa-1", &r1.PublicKey)
	f.keys.add("ed-1", edPub)
	exp := f.clock.Now().Add(time.Hour)

	tests := []struct {
		name   string
		path   string
		token  string
		status int
		reason string
	}{
		{"valid RS256", "/api/orders/1", sign(t, jwt.SigningMethodRS256, "rsa-1", r1, "alice", exp), 200, ""},
		{"valid EdDSA", "/api/orders/1", sign(t, jwt.SigningMethodEdDSA, "ed-1", edPriv, "bob", exp), 200, ""},
		{"no token", "/api/orders/1", "", 401, "bearer token is required"},
		{"expired", "/api/orders/1", sign(t, jwt.SigningMethodRS256, "rsa-1", r1, "alice", f.clock.Now().Add(-time.Hour)), 401, "token expired"},
		{"forged (another key, same kid)", "/api/orders/1", sign(t, jwt.SigningMethodRS256, "rsa-1", r2, "mallory", exp), 401, "invalid signature"},
		{"forged EdDSA", "/api/orders/1", sign(t, jwt.SigningMethodEdDSA, "ed-1", otherEd, "mallory", exp), 401, "invalid signature"},
		{"unknown kid", "/api/orders/1", sign(t, jwt.SigningMethodRS256, "rsa-9", r2, "mallory", exp), 401, "unknown signing key"},
		{"HS256 with the public key as secret", "/api/orders/1", sign(t, jwt.SigningMethodHS256, "rsa-1", r1.N.Bytes(), "mallory", exp), 401, "signing method HS256 not accepted"},
		{"garbage", "/api/orders/1", "not.a.token", 401, "malformed"},
		{"public route without a token", "/api/products/9", "", 200, ""},
		{"dot-dot cannot dodge the token check", "/api/products/../orders/1", "", 401, "bearer token is required"},
		{"no route", "/admin", "", 404, "no route"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.clock.Add(2 * time.Second) // past the refetch interval
			rec := f.do("GET", tc.path, tc.token, nil)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body.String())
			}
			if tc.reason != "" && !strings.Contains(rec.Body.String(), tc.reason) {
				t.Errorf("body %q does not say %q", rec.Body.String(), tc.reason)
			}
			if tc.status == 401 && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: %v", rec.Header())
			}
		})
	}
	// Keys are cached: the unknown kid refetched once, everything else
	// used the cache.
	if got := f.keys.fetches.Load(); got != 2 {
		t.Errorf("JWKS fetched %d times, want 2 (first use, then the unknown kid)", got)
	}

	// Key rotation: a token with a new kid is accepted after a refetch.
	_, r2b := rsaKeys(t)
	f.keys.add("rsa-2", &r2b.PublicKey)
	f.clock.Add(2 * time.Second)
	if rec := f.do("GET", "/api/orders/2", sign(t, jwt.SigningMethodRS256, "rsa-2", r2b, "carol", exp), nil); rec.Code != 200 {
		t.Errorf("rotated key: status %d: %s", rec.Code, rec.Body.String())
	}
	// The subject reaches the service; a client's own is replaced.
	rec := f.do("GET", "/api/orders/3", sign(t, jwt.SigningMethodRS256, "rsa-1", r1, "alice", exp), map[string]string{SubjectHeader: "root"})
	if rec.Code != 200 {
		t.Fatal(rec.Code)
	}
	var got *http.Request
	for len(f.seen) > 0 {
		got = <-f.seen
	}
	if got.Header.Get(SubjectHeader) != "alice" || got.URL.Path != "/orders/3" || got.Header.Get(CallerHeader) != GatewayCaller {
		t.Errorf("service saw subject %q path %q caller %q", got.Header.Get(SubjectHeader), got.URL.Path, got.Header.Get(CallerHeader))
	}
	// The access log has the client's path, not the rewritten one.
	lines := f.logs.lines()
	if last := lines[len(lines)-1]; last["path"] != "/api/orders/3" || last["subject"] != "alice" {
		t.Errorf("access log path %v subject %v, want /api/orders/3 and alice", last["path"], last["subject"])
	}
}

func TestGatewayRefetchIsRateLimited(t *testing.T) {
	f := newGateway(t, func(c *GatewayConfig) { c.JWT.RefetchInterval = Duration(10 * time.Second) })
	r1, r2 := rsaKeys(t)
	f.keys.add("rsa-1", &r1.PublicKey)
	exp := f.clock.Now().Add(time.Hour)
	f.do("GET", "/api/orders/1", sign(t, jwt.SigningMethodRS256, "rsa-1", r1, "a", exp), nil)
	for i := range 5 {
		rec := f.do("GET", "/api/orders/1", sign(t, jwt.SigningMethodRS256, "kid-"+string(rune('a'+i)), r2, "m", exp), nil)
		if rec.Code != 401 {
			t.Fatalf("unknown kid: %d", rec.Code)
		}
	}
	if got := f.keys.fetches.Load(); got != 1 {
		t.Errorf("forged kids made %d fetches within the refetch interval, want 1", got)
	}
	f.clock.Add(11 * time.Second)
	f.do("GET", "/api/orders/1", sign(t, jwt.SigningMethodRS256, "kid-z", r2, "m", exp), nil)
	if got := f.keys.fetches.Load(); got != 2 {
		t.Errorf("after the interval: %d fetches, want 2", got)
	}
}

func TestGatewayRateLimit(t *testing.T) {
	f := newGateway(t, func(c *GatewayConfig) {
		c.Routes[0].RateLimit = &RateLimit{RequestsPerSecond: 0.5, Burst: 2}
		c.Routes[1].RateLimit = &RateLimit{RequestsPerSecond: 1, Burst: 1}
	})
	r1, _ := rsaKeys(t)
	f.keys.add("rsa-1", &r1.PublicKey)
	exp := f.clock.Now().Add(time.Hour)
	alice := sign(t, jwt.SigningMethodRS256, "rsa-1", r1, "alice", exp)
	bob := sign(t, jwt.SigningMethodRS256, "rsa-1", r1, "bob", exp)

	var codes []int
	for range 3 {
		codes = append(codes, f.do("GET", "/api/orders/1", alice, nil).Code)
	}
	if diff := cmp.Diff([]int{200, 200, 429}, codes); diff != "" {
		t.Errorf("alice's burst (-want +got):\n%s", diff)
	}
	rec := f.do("GET", "/api/orders/1", alice, nil)
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "2" {
		t.Errorf("limited: status %d Retry-After %q, want 429 and 2 (0.5/s)", rec.Code, rec.Header().Get("Retry-After"))
	}
	if rec := f.do("GET", "/api/orders/1", bob, nil); rec.Code != 200 {
		t.Errorf("bob has his own bucket: %d", rec.Code)
	}
	// Another route has its own bucket, keyed by IP when public.
	if rec := f.do("GET", "/api/products/1", "", nil); rec.Code != 200 {
		t.Errorf("other route: %d", rec.Code)
	}
	if rec := f.do("GET", "/api/products/1", "", nil); rec.Code != 429 || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("public route by IP: %d %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	f.clock.Add(2 * time.Second)
	if rec := f.do("GET", "/api/orders/1", alice, nil); rec.Code != 200 {
		t.Errorf("after refill: %d", rec.Code)
	}
	fams := scrape(t, f.m)
	var limited float64
	for _, mt := range fams["flotilla_gateway_rate_limited_total"].GetMetric() {
		limited += mt.GetCounter().GetValue()
	}
	if limited != 3 {
		t.Errorf("rate_limited_total %v, want 3", limited)
	}
}

func TestGatewayHeaders(t *testing.T) {
	f := newGateway(t, nil)
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name   string
		hdr    map[string]string
		wantID func(string) bool
	}{
		{"generated id", map[string]string{"traceparent": tp}, func(id string) bool { return len(id) == 32 }},
		{"kept id", map[string]string{"traceparent": tp, "x-request-id": "req-42"}, func(id string) bool { return id == "req-42" }},
		{"insane id replaced", map[string]string{"traceparent": tp, "x-request-id": "a b"}, func(id string) bool { return len(id) == 32 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := f.do("GET", "/api/public/x", "", tc.hdr)
			if rec.Code != 200 {
				t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
			}
			id := rec.Header().Get(RequestIDHeader)
			if !tc.wantID(id) {
				t.Errorf("request id %q", id)
			}
			got := <-f.seen
			if got.Header.Get(RequestIDHeader) != id {
				t.Errorf("service saw request id %q, client got %q", got.Header.Get(RequestIDHeader), id)
			}
			if got.Header.Get("Traceparent") != tp {
				t.Errorf("traceparent %q not passed through", got.Header.Get("Traceparent"))
			}
			if got.Header.Get("X-Forwarded-For") != "203.0.113.7" {
				t.Errorf("x-forwarded-for %q", got.Header.Get("X-Forwarded-For"))
			}
		})
	}
	// The access log has a line per request with its id and outcome.
	var logged map[string]any
	for _, l := range f.logs.lines() {
		if l["msg"] == "gateway request" && l["request_id"] == "req-42" {
			logged = l
		}
	}
	want := map[string]any{"method": "GET", "path": "/api/public/x", "status": float64(200), "route": "/api/public/**", "service": "order-service", "client": "203.0.113.7", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}
	for k, v := range want {
		if logged[k] != v {
			t.Errorf("access log %s = %v, want %v (line %v)", k, logged[k], v, logged)
		}
	}
	if _, ok := logged["duration_ms"].(float64); !ok {
		t.Errorf("access log without duration_ms: %v", logged)
	}
	// Lane headers from outside are stripped unless allowed.
	rec := f.do("GET", "/api/public/x", "", map[string]string{"x-flotilla-version": "v2", "x-canary": "true"})
	if v := rec.Header().Get(UpstreamVersionHeader); v != "v1" {
		t.Errorf("lane headers from a client reached the mesh: served by %q", v)
	}
	f2 := newGateway(t, func(c *GatewayConfig) { c.PassLaneHeaders = true })
	rec = f2.do("GET", "/api/public/x", "", map[string]string{"x-canary": "true"})
	if v := rec.Header().Get(UpstreamVersionHeader); v != "v2" {
		t.Errorf("pass_lane_headers: served by %q, want v2", v)
	}
	if rec := f.do("POST", "/api/products/1", "", nil); rec.Code != 405 || rec.Header().Get("Allow") != "GET" {
		t.Errorf("method not allowed: %d %v", rec.Code, rec.Header())
	}
}

// Routes split by method: reads public, writes need a token, as Kong's
// `methods` and Istio's method matches declare it.
func TestGatewayMethodRoutes(t *testing.T) {
	f := newGateway(t, func(c *GatewayConfig) {
		c.Routes = []RouteEntry{
			{Path: "/api/products/**", Service: "product-service", Public: true, Methods: []string{"GET", "HEAD"},
				RateLimit: &RateLimit{RequestsPerSecond: 1, Burst: 2}},
			{Path: "/api/products/**", Service: "product-service"},
			{Path: "/api/orders/**", Service: "order-service", Rewrite: "/orders"},
			{Path: "/api/orders/health", Service: "order-service", Public: true, Methods: []string{"GET"}},
			{Path: "/api/search/**", Service: "product-service", Public: true, Methods: []string{"GET"}},
			{Path: "/api/search/suggest/**", Service: "product-service", Public: true, Methods: []string{"POST"}},
			{Path: "/api/reviews/**", Service: "product-service", Public: true, Methods: []string{"GET"}},
			{Path: "/api/reviews/**", Service: "product-service", Methods: []string{"POST", "DELETE"}},
		}
	})
	r1, _ := rsaKeys(t)
	f.keys.add("rsa-1", &r1.PublicKey)
	alice := sign(t, jwt.SigningMethodRS256, "rsa-1", r1, "alice", f.clock.Now().Add(time.Hour))

	tests := []struct {
		method, path, token string
		status              int
		route               string // the access log's route; "" for none
		allow               string
	}{
		{"GET", "/api/products/1", "", 200, "GET,HEAD /api/products/**", ""},
		{"HEAD", "/api/products/1", "", 200, "GET,HEAD /api/products/**", ""},
		{"POST", "/api/products", "", 401, "/api/products/**", ""},
		{"PUT", "/api/products/1", "", 401, "/api/products/**", ""},
		{"DELETE", "/api/products/1", "", 401, "/api/products/**", ""},
		{"PROPFIND", "/api/products/1", "", 401, "/api/products/**", ""}, // no route may list it: the route without methods
		{"POST", "/api/products", alice, 200, "/api/products/**", ""},
		// A method the more specific path does not take falls through to
		// a shorter path's route.
		{"GET", "/api/orders/health", "", 200, "GET /api/orders/health", ""},
		{"POST", "/api/orders/health", "", 401, "/api/orders/**", ""},
		// Routes take the path, none the method: 405 naming what they take.
		{"POST", "/api/search/x", "", 405, "", "GET"},
		{"HEAD", "/api/search/x", "", 405, "", "GET"},
		{"PUT", "/api/search/suggest/x", "", 405, "", "GET, POST"},
		{"POST", "/api/search/suggest/x", "", 200, "POST /api/search/suggest/**", ""},
		{"GET", "/api/search/suggest/x", "", 200, "GET /api/search/**", ""},
		{"PUT", "/api/reviews/1", alice, 405, "", "GET, POST, DELETE"},
		{"DELETE", "/api/reviews/1", "", 401, "POST,DELETE /api/reviews/**", ""},
		{"DELETE", "/api/reviews/1", alice, 200, "POST,DELETE /api/reviews/**", ""},
		{"GET", "/api/nothing", "", 404, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			f.clock.Add(2 * time.Second) // refill the read route's bucket
			rec := f.do(tc.method, tc.path, tc.token, nil)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body.String())
			}
			if got := rec.Header().Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
			if tc.status == 401 && !strings.Contains(rec.Header().Get("WWW-Authenticate"), `realm="flotilla"`) {
				t.Errorf("401 not from the gateway: %v", rec.Header())
			}
			lines := f.logs.lines()
			last := lines[len(lines)-1]
			if route, _ := last["route"].(string); route != tc.route || last["method"] != tc.method {
				t.Errorf("access log route %q method %v, want %q %s", route, last["method"], tc.route, tc.method)
			}
		})
	}

	// Rate limits are per route: the reads' bucket runs dry, the writes'
	// route has none.
	codes := []int{}
	for range 3 {
		codes = append(codes, f.do("GET", "/api/products/1", "", nil).Code)
	}
	codes = append(codes, f.do("POST", "/api/products", alice, nil).Code)
	if diff := cmp.Diff([]int{200, 200, 429, 200}, codes); diff != "" {
		t.Errorf("reads limited, writes not (-want +got):\n%s", diff)
	}
	// Each route has its own series.
	fams := scrape(t, f.m)
	routes := map[string]bool{}
	for _, mt := range fams["flotilla_gateway_requests_total"].GetMetric() {
		for _, l := range mt.GetLabel() {
			if l.GetName() == "route" {
				routes[l.GetValue()] = true
			}
		}
	}
	for _, want := range []string{"GET,HEAD /api/products/**", "/api/products/**", "POST,DELETE /api/reviews/**"} {
		if !routes[want] {
			t.Errorf("no flotilla_gateway_requests_total series for route %q (have %v)", want, routes)
		}
	}
}

func TestGatewayOverTheNetwork(t *testing.T) {
	f := newGateway(t, nil)
	addr, err := f.gw.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.gw.Close(context.Background()) })
	r := do(t, "GET", "http://"+addr+"/api/products/7", nil, "")
	if r.status != 200 || r.body != "products" {
		t.Errorf("through the listener: %d %q", r.status, r.body)
	}
}

func TestParseGatewayConfig(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // "" = valid; else a substring of the error
	}{
		{"valid", `
listen: 127.0.0.1:8480
jwt: {jwks_url: "http://127.0.0.1:8101/.well-known/jwks.json", leeway: 10s}
rate_limit: {requests_per_second: 50, burst: 100}
routes:
  - {path: /api/orders/**, service: order-service, rewrite: /orders, timeout: 5s}
  - {path: /api/products/**, service: product-service, public: true, methods: [GET]}
`, ""},
		{"unknown field", "routes: []\nlisten: 127.0.0.1:1\nratelimit: {}\n", "field ratelimit not found"},
		{"bad duration", "timeout: soon\n", "want a number with a unit"},
		{"token route without jwks", "routes: [{path: /api/x, service: x-service}]\n", "jwt.jwks_url is not set"},
		{"bad path", "routes: [{path: api/x, service: x, public: true}]\n", "must start with /"},
		{"inner wildcard", "routes: [{path: /api/*/x, service: x, public: true}]\n", "trailing /**"},
		{"dot-dot", "routes: [{path: /api/../x, service: x, public: true}]\n", ". or .."},
		{"duplicate", "routes: [{path: /api/x/**, service: x, public: true}, {path: /api/x, service: y, public: true}]\n", "same path as routes[0]"},
		{"bad method", "routes: [{path: /x, service: x, public: true, methods: [FETCH]}]\n", `routes[0] (/x): method "FETCH": want one of GET, HEAD`},
		{"lower-case method", "routes: [{path: /x, service: x, public: true, methods: [get]}]\n", `routes[0] (/x): method "get": write methods in upper case (GET)`},
		{"method twice", "routes: [{path: /x, service: x, public: true, methods: [GET, GET]}]\n", "routes[0] (/x): method GET listed twice"},
		{"read and write split", `
jwt: {jwks_url: "http://127.0.0.1:8101/.well-known/jwks.json"}
routes:
  - {path: /api/product/**, service: product-service, public: true, methods: [GET, HEAD]}
  - {path: /api/product/**, service: product-service}
  - {path: /api/search/**, service: search-service, public: true, methods: [GET]}
  - {path: /api/search, service: search-service, methods: [POST, DELETE]}
`, ""},
		{"duplicate path and method", `
jwt: {jwks_url: "http://127.0.0.1:8101/.well-known/jwks.json"}
routes:
  - {path: /api/product/**, service: product-service, public: true, methods: [GET, HEAD]}
  - {path: /api/product, service: product-service, methods: [POST, HEAD]}
`, "routes[1] (/api/product): method HEAD: same path as routes[0], which lists HEAD too"},
		{"two routes without methods", "routes: [{path: /x, service: x, public: true, methods: [GET]}, {path: /x, service: x, public: true}, {path: /x/**, service: y, public: true}]\n",
			"routes[2] (/x/**): same path as routes[1], and neither lists methods"},
		{"negative rate", "rate_limit: {requests_per_second: -1}\n", "requests_per_second"},
		{"no service", "routes: [{path: /x, public: true}]\n", "service name is empty"},
		{"bad jwks url", "jwt: {jwks_url: ftp://x}\n", "want an http(s) URL"},
		{"two documents", "listen: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n", "more than one YAML document"},
		{"not a map", "- a\n", "cannot unmarshal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseGatewayConfig("gateway.yaml", []byte(tc.in))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted, want an error with %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
	// Unknown service is caught when the gateway is built.
	m := newTestMesh(t, Config{})
	cfg := DefaultGatewayConfig()
	cfg.Routes = []RouteEntry{{Path: "/api/x", Service: "nope-service", Public: true}}
	if _, err := NewGateway(cfg, m, GatewayOptions{}); err == nil || !strings.Contains(err.Error(), "nope-service") {
		t.Errorf("unknown service: %v", err)
	}
}

func TestRouteMatching(t *testing.T) {
	tbl := newRouteTable([]string{"/api/orders", "/api/orders/admin", "", "/api/products"}, []string{"orders", "admin", "root", "products"})
	tests := []struct{ path, want string }{
		{"/api/orders", "orders"},
		{"/api/orders/", "orders"},
		{"/api/orders/42", "orders"},
		{"/api/ordersx", "root"},
		{"/api/orders/admin/x", "admin"},
		{"/api/orders/administrator", "orders"},
		{"/api/products", "products"},
		{"/", "root"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			got, _, ok := tbl.match(tc.path)
			if !ok || got != tc.want {
				t.Errorf("match(%q) = %q, %v; want %q", tc.path, got, ok, tc.want)
			}
		})
	}
	noRoot := newRouteTable([]string{"/api/orders"}, []int{1})
	if _, _, ok := noRoot.match("/api/products"); ok {
		t.Error("matched without a route")
	}
}

func FuzzGatewayConfig(f *testing.F) {
	f.Add([]byte("listen: 127.0.0.1:8480\nroutes:\n  - {path: /api/orders/**, service: order-service, public: true, rate_limit: {requests_per_second: 5}}\n"))
	f.Add([]byte("jwt: {jwks_url: http://x/j, leeway: 1s}\ntimeout: 1m\n"))
	f.Add([]byte("{}"))
	f.Add([]byte("routes:\n  - {path: /api/p/**, service: p, public: true, methods: [GET, HEAD]}\n  - {path: /api/p, service: p, public: true, methods: [POST]}\n  - {path: /api/p/, service: p, public: true}\n"))
	f.Add([]byte("routes: [{path: /x, service: x, public: true, methods: [GET]}, {path: /x/**, service: x, public: true, methods: [get, GET]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseGatewayConfig("fuzz.yaml", data)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("parsed config fails Validate: %v", err)
		}
		// Every path and method has one route.
		taken := map[string]int{}
		for i, r := range cfg.Routes {
			p, err := routePrefix(r.Path)
			if err != nil {
				t.Fatalf("accepted route path %q: %v", r.Path, err)
			}
			methods := r.Methods
			if len(methods) == 0 {
				methods = []string{"*"}
			}
			for _, m := range methods {
				if m != "*" && methodIndex(m) < 0 {
					t.Fatalf("accepted method %q", m)
				}
				if j, dup := taken[m+" "+p]; dup {
					t.Fatalf("routes[%d] and routes[%d] both take %s %q", j, i, m, p)
				}
				taken[m+" "+p] = i
			}
		}
		// The table built from it answers every path and method.
		g := &Gateway{cfg: cfg}
		g.buildRoutes(time.Now)
		if len(g.all) != len(cfg.Routes) {
			t.Fatalf("%d routes built from %d", len(g.all), len(cfg.Routes))
		}
		for _, m := range append(routeMethods[:], "TRACE") {
			g.match("/api/p/1", m)
		}
	})
}

// FuzzRouteMethodMatch checks the gateway's choice of route against the
// rule written out: of the routes whose path matches and that take the
// method (listed, or no methods at all), the longest path wins, then the
// one that lists methods; with none, 405 names the methods the routes on
// the path take, 404 when no route's path matches.
func FuzzRouteMethodMatch(f *testing.F) {
	f.Add("/api/p/**", uint8(3), "/api/p", uint8(0), "/api/p/x", "POST", uint8(4))
	f.Add("/api/p/**", uint8(1), "/api/p/**", uint8(0), "/api/p/x", "GET", uint8(0))
	f.Add("/a/b", uint8(1), "/a", uint8(2), "/a/b", "PUT", uint8(0))
	f.Add("/", uint8(0), "/a", uint8(5), "/a/c", "TRACE", uint8(0))
	f.Fuzz(func(t *testing.T, p1 string, m1 uint8, p2 string, m2 uint8, reqPath, method string, m3 uint8) {
		all := uint8(1)<<len(routeMethods) - 1
		entry := func(p string, mask uint8) RouteEntry {
			e := RouteEntry{Path: p, Service: "s", Public: true}
			for i, m := range routeMethods {
				if mask&all&(1<<i) != 0 {
					e.Methods = append(e.Methods, m)
				}
			}
			return e
		}
		// A third route on p1's path, so a path can have several.
		cfg := GatewayConfig{Routes: []RouteEntry{entry(p1, m1), entry(p2, m2), entry(p1, m3)}}
		if cfg.Validate() != nil {
			return
		}
		g := &Gateway{cfg: cfg}
		g.buildRoutes(time.Now)
		clean := cleanPath(reqPath)
		got, prefix, allow := g.match(clean, method)

		var best *gwRoute
		bestLen, bestListed := -1, false
		var wantAllow uint8
		for _, r := range g.all {
			p, _ := routePrefix(r.entry.Path)
			if clean != p && p != "" && !strings.HasPrefix(clean, p+"/") {
				continue
			}
			listed := len(r.entry.Methods) > 0
			takes := !listed
			for _, m := range r.entry.Methods {
				takes = takes || m == method
				wantAllow |= 1 << methodIndex(m)
			}
			if takes && (len(p) > bestLen || len(p) == bestLen && listed && !bestListed) {
				best, bestLen, bestListed = r, len(p), listed
			}
		}
		if best != nil {
			wantAllow = 0
		}
		if got != best || allow != wantAllow {
			t.Fatalf("%s %q over %+v: route %+v (allow %s), want %+v (allow %s)", method, clean, cfg.Routes, got, methodList(allow, ","), best, methodList(wantAllow, ","))
		}
		if best != nil {
			if p, _ := routePrefix(best.entry.Path); p != prefix {
				t.Fatalf("%s %q: prefix %q, want %q", method, clean, prefix, p)
			}
		}
	})
}

func FuzzRouteMatch(f *testing.F) {
	f.Add("/api/orders/**", "/api/orders/42", "/api/**")
	f.Add("/api/orders", "/api/ordersx", "/")
	f.Add("/a/b", "/a/b/../c", "/a")
	f.Fuzz(func(t *testing.T, p1, reqPath, p2 string) {
		a, err1 := routePrefix(p1)
		b, err2 := routePrefix(p2)
		if err1 != nil || err2 != nil || a == b {
			return
		}
		tbl := newRouteTable([]string{a, b}, []string{a, b})
		clean := cleanPath(reqPath)
		got, prefix, ok := tbl.match(clean)
		// The reference: every matching prefix, at a segment boundary.
		var best string
		found := false
		for _, p := range []string{a, b} {
			if clean == p || p == "" || strings.HasPrefix(clean, p+"/") {
				if !found || len(p) > len(best) {
					best, found = p, true
				}
			}
		}
		if ok != found || (ok && (got != best || prefix != best)) {
			t.Fatalf("match(%q) over %q, %q = %q, %v; want %q, %v", clean, a, b, got, ok, best, found)
		}
		if strings.Contains(clean, "/../") || strings.HasSuffix(clean, "/..") {
			t.Fatalf("cleanPath(%q) = %q still has ..", reqPath, clean)
		}
	})
}

func TestGatewayFollowsServiceChanges(t *testing.T) {
	f := newGateway(t, nil)
	ctx := context.Background()
	if err := f.m.RemoveService(ctx, "product-service"); err != nil {
		t.Fatal(err)
	}
	rec := f.do("GET", "/api/products/1", "", nil)
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "product-service is not deployed") {
		t.Errorf("removed service: %d %s", rec.Code, rec.Body.String())
	}
	up := newUpstream(t, "products-again", nil)
	addService(t, f.m, ServiceConfig{Name: "product-service"}, Subset{Name: "v7", Endpoints: []string{up.addr()}})
	rec = f.do("GET", "/api/products/1", "", nil)
	if rec.Code != 200 || rec.Body.String() != "products-again" {
		t.Errorf("service added again: %d %q", rec.Code, rec.Body.String())
	}
}
