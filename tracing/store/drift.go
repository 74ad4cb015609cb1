package store

import (
	"fmt"
	"sort"

	"github.com/flotilla-ci/flotilla/graph"
)

// The kinds of edge between services.
const (
	EdgeCall  = "call"  // a synchronous call: a client's (or any) span of one service, the server span of another
	EdgeEvent = "event" // an event: a producer span of one service, a consumer span of another (by parent or link)
)

// Edge is a service-to-service interaction seen in traces (or declared
// in the manifest).
type Edge struct {
	Kind string `json:"kind"`
	From string `json:"from"`
	To   string `json:"to"`
	// Event is the event's name (messaging.destination.name), for events.
	Event string `json:"event,omitempty"`
	// Count is how many times it was seen; Example one trace it was seen in.
	Count   int    `json:"count,omitempty"`
	Example string `json:"example,omitempty"`
}

func (e Edge) key() string { return e.Kind + "|" + e.From + "|" + e.To + "|" + e.Event }

// String names the edge: "order-service -> payment-service" or
// "order-service -> shipping-service (event OrderCreated)".
func (e Edge) String() string {
	if e.Kind == EdgeEvent {
		ev := e.Event
		if ev == "" {
			ev = "?"
		}
		return fmt.Sprintf("%s -> %s (event %s)", e.From, e.To, ev)
	}
	return e.From + " -> " + e.To
}

// Edges are the interactions between services in one trace's spans. A
// call's caller is the nearest ancestor of the server span that is a
// service of known (nil: every service); spans of others (the gateway,
// the mesh's hops) are passed through. An event joins a consumer span to
// its producer, its parent or the span its link names.
func Edges(spans []Span, known map[string]bool) []Edge {
	byID := make(map[string]*Span, len(spans))
	for i := range spans {
		byID[spans[i].SpanID] = &spans[i]
	}
	ok := func(s string) bool { return known == nil || known[s] }
	seen := map[string]*Edge{}
	var order []string
	add := func(e Edge) {
		if e.From == e.To || !ok(e.From) || !ok(e.To) {
			return
		}
		k := e.key()
		if seen[k] == nil {
			seen[k] = &e
			order = append(order, k)
		}
		seen[k].Count++
	}
	for i := range spans {
		sp := &spans[i]
		switch sp.Kind {
		case KindServer:
			for p, hops := byID[sp.ParentSpanID], 0; p != nil && hops < 64; p, hops = byID[p.ParentSpanID], hops+1 {
				if p.Service == sp.Service {
					break // within the service
				}
				if ok(p.Service) {
					add(Edge{Kind: EdgeCall, From: p.Service, To: sp.Service, Example: sp.TraceID})
					break
				}
			}
		case KindConsumer:
			var prod *Span
			if p := byID[sp.ParentSpanID]; p != nil && p.Kind == KindProducer {
				prod = p
			}
			for _, l := range sp.Links {
				if p := byID[l.SpanID]; prod == nil && p != nil && p.Kind == KindProducer {
					prod = p
				}
			}
			if prod == nil {
				continue
			}
			ev, _ := sp.Attributes.Get("messaging.destination.name")
			if ev == "" {
				ev, _ = prod.Attributes.Get("messaging.destination.name")
			}
			add(Edge{Kind: EdgeEvent, From: prod.Service, To: sp.Service, Event: ev, Example: prod.TraceID})
		}
	}
	out := make([]Edge, 0, len(order))
	for _, k := range order {
		out = append(out, *seen[k])
	}
	return out
}

// Edges are the interactions between services in the traces that match
// q (its Limit ignored), with counts; known as for the function Edges.
func (s *Store) Edges(q Query, known map[string]bool) (edges []Edge, traces int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	q.Limit = 0
	all := map[string]*Edge{}
	for e := s.order.Back(); e != nil; e = e.Prev() {
		t := e.Value.(*trace)
		if _, ok := Summarize(t.id, t.spans, q); !ok {
			continue
		}
		traces++
		spans := t.spans
		// A consumer in a trace of its own links into this one.
		for by := range s.linkedBy[t.id] {
			if lt := s.traces[by]; lt != nil {
				spans = append(append([]Span{}, spans...), lt.spans...)
			}
		}
		for _, x := range Edges(spans, known) {
			if y := all[x.key()]; y != nil {
				y.Count += x.Count
			} else {
				x := x
				all[x.key()] = &x
			}
		}
	}
	for _, e := range all {
		edges = append(edges, *e)
	}
	SortEdges(edges)
	return edges, traces
}

// SortEdges sorts by kind, from, to, event.
func SortEdges(es []Edge) {
	sort.Slice(es, func(i, j int) bool { return es[i].key() < es[j].key() })
}

// Drift is the observed graph against the declared one.
type Drift struct {
	// Traces is how many traces were looked at.
	Traces int `json:"traces"`
	// Undeclared are interactions seen but not declared: a call to a
	// service not in the caller's depends_on, an event the producer does
	// not publish or the consumer does not subscribe to.
	Undeclared []Edge `json:"undeclared"`
	// Unused are declared dependencies (depends_on) and event flows (a
	// publisher and a subscriber of one event) never seen.
	Unused []Edge `json:"unused"`
	// Observed is every interaction seen.
	Observed []Edge `json:"observed"`
}

// Known are the manifest's services, for Edges.
func Known(m *graph.Manifest) map[string]bool {
	k := map[string]bool{}
	for _, s := range m.Services {
		k[s.Name] = true
	}
	return k
}

// DriftOf compares the interactions seen with the manifest's.
func DriftOf(m *graph.Manifest, observed []Edge, traces int) *Drift {
	d := &Drift{Traces: traces, Observed: append([]Edge{}, observed...), Undeclared: []Edge{}, Unused: []Edge{}}
	has := func(list []string, v string) bool {
		for _, x := range list {
			if x == v {
				return true
			}
		}
		return false
	}
	used := map[string]bool{}
	for _, e := range observed {
		from, to := m.Service(e.From), m.Service(e.To)
		if from == nil || to == nil {
			continue
		}
		switch e.Kind {
		case EdgeCall:
			if has(from.DependsOn, e.To) {
				used[Edge{Kind: EdgeCall, From: e.From, To: e.To}.key()] = true
			} else {
				d.Undeclared = append(d.Undeclared, e)
			}
		case EdgeEvent:
			if e.Event != "" {
				if has(from.Publishes, e.Event) && has(to.Subscribes, e.Event) {
					used[Edge{Kind: EdgeEvent, From: e.From, To: e.To, Event: e.Event}.key()] = true
				} else {
					d.Undeclared = append(d.Undeclared, e)
				}
				continue
			}
			// No event name: any event the one publishes and the other
			// subscribes to declares it.
			declared := false
			for _, ev := range from.Publishes {
				if has(to.Subscribes, ev) {
					declared = true
					used[Edge{Kind: EdgeEvent, From: e.From, To: e.To, Event: ev}.key()] = true
				}
			}
			if !declared {
				d.Undeclared = append(d.Undeclared, e)
			}
		}
	}
	for _, s := range m.Services {
		for _, dep := range s.DependsOn {
			if e := (Edge{Kind: EdgeCall, From: s.Name, To: dep}); !used[e.key()] {
				d.Unused = append(d.Unused, e)
			}
		}
		for _, ev := range s.Publishes {
			for _, c := range m.Services {
				if c.Name != s.Name && has(c.Subscribes, ev) {
					if e := (Edge{Kind: EdgeEvent, From: s.Name, To: c.Name, Event: ev}); !used[e.key()] {
						d.Unused = append(d.Unused, e)
					}
				}
			}
		}
	}
	SortEdges(d.Undeclared)
	SortEdges(d.Unused)
	SortEdges(d.Observed)
	return d
}
