package ui

import (
	"fmt"
	"math"
	"sort"
)

// The overview's drawing: one column per deploy wave, left to right in the
// order the waves deploy, and in each column the services ordered so that
// the edges cross as little as possible (the barycenter heuristic of
// Sugiyama's layered drawing: each node moves to the mean position of its
// neighbours in the other columns, sweeping right then left, keeping the
// ordering with the fewest crossings seen).

// Edge kinds.
const (
	EdgeSync  = "sync"  // depends_on: the consumer calls the provider
	EdgeEvent = "event" // an event flows from publisher to subscriber
)

// GraphEdge is one edge of the drawing: From calls To (sync), or From
// publishes Event that To subscribes to.
type GraphEdge struct {
	From, To string
	Kind     string
	Event    string
}

// Placed is a service's place in the drawing.
type Placed struct {
	Name string
	Wave int // 0-based column
	Row  int // 0-based, top to bottom
	X, Y float64
}

// PlacedEdge is an edge with its path (SVG path data).
type PlacedEdge struct {
	GraphEdge
	Path  string
	Label string // the event's name at the middle of an event edge, or ""
	LX    float64
	LY    float64
}

// Layout is the overview's drawing.
type Layout struct {
	Width, Height float64
	Columns       [][]string // by wave, in drawing order
	Nodes         map[string]*Placed
	Edges         []PlacedEdge
	Crossings     int
}

// The node box and the spacing, in SVG user units.
const (
	NodeW   = 200.0
	NodeH   = 104.0
	colGap  = 90.0
	rowGap  = 26.0
	marginX = 16.0
	marginY = 40.0
)

// LayoutGraph lays waves (as graph.Waves returns them) and edges out.
// Edges naming a service not in any wave are left out.
func LayoutGraph(waves [][]string, edges []GraphEdge) *Layout {
	cols := make([][]string, len(waves))
	wave := map[string]int{}
	for i, w := range waves {
		cols[i] = append([]string(nil), w...)
		sort.Strings(cols[i])
		for _, n := range w {
			wave[n] = i
		}
	}
	var es []GraphEdge
	for _, e := range edges {
		_, a := wave[e.From]
		_, b := wave[e.To]
		if a && b && e.From != e.To {
			es = append(es, e)
		}
	}
	best := copyCols(cols)
	bestX := crossings(best, wave, es)
	small := orderings(cols) <= exhaustiveLimit
	if small {
		best, bestX = exhaustive(cols, wave, es)
	}
	for iter := 0; !small && iter < 12 && bestX > 0; iter++ {
		for c := 1; c < len(cols); c++ {
			reorder(cols, c, wave, es, func(w int) bool { return w < c })
		}
		for c := len(cols) - 2; c >= 0; c-- {
			reorder(cols, c, wave, es, func(w int) bool { return w > c })
		}
		if x := crossings(cols, wave, es); x < bestX {
			best, bestX = copyCols(cols), x
		}
	}
	l := &Layout{Columns: best, Nodes: map[string]*Placed{}, Crossings: bestX}
	tallest := 0
	for _, c := range best {
		tallest = max(tallest, len(c))
	}
	colH := float64(tallest)*(NodeH+rowGap) - rowGap
	for w, c := range best {
		h := float64(len(c))*(NodeH+rowGap) - rowGap
		top := marginY + (colH-h)/2
		for r, n := range c {
			l.Nodes[n] = &Placed{Name: n, Wave: w, Row: r,
				X: marginX + float64(w)*(NodeW+colGap), Y: top + float64(r)*(NodeH+rowGap)}
		}
	}
	l.Width = 2*marginX + float64(len(best))*(NodeW+colGap) - colGap
	l.Height = marginY + colH + 30
	for _, e := range es {
		l.Edges = append(l.Edges, place(l, e))
	}
	return l
}

// place draws an edge: between columns a curve from the right side of
// the left node to the left side of the right one; within a column an
// arc out to the right.
func place(l *Layout, e GraphEdge) PlacedEdge {
	a, b := l.Nodes[e.From], l.Nodes[e.To]
	pe := PlacedEdge{GraphEdge: e}
	if e.Kind == EdgeEvent {
		pe.Label = e.Event
	}
	ay, by := a.Y+NodeH/2, b.Y+NodeH/2
	if a.Wave == b.Wave {
		x := a.X + NodeW
		bulge := 28 + 10*math.Abs(float64(a.Row-b.Row))
		pe.Path = fmt.Sprintf("M %.1f %.1f C %.1f %.1f, %.1f %.1f, %.1f %.1f", x, ay, x+bulge, ay, x+bulge, by, x, by)
		pe.LX, pe.LY = x+bulge*0.75, (ay+by)/2
	} else {
		x1, x2 := a.X+NodeW, b.X
		if a.Wave > b.Wave {
			x1, x2 = a.X, b.X+NodeW
		}
		mid := (x1 + x2) / 2
		pe.Path = fmt.Sprintf("M %.1f %.1f C %.1f %.1f, %.1f %.1f, %.1f %.1f", x1, ay, mid, ay, mid, by, x2, by)
		pe.LX, pe.LY = mid, (ay+by)/2
	}
	return pe
}

// exhaustiveLimit is the number of orderings below which every one is
// tried (the shop's graph has 72): the fewest crossings, not a heuristic's.
const exhaustiveLimit = 20_000

// orderings is how many orderings of the columns there are (capped).
func orderings(cols [][]string) int {
	n := 1
	for _, c := range cols {
		for k := 2; k <= len(c); k++ {
			n *= k
			if n > exhaustiveLimit {
				return n
			}
		}
	}
	return n
}

// exhaustive tries every ordering of every column.
func exhaustive(cols [][]string, wave map[string]int, es []GraphEdge) ([][]string, int) {
	cur := copyCols(cols)
	best, bestX := copyCols(cols), crossings(cols, wave, es)
	var rec func(c int)
	rec = func(c int) {
		if bestX == 0 {
			return
		}
		if c == len(cur) {
			if x := crossings(cur, wave, es); x < bestX {
				best, bestX = copyCols(cur), x
			}
			return
		}
		permute(cur[c], 0, func() { rec(c + 1) })
	}
	rec(0)
	return best, bestX
}

// permute calls f with s in each of its orders (Heap's algorithm would
// do; this is the plain swap recursion), leaving s as it found it.
func permute(s []string, k int, f func()) {
	if k >= len(s)-1 {
		f()
		return
	}
	for i := k; i < len(s); i++ {
		s[k], s[i] = s[i], s[k]
		permute(s, k+1, f)
		s[k], s[i] = s[i], s[k]
	}
}

func copyCols(cols [][]string) [][]string {
	out := make([][]string, len(cols))
	for i, c := range cols {
		out[i] = append([]string(nil), c...)
	}
	return out
}

// reorder sorts column c by the mean position of each node's neighbours
// in the columns side accepts; a node without any keeps its position.
func reorder(cols [][]string, c int, wave map[string]int, es []GraphEdge, side func(int) bool) {
	pos := positions(cols)
	bary := map[string]float64{}
	for i, n := range cols[c] {
		sum, k := 0.0, 0
		for _, e := range es {
			other := ""
			switch n {
			case e.From:
				other = e.To
			case e.To:
				other = e.From
			default:
				continue
			}
			if side(wave[other]) {
				sum += pos[other]
				k++
			}
		}
		if k == 0 {
			bary[n] = float64(i) / math.Max(1, float64(len(cols[c])-1))
		} else {
			bary[n] = sum / float64(k)
		}
	}
	sort.SliceStable(cols[c], func(i, j int) bool { return bary[cols[c][i]] < bary[cols[c][j]] })
}

// positions are the nodes' vertical centres as the drawing places them,
// in rows of the tallest column (columns are centred).
func positions(cols [][]string) map[string]float64 {
	tallest := 0
	for _, c := range cols {
		tallest = max(tallest, len(c))
	}
	pos := map[string]float64{}
	for _, c := range cols {
		off := float64(tallest-len(c)) / 2
		for r, n := range c {
			pos[n] = off + float64(r)
		}
	}
	return pos
}

// Crossings counts the pairs of edges between different columns whose
// chords (the straight lines between their ends) cross, in the ordering
// cols gives.
func crossings(cols [][]string, wave map[string]int, es []GraphEdge) int {
	pos := positions(cols)
	var segs []seg
	for _, e := range es {
		a, b := wave[e.From], wave[e.To]
		if a == b {
			continue
		}
		s := seg{float64(a), pos[e.From], float64(b), pos[e.To]}
		if s.x1 > s.x2 {
			s = seg{s.x2, s.y2, s.x1, s.y1}
		}
		segs = append(segs, s)
	}
	n := 0
	for i := range segs {
		for j := i + 1; j < len(segs); j++ {
			if cross(segs[i], segs[j]) {
				n++
			}
		}
	}
	return n
}

type seg struct{ x1, y1, x2, y2 float64 }

// cross reports whether two chords cross at a point inside both (not at
// a shared end).
func cross(a, b seg) bool {
	// Only where their x ranges overlap.
	lo, hi := math.Max(a.x1, b.x1), math.Min(a.x2, b.x2)
	if lo >= hi {
		return false
	}
	at := func(s seg, x float64) float64 { return s.y1 + (s.y2-s.y1)*(x-s.x1)/(s.x2-s.x1) }
	d1, d2 := at(a, lo)-at(b, lo), at(a, hi)-at(b, hi)
	const eps = 1e-9
	return (d1 < -eps && d2 > eps) || (d1 > eps && d2 < -eps)
}
