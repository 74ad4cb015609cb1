package contract

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// --- a tiny real consumer and provider -------------------------------------

type order struct {
	ID     int64       `json:"id"`
	Status string      `json:"status"`
	Total  float64     `json:"total"`
	Items  []orderItem `json:"items"`
	Placed string      `json:"placed"`
}

type orderItem struct {
	SKU   string  `json:"sku"`
	Qty   int     `json:"qty"`
	Price float64 `json:"price"`
}

// getOrder is the consumer's real client code.
func getOrder(baseURL string, id int64) (*order, error) {
	req, _ := http.NewRequest("GET", baseURL+"/orders/"+strconv.FormatInt(id, 10), nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode == http.StatusNotFound {
		return nil, errNotFound
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("get order: %d %s", resp.StatusCode, b)
	}
	var o order
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil {
		return nil, err
	}
	return &o, nil
}

var errNotFound = fmt.Errorf("not found")

// orderProvider is the provider's real handler over its store.
type orderProvider struct {
	mu     sync.Mutex
	orders map[int64]order
	broken bool // renames "total" to "amount", as the incident did
}

func (p *orderProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(strings.TrimPrefix(r.URL.Path, "/orders/"), 10, 64)
	if err != nil || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	p.mu.Lock()
	o, ok := p.orders[id]
	broken := p.broken
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if !ok {
		w.WriteHeader(404)
		_, _ = w.Write([]byte(`{"error":"no such order"}`))
		return
	}
	if broken {
		_ = json.NewEncoder(w).Encode(map[string]any{"id": o.ID, "status": o.Status, "amount": o.Total, "items": o.Items, "placed": o.Placed})
		return
	}
	_ = json.NewEncoder(w).Encode(o)
}

func (p *orderProvider) stateHandlers() map[string]StateHandler {
	return map[string]StateHandler{
		"an order exists": func(_ context.Context, setup bool, params map[string]any) (map[string]any, error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			if !setup {
				p.orders = map[int64]order{}
				return nil, nil
			}
			id := int64(len(p.orders) + 1000) // the provider picks its own ids
			p.orders[id] = order{ID: id, Status: "paid", Total: 21.5, Items: []orderItem{{SKU: "B22", Qty: 3, Price: 7.1666}}, Placed: "2026-11-26T10:00:00Z"}
			return map[string]any{"id": id}, nil
		},
		"no orders": func(context.Context, bool, map[string]any) (map[string]any, error) { return nil, nil },
	}
}

func orderPact(dir string, spec ...Spec) *ConsumerPact {
	cfg := Config{Consumer: "web", Provider: "order", Dir: dir}
	if len(spec) > 0 {
		cfg.Spec = spec[0]
	}
	p := NewConsumerPact(cfg)
	p.AddInteraction().
		Given("an order exists", Params{"id": 7}).
		UponReceiving("a request for an order").
		WithRequest(Req{Method: "GET", Path: FromProviderState("/orders/${id}", "/orders/7"), Headers: map[string]any{"Accept": "application/json"}}).
		WillRespondWith(Resp{
			Status:  200,
			Headers: map[string]any{"Content-Type": Regex("application/json", `application/json.*`)},
			Body: map[string]any{
				"id":     FromProviderState("${id}", Integer(7)),
				"status": Regex("paid", `pending|paid|shipped`),
				"total":  Decimal(19.5),
				"items":  EachLike(map[string]any{"sku": Like("A1"), "qty": Integer(2), "price": Decimal(9.75)}, 1, 0),
				"placed": Timestamp("yyyy-MM-dd'T'HH:mm:ssX", "2026-11-26T09:00:00Z"),
			},
		})
	p.AddInteraction().
		Given("no orders").
		UponReceiving("a request for a missing order").
		WithRequest(Req{Method: "GET", Path: "/orders/404", Headers: map[string]any{"Accept": "application/json"}}).
		WillRespondWith(Resp{Status: 404})
	return p
}

func runConsumer(t *testing.T, p *ConsumerPact) {
	p.Run(t, func(baseURL string) error {
		o, err := getOrder(baseURL, 7)
		if err != nil {
			return err
		}
		if o.ID != 7 || len(o.Items) != 1 || o.Items[0].SKU != "A1" {
			return fmt.Errorf("client decoded %+v", o)
		}
		if _, err := getOrder(baseURL, 404); !errors.Is(err, errNotFound) {
			return fmt.Errorf("missing order: %w", err)
		}
		return nil
	})
}

func TestConsumerWritesPactThatProviderVerifies(t *testing.T) {
	dir := t.TempDir()
	runConsumer(t, orderPact(dir))
	file := filepath.Join(dir, "web-order.json")
	pact, err := ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(pact.Interactions) != 2 || pact.Interactions[1].Response.Rules["body"]["$.items"] == nil {
		t.Fatalf("pact written: %+v", pact.Interactions)
	}
	first, _ := os.ReadFile(file)
	runConsumer(t, orderPact(dir)) // a second run changes nothing
	second, _ := os.ReadFile(file)
	if string(first) != string(second) {
		t.Fatalf("rerunning the consumer test churned the pact file")
	}

	prov := &orderProvider{orders: map[int64]order{}}
	srv := httptest.NewServer(prov)
	defer srv.Close()
	v := Verifier{Provider: "order", BaseURL: srv.URL, Sources: []Source{FileSource{Paths: []string{dir}}}, StateHandlers: prov.stateHandlers()}
	rep, err := v.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("verification of an honouring provider failed: %+v", rep)
	}
	Verify(t, v)

	prov.broken = true
	rep, err = v.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() {
		t.Fatal("a provider that renamed total passed")
	}
	var failed []string
	for _, in := range rep.Pacts[0].Interactions {
		if !in.OK() {
			failed = append(failed, FormatInteraction(rep.Pacts[0], in))
		}
	}
	want := []string{`web -> order: interaction "a request for an order" (given an order exists) failed:
    body $.total: expected a key "total" with 19.5, got no such key`}
	if diff := cmp.Diff(want, failed); diff != "" {
		t.Fatalf("report (-want +got):\n%s", diff)
	}
}

// recTB records failures and logs instead of failing the test.
type recTB struct {
	testing.TB
	errs []string
	logs []string
}

func (r *recTB) Helper() {}
func (r *recTB) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}
func (r *recTB) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recTB) Fatalf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestConsumerFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(string) error
		want []string
	}{
		{"unexercised interaction", func(base string) error {
			_, err := getOrder(base, 404)
			return err
		}, []string{`the test returned an error`, `interaction "a request for an order" was never exercised: expected GET /orders/7`}},
		{"unexpected request", func(base string) error {
			if _, err := getOrder(base, 7); err != nil {
				return err
			}
			if _, err := getOrder(base, 404); !errors.Is(err, errNotFound) {
				return err
			}
			resp, err := http.Post(base+"/orders", "application/json", strings.NewReader(`{}`))
			if err == nil {
				_ = resp.Body.Close()
			}
			return err
		}, []string{`unexpected request: POST /orders matched no interaction; nearest is`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rec := &recTB{TB: t}
			orderPact(dir).Run(rec, tc.run)
			if len(rec.errs) != 1 {
				t.Fatalf("want one failure report, got %q", rec.errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(rec.errs[0], w) {
					t.Errorf("report lacks %q:\n%s", w, rec.errs[0])
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "web-order.json")); err == nil {
				t.Error("a failing consumer test wrote the pact")
			}
		})
	}
}

type orderCreated struct {
	OrderID int64   `json:"orderId"`
	Total   float64 `json:"total"`
	Items   []struct {
		SKU string `json:"sku"`
	} `json:"items"`
}

func TestMessagePact(t *testing.T) {
	dir := t.TempDir()
	p := NewConsumerPact(Config{Consumer: "inventory", Provider: "order", Dir: dir})
	var handled []orderCreated
	handler := func(m Message) error {
		var ev orderCreated
		if err := m.JSON(&ev); err != nil {
			return err
		}
		if ev.OrderID == 0 || len(ev.Items) == 0 {
			return fmt.Errorf("incomplete event %+v", ev)
		}
		handled = append(handled, ev)
		return nil
	}
	p.ExpectsToReceive("an order-created event").
		Given("an order is placed").
		WithMetadata(map[string]any{"topic": "orders.created", "key": Regex("o-7", `o-\d+`)}).
		WithContent(map[string]any{
			"orderId": Generated(Integer(7), Generator{"type": "RandomInt", "min": 1, "max": 1000}),
			"total":   Decimal(19.5),
			"items":   EachLike(map[string]any{"sku": Like("A1")}, 1, 0),
		}).
		Verify(t, handler)
	if len(handled) != 1 || handled[0].OrderID < 1 || handled[0].OrderID > 1000 {
		t.Fatalf("handler saw %+v", handled)
	}
	pact, err := ReadFile(filepath.Join(dir, "inventory-order.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pact.Interactions) != 1 || pact.Interactions[0].Kind != AsyncMessage {
		t.Fatalf("pact: %+v", pact.Interactions)
	}

	produce := func(total any) MessageProducer {
		return func(context.Context, []ProviderState) (Message, error) {
			b, _ := json.Marshal(map[string]any{"orderId": 99, "total": total, "items": []any{map[string]any{"sku": "Z9"}}})
			return Message{Contents: Body{Present: true, ContentType: "application/json", Content: b}, Metadata: map[string]any{"topic": "orders.created", "key": "o-99"}}, nil
		}
	}
	v := Verifier{Provider: "order", Sources: []Source{FileSource{Paths: []string{dir}}}, MessageProducers: map[string]MessageProducer{"an order-created event": produce(12.25)}}
	Verify(t, v)
	v.MessageProducers["an order-created event"] = produce("12.25")
	rep, err := v.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mm := rep.Pacts[0].Interactions[0].Mismatches
	if rep.OK() || len(mm) != 1 || mm[0].Path != "$.total" || mm[0].Part != "content" {
		t.Fatalf("want one content $.total mismatch, got %+v", rep.Pacts[0].Interactions)
	}
}

func TestStateChangeURL(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	states := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			State  string         `json:"state"`
			Params map[string]any `json:"params"`
			Action string         `json:"action"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		calls = append(calls, body.Action+" "+body.State+" "+fmt.Sprint(body.Params["id"]))
		mu.Unlock()
		_, _ = w.Write([]byte(`{"id": 1234}`))
	}))
	defer states.Close()
	var gotPath string
	prov := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.Path
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":1234,"status":"paid","total":1.5,"items":[{"sku":"A","qty":1,"price":1.5}],"placed":"2026-11-26T10:00:00Z"}`))
	}))
	defer prov.Close()
	dir := t.TempDir()
	runConsumer(t, orderPact(dir))
	v := Verifier{BaseURL: prov.URL, StateChangeURL: states.URL, FilterDescription: "^a request for an order$", Sources: []Source{FileSource{Paths: []string{filepath.Join(dir, "web-order.json")}}}}
	rep, err := v.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Pacts[0].Interactions) != 1 {
		t.Fatalf("report %+v", rep)
	}
	if gotPath != "/orders/1234" {
		t.Fatalf("ProviderState generator: provider saw %s, want /orders/1234", gotPath)
	}
	if diff := cmp.Diff([]string{"setup an order exists 7", "teardown an order exists 7"}, calls); diff != "" {
		t.Fatalf("state calls (-want +got):\n%s", diff)
	}
}

func TestStub(t *testing.T) {
	p, err := ReadFile("testdata/v4.json")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewStub([]*Pact{p}))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/orders", "application/json", strings.NewReader(`{"sku":"A1","qty":5}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 201 || string(b) != `{"id":7}` {
		t.Fatalf("matching request: %d %s", resp.StatusCode, b)
	}
	resp, err = http.Post(srv.URL+"/orders", "application/json", strings.NewReader(`{"sku":"A1","qty":"five"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(string(b), `body $.qty: expected an integer (matcher integer), got \"five\"`) {
		t.Fatalf("non-matching request: %d %s", resp.StatusCode, b)
	}
}

func TestGenerators(t *testing.T) {
	ctx := GenContext{StateValues: map[string]any{"id": json.Number("42"), "name": "x"}, MockServerURL: "http://127.0.0.1:9999"}
	for _, tc := range []struct {
		gen   Generator
		check func(any) bool
	}{
		{Generator{"type": "RandomInt", "min": 5, "max": 7}, func(v any) bool { n, _ := strconv.Atoi(fmt.Sprint(v)); return n >= 5 && n <= 7 }},
		{Generator{"type": "RandomDecimal", "digits": 6}, func(v any) bool {
			s := fmt.Sprint(v)
			return len(s) == 7 && strings.Contains(s, ".") && isDecimal(v)
		}},
		{Generator{"type": "RandomHexadecimal", "digits": 9}, func(v any) bool { return regexpOK(`[0-9a-f]{9}`, v) }},
		{Generator{"type": "RandomString", "size": 12}, func(v any) bool { return regexpOK(`[a-zA-Z0-9]{12}`, v) }},
		{Generator{"type": "RandomBoolean"}, func(v any) bool { _, ok := v.(bool); return ok }},
		{Generator{"type": "Regex", "regex": `\d{3}-[A-Z]{2}(x|y)?`}, func(v any) bool { return regexpOK(`\d{3}-[A-Z]{2}(x|y)?`, v) }},
		{Generator{"type": "Uuid"}, func(v any) bool {
			return regexpOK(`[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`, v)
		}},
		{Generator{"type": "Uuid", "format": "simple"}, func(v any) bool { return regexpOK(`[0-9a-f]{32}`, v) }},
		{Generator{"type": "Uuid", "format": "URN"}, func(v any) bool { return regexpOK(`urn:uuid:[0-9a-f-]{36}`, v) }},
		{Generator{"type": "Date", "format": "yyyy-MM-dd"}, func(v any) bool { return v == "2026-11-26" }},
		{Generator{"type": "Date", "expression": "+ 1 day"}, func(v any) bool { return v == "2026-11-27" }},
		{Generator{"type": "Time", "format": "HH:mm"}, func(v any) bool { return v == "14:45" }},
		{Generator{"type": "DateTime", "format": "yyyy-MM-dd'T'HH:mm:ss", "expression": "- 2 hours"}, func(v any) bool { return v == "2026-11-26T12:45:00" }},
		{Generator{"type": "ProviderState", "expression": "${id}", "dataType": "INTEGER"}, func(v any) bool { return v == json.Number("42") }},
		{Generator{"type": "ProviderState", "expression": "/users/${name}/orders/${id}"}, func(v any) bool { return v == "/users/x/orders/42" }},
		{Generator{"type": "ProviderState", "expression": "${missing}"}, func(v any) bool { return v == "example" }},
		{Generator{"type": "MockServerURL", "regex": `.*(/orders/\d+)$`, "example": "http://localhost:1234/orders/7"}, func(v any) bool { return v == "http://127.0.0.1:9999/orders/7" }},
	} {
		t.Run(tc.gen.Type(), func(t *testing.T) {
			c := ctx
			c.Now = mustTime(t, "2026-11-26T14:45:00Z")
			for range 20 {
				v, err := tc.gen.Generate(c, "example")
				if err != nil {
					t.Fatal(err)
				}
				if !tc.check(v) {
					t.Fatalf("%v generated %#v", tc.gen, v)
				}
			}
		})
	}
}

func regexpOK(re string, v any) bool {
	r, err := compileRegex(re)
	s, ok := v.(string)
	return err == nil && ok && r.MatchString(s)
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// TestMockServerConcurrentRequests: a consumer calling concurrently is
// matched and counted without races or lost hits.
func TestMockServerConcurrentRequests(t *testing.T) {
	dir := t.TempDir()
	p := orderPact(dir)
	p.Run(t, func(base string) error {
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := int64(7)
				if i%2 == 1 {
					id = 404
				}
				if _, err := getOrder(base, id); err != nil && !errors.Is(err, errNotFound) {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	})
	if _, err := os.Stat(filepath.Join(dir, "web-order.json")); err != nil {
		t.Fatal(err)
	}
}

// JSONMessage in a producer: contents and metadata from Go values.
func TestJSONMessage(t *testing.T) {
	m, err := JSONMessage(map[string]any{"orderId": 7}, map[string]any{"topic": "orders"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Contents.ContentType != "application/json" || string(m.Contents.Content) != `{"orderId":7}` || m.Metadata["topic"] != "orders" {
		t.Fatalf("%+v", m)
	}
	if _, err := JSONMessage(func() {}, nil); err == nil {
		t.Fatal("a func is not JSON")
	}
}

// --- where pacts are written --------------------------------------------------

// moduleRoot is the directory holding go.mod above the test.
func moduleRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatal("no go.mod above the test")
		}
	}
}

// snapshot is every file of dir with its content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(b)
	}
	return files
}

func consumeOrder(base string) error {
	if _, err := getOrder(base, 7); err != nil {
		return err
	}
	if _, err := getOrder(base, 404); !errors.Is(err, errNotFound) {
		return fmt.Errorf("missing order: %w", err)
	}
	return nil
}

// A plain `go test` writes the pact into a temporary directory of the
// test: the repository's pacts/ is left as it was.
func TestRunWithoutDirLeavesTheCommittedPactsAlone(t *testing.T) {
	t.Setenv(EnvPactDir, "")
	committed := filepath.Join(moduleRoot(t), DefaultDir)
	before := snapshot(t, committed)
	if _, ok := before["web-order.json"]; !ok {
		t.Cleanup(func() { _ = os.Remove(filepath.Join(committed, "web-order.json")) })
	}
	rec := &recTB{TB: t}
	orderPact("").Run(rec, consumeOrder)
	if len(rec.errs) > 0 {
		t.Fatalf("consumer test failed: %q", rec.errs)
	}
	if diff := cmp.Diff(before, snapshot(t, committed)); diff != "" {
		t.Errorf("a consumer test run changed %s (-before +after):\n%s", committed, diff)
	}
	if len(rec.logs) != 1 || !strings.Contains(rec.logs[0], "merged into ") {
		t.Fatalf("want one log line naming the pact file, got %q", rec.logs)
	}
	path := rec.logs[0][strings.LastIndex(rec.logs[0], " ")+1:]
	if !strings.HasPrefix(path, os.TempDir()) {
		t.Errorf("pact written to %s, want a temporary directory", path)
	}
	if p, err := ReadFile(path); err != nil || len(p.Interactions) != 2 {
		t.Errorf("pact at %s: %v", path, err)
	}
}

// With FLOTILLA_PACT_DIR set, the tests of a run merge their interactions,
// HTTP and messages, into one consumer-provider file there.
func TestEnvPactDirCollectsTheTestsOfARun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	t.Setenv(EnvPactDir, dir)
	rec := &recTB{TB: t}
	orderPact("").Run(rec, consumeOrder)
	NewConsumerPact(Config{Consumer: "web", Provider: "order"}).
		ExpectsToReceive("an order-cancelled event").
		WithContent(map[string]any{"orderId": Integer(7)}).
		Verify(rec, func(Message) error { return nil })
	if len(rec.errs) > 0 {
		t.Fatalf("consumer tests failed: %q", rec.errs)
	}
	p, err := ReadFile(filepath.Join(dir, "web-order.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, in := range p.Interactions {
		got = append(got, in.Description)
	}
	want := []string{"an order-cancelled event", "a request for a missing order", "a request for an order"} // by kind, then description
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("interactions (-want +got):\n%s", diff)
	}
}

func TestEnvPactDirMustBeAbsolute(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv(EnvPactDir, "pacts")
	rec := &recTB{TB: t}
	orderPact("").Run(rec, consumeOrder)
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "FLOTILLA_PACT_DIR=pacts is a relative path") {
		t.Fatalf("want one error about the relative path, got %q", rec.errs)
	}
	if _, err := os.Stat("pacts"); err == nil {
		t.Error("a relative FLOTILLA_PACT_DIR was written to")
	}
}
