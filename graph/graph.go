package graph

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Graph is the service graph of a manifest: services as nodes, depends_on
// as sync edges (a dependent → its dependency), and event edges from a
// publisher to each subscriber. It is immutable once built.
type Graph struct {
	m     *Manifest
	names []string // sorted; a service's index is its position
	// idx maps a name to its index; built on first use (a graph read
	// from the scenario's JSON arrives with its names resolved).
	idxOnce sync.Once
	idxMap  map[string]int
	deps    [][]int  // known dependencies, sorted by index, no self edges
	rdeps   [][]int  // dependents, sorted by index
	bad     []badDep // unknown and self dependencies, in manifest order
}

type badDep struct {
	service int
	dep     string
	self    bool
}

// ErrCycle is wrapped by the ordering methods when the graph has a cycle.
var ErrCycle = errors.New("dependency cycle")

// New builds the graph of m. Unknown and self dependencies are left out of
// the edges (Validate reports them).
func New(m *Manifest) *Graph {
	n := len(m.Services)
	g := &Graph{m: m, names: make([]string, n), deps: make([][]int, n), rdeps: make([][]int, n)}
	for i, s := range m.Services {
		g.names[i] = s.Name
	}
	// Two flat arrays hold every edge (deps and rdeps are windows on
	// them): a 50,000-edge graph is built with a handful of allocations.
	flat := make([]int, 0, edgeCount(m))
	indeg := make([]int, n)
	for i, s := range m.Services {
		start := len(flat)
		for k, d := range s.DependsOn {
			var j int
			var ok bool
			if s.indexed { // the JSON scanner resolved the names already
				j = int(s.depIdx[k])
				ok = j >= 0
			} else {
				j, ok = g.idx(d)
			}
			if !ok || j == i {
				g.bad = append(g.bad, badDep{service: i, dep: d, self: ok})
				continue
			}
			flat = append(flat, j)
		}
		ds := flat[start:len(flat):len(flat)]
		slices.Sort(ds)
		ds = dedupe(ds)
		g.deps[i] = ds
		for _, j := range ds {
			indeg[j]++
		}
	}
	rflat := make([]int, 0, len(flat))
	for j := range n {
		g.rdeps[j] = rflat[len(rflat) : len(rflat) : len(rflat)+indeg[j]]
		rflat = rflat[:len(rflat)+indeg[j]]
	}
	for i, ds := range g.deps { // in increasing i, so each rdeps is sorted
		for _, j := range ds {
			g.rdeps[j] = append(g.rdeps[j], i)
		}
	}
	return g
}

func edgeCount(m *Manifest) int {
	n := 0
	for _, s := range m.Services {
		n += len(s.DependsOn)
	}
	return n
}

func (g *Graph) idx(name string) (int, bool) {
	g.idxOnce.Do(func() {
		g.idxMap = make(map[string]int, len(g.names))
		for i, n := range g.names {
			g.idxMap[n] = i
		}
	})
	i, ok := g.idxMap[name]
	return i, ok
}

func dedupe(s []int) []int {
	if len(s) < 2 {
		return s
	}
	out := s[:1]
	for _, v := range s[1:] {
		if v != out[len(out)-1] {
			out = append(out, v)
		}
	}
	return out
}

// Manifest returns the manifest the graph was built from.
func (g *Graph) Manifest() *Manifest { return g.m }

// Problem is one thing wrong with a graph, located in its manifest.
type Problem struct {
	File    string
	Line    int
	Service string
	Msg     string
}

func (p Problem) String() string { return locate(p.File, p.Line) + p.Msg }

// Validate reports every problem at once: unknown dependencies,
// self-dependencies, every elementary cycle as a full path (ShownCycles of
// them, then how many more), and subscriptions to events
// nobody publishes. An empty result means the graph is valid.
func (g *Graph) Validate() []Problem {
	m := g.m
	var out []Problem
	for _, b := range g.bad {
		s := m.Services[b.service]
		if b.self {
			out = append(out, Problem{m.File, s.RefLine("depends_on", b.dep), s.Name,
				fmt.Sprintf("%s depends on itself; remove it from its own depends_on", s.Name)})
		} else {
			out = append(out, Problem{m.File, s.RefLine("depends_on", b.dep), s.Name,
				fmt.Sprintf("%s depends on %s, which is not a service in this manifest%s", s.Name, b.dep, suggest(b.dep, g.names))})
		}
	}
	cycles, more := cyclesSummary(g.Cycles())
	for _, c := range cycles {
		s := m.Service(c[0])
		out = append(out, Problem{m.File, s.RefLine("depends_on", c[1]), s.Name,
			"dependency cycle: " + strings.Join(c, " → ") + "; break it (an event instead of a call, or merge the services)"})
	}
	if more != "" {
		last := cycles[len(cycles)-1]
		s := m.Service(last[0])
		out = append(out, Problem{m.File, s.RefLine("depends_on", last[1]), s.Name, more})
	}
	published := map[string]bool{}
	for _, s := range m.Services {
		for _, e := range s.Publishes {
			published[e] = true
		}
	}
	for _, s := range m.Services {
		for _, e := range s.Subscribes {
			if !published[e] {
				out = append(out, Problem{m.File, s.RefLine("subscribes", e), s.Name,
					fmt.Sprintf("%s subscribes to %s, which no service publishes%s", s.Name, e, suggest(e, m.Events()))})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

// suggest returns "; did you mean X?" for a close known name.
func suggest(name string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if k == name {
			continue
		}
		if d := editDistance(strings.ToLower(name), strings.ToLower(k), bestD); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// editDistance is Levenshtein's, giving up at limit.
func editDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d >= limit || -d >= limit {
		return limit
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Bounds on cycle enumeration: a graph can hold exponentially many
// elementary cycles.
const (
	// MaxCycles is how many cycles Cycles returns at most.
	MaxCycles = 1000
	// ShownCycles is how many Validate and the ordering errors name before
	// saying how many more there are.
	ShownCycles = 20
	// cycleWork bounds the edges Cycles walks; past it the answer is
	// incomplete.
	cycleWork = 20_000_000
)

// Cycles returns every elementary dependency cycle (no service twice),
// each as a full path that starts and ends with its first service by name
// and follows depends_on (order-service → payment-service →
// order-service), sorted by that path. Overlapping cycles are each there:
// a → b → a and a → b → c → a. Self-dependencies are not cycles here
// (Validate reports them on their own). complete is false when there were
// more than MaxCycles, or too many to finish looking: the paths are then
// the first found.
//
// It is Johnson's algorithm (1975) within each strongly connected group:
// O((V+E)·(C+1)) for C cycles.
func (g *Graph) Cycles() (paths [][]string, complete bool) {
	comps := g.sccs()
	if len(comps) == 0 {
		return nil, true // the usual case: no cycle, nothing to allocate
	}
	var out [][]int
	work := 0
	stop := false
	blocked := make([]bool, len(g.names))
	blockedBy := make([][]int, len(g.names))
	allowed := make([]bool, len(g.names))
	var path []int
	var unblock func(v int)
	unblock = func(v int) {
		blocked[v] = false
		for _, w := range blockedBy[v] {
			if blocked[w] {
				unblock(w)
			}
		}
		blockedBy[v] = blockedBy[v][:0]
	}
	var circuit func(s, v int) bool
	circuit = func(s, v int) bool {
		found := false
		path = append(path, v)
		blocked[v] = true
		for _, w := range g.deps[v] {
			if stop {
				break
			}
			if !allowed[w] {
				continue
			}
			if work++; work > cycleWork {
				stop = true
				break
			}
			if w == s {
				out = append(out, append(slices.Clone(path), s))
				found = true
				stop = len(out) >= MaxCycles
			} else if !blocked[w] && circuit(s, w) {
				found = true
			}
		}
		if found {
			unblock(v)
		} else {
			for _, w := range g.deps[v] {
				if allowed[w] && !slices.Contains(blockedBy[w], v) {
					blockedBy[w] = append(blockedBy[w], v)
				}
			}
		}
		path = path[:len(path)-1]
		return found
	}
	for _, c := range comps {
		slices.Sort(c)
	}
	sort.Slice(comps, func(i, j int) bool { return comps[i][0] < comps[j][0] })
	for _, comp := range comps {
		for _, v := range comp {
			allowed[v] = true
		}
		// Cycles through comp[i] among comp[i:], then drop comp[i].
		for _, s := range comp {
			if stop {
				break
			}
			for _, v := range comp {
				blocked[v] = false
				blockedBy[v] = blockedBy[v][:0]
			}
			circuit(s, s)
			allowed[s] = false
		}
		for _, v := range comp {
			allowed[v] = false
		}
		if stop {
			break
		}
	}
	paths = make([][]string, len(out))
	for i, c := range out {
		paths[i] = make([]string, len(c))
		for k, v := range c {
			paths[i][k] = g.names[v]
		}
	}
	sort.Slice(paths, func(i, j int) bool { return slices.Compare(paths[i], paths[j]) < 0 })
	return paths, !stop
}

// cyclesSummary names at most ShownCycles cycles and says how many more
// there are.
func cyclesSummary(paths [][]string, complete bool) (shown [][]string, more string) {
	if len(paths) <= ShownCycles && complete {
		return paths, ""
	}
	shown = paths[:min(len(paths), ShownCycles)]
	k := len(paths) - len(shown)
	if complete {
		return shown, fmt.Sprintf("and %d more dependency cycle(s)", k)
	}
	return shown, fmt.Sprintf("and more than %d more dependency cycles (too many to count)", k)
}

// sccs is Tarjan's algorithm, iterative so deep graphs cannot exhaust the
// stack. It returns the groups of two or more services.
func (g *Graph) sccs() [][]int {
	n := len(g.names)
	index := make([]int, n)
	low := make([]int, n)
	onStack := make([]bool, n)
	for i := range index {
		index[i] = -1
	}
	var stack, comps = []int{}, [][]int{}
	next := 0
	type frame struct{ v, edge int }
	for root := 0; root < n; root++ {
		if index[root] >= 0 {
			continue
		}
		call := []frame{{root, 0}}
		index[root], low[root] = next, next
		next++
		stack = append(stack, root)
		onStack[root] = true
		for len(call) > 0 {
			f := &call[len(call)-1]
			v := f.v
			if f.edge < len(g.deps[v]) {
				w := g.deps[v][f.edge]
				f.edge++
				if index[w] < 0 {
					index[w], low[w] = next, next
					next++
					stack = append(stack, w)
					onStack[w] = true
					call = append(call, frame{w, 0})
				} else if onStack[w] {
					low[v] = min(low[v], index[w])
				}
				continue
			}
			if low[v] == index[v] && stack[len(stack)-1] == v {
				// A service on its own (the usual case): no group to keep.
				stack = stack[:len(stack)-1]
				onStack[v] = false
			} else if low[v] == index[v] {
				var comp []int
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[w] = false
					comp = append(comp, w)
					if w == v {
						break
					}
				}
				comps = append(comps, comp)
			}
			call = call[:len(call)-1]
			if len(call) > 0 {
				p := call[len(call)-1].v
				low[p] = min(low[p], low[v])
			}
		}
	}
	return comps
}

// Waves returns the deploy order in waves: wave k holds every service whose
// longest chain of dependencies has length k, so a wave's services can
// deploy in parallel once the waves before it are done. Each wave is sorted
// by name. only, when not empty, restricts the result to those services
// while still respecting dependencies that run through services outside it
// (if a→b→c and only a and c are chosen, c comes first). It runs in
// O(V+E). A cycle is an error wrapping ErrCycle; an unknown name in only is
// an error naming it.
func (g *Graph) Waves(only []string) ([][]string, error) {
	n := len(g.names)
	selected := make([]bool, n)
	if len(only) == 0 {
		for i := range selected {
			selected[i] = true
		}
	} else {
		for _, name := range only {
			i, ok := g.idx(name)
			if !ok {
				return nil, fmt.Errorf("unknown service %q%s", name, suggest(name, g.names))
			}
			selected[i] = true
		}
	}
	// Kahn's algorithm over the whole graph gives a topological order.
	indeg := make([]int, n)
	for v := range n {
		indeg[v] = len(g.deps[v])
	}
	topo := make([]int, 0, n)
	for v := range n {
		if indeg[v] == 0 {
			topo = append(topo, v)
		}
	}
	for i := 0; i < len(topo); i++ {
		for _, w := range g.rdeps[topo[i]] {
			indeg[w]--
			if indeg[w] == 0 {
				topo = append(topo, w)
			}
		}
	}
	if len(topo) != n {
		var paths []string
		cycles, more := cyclesSummary(g.Cycles())
		for _, c := range cycles {
			paths = append(paths, strings.Join(c, " → "))
		}
		if more != "" {
			paths = append(paths, more)
		}
		return nil, fmt.Errorf("%w: %s", ErrCycle, strings.Join(paths, "; "))
	}
	// reach[v]: the highest wave among selected services v depends on,
	// directly or through unselected ones (-1 when none); a selected
	// service's wave is one more than that.
	reach := make([]int, n)
	wave := make([]int, n)
	waves := 0
	for _, v := range topo {
		r := -1
		for _, d := range g.deps[v] {
			x := reach[d]
			if selected[d] {
				x = wave[d]
			}
			r = max(r, x)
		}
		reach[v] = r
		if selected[v] {
			wave[v] = r + 1
			waves = max(waves, r+2)
		}
	}
	out := make([][]string, waves)
	for v := range n { // names are sorted, so each wave is too
		if selected[v] {
			out[wave[v]] = append(out[wave[v]], g.names[v])
		}
	}
	return out, nil
}

// Order is Waves flattened: dependencies before their dependents, ties by
// name.
func (g *Graph) Order(only []string) ([]string, error) {
	waves, err := g.Waves(only)
	if err != nil {
		return nil, err
	}
	return Flatten(waves), nil
}

// Reverse returns the rollback order: the waves of Waves, last first.
func (g *Graph) Reverse(only []string) ([][]string, error) {
	waves, err := g.Waves(only)
	if err != nil {
		return nil, err
	}
	for i, j := 0, len(waves)-1; i < j; i, j = i+1, j-1 {
		waves[i], waves[j] = waves[j], waves[i]
	}
	return waves, nil
}

// Flatten joins waves into one order.
func Flatten(waves [][]string) []string {
	var out []string
	for _, w := range waves {
		out = append(out, w...)
	}
	return out
}

// Impact returns every service that depends on name, directly or
// transitively, sorted by name. An unknown service is an error.
func (g *Graph) Impact(name string) ([]string, error) {
	start, ok := g.idx(name)
	if !ok {
		return nil, fmt.Errorf("unknown service %q%s", name, suggest(name, g.names))
	}
	seen := make([]bool, len(g.names))
	seen[start] = true
	queue := []int{start}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, w := range g.rdeps[v] {
			if !seen[w] {
				seen[w] = true
				queue = append(queue, w)
			}
		}
	}
	var out []string
	for v, s := range seen {
		if s && v != start {
			out = append(out, g.names[v])
		}
	}
	return out, nil
}

// DependsOn returns the known direct dependencies of name (its providers),
// sorted.
func (g *Graph) DependsOn(name string) []string { return g.namesOf(g.deps, name) }

// Dependents returns the direct dependents of name (its sync consumers),
// sorted.
func (g *Graph) Dependents(name string) []string { return g.namesOf(g.rdeps, name) }

func (g *Graph) namesOf(adj [][]int, name string) []string {
	i, ok := g.idx(name)
	if !ok {
		return nil
	}
	out := make([]string, len(adj[i]))
	for k, j := range adj[i] {
		out[k] = g.names[j]
	}
	return out
}

// SyncEdge is a depends_on edge: Consumer calls Provider.
type SyncEdge struct{ Consumer, Provider string }

// SyncEdges returns every known depends_on edge, sorted.
func (g *Graph) SyncEdges() []SyncEdge {
	var out []SyncEdge
	for v, ds := range g.deps {
		for _, d := range ds {
			out = append(out, SyncEdge{Consumer: g.names[v], Provider: g.names[d]})
		}
	}
	return out
}

// EventEdge is a publisher → subscriber edge for one event.
type EventEdge struct{ Publisher, Subscriber, Event string }

// EventEdges returns one edge per (publisher, subscriber, event), sorted by
// publisher, subscriber, event.
func (g *Graph) EventEdges() []EventEdge {
	pubs := map[string][]string{}
	for _, s := range g.m.Services {
		for _, e := range s.Publishes {
			pubs[e] = append(pubs[e], s.Name)
		}
	}
	var out []EventEdge
	for _, s := range g.m.Services {
		for _, e := range s.Subscribes {
			for _, p := range pubs[e] {
				out = append(out, EventEdge{Publisher: p, Subscriber: s.Name, Event: e})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Publisher != b.Publisher {
			return a.Publisher < b.Publisher
		}
		if a.Subscriber != b.Subscriber {
			return a.Subscriber < b.Subscriber
		}
		return a.Event < b.Event
	})
	return out
}
