package store_test

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/tracing/store"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func tid(n int) string { return fmt.Sprintf("%032x", n) }
func sid(n int) string { return fmt.Sprintf("%016x", n) }

// sp is a span of trace tr: id, parent (0: none), service, name, kind,
// start and end in ms after t0.
func sp(tr, id, parent int, service, name, kind string, start, end int) store.Span {
	s := store.Span{TraceID: tid(tr), SpanID: sid(id), Service: service, Name: name, Kind: kind,
		Start: t0.Add(ms(start)), End: t0.Add(ms(end)), Status: store.StatusUnset}
	if parent != 0 {
		s.ParentSpanID = sid(parent)
	}
	return s
}

func TestStoreEvictsTheOldestTraces(t *testing.T) {
	st, err := store.New(store.Config{MaxSpans: 10, MaxBytes: 1 << 30, Limits: store.DefaultLimits()})
	if err != nil {
		t.Fatal(err)
	}
	for tr := 1; tr <= 5; tr++ {
		st.Add([]store.Span{
			sp(tr, tr*10+1, 0, "gateway", "GET /", store.KindServer, tr*100, tr*100+50),
			sp(tr, tr*10+2, tr*10+1, "cart-service", "GET /cart", store.KindServer, tr*100+1, tr*100+40),
			sp(tr, tr*10+3, tr*10+2, "cart-service", "SELECT", store.KindClient, tr*100+2, tr*100+30),
		})
	}
	s := st.Stats()
	if s.Spans > 10 || s.Traces != 3 || s.Evicted != 2 {
		t.Fatalf("stats %+v: want at most 10 spans, the 3 newest traces, 2 evicted", s)
	}
	for _, tr := range []int{1, 2} {
		_, err := st.Get(tid(tr))
		if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "evicted") {
			t.Errorf("trace %d: %v, want not found (evicted)", tr, err)
		}
	}
	for _, tr := range []int{3, 4, 5} {
		if got, err := st.Get(tid(tr)); err != nil || len(got.Spans) != 3 {
			t.Errorf("trace %d: %v %v", tr, got, err)
		}
	}
	// A bound by bytes evicts the same way.
	one := sp(1, 1, 0, "gateway", "GET /", store.KindServer, 0, 1)
	size := store.SpanSize(&one)
	st, _ = store.New(store.Config{MaxSpans: 1000, MaxBytes: 4 * size, Limits: store.DefaultLimits()})
	for tr := 1; tr <= 6; tr++ {
		st.Add([]store.Span{sp(tr, 1, 0, "gateway", "GET /", store.KindServer, tr, tr+1)})
	}
	if s := st.Stats(); s.Traces != 4 || s.Bytes > 4*size {
		t.Errorf("bounded by bytes: %+v (span size %d)", s, size)
	}
	// The same span twice is kept once.
	st.Add([]store.Span{sp(6, 1, 0, "gateway", "GET /", store.KindServer, 6, 7)})
	if s := st.Stats(); s.Spans != 4 || s.Dropped != 1 {
		t.Errorf("a duplicate: %+v", s)
	}
}

func TestStoreGetUnknownAndBadIDs(t *testing.T) {
	st, _ := store.New(store.DefaultConfig())
	_, err := st.Get(tid(42))
	if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), tid(42)) {
		t.Errorf("unknown id: %v", err)
	}
	_, err = st.Get("not-an-id")
	if err == nil || errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "32 hex digits") {
		t.Errorf("bad id: %v", err)
	}
}

func TestStoreList(t *testing.T) {
	st, _ := store.New(store.DefaultConfig())
	fast := []store.Span{sp(1, 1, 0, "gateway", "GET /api/product/products", store.KindServer, 0, 10),
		sp(1, 2, 1, "product-service", "GET /products", store.KindServer, 1, 9)}
	fast[1].Version = "p1"
	slow := []store.Span{sp(2, 1, 0, "gateway", "POST /api/order/orders", store.KindServer, 1000, 1900),
		sp(2, 2, 1, "order-service", "POST /orders", store.KindServer, 1001, 1890),
		sp(2, 3, 2, "payment-service", "POST /payments", store.KindServer, 1010, 1800)}
	slow[2].Version, slow[2].Status = "canary2", store.StatusError
	st.Add(fast)
	st.Add(slow)
	now := t0.Add(time.Hour)
	ids := func(q string) []string {
		v, _ := url.ParseQuery(q)
		query, err := store.ParseQuery(v, now)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		var out []string
		for _, s := range st.List(query) {
			out = append(out, s.TraceID[31:])
		}
		return out
	}
	for q, want := range map[string][]string{
		"":                                   {"2", "1"},
		"service=payment-service":            {"2"},
		"service=product-service&version=p1": {"1"},
		"service=product-service&version=canary2": nil,
		"version=canary2&errors=true":             {"2"},
		"errors=true":                             {"2"},
		"min_duration=500ms":                      {"2"},
		"min_duration=1s":                         nil,
		"since=2026-12-07T12:00:00.5Z":            {"2"},
		"since=2h":                                {"2", "1"},
		"since=30m":                               nil,
		"limit=1":                                 {"2"},
	} {
		if diff := cmp.Diff(want, ids(q)); diff != "" {
			t.Errorf("%q (-want +got):\n%s", q, diff)
		}
	}
	got := st.List(store.Query{Service: "payment-service"})[0]
	want := store.Summary{TraceID: tid(2), Service: "gateway", Name: "POST /api/order/orders", Start: t0.Add(time.Second),
		Duration: ms(900), Extent: ms(900), Spans: 3, Errors: 1,
		Services: []string{"gateway", "order-service", "payment-service"}, Versions: []string{"payment-service@canary2"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"min_duration=fast", "errors=maybe", "since=yesterday", "limit=-1"} {
		v, _ := url.ParseQuery(bad)
		name, _, _ := strings.Cut(bad, "=")
		if _, err := store.ParseQuery(v, now); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// TestAnalyzeNamesTheSlowHop: a checkout whose payment is slow, with an
// event consumed by shipping after the response.
func TestAnalyzeNamesTheSlowHop(t *testing.T) {
	spans := []store.Span{
		sp(1, 1, 0, "gateway", "POST /api/order/orders", store.KindServer, 0, 100),
		sp(1, 2, 1, "order-service", "POST /orders", store.KindServer, 5, 95),
		sp(1, 3, 2, "cart-service", "GET /cart", store.KindServer, 10, 20),
		sp(1, 4, 2, "inventory-service", "POST /reserve", store.KindServer, 20, 30),
		sp(1, 5, 2, "payment-service", "POST /payments", store.KindServer, 30, 90),
		sp(1, 6, 2, "order-service", "order.created publish", store.KindProducer, 91, 92),
		// A consumer in a trace of its own, linked to the producer.
		sp(2, 7, 0, "shipping-service", "order.created process", store.KindConsumer, 100, 150),
		// A consumer that is the producer's child.
		sp(1, 8, 6, "notification-service", "order.created process", store.KindConsumer, 101, 120),
		// Parallel to cart: not on the critical path.
		sp(1, 9, 2, "user-service", "GET /users/me", store.KindServer, 11, 15),
	}
	spans[6].Links = []store.Link{{TraceID: tid(1), SpanID: sid(6)}}
	spans[4].Status = store.StatusError
	a := store.Analyze(&store.Trace{TraceID: tid(1), Spans: spans})
	if len(a.Roots) != 1 || a.Duration != ms(100) || a.Extent != ms(150) || a.Errors != 1 {
		t.Fatalf("roots %d duration %v extent %v errors %d", len(a.Roots), a.Duration, a.Extent, a.Errors)
	}
	var tree []string
	var walk func(n *store.Node, depth int)
	walk = func(n *store.Node, depth int) {
		mark := ""
		if n.Async {
			mark = " async"
		}
		if n.Linked {
			mark += " linked"
		}
		tree = append(tree, fmt.Sprintf("%s%s %s%s", strings.Repeat("  ", depth), n.Span.Service, n.Span.Name, mark))
		for _, c := range n.Children {
			walk(c, depth+1)
		}
	}
	walk(a.Roots[0], 0)
	wantTree := []string{
		"gateway POST /api/order/orders",
		"  order-service POST /orders",
		"    cart-service GET /cart",
		"    user-service GET /users/me",
		"    inventory-service POST /reserve",
		"    payment-service POST /payments",
		"    order-service order.created publish",
		"      shipping-service order.created process async linked",
		"      notification-service order.created process async",
	}
	if diff := cmp.Diff(wantTree, tree); diff != "" {
		t.Errorf("tree (-want +got):\n%s", diff)
	}
	var path []string
	for _, s := range a.CriticalPath {
		path = append(path, fmt.Sprintf("%s %v-%v", s.Service, s.Start.Milliseconds(), s.End.Milliseconds()))
	}
	wantPath := []string{
		"gateway 0-5", "order-service 5-10", "cart-service 10-20", "inventory-service 20-30",
		"payment-service 30-90", "order-service 90-91", "order-service 91-92", "order-service 92-95", "gateway 95-100",
	}
	if diff := cmp.Diff(wantPath, path); diff != "" {
		t.Errorf("critical path (-want +got):\n%s", diff)
	}
	if h := a.SlowestHop; h == nil || h.Service != "payment-service" || h.Critical != ms(60) || h.Share != 0.6 {
		t.Errorf("slowest hop: %+v", h)
	}
	self := map[string]time.Duration{}
	crit := map[string]time.Duration{}
	for _, s := range a.Services {
		self[s.Service], crit[s.Service] = s.Self, s.Critical
	}
	wantSelf := map[string]time.Duration{
		"gateway": ms(10), "order-service": ms(9) + ms(1), "cart-service": ms(10), "inventory-service": ms(10),
		"payment-service": ms(60), "user-service": ms(4), "shipping-service": ms(50), "notification-service": ms(19),
	}
	if diff := cmp.Diff(wantSelf, self); diff != "" {
		t.Errorf("self time (-want +got):\n%s", diff)
	}
	if a.Services[0].Service != "payment-service" || crit["order-service"] != ms(10) || crit["user-service"] != 0 {
		t.Errorf("critical time by service: %+v", a.Services)
	}
}

func TestAnalyzeOrphansAndCycles(t *testing.T) {
	spans := []store.Span{
		sp(1, 2, 99, "order-service", "POST /orders", store.KindServer, 5, 95), // parent not arrived
		sp(1, 3, 2, "cart-service", "GET /cart", store.KindServer, 10, 20),
		sp(1, 4, 5, "a", "x", store.KindInternal, 50, 51), // 4 and 5 parent each other
		sp(1, 5, 4, "b", "y", store.KindInternal, 50, 51),
	}
	a := store.Analyze(&store.Trace{TraceID: tid(1), Spans: spans})
	if len(a.Roots) == 0 || !a.Roots[0].Orphan || a.Roots[0].Span.SpanID != sid(2) || a.Duration != ms(90) {
		t.Fatalf("roots: %+v", a.Roots)
	}
	n := 0
	var walk func(*store.Node)
	walk = func(x *store.Node) {
		n++
		for _, c := range x.Children {
			walk(c)
		}
	}
	for _, r := range a.Roots {
		walk(r)
	}
	if n != 4 {
		t.Errorf("spans in the tree: %d, want all 4 (a parent cycle is broken, its spans shown)", n)
	}
	if got := store.Analyze(&store.Trace{TraceID: tid(1)}); got.Spans != 0 || got.Roots != nil {
		t.Errorf("empty trace: %+v", got)
	}
}
