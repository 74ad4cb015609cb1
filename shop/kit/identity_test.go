package kit_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/identity"
	"github.com/flotilla-ci/flotilla/identity/identitytest"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
)

// startWithIdentity starts service with an SVID of env, letting in peers.
func startWithIdentity(t *testing.T, env *identitytest.Env, service, mode string, peers ...string) *kit.App {
	t.Helper()
	cfg := kittest.SQLiteEnv(t).Config(t, service)
	cfg.Identity = env.Dir0(t, identitytest.Service(t, service))
	cfg.MTLS = mode
	cfg.Peers = peers
	cfg.MeshID = identitytest.System(t, identity.Mesh).String()
	app, err := kit.Start(context.Background(), cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	app.Mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		name, ns := kit.PeerService(r)
		kit.WriteJSON(w, 200, map[string]string{"peer": kit.Peer(r), "service": name, "namespace": ns})
	})
	app.Serve()
	t.Cleanup(func() { _ = app.Close() })
	return app
}

func waitCount(t *testing.T, what string, f func() int64, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d", what, f(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A service's own listener refuses every connection without a
// certificate of this CA that names an allowed peer, counting why, and
// believes the mesh's X-Flotilla-Peer only from the mesh.
func TestServiceListenerRefusesWithoutAnAllowedCertificate(t *testing.T) {
	env := identitytest.New(t, 0, nil)
	mesh := identitytest.System(t, identity.Mesh)
	order := identitytest.Service(t, "order-service")
	app := startWithIdentity(t, env, "payment-service", "strict", mesh.String(), order.String())
	other := identitytest.New(t, 0, nil)
	for _, tc := range []struct {
		name   string
		client *http.Client
		reason string
	}{
		{"plaintext", &http.Client{Timeout: 5 * time.Second}, identity.ReasonPlaintext},
		{"no certificate", identitytest.NoCertClient(), identity.ReasonNoCertificate},
		{"another CA", identitytest.Impostor(other.Source(t, order)), identity.ReasonUnknownAuthority},
		{"expired", identitytest.Impostor(env.Expired(t, order)), identity.ReasonExpired},
		{"a service the graph does not allow", identitytest.Impostor(env.Source(t, identitytest.Service(t, "analytics-service"))), identity.ReasonNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := app.TLSStats().Refused(tc.reason)
			resp, err := tc.client.Get(app.URL() + "/whoami")
			if err == nil {
				_ = resp.Body.Close()
				t.Fatalf("answered %s, want the connection refused", resp.Status)
			}
			waitCount(t, "refused "+tc.reason, func() int64 { return app.TLSStats().Refused(tc.reason) }, before+1)
		})
	}
	t.Run("allowed", func(t *testing.T) {
		// A direct caller is its certificate, whatever header it sends.
		got := getJSON(t, identitytest.Client(env.Source(t, order)), "GET", app.URL()+"/whoami", map[string]string{kit.PeerHeader: "spiffe://cluster.local/ns/flotilla-system/sa/gateway"})
		if got["peer"] != order.String() || got["service"] != "order-service" || got["namespace"] != "default" {
			t.Errorf("direct call: %v, want order-service's own ID", got)
		}
		// Through the mesh, the caller it names.
		got = getJSON(t, identitytest.Client(env.Source(t, mesh)), "GET", app.URL()+"/whoami", map[string]string{kit.PeerHeader: order.String()})
		if got["peer"] != order.String() {
			t.Errorf("through the mesh: %v, want the ID the mesh names", got)
		}
		if app.TLSStats().Handshakes() < 2 {
			t.Errorf("handshakes = %d, want ≥ 2", app.TLSStats().Handshakes())
		}
		resp, err := identitytest.Client(env.Source(t, mesh)).Get(app.URL() + "/metrics/mtls")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		for _, want := range []string{
			`flotilla_service_mtls_refused_total{service="payment-service",reason="not_allowed"} 1`,
			`flotilla_service_mtls_refused_total{service="payment-service",reason="plaintext"} 1`,
		} {
			if !strings.Contains(string(b), want) {
				t.Errorf("metrics lack %q:\n%s", want, b)
			}
		}
	})
}

// Permissive: plaintext is let in and counted; nobody is known by it.
func TestServiceListenerPermissiveCountsPlaintext(t *testing.T) {
	env := identitytest.New(t, 0, nil)
	app := startWithIdentity(t, env, "cart-service", "permissive")
	got := getJSON(t, &http.Client{Timeout: 5 * time.Second}, "GET", app.URL()+"/whoami", map[string]string{kit.PeerHeader: "spiffe://cluster.local/ns/default/sa/order-service"})
	if got["peer"] != "" {
		t.Errorf("plaintext caller known as %q, want nobody", got["peer"])
	}
	if n := app.TLSStats().Plaintext(); n != 1 {
		t.Errorf("plaintext accepted = %d, want 1", n)
	}
	got = getJSON(t, identitytest.Client(env.Source(t, identitytest.Service(t, "order-service"))), "GET", app.URL()+"/whoami", nil)
	if got["service"] != "order-service" {
		t.Errorf("mTLS caller: %v", got)
	}
}

func getJSON(t *testing.T, c *http.Client, method, url string, headers map[string]string) map[string]string {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s %s: %s %v", method, url, resp.Status, err)
	}
	return out
}
