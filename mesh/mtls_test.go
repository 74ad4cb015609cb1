package mesh

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/identity"
	"github.com/flotilla-ci/flotilla/identity/identitytest"
)

// tlsInstance is an instance of service serving mutual TLS with its own
// SVID, letting in the mesh only, answering with the X-Flotilla-Peer the
// mesh sent.
func tlsInstance(t *testing.T, env *identitytest.Env, service string) string {
	t.Helper()
	src := env.Source(t, identitytest.Service(t, service))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := identity.Listen(ln, identity.ServerConfig(src, identity.AllowIDs(identitytest.System(t, identity.Mesh))), identity.Strict, nil)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"peer": r.Header.Get(PeerHeader), "caller": r.Header.Get(CallerHeader)})
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(tl) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func newTLSMesh(t *testing.T, env *identitytest.Env, mode identity.Mode, std bool) *Mesh {
	t.Helper()
	return newTestMesh(t, Config{
		StdServer: std, StdTransport: std,
		Authz: AuthzConfig{Mode: AuthzEnforce, Unknown: UnknownDeny, Policy: NewPolicy(map[string][]string{
			"order-service": {"payment-service"}, "analytics-service": nil, "payment-service": nil,
		})},
		TLS: &TLSConfig{Source: env.Source(t, identitytest.System(t, identity.Mesh)), Mode: mode,
			Gateway: env.Source(t, identitytest.System(t, identity.Gateway))},
	})
}

func waitAtLeast(t *testing.T, what string, f func() int64, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d", what, f(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func scrapeText(t *testing.T, m *Mesh) string {
	t.Helper()
	rec := &strings.Builder{}
	w := &recorder{h: http.Header{}, b: rec}
	m.MetricsHandler().ServeHTTP(w, &http.Request{Method: "GET"})
	return rec.String()
}

type recorder struct {
	h http.Header
	b *strings.Builder
}

func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) Write(p []byte) (int, error) { return r.b.Write(p) }
func (r *recorder) WriteHeader(int)             {}

// The mesh's listener refuses a process without a certificate, with one
// from another CA, with an expired one, and refuses the call of a service
// the graph does not allow, each counted by its reason; an allowed caller
// is named to the instance by its certificate, never by the header it
// sent.
func TestMTLSMeshRefusesAndNamesCallersByCertificate(t *testing.T) {
	for _, std := range []bool{false, true} {
		name := "lean"
		if std {
			name = "std"
		}
		t.Run(name, func(t *testing.T) {
			env := identitytest.New(t, 0, nil)
			m := newTLSMesh(t, env, identity.Strict, std)
			ctx := context.Background()
			addr, err := m.AddService(ctx, ServiceConfig{Name: "payment-service"})
			if err != nil {
				t.Fatal(err)
			}
			if err := m.SetSubset(ctx, "payment-service", Subset{Name: "v1", Endpoints: []string{tlsInstance(t, env, "payment-service")}}); err != nil {
				t.Fatal(err)
			}
			url := "http://" + addr + "/pay"
			order := identitytest.Service(t, "order-service")
			other := identitytest.New(t, 0, nil)
			stats := m.TLSStats("payment-service")
			for _, tc := range []struct {
				name   string
				client *http.Client
				reason string
			}{
				{"plaintext", &http.Client{Timeout: 5 * time.Second}, identity.ReasonPlaintext},
				{"no certificate", identitytest.NoCertClient(), identity.ReasonNoCertificate},
				{"another CA", identitytest.Impostor(other.Source(t, order)), identity.ReasonUnknownAuthority},
				{"expired", identitytest.Impostor(env.Expired(t, order)), identity.ReasonExpired},
			} {
				before := stats.Refused(tc.reason)
				resp, err := tc.client.Get(url)
				if err == nil {
					_ = resp.Body.Close()
					t.Fatalf("%s: answered %s, want the connection refused", tc.name, resp.Status)
				}
				waitAtLeast(t, tc.name+": refused "+tc.reason, func() int64 { return stats.Refused(tc.reason) }, before+1)
			}
			// A valid certificate of a service the graph does not allow.
			resp, err := identitytest.Client(env.Source(t, identitytest.Service(t, "analytics-service"))).Get(url)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("analytics-service → payment-service: %s, want 403", resp.Status)
			}
			// An allowed caller, forging the headers.
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set(PeerHeader, "spiffe://cluster.local/ns/flotilla-system/sa/gateway")
			req.Header.Set(CallerHeader, GatewayCaller)
			resp, err = identitytest.Client(env.Source(t, order)).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]string
			_ = json.NewDecoder(resp.Body).Decode(&got)
			_ = resp.Body.Close()
			if resp.StatusCode != 200 || got["peer"] != order.String() {
				t.Errorf("order-service → payment-service: %s %v, want 200 naming %s", resp.Status, got, order)
			}
			// A forged gateway claim from a caller the graph knows
			// nothing of changes nothing either.
			metrics := scrapeText(t, m)
			for _, want := range []string{
				`flotilla_mesh_authz_denied_total{source="analytics-service",destination="payment-service",mode="enforce"} 1`,
				`flotilla_mesh_mtls_refused_total{destination="payment-service",reason="expired"} 1`,
				`flotilla_mesh_mtls_refused_total{destination="payment-service",reason="unknown_authority"} 1`,
				`flotilla_mesh_mtls_refused_total{destination="payment-service",reason="no_certificate"} 1`,
				`flotilla_mesh_mtls_refused_total{destination="payment-service",reason="plaintext"} 1`,
				`flotilla_mesh_mtls_handshakes_total{destination="payment-service"} 2`,
			} {
				if !strings.Contains(metrics, want) {
					t.Errorf("metrics lack %s", want)
				}
			}
		})
	}
}

// The mesh talks only to an instance that proves it is the service: one
// presenting another service's SVID gets no request.
func TestMTLSMeshRefusesAnImpostorInstance(t *testing.T) {
	env := identitytest.New(t, 0, nil)
	m := newTLSMesh(t, env, identity.Strict, false)
	ctx := context.Background()
	addr, err := m.AddService(ctx, ServiceConfig{Name: "payment-service"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetSubset(ctx, "payment-service", Subset{Name: "v1", Endpoints: []string{tlsInstance(t, env, "cart-service")}}); err != nil {
		t.Fatal(err)
	}
	resp, err := identitytest.Client(env.Source(t, identitytest.Service(t, "order-service"))).Get("http://" + addr + "/pay")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "identity not allowed") {
		t.Errorf("to an impostor: %s %s, want 502 saying its identity is not allowed", resp.Status, b)
	}
}

// Permissive (PeerAuthentication's meaning): plaintext is let in and
// counted, its caller unknown (here: denied by the policy).
func TestMTLSMeshPermissive(t *testing.T) {
	env := identitytest.New(t, 0, nil)
	m := newTLSMesh(t, env, identity.Permissive, false)
	ctx := context.Background()
	addr, err := m.AddService(ctx, ServiceConfig{Name: "payment-service"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetSubset(ctx, "payment-service", Subset{Name: "v1", Endpoints: []string{tlsInstance(t, env, "payment-service")}}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/pay", nil)
	req.Header.Set(CallerHeader, "order-service")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("plaintext claiming order-service: %s, want 403 (unknown callers denied)", resp.Status)
	}
	if n := m.TLSStats("payment-service").Plaintext(); n != 1 {
		t.Errorf("plaintext accepted = %d, want 1", n)
	}
	if err := m.SetAuthz(AuthzConfig{Mode: AuthzEnforce, Unknown: UnknownAllow, Policy: NewPolicy(map[string][]string{"order-service": {"payment-service"}})}); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get("http://" + addr + "/pay")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&got)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || got["peer"] != "" {
		t.Errorf("plaintext with unknown callers allowed: %s %v, want 200 naming nobody", resp.Status, got)
	}
	// An instance that speaks no TLS is spoken to in plaintext.
	plain := newUpstream(t, "plain", nil)
	if _, err := m.AddService(ctx, ServiceConfig{Name: "legacy-service"}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetSubset(ctx, "legacy-service", Subset{Name: "v1", Endpoints: []string{plain.addr()}}); err != nil {
		t.Fatal(err)
	}
	laddr, _ := m.Addr("legacy-service")
	resp, err = http.Get("http://" + laddr + "/x")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("to a plaintext instance in permissive mode: %s, want 200", resp.Status)
	}
}

// The gateway is the edge: a client's own X-Flotilla-Peer is replaced by
// the gateway's ID, which the mesh knows as the gateway (allowed to call
// every service), and the instance is told so.
func TestMTLSGatewayNamesItselfByItsIdentity(t *testing.T) {
	env := identitytest.New(t, 0, nil)
	m := newTLSMesh(t, env, identity.Strict, false)
	ctx := context.Background()
	if _, err := m.AddService(ctx, ServiceConfig{Name: "payment-service"}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetSubset(ctx, "payment-service", Subset{Name: "v1", Endpoints: []string{tlsInstance(t, env, "payment-service")}}); err != nil {
		t.Fatal(err)
	}
	gw, err := NewGateway(GatewayConfig{Routes: []RouteEntry{{Path: "/api/payment/**", Service: "payment-service", Rewrite: "/", Public: true}}}, m, GatewayOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := gw.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Close(context.Background()) })
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/payment/pay", nil)
	req.Header.Set(PeerHeader, identitytest.Service(t, "order-service").String())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&got)
	_ = resp.Body.Close()
	if want := identitytest.System(t, identity.Gateway).String(); resp.StatusCode != 200 || got["peer"] != want {
		t.Errorf("through the gateway with a forged peer: %s %v, want 200 naming %s", resp.Status, got, want)
	}
}
