package store

import (
	"slices"
	"sort"
	"time"
)

// Node is a span in a trace's tree.
type Node struct {
	Span *Span `json:"span"`
	// Offset is the span's start after the trace's first span.
	Offset time.Duration `json:"offset"`
	// Async marks a branch that does not hold up its cause: a consumer
	// of an event the cause produced (a child of a producer span, a
	// consumer span, or a span placed here by its link).
	Async bool `json:"async,omitempty"`
	// Linked marks a span placed under the span its link points to (it
	// has no parent in the trace).
	Linked bool `json:"linked,omitempty"`
	// Orphan marks a span whose parent has not arrived.
	Orphan   bool    `json:"orphan,omitempty"`
	Children []*Node `json:"children,omitempty"`
}

// Segment is a stretch of the critical path spent in one span (not in
// any of its children).
type Segment struct {
	SpanID  string `json:"span_id"`
	Service string `json:"service"`
	Name    string `json:"name"`
	// Start and End are offsets from the trace's first span.
	Start time.Duration `json:"start"`
	End   time.Duration `json:"end"`
}

// Duration is the segment's length.
func (s Segment) Duration() time.Duration { return s.End - s.Start }

// ServiceTime is a service's share of a trace.
type ServiceTime struct {
	Service string `json:"service"`
	Spans   int    `json:"spans"`
	// Self is the time its spans spent not waiting on their synchronous
	// children; Critical its time on the critical path.
	Self     time.Duration `json:"self"`
	Critical time.Duration `json:"critical"`
}

// Hop is a span's total time on the critical path.
type Hop struct {
	SpanID   string        `json:"span_id"`
	Service  string        `json:"service"`
	Name     string        `json:"name"`
	Critical time.Duration `json:"critical"`
	// Share is Critical over the root's duration (0..1).
	Share float64 `json:"share"`
}

// Analysis is a trace's tree, critical path and each service's time.
type Analysis struct {
	TraceID string    `json:"trace_id"`
	Start   time.Time `json:"start"`
	// Duration is the root span's; Extent to the last span's end, async
	// branches included.
	Duration time.Duration `json:"duration"`
	Extent   time.Duration `json:"extent"`
	Spans    int           `json:"spans"`
	Errors   int           `json:"errors"`
	// Roots are the tree's roots: the root span first, then spans whose
	// parent has not arrived.
	Roots []*Node `json:"roots"`
	// CriticalPath is the chain of work the root waited on, in time
	// order: what to make faster to make the request faster.
	CriticalPath []Segment `json:"critical_path"`
	// SlowestHop is the span with the most time on the critical path.
	SlowestHop *Hop `json:"slowest_hop,omitempty"`
	// Services are each service's self and critical time, most critical
	// first.
	Services []ServiceTime `json:"services"`
}

// Analyze builds a trace's tree, its critical path from the root span,
// and each service's self-time. Spans linked to a span of the trace (a
// bus consumer to its producer) without a parent in it hang under that
// span as async branches.
func Analyze(t *Trace) *Analysis {
	a := &Analysis{TraceID: t.TraceID, Spans: len(t.Spans)}
	if len(t.Spans) == 0 {
		return a
	}
	spans := make([]Span, len(t.Spans))
	copy(spans, t.Spans)
	SortSpans(spans)
	byID := make(map[string]*Node, len(spans))
	nodes := make([]*Node, len(spans))
	first, last := spans[0].Start, spans[0].End
	for i := range spans {
		sp := &spans[i]
		if sp.Start.Before(first) {
			first = sp.Start
		}
		if sp.End.After(last) {
			last = sp.End
		}
		if sp.Error() {
			a.Errors++
		}
		n := &Node{Span: sp}
		nodes[i] = n
		if _, dup := byID[sp.SpanID]; !dup {
			byID[sp.SpanID] = n
		}
	}
	a.Start, a.Extent = first, last.Sub(first)
	var roots []*Node
	for _, n := range nodes {
		n.Offset = n.Span.Start.Sub(first)
		sp := n.Span
		if p := byID[sp.ParentSpanID]; sp.ParentSpanID != "" && p != nil && p != n {
			n.Async = sp.Kind == KindConsumer || p.Span.Kind == KindProducer
			p.Children = append(p.Children, n)
			continue
		}
		placed := false
		for _, l := range sp.Links {
			if p := byID[l.SpanID]; p != nil && p != n && !descends(p, n, byID) {
				n.Async, n.Linked = true, true
				p.Children = append(p.Children, n)
				placed = true
				break
			}
		}
		if !placed {
			n.Orphan = sp.ParentSpanID != ""
			roots = append(roots, n)
		}
	}
	// Spans whose parents make a cycle reach no root: each cycle is
	// broken at its earliest span, which becomes an orphan root.
	reached := map[*Node]bool{}
	var mark func(*Node)
	mark = func(n *Node) {
		if reached[n] {
			return
		}
		reached[n] = true
		for _, c := range n.Children {
			mark(c)
		}
	}
	for _, r := range roots {
		mark(r)
	}
	for _, n := range nodes {
		if reached[n] {
			continue
		}
		for _, p := range nodes {
			p.Children = slices.DeleteFunc(p.Children, func(c *Node) bool { return c == n })
		}
		n.Orphan = true
		roots = append(roots, n)
		mark(n)
	}
	sort.SliceStable(roots, func(i, j int) bool { return betterRoot(roots[i].Span, roots[j].Span) })
	a.Roots = roots
	root := roots[0]
	a.Duration = root.Span.Duration()

	// The critical path from the root, through synchronous children.
	var segs []Segment
	critical(root, root.Span.End, first, &segs)
	for i, j := 0, len(segs)-1; i < j; i, j = i+1, j-1 {
		segs[i], segs[j] = segs[j], segs[i]
	}
	a.CriticalPath = segs

	// Each service's self and critical time.
	st := map[string]*ServiceTime{}
	get := func(s string) *ServiceTime {
		if st[s] == nil {
			st[s] = &ServiceTime{Service: s}
		}
		return st[s]
	}
	for _, n := range nodes {
		x := get(n.Span.Service)
		x.Spans++
		x.Self += selfTime(n)
	}
	hops := map[string]*Hop{}
	var hopOrder []string
	for _, s := range segs {
		get(s.Service).Critical += s.Duration()
		h := hops[s.SpanID]
		if h == nil {
			h = &Hop{SpanID: s.SpanID, Service: s.Service, Name: s.Name}
			hops[s.SpanID] = h
			hopOrder = append(hopOrder, s.SpanID)
		}
		h.Critical += s.Duration()
	}
	for _, id := range hopOrder {
		if h := hops[id]; a.SlowestHop == nil || h.Critical > a.SlowestHop.Critical {
			a.SlowestHop = h
		}
	}
	if a.SlowestHop != nil && a.Duration > 0 {
		a.SlowestHop.Share = float64(a.SlowestHop.Critical) / float64(a.Duration)
	}
	for _, x := range st {
		a.Services = append(a.Services, *x)
	}
	sort.Slice(a.Services, func(i, j int) bool {
		x, y := a.Services[i], a.Services[j]
		if x.Critical != y.Critical {
			return x.Critical > y.Critical
		}
		if x.Self != y.Self {
			return x.Self > y.Self
		}
		return x.Service < y.Service
	})
	return a
}

// descends reports whether p is n or below it (placing n under p would
// make a cycle).
func descends(p, n *Node, byID map[string]*Node) bool {
	seen := map[*Node]bool{}
	for x := p; x != nil && !seen[x]; {
		if x == n {
			return true
		}
		seen[x] = true
		x = byID[x.Span.ParentSpanID]
	}
	return false
}

// syncChildren are a node's children that its span waits on, clipped to
// the span: those that start before it ends.
func syncChildren(n *Node) []*Node {
	var out []*Node
	for _, c := range n.Children {
		if c.Async || !c.Span.Start.Before(n.Span.End) {
			continue
		}
		out = append(out, c)
	}
	return out
}

func clip(t, lo, hi time.Time) time.Time {
	if t.Before(lo) {
		return lo
	}
	if t.After(hi) {
		return hi
	}
	return t
}

// selfTime is a span's duration less the union of its synchronous
// children's (clipped to it).
func selfTime(n *Node) time.Duration {
	d := n.Span.Duration()
	cs := syncChildren(n)
	sort.Slice(cs, func(i, j int) bool { return cs[i].Span.Start.Before(cs[j].Span.Start) })
	var covered time.Duration
	var curS, curE time.Time
	for _, c := range cs {
		s := clip(c.Span.Start, n.Span.Start, n.Span.End)
		e := clip(c.Span.End, n.Span.Start, n.Span.End)
		if !e.After(s) {
			continue
		}
		if curE.IsZero() || s.After(curE) {
			covered += curE.Sub(curS)
			curS, curE = s, e
		} else if e.After(curE) {
			curE = e
		}
	}
	covered += curE.Sub(curS)
	if covered > d {
		return 0
	}
	return d - covered
}

// critical appends, latest first, the segments of n's critical path that
// end by until: from until back, the last child to finish is waited on,
// the time after it is n's own, and so on back to n's start (Jaeger's
// critical-path algorithm).
func critical(n *Node, until, first time.Time, out *[]Segment) {
	end := n.Span.End
	if until.Before(end) {
		end = until
	}
	cs := syncChildren(n)
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].Span.End.After(cs[j].Span.End) })
	seg := func(from, to time.Time) {
		if to.After(from) {
			*out = append(*out, Segment{SpanID: n.Span.SpanID, Service: n.Span.Service, Name: n.Span.Name, Start: from.Sub(first), End: to.Sub(first)})
		}
	}
	cur := end
	for _, c := range cs {
		ce := clip(c.Span.End, n.Span.Start, end)
		cst := clip(c.Span.Start, n.Span.Start, end)
		if ce.After(cur) || !cst.Before(cur) {
			continue // overlaps the child already waited on
		}
		seg(ce, cur)
		critical(c, ce, first, out)
		cur = cst
	}
	seg(n.Span.Start, cur)
}
