package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/graph"
)

// NodeView is one service as the overview shows it (and as pages are
// sent it live).
type NodeView struct {
	Name         string         `json:"name"`
	Wave         int            `json:"wave"` // 1-based
	Stable       string         `json:"stable"`
	Canary       []string       `json:"canary,omitempty"`
	Weights      map[string]int `json:"weights,omitempty"`
	WeightsText  string         `json:"weights_text"`
	Health       string         `json:"health"`
	State        string         `json:"state"`
	StateRelease int64          `json:"state_release,omitempty"`
	Fig          Figures        `json:"figures"`
	P            *Placed        `json:"-"`
}

// Label is what a screen reader says of the node.
func (n NodeView) Label() string {
	b := fmt.Sprintf("%s, wave %d, %s", n.Name, n.Wave, n.Health)
	if n.Stable != "" {
		b += ", stable " + shortVersion(n.Stable)
	}
	if len(n.Canary) > 0 {
		b += ", canary " + shortVersion(n.Canary[0])
	}
	if n.State != "" {
		b += ", " + n.State
	}
	if n.Fig.Known {
		b += fmt.Sprintf(", %.1f requests per second, %.1f%% errors, p99 %.0f ms", n.Fig.Rate, n.Fig.ErrorRate*100, n.Fig.P99Ms)
	}
	return b
}

func (s *Server) nodes(ctx context.Context) ([]NodeView, *deploy.Running) {
	g := s.cfg.Deployer.Graph()
	waves, _ := g.Waves(nil)
	waveOf := map[string]int{}
	for i, w := range waves {
		for _, n := range w {
			waveOf[n] = i + 1
		}
	}
	st, err := s.cfg.Deployer.Status(ctx)
	if err != nil {
		s.log.WarnContext(ctx, "dashboard: status", "err", err)
	}
	byName := map[string]deploy.ServiceStatus{}
	for _, x := range st {
		byName[x.Service] = x
	}
	running := s.cfg.Deployer.Running()
	states := s.hub.states()
	figs := s.samples.figures()
	var out []NodeView
	for _, name := range g.Manifest().Names() {
		x := byName[name]
		n := NodeView{Name: name, Wave: waveOf[name], Stable: x.Stable, Canary: x.Canary, Weights: x.Weights,
			WeightsText: funcs["weights"].(func(map[string]int) string)(x.Weights), Health: x.Health, Fig: figs[name]}
		if n.Health == "" {
			n.Health = "unknown"
		}
		if n.Fig.Service == "" {
			n.Fig.Service = name
		}
		if e, ok := states[name]; ok {
			n.State, n.StateRelease = e.State, e.Release
		}
		if running != nil && slices.Contains(running.Services, name) && n.StateRelease != running.Release {
			n.State, n.StateRelease = "waiting", running.Release
		}
		out = append(out, n)
	}
	return out, running
}

// graphEdges are the manifest's depends_on and event edges.
func graphEdges(g *graph.Graph) []GraphEdge {
	var es []GraphEdge
	for _, e := range g.SyncEdges() {
		es = append(es, GraphEdge{From: e.Consumer, To: e.Provider, Kind: EdgeSync})
	}
	for _, e := range g.EventEdges() {
		es = append(es, GraphEdge{From: e.Publisher, To: e.Subscriber, Kind: EdgeEvent, Event: e.Event})
	}
	return es
}

// layout is the graph's drawing, made once per graph (the deploy side
// loads the manifest again when it changes, which makes a new graph).
func (s *Server) layout(g *graph.Graph, waves [][]string) *Layout {
	s.layoutMu.Lock()
	defer s.layoutMu.Unlock()
	if s.layoutOf != g || s.layoutCache == nil {
		s.layoutOf, s.layoutCache = g, LayoutGraph(waves, graphEdges(g))
	}
	return s.layoutCache
}

type overviewData struct {
	L       *Layout
	Nodes   []NodeView
	Waves   []waveHead
	Last    *releaseSummary
	Metrics bool
}

type waveHead struct {
	N    int
	X    float64
	Size int
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	d, err := s.overviewData(r.Context())
	if err != nil {
		s.failed(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "overview", "Overview", d)
}

func (s *Server) overviewData(ctx context.Context) (*overviewData, error) {
	g := s.cfg.Deployer.Graph()
	waves, err := g.Waves(nil)
	if err != nil {
		return nil, fmt.Errorf("the graph's waves: %w", err)
	}
	l := s.layout(g, waves)
	nodes, _ := s.nodes(ctx)
	for i := range nodes {
		nodes[i].P = l.Nodes[nodes[i].Name]
	}
	d := &overviewData{L: l, Nodes: nodes, Metrics: s.cfg.Metrics != nil}
	for i, c := range l.Columns {
		d.Waves = append(d.Waves, waveHead{N: i + 1, X: marginX + float64(i)*(NodeW+colGap), Size: len(c)})
	}
	recs, err := s.cfg.Deployer.History(ctx, "", 40)
	if err == nil {
		if rs := summarize(recs); len(rs) > 0 {
			d.Last = &rs[0]
		}
	}
	return d, nil
}

// releaseSummary is one release of the history.
type releaseSummary struct {
	ID       int64
	Who      string
	Started  time.Time
	Took     time.Duration
	Services []string
	Results  map[deploy.Result]int
	Result   string
	Records  []deploy.Record
}

// ResultText lists the results ("9 succeeded, 1 failed").
func (r releaseSummary) ResultText() string {
	var parts []string
	for _, k := range []deploy.Result{deploy.Succeeded, deploy.Failed, deploy.RolledBack, deploy.Skipped, deploy.Unchanged} {
		if n := r.Results[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, k))
		}
	}
	for k, n := range r.Results {
		if !slices.Contains([]deploy.Result{deploy.Succeeded, deploy.Failed, deploy.RolledBack, deploy.Skipped, deploy.Unchanged}, k) {
			parts = append(parts, fmt.Sprintf("%d %s", n, k))
		}
	}
	return strings.Join(parts, ", ")
}

// summarize groups records (newest first) by release, newest first.
func summarize(recs []deploy.Record) []releaseSummary {
	idx := map[int64]int{}
	var out []releaseSummary
	for _, rec := range recs {
		i, ok := idx[rec.Release]
		if !ok {
			i = len(out)
			idx[rec.Release] = i
			out = append(out, releaseSummary{ID: rec.Release, Who: rec.Who, Started: rec.Started, Results: map[deploy.Result]int{}})
		}
		rs := &out[i]
		rs.Records = append(rs.Records, rec)
		rs.Services = append(rs.Services, rec.Service)
		rs.Results[rec.Result]++
		if rec.Started.Before(rs.Started) {
			rs.Started = rec.Started
		}
		if end := rec.Started.Add(rec.Duration).Sub(rs.Started); end > rs.Took {
			rs.Took = end
		}
	}
	for i := range out {
		rs := &out[i]
		sort.Strings(rs.Services)
		slices.Reverse(rs.Records) // oldest first
		switch {
		case rs.Results[deploy.Failed] > 0:
			rs.Result = "failed"
		case rs.Results[deploy.RolledBack] > 0:
			rs.Result = "rolled-back"
		case rs.Results[deploy.Succeeded] > 0:
			rs.Result = "succeeded"
		default:
			rs.Result = "unchanged"
		}
		if rs.Records[0].Action == "rollback" {
			rs.Result = "rollback"
		}
	}
	return out
}

type releasesData struct {
	Releases []releaseSummary
	More     int
	Service  string
	Result   string
	Who      string
	Services []string
	Results  []string
}

const releasesShown = 100

// historyLimit bounds the records the releases pages read (a history
// store's default limit is small).
const historyLimit = 50_000

func (s *Server) releases(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := releasesData{Service: q.Get("service"), Result: q.Get("result"), Who: q.Get("who"),
		Services: s.cfg.Deployer.Graph().Manifest().Names(),
		Results:  []string{"succeeded", "failed", "rolled-back", "rollback", "unchanged"}}
	if d.Service != "" && !s.knownService(d.Service) {
		s.notFound(w, r, "service", d.Service, d.Services)
		return
	}
	if d.Result != "" && !slices.Contains(d.Results, d.Result) {
		s.notFound(w, r, "result", d.Result, d.Results)
		return
	}
	recs, err := s.cfg.Deployer.History(r.Context(), "", historyLimit)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	for _, rs := range summarize(recs) {
		if d.Service != "" && !slices.Contains(rs.Services, d.Service) {
			continue
		}
		if d.Result != "" && rs.Result != d.Result {
			continue
		}
		if d.Who != "" && !strings.Contains(strings.ToLower(rs.Who), strings.ToLower(d.Who)) {
			continue
		}
		if len(d.Releases) == releasesShown {
			d.More++
			continue
		}
		d.Releases = append(d.Releases, rs)
	}
	s.render(w, r, http.StatusOK, "releases", "Releases", d)
}

type releaseData struct {
	R       releaseSummary
	Running bool
	Waves   []releaseWave
	Events  []LiveEvent
}

type releaseWave struct {
	N        int
	Services []releaseService
}

type releaseService struct {
	deploy.Record
	Steps     []LiveEvent
	CanRevert bool
}

func (s *Server) release(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	recs, herr := s.cfg.Deployer.History(r.Context(), "", historyLimit)
	if herr != nil {
		s.failed(w, r, herr)
		return
	}
	all := summarize(recs)
	running := s.cfg.Deployer.Running()
	var d releaseData
	found := false
	if err == nil {
		for _, rs := range all {
			if rs.ID == id {
				d.R, found = rs, true
			}
		}
		if running != nil && running.Release == id {
			found, d.Running = true, true
			if d.R.ID == 0 {
				d.R = releaseSummary{ID: id, Who: running.Who, Started: running.Started, Services: running.Services, Results: map[deploy.Result]int{}, Result: "running"}
			}
		}
	}
	if !found {
		var ids []string
		for i, rs := range all {
			if i == 20 {
				ids = append(ids, fmt.Sprintf("… and %d older", len(all)-20))
				break
			}
			ids = append(ids, strconv.FormatInt(rs.ID, 10))
		}
		s.notFound(w, r, "release", r.PathValue("id"), ids)
		return
	}
	d.Events = s.hub.events(id)
	g := s.cfg.Deployer.Graph()
	waves, _ := g.Waves(nil)
	waveOf := map[string]int{}
	for i, wv := range waves {
		for _, n := range wv {
			waveOf[n] = i + 1
		}
	}
	for _, e := range d.Events {
		if e.Service != "" && e.Wave > 0 {
			waveOf[e.Service] = e.Wave
		}
	}
	byWave := map[int]*releaseWave{}
	add := func(rec deploy.Record) {
		n := waveOf[rec.Service]
		rw := byWave[n]
		if rw == nil {
			rw = &releaseWave{N: n}
			byWave[n] = rw
		}
		rs := releaseService{Record: rec, CanRevert: rec.Result == deploy.Succeeded && rec.Previous != ""}
		for _, e := range d.Events {
			if e.Service == rec.Service {
				rs.Steps = append(rs.Steps, e)
			}
		}
		rw.Services = append(rw.Services, rs)
	}
	seen := map[string]bool{}
	for _, rec := range d.R.Records {
		seen[rec.Service] = true
		add(rec)
	}
	for _, svc := range d.R.Services {
		if !seen[svc] {
			add(deploy.Record{Release: id, Service: svc, Result: "in progress"})
		}
	}
	for _, rw := range byWave {
		d.Waves = append(d.Waves, *rw)
	}
	sort.Slice(d.Waves, func(i, j int) bool { return d.Waves[i].N < d.Waves[j].N })
	s.render(w, r, http.StatusOK, "release", fmt.Sprintf("Release %d", id), d)
}

type serviceData struct {
	Node    NodeView
	Status  deploy.ServiceStatus
	Deps    []string
	Users   []string
	Pubs    []string
	Subs    []string
	History []deploy.Record
	Canary  *canary.State
}

func (s *Server) service(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("service")
	g := s.cfg.Deployer.Graph()
	m := g.Manifest()
	svc := m.Service(name)
	if svc == nil {
		s.notFound(w, r, "service", name, m.Names())
		return
	}
	d := serviceData{Deps: g.DependsOn(name), Users: g.Dependents(name), Pubs: svc.Publishes, Subs: svc.Subscribes}
	nodes, _ := s.nodes(r.Context())
	for _, n := range nodes {
		if n.Name == name {
			d.Node = n
		}
	}
	st, _ := s.cfg.Deployer.Status(r.Context())
	for _, x := range st {
		if x.Service == name {
			d.Status = x
		}
	}
	d.History, _ = s.cfg.Deployer.History(r.Context(), name, 30)
	if s.cfg.Canaries != nil {
		for _, c := range s.cfg.Canaries() {
			if c.Service == name {
				c := c
				d.Canary = &c
			}
		}
	}
	s.render(w, r, http.StatusOK, "service", name, d)
}

// canaryView is one canary with its chart.
type canaryView struct {
	canary.State
	Chart    chart
	Judges   []string // the judges' names, in the decisions' order
	Rows     []decisionRow
	Running  bool
	Sections string
}

type decisionRow struct {
	canary.Decision
	Cells []judgeCell
}

type judgeCell struct {
	Verdict         string
	Canary, Base    string
	Reason          string
	HasMeasurements bool
}

// chart is the weight over time, as an SVG step line.
type chart struct {
	W, H   float64
	Points string
	Ticks  []tick
	Marks  []mark
}

type tick struct {
	Y     float64
	Label string
}

type mark struct {
	X, Y   float64
	Class  string
	Title  string
	Action string
}

func canaryChart(st canary.State) chart {
	c := chart{W: 640, H: 160}
	const left, top, bottom = 40.0, 10.0, 20.0
	ds := st.Decisions
	for _, p := range []int{0, 50, 100} {
		c.Ticks = append(c.Ticks, tick{Y: top + (c.H-top-bottom)*(1-float64(p)/100), Label: strconv.Itoa(p) + "%"})
	}
	if len(ds) == 0 {
		return c
	}
	t0, t1 := st.Started, ds[len(ds)-1].Time
	if t0.IsZero() || ds[0].Time.Before(t0) {
		t0 = ds[0].Time
	}
	span := t1.Sub(t0).Seconds()
	if span <= 0 {
		span = 1
	}
	x := func(t time.Time) float64 { return left + (c.W-left-10)*t.Sub(t0).Seconds()/span }
	y := func(w int) float64 { return top + (c.H-top-bottom)*(1-float64(w)/100) }
	var pts []string
	prev := 0
	for _, d := range ds {
		w := weightAfter(d, prev)
		pts = append(pts, fmt.Sprintf("%.1f,%.1f %.1f,%.1f", x(d.Time), y(prev), x(d.Time), y(w)))
		class := "mark-" + string(d.Verdict)
		if d.Verdict == "" {
			class = "mark-none"
		}
		c.Marks = append(c.Marks, mark{X: x(d.Time), Y: y(w), Class: class, Action: string(d.Action),
			Title: fmt.Sprintf("%s %s at %d%%: %s", d.Time.UTC().Format("15:04:05"), d.Action, d.Weight, d.Reason)})
		prev = w
	}
	c.Points = strings.Join(pts, " ")
	return c
}

// weightAfter is the canary's weight after a decision.
func weightAfter(d canary.Decision, prev int) int {
	switch d.Action {
	case canary.ActionPromote, canary.ActionBake, canary.ActionBaked:
		return 100
	case canary.ActionRollback:
		return 0
	case canary.ActionAdvance:
		if n, ok := percentAfter(d.Reason); ok {
			return n
		}
	}
	if d.Weight > 0 || d.Action == canary.ActionStart {
		return d.Weight
	}
	return prev
}

// percentAfter finds "to N%" in a reason.
func percentAfter(reason string) (int, bool) {
	i := strings.LastIndex(reason, "to ")
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(reason[i+3:])
	if len(f) == 0 {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimRight(f[0], "%,.;"))
	return n, err == nil && strings.Contains(f[0], "%")
}

func (s *Server) canaries(w http.ResponseWriter, r *http.Request) {
	var views []canaryView
	if s.cfg.Canaries != nil {
		for _, st := range s.cfg.Canaries() {
			v := canaryView{State: st, Chart: canaryChart(st), Running: !st.Phase.Final()}
			for _, d := range st.Decisions {
				for _, j := range d.Judgements {
					if !slices.Contains(v.Judges, j.Judge) {
						v.Judges = append(v.Judges, j.Judge)
					}
				}
			}
			for i := len(st.Decisions) - 1; i >= 0; i-- {
				d := st.Decisions[i]
				row := decisionRow{Decision: d}
				for _, name := range v.Judges {
					cell := judgeCell{}
					for _, j := range d.Judgements {
						if j.Judge == name {
							cell = judgeCell{Verdict: string(j.Verdict), Reason: j.Reason}
							cell.Canary, cell.Base, cell.HasMeasurements = sides(j.Measurements)
						}
					}
					row.Cells = append(row.Cells, cell)
				}
				v.Rows = append(v.Rows, row)
			}
			views = append(views, v)
		}
	}
	sort.SliceStable(views, func(i, j int) bool {
		if views[i].Running != views[j].Running {
			return views[i].Running
		}
		return views[i].Updated.After(views[j].Updated)
	})
	// The smoke-and-shift steps of the recent releases, as they were.
	var shifts []LiveEvent
	for _, st := range s.hub.states() {
		for _, e := range s.hub.events(st.Release) {
			if e.Service == st.Service && (e.Step == deploy.StepSmoke || e.Step == deploy.StepShift || e.Step == deploy.StepAnalysis) {
				shifts = append(shifts, e)
			}
		}
	}
	sort.Slice(shifts, func(i, j int) bool { return shifts[i].Time.After(shifts[j].Time) })
	s.render(w, r, http.StatusOK, "canaries", "Canaries", map[string]any{"Canaries": views, "Shifts": shifts, "Enabled": s.cfg.Canaries != nil})
}

// sides splits a judge's measurements into the canary's and the
// baseline's ("canary_*"/"baseline_*", or "canary"/"baseline").
func sides(m map[string]float64) (can, base string, ok bool) {
	if len(m) == 0 {
		return "", "", false
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var c, b, other []string
	for _, k := range keys {
		v := strconv.FormatFloat(m[k], 'g', 4, 64)
		switch {
		case strings.HasPrefix(k, "canary"):
			c = append(c, strings.TrimLeft(strings.TrimPrefix(k, "canary"), "_")+" "+v)
		case strings.HasPrefix(k, "baseline") || strings.HasPrefix(k, "base"):
			b = append(b, strings.TrimLeft(strings.TrimPrefix(strings.TrimPrefix(k, "baseline"), "base"), "_")+" "+v)
		default:
			other = append(other, k+" "+v)
		}
	}
	if len(c) == 0 && len(b) == 0 {
		return strings.Join(other, ", "), "", true
	}
	return strings.TrimSpace(strings.Join(append(c, other...), ", ")), strings.TrimSpace(strings.Join(b, ", ")), true
}

func (s *Server) traces(w http.ResponseWriter, r *http.Request) {
	d := map[string]any{"Enabled": false}
	if s.cfg.Traces != nil {
		code, body := s.callAPIWith(r, s.cfg.Traces, "/api/traces?limit=50")
		if code == http.StatusOK {
			var v any
			if json.Unmarshal(body, &v) == nil {
				d["Enabled"], d["Traces"] = true, v
			}
		}
	}
	s.render(w, r, http.StatusOK, "traces", "Traces", d)
}
