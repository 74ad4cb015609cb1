package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"

	"github.com/flotilla-ci/flotilla/contract"
)

var updateContract = flag.Bool("update-contract", false, "rewrite the contract command's golden files")

func contractGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "contract", name)
	if *updateContract {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update-contract)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Fatalf("%s differs (-want +got):\n%s", path, diff)
	}
}

// orderProvider is a real HTTP provider with a state-change endpoint.
func contractOrderProvider(t *testing.T, broken bool) (*httptest.Server, *[]string) {
	var mu sync.Mutex
	var states []string
	orders := map[string]bool{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /_pact/state", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			State  string         `json:"state"`
			Params map[string]any `json:"params"`
			Action string         `json:"action"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		states = append(states, body.Action+": "+body.State)
		if body.State == "an order exists" {
			orders[fmt.Sprint(body.Params["id"])] = body.Action == "setup"
		}
	})
	mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ok := orders[r.PathValue("id")]
		mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		price := "12.25"
		if broken {
			price = `"12.25"`
		}
		fmt.Fprintf(w, `{"id":%s,"items":[{"sku":"B2","price":%s},{"sku":"C3","price":1.5}],"total":13.75,"currency":"EUR"}`, r.PathValue("id"), price)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &states
}

func TestContractVerify(t *testing.T) {
	good, states := contractOrderProvider(t, false)
	code, out, errOut := runCLI(t, "contract", "verify", "--pact", "testdata/contract/pacts", "--provider-name", "order",
		"--provider-base-url", good.URL, "--state-change-url", good.URL+"/_pact/state")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	contractGolden(t, "verify-ok.txt", out)
	if diff := cmp.Diff([]string{"setup: an order exists", "teardown: an order exists"}, *states); diff != "" {
		t.Fatalf("state calls (-want +got):\n%s", diff)
	}

	// pact verifier's --hostname/--port name the same provider
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(good.URL, "http://"))
	code, _, errOut = runCLI(t, "contract", "verify", "--pact", "testdata/contract/pacts", "--hostname", host, "--port", port,
		"--state-change-url", good.URL+"/_pact/state")
	if code != 0 {
		t.Fatalf("--hostname/--port: exit %d %s", code, errOut)
	}

	// filters as pact verifier's: no state, by consumer
	code, out, _ = runCLI(t, "contract", "verify", "--pact", "testdata/contract/pacts", "--provider-base-url", good.URL, "--filter-no-state")
	if code != 0 || !strings.Contains(out, "1 interactions, 0 failed") || !strings.Contains(out, "a request for a missing order ... OK") {
		t.Fatalf("--filter-no-state: exit %d\n%s", code, out)
	}
	code, _, errOut = runCLI(t, "contract", "verify", "--pact", "testdata/contract/pacts", "--provider-base-url", good.URL, "-c", "mobile")
	if code != 2 || !strings.Contains(errOut, "no pacts found") {
		t.Fatalf("--filter-consumer mobile: exit %d %s", code, errOut)
	}

	bad, _ := contractOrderProvider(t, true)
	code, out, _ = runCLI(t, "contract", "verify", "--pact", "testdata/contract/pacts/web-order.json",
		"--provider-base-url", bad.URL, "--state-change-url", bad.URL+"/_pact/state")
	if code != 1 {
		t.Fatalf("broken provider: exit %d\n%s", code, out)
	}
	contractGolden(t, "verify-mismatch.txt", out)

	code, out, _ = runCLI(t, "contract", "verify", "--pact", "testdata/contract/pacts", "-o", "json",
		"--provider-base-url", bad.URL, "--state-change-url", bad.URL+"/_pact/state", "--filter-description", "^a request for an order$")
	var rep struct {
		Pacts []struct {
			Interactions []struct {
				Description string `json:"description"`
				Mismatches  []struct {
					Attribute, Identifier, Expected, Actual string
				} `json:"mismatches"`
			} `json:"interactions"`
		} `json:"pacts"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 {
		t.Fatalf("json: exit %d, %v\n%s", code, err, out)
	}
	if len(rep.Pacts) != 1 || len(rep.Pacts[0].Interactions) != 1 || rep.Pacts[0].Interactions[0].Mismatches[0].Identifier != "$.items[0].price" {
		t.Fatalf("json report: %s", out)
	}

	code, out, _ = runCLI(t, "contract", "verify", "--pact", "testdata/contract/pacts", "-o", "junit",
		"--provider-base-url", bad.URL, "--state-change-url", bad.URL+"/_pact/state")
	if code != 1 || !strings.Contains(out, `<testsuite name="web -&gt; order" tests="2" failures="1">`) ||
		!strings.Contains(out, `<failure message="body $.items[0].price: expected a decimal number (matcher decimal), got &#34;12.25&#34;">`) {
		t.Fatalf("junit: exit %d\n%s", code, out)
	}
}

func TestContractVerifyBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no pacts", []string{"contract", "verify", "--provider-base-url", "http://127.0.0.1:1"}, "no pacts: give --pact"},
		{"bad pact", []string{"contract", "verify", "--pact", "testdata/contract/bad/broken.json", "--provider-base-url", "http://127.0.0.1:1"},
			`testdata/contract/bad/broken.json: interactions[0] ("x").response.matchingRules.body["$.a"].matchers[0].regex: invalid regex "(["`},
		{"missing file", []string{"contract", "verify", "--pact", "testdata/contract/nope.json"}, "testdata/contract/nope.json: no such file"},
		// An invalid pact is refused, never verified: a status that is a
		// string, or none at all, once passed against any provider.
		{"status as a string", []string{"contract", "verify", "--pact", "testdata/contract/invalid/status-string.json", "--provider-base-url", "http://127.0.0.1:1"},
			`testdata/contract/invalid/status-string.json: interactions[0] ("a greeting").response.status: must be an integer HTTP status such as 200, not the string "200"`},
		{"status missing", []string{"contract", "verify", "--pact", "testdata/contract/invalid/status-missing.json", "--provider-base-url", "http://127.0.0.1:1"},
			`testdata/contract/invalid/status-missing.json: interactions[0] ("a greeting").response.status: missing: every HTTP response has an integer status such as 200`},
		{"coverage of a missing folder", []string{"contract", "coverage", "--pacts", "/nonexistent"}, "--pacts /nonexistent: stat /nonexistent: no such file or directory"},
		{"bad output", []string{"contract", "verify", "--pact", "testdata/contract/pacts", "-o", "xml"}, `-o "xml": want text, json or junit`},
		{"bad header", []string{"contract", "verify", "--pact", "testdata/contract/pacts", "-H", "novalue"}, `--header "novalue": want KEY=VALUE`},
		{"bad filter", []string{"contract", "verify", "--pact", "testdata/contract/pacts", "--filter-state", "(["}, `--filter-state: error parsing regexp`},
		{"no pacts for provider", []string{"contract", "verify", "--pact", "testdata/contract/pacts", "--provider-name", "payment"}, `no pacts found for provider "payment"`},
		{"bad base url", []string{"contract", "verify", "--pact", "testdata/contract/pacts", "--provider-base-url", "localhost:8080"}, `want an http:// or https:// URL`},
		{"bad transport", []string{"contract", "verify", "--pact", "testdata/contract/pacts", "--port", "8080", "--transport", "grpc"}, `--transport "grpc": want http or https`},
		{"stub without pacts", []string{"contract", "stub"}, "no pacts"},
		{"stub with a bad pact", []string{"contract", "stub", "--pact", "testdata/contract/bad"}, `testdata/contract/bad/broken.json: interactions[0] ("x")`},
		{"stub bad state regex", []string{"contract", "stub", "--pact", "testdata/contract/pacts", "-s", "(["}, `--provider-state: error parsing regexp`},
		{"coverage bad output", []string{"contract", "coverage", "-o", "yaml"}, `-o "yaml": want text or json`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tc.args...)
			if code != 2 || !strings.Contains(errOut, tc.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Fatalf("exit %d, stderr %q, stdout %q; want exit 2 and one line with %q", code, errOut, out, tc.want)
			}
		})
	}
}

func contractFreePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func TestContractStub(t *testing.T) {
	port := contractFreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"contract", "stub", "--pact", "testdata/contract/pacts", "--port", port}, strings.NewReader(""), io.Discard, io.Discard)
	}()
	base := "http://127.0.0.1:" + port
	var resp *http.Response
	var err error
	for range 100 {
		req, _ := http.NewRequest("GET", base+"/orders/7", nil)
		req.Header.Set("Accept", "application/json")
		if resp, err = http.DefaultClient.Do(req); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != `{"id":7,"items":[{"price":9.5,"sku":"A1"}],"total":9.5}` {
		t.Fatalf("stub: %d %s", resp.StatusCode, b)
	}
	resp, err = http.Get(base + "/orders/8")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(string(b), `"nearest"`) {
		t.Fatalf("non-matching: %d %s", resp.StatusCode, b)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("stub exit %d", code)
	}
}

func TestContractCoverage(t *testing.T) {
	dir := t.TempDir()
	manifest := filepath.Join(dir, "flotilla.yaml")
	if err := os.WriteFile(manifest, []byte(`services:
  web:
    paths: [web]
    depends_on: [order, user]
  order:
    paths: [order]
    depends_on: [user]
    publishes: [OrderCreated]
  user:
    paths: [user]
  mailer:
    paths: [mailer]
    subscribes: [OrderCreated]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	pacts := filepath.Join(dir, "pacts")
	if err := os.MkdirAll(pacts, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(pacts, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	httpPact := func(c, p string) string {
		return `{"consumer":{"name":"` + c + `"},"provider":{"name":"` + p + `"},"metadata":{"pactSpecification":{"version":"4.0"}},
			"interactions":[{"type":"Synchronous/HTTP","description":"d","request":{"method":"GET","path":"/"},"response":{"status":200}}]}`
	}
	write("web-order.json", httpPact("web", "order"))
	write("user-web.json", httpPact("user", "web")) // backwards: not declared
	code, out, errOut := runCLI(t, "-f", manifest, "contract", "coverage")
	if code != 1 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	out = strings.ReplaceAll(out, dir, "DIR")
	contractGolden(t, "coverage-missing.txt", out)

	write("web-user.json", httpPact("web", "user"))
	write("order-user.json", httpPact("order", "user"))
	write("mailer-order.json", `{"consumer":{"name":"mailer"},"provider":{"name":"order"},"metadata":{"pactSpecification":{"version":"4.0"}},
		"interactions":[{"type":"Asynchronous/Messages","description":"an OrderCreated event","contents":{"contentType":"application/json","content":{"id":1}}}]}`)
	if err := os.Remove(filepath.Join(pacts, "user-web.json")); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, "-f", manifest, "contract", "coverage")
	if code != 0 {
		t.Fatalf("full coverage: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "contract coverage: 4 of 4 edges (100%), 0 undeclared pact(s)") {
		t.Fatalf("full coverage:\n%s", out)
	}
	code, out, _ = runCLI(t, "-f", manifest, "contract", "coverage", "-o", "json")
	var rep struct {
		Edges, Covered int
		Rows           []struct{ Kind, Consumer, Provider, Event, Status string }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || rep.Edges != 4 || rep.Covered != 4 || len(rep.Rows) != 4 {
		t.Fatalf("json: exit %d %v\n%s", code, err, out)
	}
	// a message pact that names no subscribed event is undeclared
	write("mailer-order.json", `{"consumer":{"name":"mailer"},"provider":{"name":"order"},"metadata":{"pactSpecification":{"version":"4.0"}},
		"interactions":[{"type":"Asynchronous/Messages","description":"an OrderCreatedV2 event","contents":{"contentType":"application/json","content":{"id":1}}}]}`)
	code, out, _ = runCLI(t, "-f", manifest, "contract", "coverage")
	if code != 1 || !strings.Contains(out, "3 of 4 edges (75%), 1 undeclared pact(s)") {
		t.Fatalf("renamed event: exit %d\n%s", code, out)
	}
}

// contractPendingHook is a verifyHook as the broker's is: a flag, a source of
// pending pacts with notices, and a publisher that records the results.
type contractPendingHook struct {
	enabled   bool
	published []contract.PactResult
}

func (h *contractPendingHook) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&h.enabled, "test-broker", false, "")
}

func (h *contractPendingHook) Prepare(ctx context.Context) ([]contract.Source, contract.ResultPublisher, error) {
	if !h.enabled {
		return nil, nil, nil
	}
	return []contract.Source{contractPendingSource{}}, h, nil
}

func (h *contractPendingHook) Publish(_ context.Context, _ contract.LoadedPact, r contract.PactResult) error {
	h.published = append(h.published, r)
	return nil
}

type contractPendingSource struct{}

func (contractPendingSource) Pacts(ctx context.Context) ([]contract.LoadedPact, error) {
	lps, err := contract.FileSource{Paths: []string{"testdata/contract/pacts/web-order.json"}}.Pacts(ctx)
	for i := range lps {
		lps[i].Pending = true
		lps[i].Notices = []string{"This pact is pending: it has not been verified by order yet."}
	}
	return lps, err
}

// TestContractVerifyHook: a hook adds flags, sources and a publisher; a
// failing pending pact is reported and published but does not fail.
func TestContractVerifyHook(t *testing.T) {
	bad, _ := contractOrderProvider(t, true)
	h := &contractPendingHook{}
	var out, errb strings.Builder
	a := &app{stdout: &out, stderr: &errb}
	cmd := a.contractVerifyCmd(h)
	cmd.SetArgs([]string{"--test-broker", "--provider-base-url", bad.URL, "--state-change-url", bad.URL + "/_pact/state"})
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("a failing pending pact failed the run: %v\n%s", err, out.String())
	}
	for _, want := range []string{"(testdata/contract/pacts/web-order.json) [pending]", "notice: This pact is pending", "... FAILED", "2 interactions, 1 failed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if len(h.published) != 1 || h.published[0].OK() {
		t.Fatalf("published %+v", h.published)
	}
}

// TestContractVerifyPactURLExitCodes: a pact URL that is refused (4xx,
// bad credentials included) is input that cannot be used, 2; one whose
// server fails, is busy or cannot be reached is no answer, 3, which a
// pipeline may retry (the exit-code table in the README).
func TestContractVerifyPactURLExitCodes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var st int
		_, _ = fmt.Sscanf(strings.TrimPrefix(r.URL.Path, "/status/"), "%d", &st)
		http.Error(w, http.StatusText(st), st)
	}))
	defer srv.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	goneURL := gone.URL
	gone.Close()
	for _, tc := range []struct {
		url  string
		code int
		want string
	}{
		{srv.URL + "/status/401", 2, "status 401: give the broker's credentials"},
		{srv.URL + "/status/403", 2, "status 403: give the broker's credentials"},
		{srv.URL + "/status/404", 2, "status 404"},
		{srv.URL + "/status/500", 3, "status 500"},
		{srv.URL + "/status/503", 3, "status 503"},
		{srv.URL + "/status/429", 3, "status 429"},
		{goneURL + "/pact", 3, "connection refused"},
	} {
		t.Run(tc.url[strings.LastIndex(tc.url, "/")+1:], func(t *testing.T) {
			code, out, errOut := runCLI(t, "contract", "verify", "--pact", tc.url, "--provider-base-url", "http://127.0.0.1:1")
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q, stdout %q; want exit %d and %q", code, errOut, out, tc.code, tc.want)
			}
		})
	}
}

// TestContractStubPactURLExitCodes: the stub loads pact URLs the same way:
// refused is 2, a server that failed or is gone is 3.
func TestContractStubPactURLExitCodes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		http.Error(w, "down", http.StatusBadGateway)
	}))
	defer srv.Close()
	if code, _, errOut := runCLI(t, "contract", "stub", "--pact", srv.URL+"/missing", "--port", "0"); code != 2 || !strings.Contains(errOut, "status 404") {
		t.Fatalf("404: exit %d, %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "contract", "stub", "--pact", srv.URL+"/pact", "--port", "0"); code != 3 || !strings.Contains(errOut, "status 502") {
		t.Fatalf("502: exit %d, %s", code, errOut)
	}
}
