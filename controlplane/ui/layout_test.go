package ui

import (
	"testing"

	"github.com/flotilla-ci/flotilla/graph"
)

// A graph whose alphabetical order crosses every edge is untangled.
func TestLayoutUntangles(t *testing.T) {
	waves := [][]string{{"a", "b", "c"}, {"x", "y", "z"}}
	edges := []GraphEdge{
		{From: "z", To: "a", Kind: EdgeSync},
		{From: "y", To: "b", Kind: EdgeSync},
		{From: "x", To: "c", Kind: EdgeSync},
	}
	wave := map[string]int{"a": 0, "b": 0, "c": 0, "x": 1, "y": 1, "z": 1}
	if n := crossings(waves, wave, edges); n != 3 {
		t.Fatalf("the alphabetical order crosses %d times, want 3 (the test's premise)", n)
	}
	l := LayoutGraph(waves, edges)
	if l.Crossings != 0 {
		t.Fatalf("the layout leaves %d crossings (%v), want 0", l.Crossings, l.Columns)
	}
	for _, n := range []string{"a", "b", "c"} {
		if l.Nodes[n].Wave != 0 {
			t.Errorf("%s in column %d, want 0", n, l.Nodes[n].Wave)
		}
	}
	if len(l.Edges) != 3 {
		t.Fatalf("%d edges drawn, want 3", len(l.Edges))
	}
}

// The shop: every service in its wave's column, nodes that do not
// overlap, and no more crossings than the plain alphabetical order.
func TestLayoutShop(t *testing.T) {
	m, _, err := graph.Load("../../flotilla.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g := graph.New(m)
	waves, err := g.Waves(nil)
	if err != nil {
		t.Fatal(err)
	}
	es := graphEdges(g)
	l := LayoutGraph(waves, es)
	if len(l.Nodes) != 10 {
		t.Fatalf("%d nodes, want 10", len(l.Nodes))
	}
	wave := map[string]int{}
	for i, w := range waves {
		for _, n := range w {
			wave[n] = i
			if l.Nodes[n].Wave != i {
				t.Errorf("%s in column %d, want its wave %d", n, l.Nodes[n].Wave, i)
			}
		}
	}
	if naive := crossings(waves, wave, es); l.Crossings > naive {
		t.Errorf("%d crossings, more than the alphabetical order's %d", l.Crossings, naive)
	}
	t.Logf("the shop's graph: %d edges, %d crossings (columns %v)", len(l.Edges), l.Crossings, l.Columns)
	for a, pa := range l.Nodes {
		for b, pb := range l.Nodes {
			if a < b && pa.X == pb.X && pa.Y < pb.Y+NodeH && pb.Y < pa.Y+NodeH {
				t.Errorf("%s and %s overlap", a, b)
			}
		}
	}
}
