package contract

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/internal/testenv"
)

// Interoperability with the real Pact CLI (FLOTILLA_TEST_PACT): its
// verifier checks pacts written here, pacts written by its mock server are
// verified here, and its stub server answers like ours.

func pactCLI(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("interop with the pact CLI is slow; skipped with -short")
	}
	return testenv.Binary(t, testenv.Pact)
}

// startPact runs the pact CLI in its own process group, killed (with any
// child it spawns) when the test ends.
func startPact(t *testing.T, bin string, args ...string) *bytes.Buffer {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "PACT_DO_NOT_TRACK=true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &syncWriter{w: &out}, &syncWriter{w: &out}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pact %v: %v", args, err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	return &out
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// runPact runs the pact CLI to completion.
func runPact(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "PACT_DO_NOT_TRACK=true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitPort(t *testing.T, port int, out *bytes.Buffer) {
	t.Helper()
	for range 200 {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			_ = c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("pact did not listen on %d:\n%s", port, out)
}

// stateProvider wraps an orderProvider with pact's state-change endpoint.
func stateProvider(p *orderProvider) http.Handler {
	states := p.stateHandlers()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /_pact/state", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			State  string         `json:"state"`
			Params map[string]any `json:"params"`
			Action string         `json:"action"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h, ok := states[body.State]
		if !ok {
			http.Error(w, "unknown state "+body.State, http.StatusBadRequest)
			return
		}
		vals, err := h(r.Context(), body.Action != "teardown", body.Params)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if vals == nil {
			vals = map[string]any{}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(vals)
	})
	mux.Handle("/", p)
	return mux
}

func hostPort(t *testing.T, rawURL string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(strings.TrimPrefix(rawURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// TestInteropPactVerifierChecksOurPact: a pact written by the DSL passes
// the real verifier against an honouring provider, and fails naming the
// same interaction as our verifier when the provider breaks it.
func TestInteropPactVerifierChecksOurPact(t *testing.T) {
	bin := pactCLI(t)
	for _, spec := range []Spec{V4, V3} {
		t.Run("spec "+spec.String(), func(t *testing.T) { pactVerifierChecks(t, bin, spec) })
	}
}

func pactVerifierChecks(t *testing.T, bin string, spec Spec) {
	dir := t.TempDir()
	runConsumer(t, orderPact(dir, spec))
	file := filepath.Join(dir, "web-order.json")

	prov := &orderProvider{orders: map[int64]order{}}
	srv := httptest.NewServer(stateProvider(prov))
	defer srv.Close()
	host, port := hostPort(t, srv.URL)
	verify := func() (string, error) {
		return runPact(t, bin, "verifier", "-f", file, "--hostname", host, "--port", port, "--provider-name", "order",
			"--state-change-url", srv.URL+"/_pact/state", "--state-change-teardown", "--no-colour", "--retries", "0")
	}
	out, err := verify()
	if err != nil {
		t.Fatalf("pact verifier rejected an honouring provider: %v\n%s", err, out)
	}
	ours, err := (&Verifier{BaseURL: srv.URL, StateChangeURL: srv.URL + "/_pact/state", Sources: []Source{FileSource{Paths: []string{file}}}}).Run(context.Background())
	if err != nil || !ours.OK() {
		t.Fatalf("our verifier: %v %+v", err, ours)
	}

	prov.mu.Lock()
	prov.broken = true
	prov.mu.Unlock()
	out, err = verify()
	if err == nil {
		t.Fatalf("pact verifier passed a provider that renamed total:\n%s", out)
	}
	failed := regexp.MustCompile(`(?m)^\d+\) Verifying a pact between web and order Given an order exists - (.+)$`).FindAllStringSubmatch(out, -1)
	if len(failed) != 1 {
		t.Fatalf("pact verifier's failures:\n%s", out)
	}
	ours, err = (&Verifier{BaseURL: srv.URL, StateChangeURL: srv.URL + "/_pact/state", Sources: []Source{FileSource{Paths: []string{file}}}}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var oursFailed []string
	for _, in := range ours.Pacts[0].Interactions {
		if !in.OK() {
			oursFailed = append(oursFailed, in.Description)
		}
	}
	if len(oursFailed) != 1 || oursFailed[0] != strings.TrimSpace(failed[0][1]) {
		t.Fatalf("pact verifier failed %q, ours failed %q", failed[0][1], oursFailed)
	}
}

// TestInteropPactMockWritesWhatWeVerify: register an interaction with the
// real mock server's admin API, exercise it, let it write the pact, and
// verify that file with our verifier.
func TestInteropPactMockWritesWhatWeVerify(t *testing.T) {
	bin := pactCLI(t)
	outDir := t.TempDir()
	master := freePort(t)
	log := startPact(t, bin, "mock", "start", "-p", strconv.Itoa(master), "-o", outDir, "--no-file-log", "--no-term-log")
	waitPort(t, master, log)

	consumerPact := `{
	  "consumer": {"name": "web"}, "provider": {"name": "order"},
	  "metadata": {"pactSpecification": {"version": "4.0"}},
	  "interactions": [{
	    "type": "Synchronous/HTTP",
	    "description": "a request for an order",
	    "providerStates": [{"name": "an order exists"}],
	    "request": {"method": "GET", "path": "/orders/1000", "headers": {"Accept": ["application/json"]},
	      "matchingRules": {"path": {"combine": "AND", "matchers": [{"match": "regex", "regex": "/orders/\\d+"}]}}},
	    "response": {
	      "status": 200,
	      "headers": {"Content-Type": ["application/json"]},
	      "body": {"contentType": "application/json", "encoded": false,
	        "content": {"id": 1000, "status": "paid", "total": 19.5, "items": [{"sku": "A1", "qty": 2, "price": 9.75}], "placed": "2026-11-26T09:00:00Z"}},
	      "matchingRules": {"body": {
	        "$.id": {"combine": "AND", "matchers": [{"match": "integer"}]},
	        "$.status": {"combine": "AND", "matchers": [{"match": "regex", "regex": "pending|paid|shipped"}]},
	        "$.total": {"combine": "AND", "matchers": [{"match": "decimal"}]},
	        "$.items": {"combine": "AND", "matchers": [{"match": "type", "min": 1}]},
	        "$.placed": {"combine": "AND", "matchers": [{"match": "timestamp", "format": "yyyy-MM-dd'T'HH:mm:ssX"}]}
	      }}
	    }
	  }]
	}`
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/", master), "application/json", strings.NewReader(consumerPact))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	var created struct {
		MockServer struct {
			ID   string `json:"id"`
			Port int    `json:"port"`
		} `json:"mockServer"`
	}
	if err := json.Unmarshal(body, &created); err != nil || created.MockServer.Port == 0 {
		t.Fatalf("create mock server: %d %s (%v)\n%s", resp.StatusCode, body, err, log)
	}
	o, err := getOrder(fmt.Sprintf("http://127.0.0.1:%d", created.MockServer.Port), 1000)
	if err != nil || o.Total != 19.5 {
		t.Fatalf("exercise the mock: %+v %v", o, err)
	}
	if out, err := runPact(t, bin, "mock", "verify", "-m", strconv.Itoa(created.MockServer.Port), "-p", strconv.Itoa(master)); err != nil {
		t.Fatalf("pact mock verify: %v\n%s", err, out)
	}
	file := filepath.Join(outDir, "web-order.json")
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("the mock server wrote no pact: %v\n%s", err, log)
	}

	prov := &orderProvider{orders: map[int64]order{}}
	srv := httptest.NewServer(prov)
	defer srv.Close()
	v := Verifier{BaseURL: srv.URL, Sources: []Source{FileSource{Paths: []string{file}}}, StateHandlers: map[string]StateHandler{
		"an order exists": func(_ context.Context, setup bool, _ map[string]any) (map[string]any, error) {
			prov.mu.Lock()
			defer prov.mu.Unlock()
			if setup {
				prov.orders[1000] = order{ID: 1000, Status: "shipped", Total: 5.25, Items: []orderItem{{SKU: "Q", Qty: 1, Price: 5.25}}, Placed: "2026-11-25T08:00:00Z"}
			} else {
				delete(prov.orders, 1000)
			}
			return nil, nil
		},
	}}
	rep, err := v.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Pacts) != 1 || len(rep.Pacts[0].Interactions) != 1 {
		t.Fatalf("verifying the mock's pact: %+v", rep)
	}
	prov.broken = true
	rep, err = v.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() {
		t.Fatal("a broken provider passed the mock's pact")
	}
	if mm := rep.Pacts[0].Interactions[0].Mismatches; len(mm) != 1 || mm[0].Path != "$.total" {
		t.Fatalf("mismatches: %+v", mm)
	}
}

// TestInteropStubsAgree: pact stub and our stub serve the same pact and
// answer a set of requests alike.
func TestInteropStubsAgree(t *testing.T) {
	bin := pactCLI(t)
	file, err := filepath.Abs("testdata/stub.json")
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	log := startPact(t, bin, "stub", "-f", file, "-p", strconv.Itoa(port))
	waitPort(t, port, log)
	theirs := "http://127.0.0.1:" + strconv.Itoa(port)
	p, err := ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewStub([]*Pact{p}))
	defer srv.Close()

	var mu sync.Mutex
	served, refused := 0, 0
	t.Cleanup(func() {
		if !t.Failed() && (served < 6 || refused < 6) {
			t.Errorf("the request set is lopsided: %d served, %d refused", served, refused)
		}
	})
	type rq struct {
		method, path, body, ct string
		headers                map[string]string
	}
	for _, r := range []rq{
		{method: "GET", path: "/products/7", headers: map[string]string{"Accept": "application/json"}},
		{method: "GET", path: "/products/7"}, // headers are not required by either stub
		{method: "GET", path: "/products/123"},
		{method: "GET", path: "/products/99"},
		{method: "GET", path: "/search?q=lamp&page=3"},
		{method: "GET", path: "/search?page=2&q=lamp"},
		{method: "GET", path: "/search?q=lamp&page=x"},
		{method: "GET", path: "/search?q=lamp"},
		{method: "GET", path: "/search?q=lamp&page=1&debug=1"},
		{method: "POST", path: "/products", body: `{"name":"Chair","price":45.5}`, ct: "application/json"},
		{method: "POST", path: "/products", body: `{"name":"Chair","price":"45"}`, ct: "application/json"},
		{method: "POST", path: "/products", body: `{"name":"Chair"}`, ct: "application/json"},
		{method: "GET", path: "/health"},
		{method: "POST", path: "/health"},
		{method: "DELETE", path: "/products/7"},
		{method: "DELETE", path: "/products/8"},
		{method: "GET", path: "/nothing/here"},
		{method: "POST", path: "/orders", ct: "application/json", body: `{"customer":"c-77","lines":[{"sku":"B","qty":1},{"sku":"C","qty":5}],"note":"gift"}`},
		{method: "POST", path: "/orders", ct: "application/json", body: `{"customer":"c-77","lines":[{"sku":"B","qty":1.5}],"note":"gift"}`},
		{method: "POST", path: "/orders", ct: "application/json", body: `{"customer":"x-77","lines":[{"sku":"B","qty":1}],"note":"gift"}`},
		{method: "POST", path: "/orders", ct: "application/json", body: `{"customer":"c-1","lines":[],"note":"gift"}`},
		{method: "POST", path: "/orders", ct: "application/json", body: `{"customer":"c-1","lines":[{"sku":"A","qty":1},{"sku":"A","qty":1},{"sku":"A","qty":1},{"sku":"A","qty":1}],"note":"gift"}`},
		{method: "POST", path: "/orders", ct: "application/json", body: `{"customer":"c-1","lines":[{"sku":"A1","qty":2}],"note":"birthday"}`},
		{method: "POST", path: "/orders", ct: "application/json", body: `{"customer":"c-1","lines":[{"sku":"A1","qty":2}],"note":"gift","extra":true}`},
		{method: "POST", path: "/orders", ct: "application/json", body: `{"customer":"c-1","lines":[{"sku":"A1","qty":2}]}`},
		{method: "POST", path: "/orders", ct: "text/plain", body: `{"customer":"c-1","lines":[{"sku":"A1","qty":2}],"note":"gift"}`},
	} {
		t.Run(r.method+" "+r.path+" "+r.body, func(t *testing.T) {
			do := func(base string) (int, string, string) {
				var body io.Reader
				if r.body != "" {
					body = strings.NewReader(r.body)
				}
				req, _ := http.NewRequest(r.method, base+r.path, body)
				if r.ct != "" {
					req.Header.Set("Content-Type", r.ct)
				}
				for k, v := range r.headers {
					req.Header.Set(k, v)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = resp.Body.Close() }()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
			}
			ts, tct, tb := do(theirs)
			os, oct, ob := do(srv.URL)
			if ts != os {
				t.Fatalf("pact stub %d, ours %d (%s)", ts, os, ob)
			}
			mu.Lock()
			if ts >= 200 && ts < 300 {
				served++
			} else {
				refused++
			}
			mu.Unlock()
			if ts >= 200 && ts < 300 {
				if baseType(tct) != baseType(oct) || !sameBody(tb, ob) {
					t.Fatalf("pact stub %s %q, ours %s %q", tct, tb, oct, ob)
				}
			}
		})
	}
}

func sameBody(a, b string) bool {
	if a == b {
		return true
	}
	x, err1 := decodeJSON([]byte(a))
	y, err2 := decodeJSON([]byte(b))
	return err1 == nil && err2 == nil && jsonEqual(x, y)
}

// TestInteropPactVerifierChecksOurMessagePact: a message pact written by
// the DSL is verified by the real verifier, which asks the provider for
// the message (POST {description, providerStates} to --base-path).
func TestInteropPactVerifierChecksOurMessagePact(t *testing.T) {
	bin := pactCLI(t)
	dir := t.TempDir()
	p := NewConsumerPact(Config{Consumer: "mailer", Provider: "order", Dir: dir})
	p.ExpectsToReceive("an OrderCreated event").
		WithMetadata(map[string]any{"topic": "OrderCreated"}).
		WithContent(map[string]any{"orderId": Integer(7), "total": Decimal(19.5), "items": EachLike(map[string]any{"sku": Like("A1")}, 1, 0)}).
		Verify(t, func(m Message) error {
			var ev orderCreated
			return m.JSON(&ev)
		})
	var mu sync.Mutex
	total := `19.25`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/messages" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		var req struct {
			Description string `json:"description"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		if req.Description != "an OrderCreated event" {
			http.Error(w, "unknown message "+req.Description, http.StatusNotFound)
			return
		}
		mu.Lock()
		tot := total
		mu.Unlock()
		md, _ := json.Marshal(map[string]any{"topic": "OrderCreated"})
		w.Header().Set("Pact-Message-Metadata", base64.StdEncoding.EncodeToString(md))
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"orderId":42,"total":%s,"items":[{"sku":"Z9"},{"sku":"Q1"}]}`, tot)
	}))
	defer srv.Close()
	host, port := hostPort(t, srv.URL)
	verify := func() (string, error) {
		return runPact(t, bin, "verifier", "-f", filepath.Join(dir, "mailer-order.json"), "--hostname", host, "--port", port,
			"--base-path", "/messages", "--no-colour", "--retries", "0")
	}
	if out, err := verify(); err != nil {
		t.Fatalf("pact verifier rejected an honouring producer: %v\n%s", err, out)
	}
	mu.Lock()
	total = `"19.25"`
	mu.Unlock()
	out, err := verify()
	if err == nil || !strings.Contains(out, "an OrderCreated event") {
		t.Fatalf("pact verifier passed a producer sending total as a string: %v\n%s", err, out)
	}
	ours, err := (&Verifier{BaseURL: srv.URL + "/messages", Sources: []Source{FileSource{Paths: []string{dir}}}}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if mm := ours.Pacts[0].Interactions[0].Mismatches; len(mm) != 1 || mm[0].Path != "$.total" {
		t.Fatalf("our verifier: %+v", ours.Pacts[0].Interactions)
	}
}
