package graph

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// write puts a manifest in a fresh folder and returns its path.
func write(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustGraph(t *testing.T, body string) *Graph {
	t.Helper()
	m, _, err := Load(write(t, FileName, body))
	if err != nil {
		t.Fatal(err)
	}
	return New(m)
}

func TestShopManifest(t *testing.T) {
	m, warns, err := Load("../flotilla.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %v", warns)
	}
	g := New(m)
	if p := g.Validate(); len(p) != 0 {
		t.Fatalf("problems: %v", p)
	}
	waves, err := g.Waves(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"analytics-service", "user-service"},
		{"notification-service", "payment-service", "product-service"},
		{"cart-service", "inventory-service", "search-service"},
		{"order-service"},
		{"shipping-service"},
	}
	if d := cmp.Diff(want, waves); d != "" {
		t.Errorf("waves (-want +got):\n%s", d)
	}
	if got := m.Owner("shop/cmd/order/main.go"); got == nil || got.Name != "order-service" {
		t.Errorf("owner of shop/cmd/order/main.go = %v", got)
	}
	if got := m.Owner("shop/kit/server.go"); got != nil {
		t.Errorf("shop/kit is owned by %s", got.Name)
	}
	if g, ok := m.IsShared("shop/kit/db/db.go"); !ok || g != "shop/kit/**" {
		t.Errorf("IsShared(shop/kit/db/db.go) = %q, %v", g, ok)
	}
	var subs []string
	for _, s := range m.Subscribers("OrderConfirmed") {
		subs = append(subs, s.Name)
	}
	if d := cmp.Diff([]string{"analytics-service", "notification-service", "search-service", "shipping-service"}, subs); d != "" {
		t.Errorf("OrderConfirmed subscribers (-want +got):\n%s", d)
	}
	if s := m.Service("order-service"); s == nil || s.Health != "/ready" {
		t.Errorf("order-service = %+v", s)
	}
	if got := m.Service("order-service").MainPackage(); got != "./shop/cmd/order" {
		t.Errorf("order-service's main package = %q", got)
	}
	if e := m.Environment("production"); e == nil || e.Target != "kubernetes" {
		t.Errorf("production = %+v", e)
	}
}

func TestScenarioGraph(t *testing.T) {
	m, warns, err := Load("../shop/testdata/scenario-dependency-graph.json")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range warns {
		got = append(got, w.Msg)
	}
	want := []string{
		"order-service lists notification-service as a consumer, but notification-service's dependencies omit order-service",
		"payment-service depends on user-service, but user-service's consumers list omits payment-service",
		"payment-service depends on order-service, but order-service's consumers list omits payment-service",
		"search-service depends on order-service, but order-service's consumers list omits search-service",
		"shipping-service depends on user-service, but user-service's consumers list omits shipping-service",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("warnings (-want +got):\n%s", d)
	}
	g := New(m)
	if cycles, complete := g.Cycles(); !complete {
		t.Errorf("cycles incomplete")
	} else if d := cmp.Diff([][]string{{"order-service", "payment-service", "order-service"}}, cycles); d != "" {
		t.Errorf("cycles (-want +got):\n%s", d)
	}
	if _, err := g.Waves(nil); !errors.Is(err, ErrCycle) || !strings.Contains(err.Error(), "order-service → payment-service → order-service") {
		t.Errorf("Waves error = %v", err)
	}
}

const chain = `
services:
  a: {path: a, depends_on: [b]}
  b: {path: b, depends_on: [c]}
  c: {path: c}
  d: {path: d, depends_on: [c]}
  e: {path: e}
`

func TestWaves(t *testing.T) {
	g := mustGraph(t, chain)
	tests := []struct {
		only    []string
		want    [][]string
		reverse [][]string
	}{
		{nil, [][]string{{"c", "e"}, {"b", "d"}, {"a"}}, [][]string{{"a"}, {"b", "d"}, {"c", "e"}}},
		// a→b→c with b not chosen: c still comes first.
		{[]string{"a", "c"}, [][]string{{"c"}, {"a"}}, [][]string{{"a"}, {"c"}}},
		{[]string{"a", "e"}, [][]string{{"a", "e"}}, [][]string{{"a", "e"}}},
		{[]string{"d", "a", "b"}, [][]string{{"b", "d"}, {"a"}}, [][]string{{"a"}, {"b", "d"}}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.only, ","), func(t *testing.T) {
			got, err := g.Waves(tt.only)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("waves (-want +got):\n%s", d)
			}
			rev, err := g.Reverse(tt.only)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.reverse, rev); d != "" {
				t.Errorf("reverse (-want +got):\n%s", d)
			}
		})
	}
	if _, err := g.Waves([]string{"zz"}); err == nil || !strings.Contains(err.Error(), `unknown service "zz"`) {
		t.Errorf("unknown --only: %v", err)
	}
}

// TestWavesLongestChain checks the defining property on random DAGs: every
// service sits one wave after its deepest dependency, and a subset keeps
// every dependency path between chosen services in order.
func TestWavesLongestChain(t *testing.T) {
	for seed := range 20 {
		m := randomDAG(200, 600, uint64(seed))
		g := New(m)
		waves, err := g.Waves(nil)
		if err != nil {
			t.Fatal(err)
		}
		at := map[string]int{}
		for k, w := range waves {
			for _, s := range w {
				at[s] = k
			}
		}
		for _, s := range m.Services {
			want := 0
			for _, d := range s.DependsOn {
				want = max(want, at[d]+1)
			}
			if at[s.Name] != want {
				t.Fatalf("seed %d: %s in wave %d, its deepest dependency says %d", seed, s.Name, at[s.Name], want)
			}
		}
		// Every third service: a chosen service must come after every chosen
		// service it reaches.
		var only []string
		for i, s := range m.Services {
			if i%3 == 0 {
				only = append(only, s.Name)
			}
		}
		sub, err := g.Waves(only)
		if err != nil {
			t.Fatal(err)
		}
		subAt := map[string]int{}
		for k, w := range sub {
			for _, s := range w {
				subAt[s] = k
			}
		}
		for _, a := range only {
			for _, b := range reachable(g, a) {
				if kb, ok := subAt[b]; ok && kb >= subAt[a] {
					t.Fatalf("seed %d: %s (wave %d) depends on %s (wave %d)", seed, a, subAt[a], b, kb)
				}
			}
		}
	}
}

func reachable(g *Graph, name string) []string {
	var out []string
	seen := map[string]bool{}
	var walk func(string)
	walk = func(n string) {
		for _, d := range g.DependsOn(n) {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
				walk(d)
			}
		}
	}
	walk(name)
	return out
}

// randomDAG makes a DAG whose edges point from a higher to a lower index.
func randomDAG(n, edges int, seed uint64) *Manifest {
	x := seed*2654435761 + 1
	next := func() uint64 { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return x }
	m := &Manifest{}
	for i := range n {
		m.Services = append(m.Services, &Service{Name: fmt.Sprintf("s%05d", i)})
	}
	for range edges {
		a, b := int(next()%uint64(n)), int(next()%uint64(n))
		if a == b {
			continue
		}
		if a < b {
			a, b = b, a
		}
		if !contains(m.Services[a].DependsOn, m.Services[b].Name) {
			m.Services[a].DependsOn = append(m.Services[a].DependsOn, m.Services[b].Name)
		}
	}
	m.index()
	return m
}

func TestValidate(t *testing.T) {
	g := mustGraph(t, `services:
  a:
    path: a
    depends_on: [a, bb, c]
  b:
    path: b
    depends_on: [c]
    subscribes: [Nope, Ev]
  c:
    path: c
    depends_on: [d]
    publishes: [Ev]
  d:
    path: d
    depends_on: [b]
`)
	var got []string
	for _, p := range g.Validate() {
		got = append(got, fmt.Sprintf("%d: %s", p.Line, p.Msg))
	}
	want := []string{
		"4: a depends on itself; remove it from its own depends_on",
		"4: a depends on bb, which is not a service in this manifest (did you mean b?)",
		"7: dependency cycle: b → c → d → b; break it (an event instead of a call, or merge the services)",
		"8: b subscribes to Nope, which no service publishes",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("problems (-want +got):\n%s", d)
	}
}

func TestCyclesSeveral(t *testing.T) {
	g := mustGraph(t, `services:
  x: {path: x, depends_on: [y]}
  y: {path: y, depends_on: [x, z]}
  z: {path: z}
  p: {path: p, depends_on: [q]}
  q: {path: q, depends_on: [r]}
  r: {path: r, depends_on: [p, q]}
`)
	want := [][]string{{"p", "q", "r", "p"}, {"q", "r", "q"}, {"x", "y", "x"}}
	got, complete := g.Cycles()
	if d := cmp.Diff(want, got); d != "" || !complete {
		t.Errorf("cycles (-want +got), complete %v:\n%s", complete, d)
	}
}

// TestCyclesOverlapping: cycles that share services are each reported at
// once, not one after the other is fixed.
func TestCyclesOverlapping(t *testing.T) {
	g := mustGraph(t, `services:
  a: {path: a, depends_on: [b, d]}
  b: {path: b, depends_on: [a, c]}
  c: {path: c, depends_on: [a, b]}
  d: {path: d, depends_on: [c]}
`)
	want := [][]string{
		{"a", "b", "a"},
		{"a", "b", "c", "a"},
		{"a", "d", "c", "a"},
		{"a", "d", "c", "b", "a"},
		{"b", "c", "b"},
	}
	got, complete := g.Cycles()
	if d := cmp.Diff(want, got); d != "" || !complete {
		t.Errorf("cycles (-want +got), complete %v:\n%s", complete, d)
	}
	var msgs []string
	for _, p := range g.Validate() {
		msgs = append(msgs, p.Msg)
	}
	for _, c := range want {
		if !slices.Contains(msgs, "dependency cycle: "+strings.Join(c, " → ")+"; break it (an event instead of a call, or merge the services)") {
			t.Errorf("Validate does not report %v: %q", c, msgs)
		}
	}
	_, err := g.Waves(nil)
	if !errors.Is(err, ErrCycle) || !strings.Contains(err.Error(), "a → b → a; a → b → c → a; ") {
		t.Errorf("Waves error = %v", err)
	}
}

// TestCyclesBounded: a complete graph on 9 services holds 125,673 elementary
// cycles; Cycles stops at MaxCycles, and Validate names ShownCycles of them
// and says there are more.
func TestCyclesBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("services:\n")
	names := "abcdefghi"
	for _, s := range names {
		var deps []string
		for _, d := range names {
			if d != s {
				deps = append(deps, string(d))
			}
		}
		fmt.Fprintf(&b, "  %c: {path: %c, depends_on: [%s]}\n", s, s, strings.Join(deps, ", "))
	}
	g := mustGraph(t, b.String())
	got, complete := g.Cycles()
	if complete || len(got) != MaxCycles {
		t.Fatalf("Cycles: %d cycles, complete %v; want %d, incomplete", len(got), complete, MaxCycles)
	}
	probs := g.Validate()
	if len(probs) != ShownCycles+1 {
		t.Fatalf("Validate: %d problems, want %d cycles and a count", len(probs), ShownCycles)
	}
	if last := probs[len(probs)-1].Msg; last != fmt.Sprintf("and more than %d more dependency cycles (too many to count)", MaxCycles-ShownCycles) {
		t.Errorf("last problem %q", last)
	}
	// A countable excess is counted: a triangle with every edge both ways
	// holds 5 cycles.
	small := mustGraph(t, "services:\n  a: {path: a, depends_on: [b, c]}\n  b: {path: b, depends_on: [a, c]}\n  c: {path: c, depends_on: [a, b]}\n")
	cycles, more := cyclesSummary(small.Cycles())
	if len(cycles) != 5 || more != "" {
		t.Errorf("triangle: %v %q", cycles, more)
	}
	shown, more := cyclesSummary(got[:ShownCycles+3], true)
	if len(shown) != ShownCycles || more != "and 3 more dependency cycle(s)" {
		t.Errorf("summary: %d shown, %q", len(shown), more)
	}
}

func TestImpactAndEdges(t *testing.T) {
	g := mustGraph(t, chain)
	got, err := g.Impact("c")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"a", "b", "d"}, got); d != "" {
		t.Errorf("impact of c (-want +got):\n%s", d)
	}
	if got, _ := g.Impact("a"); len(got) != 0 {
		t.Errorf("impact of a = %v", got)
	}
	if _, err := g.Impact("nope"); err == nil {
		t.Error("impact of an unknown service: no error")
	}
	m, _, err := Load("../flotilla.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var payment []EventEdge
	for _, e := range New(m).EventEdges() {
		if e.Publisher == "payment-service" {
			payment = append(payment, e)
		}
	}
	want := []EventEdge{
		{"payment-service", "analytics-service", "PaymentCompleted"},
		{"payment-service", "analytics-service", "PaymentFailed"},
		{"payment-service", "analytics-service", "PaymentRefunded"},
		{"payment-service", "notification-service", "PaymentRefunded"},
	}
	if d := cmp.Diff(want, payment); d != "" {
		t.Errorf("payment's event edges (-want +got):\n%s", d)
	}
}

func TestFind(t *testing.T) {
	root := t.TempDir()
	deep := filepath.Join(root, "a", "b", "c")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, FileName), []byte("services: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Find(deep)
	if err != nil || got != filepath.Join(root, FileName) {
		t.Errorf("Find = %q, %v", got, err)
	}
	if _, err := Find(t.TempDir()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Find in an empty tree: %v", err)
	}
}

// TestConsumerWarningsHub covers a provider with a long consumers list (the
// sorted-copy path) next to short ones.
func TestConsumerWarningsHub(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"services": {"hub": {"dependencies": [], "consumers": [`)
	for i := range 40 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `"c%02d"`, i)
	}
	b.WriteString(`]}`)
	for i := range 41 {
		deps := `["hub"]`
		if i == 7 {
			deps = `[]` // listed by hub, but does not depend on it
		}
		fmt.Fprintf(&b, `, "c%02d": {"dependencies": %s, "consumers": []}`, i, deps)
	}
	b.WriteString(`}}`)
	m, warns, err := ParseScenarioJSON("g.json", "/", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range warns {
		got = append(got, w.Msg)
	}
	want := []string{
		"c40 depends on hub, but hub's consumers list omits c40",
		"hub lists c07 as a consumer, but c07's dependencies omit hub",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("warnings (-want +got):\n%s", d)
	}
	if len(m.Services) != 42 {
		t.Errorf("%d services", len(m.Services))
	}
}

// TestGraphConcurrentUse: one graph serves many goroutines (its name index
// is built lazily, once); run with -race.
func TestGraphConcurrentUse(t *testing.T) {
	m, _, err := Load("../flotilla.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g := New(m)
	want, err := g.Waves([]string{"order-service", "user-service"})
	if err != nil {
		t.Fatal(err)
	}
	g = New(m) // fresh, so the goroutines race to build the index
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			got, err := g.Waves([]string{"order-service", "user-service"})
			if err == nil && !cmp.Equal(want, got) {
				err = fmt.Errorf("waves %v, want %v", got, want)
			}
			if err == nil {
				_, err = g.Impact("user-service")
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestSameSettings(t *testing.T) {
	load := func(body string) *Manifest {
		m, err := ParseYAML("f.yaml", "/r", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a := load("services:\n  x:\n    path: x\n    smoke: [{path: /ready}]\n")
	moved := load("\n\nservices:\n\n  x:\n    smoke:\n      - {path: /ready}\n    path: x\n")
	health := load("services:\n  x:\n    path: x\n    health: /ready\n    smoke: [{path: /ready}]\n")
	if !a.Service("x").SameSettings(moved.Service("x")) {
		t.Error("the same settings on other lines differ")
	}
	if a.Service("x").SameSettings(health.Service("x")) {
		t.Error("a new health path is not a change")
	}
}
