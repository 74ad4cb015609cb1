package controlplane_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/internal/testenv"
	"github.com/flotilla-ci/flotilla/tracing/store"
	"github.com/flotilla-ci/flotilla/tracing/store/jaeger"
)

// withServiceEnv is the manifest src with key=value in one service's
// deploy env.
func withServiceEnv(t *testing.T, src []byte, service, key, value string) []byte {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	child := func(m *yaml.Node, key string) *yaml.Node {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return m.Content[i+1]
			}
		}
		v := &yaml.Node{Kind: yaml.MappingNode}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
		return v
	}
	env := child(child(child(child(doc.Content[0], "services"), service), "deploy"), "env")
	v := child(env, key)
	v.Kind, v.Tag, v.Value = yaml.ScalarNode, "!!str", value
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The end-to-end test of tracing: the shop up, with payment
// declining half the charges. Checkouts through the gateway until one is
// confirmed and one cancelled. The confirmed one is ONE trace with the
// gateway's, order's, cart's, inventory's, payment's and user's spans,
// and, linked through the bus, shipping's, notification's and
// analytics'; the gateway's answer names it; `flotilla trace show` (the
// built CLI) prints it with its parent/child structure. The cancelled one
// shows the declined charge as an error and the saga's compensation.
func TestPlatformTraceOfACheckout(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the shop's ten services")
	}
	started := time.Now()
	manifest, _ := shopManifest(t, func(src []byte) []byte {
		return withServiceEnv(t, src, "payment-service", "FAULTS", "payment.failure_rate=0.5")
	})
	cli := filepath.Join(t.TempDir(), "flotilla")
	if out, err := exec.Command("go", "build", "-o", cli, "../cmd/flotilla").CombinedOutput(); err != nil {
		t.Fatalf("go build flotilla: %v\n%s", err, out)
	}
	cfg := platformConfig(manifest, t.TempDir())
	cfg.Tracing.Env = map[string]string{"OTEL_BSP_SCHEDULE_DELAY": "200"}
	info, _ := runPlatform(t, cfg)
	t.Logf("up in %v", time.Since(started).Round(time.Millisecond))
	api := apiClient(t, info)
	tok, _ := apiTokens.Load(strings.TrimPrefix(info.API, "http://"))

	token := login(t, info.Gateway)
	var first, confirmed, cancelled string // trace ids
	for i := 0; i < 12 && (confirmed == "" || cancelled == ""); i++ {
		st, body := send(t, "POST", info.Gateway+"/api/cart/carts/me/items", token, `{"sku":"DEMO-MUG","quantity":1}`)
		if st != http.StatusOK {
			t.Fatalf("add to cart: %d %s", st, body)
		}
		req, _ := http.NewRequest("POST", info.Gateway+"/api/order/orders", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Idempotency-Key", fmt.Sprintf("trace-e2e-%d-%d", started.UnixNano(), i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var o struct{ ID, Status, Reason string }
		err = json.NewDecoder(resp.Body).Decode(&o)
		_ = resp.Body.Close()
		if err != nil || (resp.StatusCode != 201 && resp.StatusCode != 202) {
			t.Fatalf("checkout: %d %v", resp.StatusCode, err)
		}
		id := resp.Header.Get("X-Trace-Id")
		if tp := resp.Header.Get("traceparent"); len(id) != 32 || !strings.Contains(tp, id) {
			t.Fatalf("the gateway's answer names trace %q (traceparent %q); want 32 hex digits in both", id, tp)
		}
		if first == "" {
			first = id
		}
		switch o.Status {
		case "CONFIRMED":
			if confirmed == "" {
				confirmed = id
			}
		case "CANCELLED":
			if cancelled == "" {
				cancelled = id
			}
			send(t, "DELETE", info.Gateway+"/api/cart/carts/me", token, "")
		}
		t.Logf("order %s: %s %s, trace %s", o.ID, o.Status, o.Reason, id)
	}
	if confirmed == "" || cancelled == "" {
		t.Fatalf("want a confirmed and a cancelled checkout; got trace %q confirmed, %q cancelled", confirmed, cancelled)
	}

	// The confirmed checkout: one trace, every service in it once the
	// bus's consumers have exported.
	// order-service checks a user with user-service once, then remembers
	// them: user-service is in the first checkout's trace.
	want := []string{controlplane.DataplaneService, "order-service", "cart-service", "inventory-service", "payment-service",
		"shipping-service", "notification-service", "analytics-service"}
	if confirmed == first {
		want = append(want, "user-service")
	} else {
		deadline := time.Now().Add(30 * time.Second)
		for {
			r, err := api.Trace(t.Context(), first)
			if err == nil && len(missingServices(r.Trace, []string{"user-service"})) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the first checkout's trace %s: %v; no user-service span", first, err)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	var tr *store.Trace
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := api.Trace(t.Context(), confirmed)
		missing := want
		if err == nil {
			tr = r.Trace
			missing = missingServices(tr, want)
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s: %v; services missing %v (has %v)", confirmed, err, missing, servicesOf(tr))
		}
		time.Sleep(300 * time.Millisecond)
	}
	byID := map[string]store.Span{}
	for _, s := range tr.Spans {
		byID[s.SpanID] = s
	}
	roots := 0
	for _, s := range tr.Spans {
		if s.TraceID != confirmed {
			// A consumer's own trace, linked to its producer in this one.
			if len(s.Links) == 0 && s.ParentSpanID == "" {
				t.Errorf("span %s/%s of trace %s is in trace %s without a link", s.Service, s.Name, s.TraceID, confirmed)
			}
			continue
		}
		if s.ParentSpanID == "" {
			roots++
			if s.Service != controlplane.DataplaneService {
				t.Errorf("the trace's root is %s/%s; want the gateway's", s.Service, s.Name)
			}
		} else if _, ok := byID[s.ParentSpanID]; !ok {
			t.Errorf("span %s/%s has parent %s, not in the trace", s.Service, s.Name, s.ParentSpanID)
		}
	}
	if roots != 1 {
		t.Errorf("the trace has %d roots, want 1", roots)
	}
	linked := map[string]bool{}
	for _, s := range tr.Spans {
		if s.Kind != store.KindConsumer {
			continue
		}
		for _, l := range s.Links {
			if p, ok := byID[l.SpanID]; ok && p.Kind == store.KindProducer {
				linked[s.Service] = true
			}
		}
	}
	for _, svc := range []string{"shipping-service", "notification-service", "analytics-service"} {
		if !linked[svc] {
			t.Errorf("no consumer span of %s linked to a producer span in the trace (linked: %v)", svc, linked)
		}
	}
	saga := spanNames(tr)
	for _, n := range []string{"check_inventory", "process_payment"} {
		if !saga[n] {
			t.Errorf("the confirmed checkout's trace has no %s span", n)
		}
	}

	// flotilla trace show, the real CLI: JSON with the same structure, and
	// the waterfall naming every service.
	run := func(args ...string) string {
		cmd := exec.Command(cli, append([]string{"trace", "show", "--api", info.API}, args...)...)
		cmd.Env = append(os.Environ(), "FLOTILLA_TOKEN="+tok.(string))
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("flotilla trace show %v: %v\n%s", args, err, errb.String())
		}
		return out.String()
	}
	var shown controlplane.TraceResponse
	if err := json.Unmarshal([]byte(run(confirmed, "-o", "json")), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.Trace == nil || len(shown.Trace.Spans) < len(tr.Spans) {
		t.Fatalf("flotilla trace show -o json: %+v; want the trace's %d spans", shown.Trace, len(tr.Spans))
	}
	for _, s := range shown.Trace.Spans {
		if want, ok := byID[s.SpanID]; ok && want.ParentSpanID != s.ParentSpanID {
			t.Errorf("flotilla trace show: %s/%s's parent %s, want %s", s.Service, s.Name, s.ParentSpanID, want.ParentSpanID)
		}
	}
	text := run(confirmed)
	t.Logf("flotilla trace show %s:\n%s", confirmed, text)
	for _, svc := range want {
		if !strings.Contains(text, svc) {
			t.Errorf("flotilla trace show's waterfall does not name %s", svc)
		}
	}
	// The waterfall indents a child under its parent: the saga's
	// process_payment comes after (and deeper than) the gateway's root.
	if i, j := strings.Index(text, controlplane.DataplaneService), strings.Index(text, "process_payment"); i < 0 || j < i {
		t.Errorf("the waterfall does not show process_payment under the gateway's span")
	}

	// The cancelled checkout: the declined charge an error, and the
	// compensation.
	var failed *store.Trace
	deadline = time.Now().Add(30 * time.Second)
	for {
		r, err := api.Trace(t.Context(), cancelled)
		if err == nil && spanNames(r.Trace)["compensate.release_stock"] {
			failed = r.Trace
			break
		}
		if time.Now().After(deadline) {
			var names map[string]bool
			if err == nil {
				names = spanNames(r.Trace)
			}
			t.Fatalf("the cancelled checkout's trace %s: %v; no compensate.release_stock span in %v", cancelled, err, names)
		}
		time.Sleep(300 * time.Millisecond)
	}
	errored := false
	for _, s := range failed.Spans {
		if s.Error() && (s.Service == "payment-service" || s.Name == "process_payment" || strings.HasPrefix(s.Name, "compensate.")) {
			errored = true
		}
	}
	if !errored {
		t.Errorf("the cancelled checkout's trace has no span in error for the declined charge")
	}
	text = run(cancelled)
	t.Logf("flotilla trace show %s:\n%s", cancelled, text)
	if !strings.Contains(text, "compensate.release_stock") || !strings.Contains(strings.ToLower(text), "error") {
		t.Errorf("flotilla trace show of the cancelled checkout does not show the error and the compensation")
	}
	t.Logf("the whole test took %v", time.Since(started).Round(time.Millisecond))
}

func spanNames(tr *store.Trace) map[string]bool {
	out := map[string]bool{}
	if tr != nil {
		for _, s := range tr.Spans {
			out[s.Name] = true
		}
	}
	return out
}

func servicesOf(tr *store.Trace) []string {
	seen := map[string]bool{}
	var out []string
	if tr != nil {
		for _, s := range tr.Spans {
			if !seen[s.Service] {
				seen[s.Service] = true
				out = append(out, s.Service)
			}
		}
	}
	return out
}

func missingServices(tr *store.Trace, want []string) []string {
	has := map[string]bool{}
	for _, s := range servicesOf(tr) {
		has[s] = true
	}
	var out []string
	for _, w := range want {
		if !has[w] {
			out = append(out, w)
		}
	}
	return out
}

// login signs the demo user in through the gateway.
func login(t *testing.T, gateway string) string {
	t.Helper()
	body := `{"email":"` + controlplane.DemoUserEmail + `","password":"` + controlplane.DemoUserPassword + `"}`
	resp, err := http.Post(gateway+"/api/user/login", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var l struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil || l.Token == "" {
		t.Fatalf("demo login: %d %v", resp.StatusCode, err)
	}
	return l.Token
}

// send is a request with a JSON body (none when "") and a bearer token.
func send(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// `flotilla up --jaeger`: the platform runs the real Jaeger under its
// supervisor and every process exports to it; a request through the
// gateway is found in Jaeger with the gateway's and the service's spans,
// and stopping the platform stops Jaeger.
func TestPlatformExportsToJaeger(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the shop's services and Jaeger")
	}
	bin := testenv.Binary(t, testenv.Jaeger)
	manifest, _ := shopManifest(t, nil)
	cfg := platformConfig(manifest, t.TempDir())
	cfg.Demo = false
	cfg.Tracing.Env = map[string]string{"OTEL_BSP_SCHEDULE_DELAY": "200"}
	cfg.Tracing.Jaeger = bin
	cfg.Tracing.JaegerAddrs = jaeger.Addrs{OTLPHTTP: freeAddr(t), QueryHTTP: freeAddr(t), QueryGRPC: freeAddr(t), Health: freeAddr(t)}
	info, stop := runPlatform(t, cfg)
	if info.Jaeger != "http://"+cfg.Tracing.JaegerAddrs.QueryHTTP {
		t.Fatalf("the platform's Jaeger %q, want its query URL", info.Jaeger)
	}
	resp, err := http.Get(info.Gateway + "/api/product/products")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	id := resp.Header.Get("X-Trace-Id")
	if len(id) != 32 {
		t.Fatalf("the gateway's answer names trace %q", id)
	}
	c := jaeger.NewClient(info.Jaeger)
	deadline := time.Now().Add(30 * time.Second)
	for {
		tr, err := c.Get(t.Context(), id)
		if err == nil && len(missingServices(tr, []string{controlplane.DataplaneService, "product-service"})) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s in Jaeger: %v, services %v; want the gateway's and product-service's spans", id, err, servicesOf(tr))
		}
		time.Sleep(300 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Logf("stop: %v", err)
	}
	if _, err := c.Services(t.Context()); err == nil {
		t.Errorf("Jaeger still answers after the platform stopped")
	}
}
