package ui

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-ci/flotilla/deploy"
)

// The live side: the release events the control plane reports (Publish),
// kept for the recent releases so a page opened mid-release shows what
// already happened, and sent to every open page over server-sent events.
// A page that does not keep up is dropped (its browser reconnects): a
// release never waits for a page.

// keepReleases is how many releases' events are kept in memory.
const keepReleases = 20

// clientBuffer is how many messages a page may lag behind before it is
// dropped.
const clientBuffer = 256

type message struct {
	event string
	data  []byte
}

// LiveEvent is a release event as pages receive it, with the state the
// overview shows for its service.
type LiveEvent struct {
	deploy.Event
	State string `json:"state"`
}

type liveRelease struct {
	id     int64
	events []LiveEvent
	ended  bool
}

// hub fans messages out to the open pages.
type hub struct {
	mu       sync.Mutex
	clients  map[chan message]struct{}
	releases map[int64]*liveRelease
	order    []int64 // release ids, oldest first
	canaryAt func(service, version string) (int, bool)
	dropped  int
}

func newHub() *hub {
	return &hub{clients: map[chan message]struct{}{}, releases: map[int64]*liveRelease{}}
}

// subscribe adds a page; cancel removes it.
func (h *hub) subscribe() (ch chan message, cancel func()) {
	ch = make(chan message, clientBuffer)
	h.mu.Lock()
	h.clients[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		if _, ok := h.clients[ch]; ok {
			delete(h.clients, ch)
			close(ch)
		}
		h.mu.Unlock()
	}
}

// count is how many pages are open.
func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

// broadcast sends to every page without waiting: a page whose buffer is
// full is dropped (closed), and reconnects.
func (h *hub) broadcast(event string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	m := message{event: event, data: b}
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.clients {
		select {
		case ch <- m:
		default:
			delete(h.clients, ch)
			close(ch)
			h.dropped++
		}
	}
}

// publish records a release event and sends it to the pages.
func (h *hub) publish(e deploy.Event) {
	le := LiveEvent{Event: e}
	h.mu.Lock()
	canaryAt := h.canaryAt
	h.mu.Unlock()
	le.State = stateOf(e, canaryAt)
	h.mu.Lock()
	r := h.releases[e.Release]
	if r == nil {
		r = &liveRelease{id: e.Release}
		h.releases[e.Release] = r
		h.order = append(h.order, e.Release)
		for len(h.order) > keepReleases {
			delete(h.releases, h.order[0])
			h.order = h.order[1:]
		}
	}
	r.events = append(r.events, le)
	if e.Service == "" && e.Step.Final() {
		r.ended = true
	}
	h.mu.Unlock()
	h.broadcast("release", le)
}

// events returns a copy of a release's events (nil when not kept).
func (h *hub) events(release int64) []LiveEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r := h.releases[release]; r != nil {
		return append([]LiveEvent(nil), r.events...)
	}
	return nil
}

// states are each service's state in the newest release that has an
// event for it, with that release's id.
func (h *hub) states() map[string]LiveEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]LiveEvent{}
	for i := len(h.order) - 1; i >= 0; i-- {
		r := h.releases[h.order[i]]
		for _, e := range r.events {
			if e.Service == "" {
				continue
			}
			if prev, ok := out[e.Service]; ok && prev.Release != r.id {
				continue // a newer release has it
			}
			out[e.Service] = e
		}
	}
	return out
}

// stateOf is the overview's word for a step.
func stateOf(e deploy.Event, canaryAt func(service, version string) (int, bool)) string {
	switch e.Step {
	case deploy.StepGate:
		return "gates"
	case deploy.StepBuild:
		return "building"
	case deploy.StepStart:
		return "starting"
	case deploy.StepReady:
		return "ready check"
	case deploy.StepSmoke:
		return "smoke"
	case deploy.StepShift, deploy.StepAnalysis:
		if canaryAt != nil {
			if w, ok := canaryAt(e.Service, e.Version); ok {
				return "canary at " + strconv.Itoa(w) + "%"
			}
		}
		if w := weightIn(e.Msg); w != "" {
			return "canary at " + w
		}
		return "shifting"
	case deploy.StepDrain:
		return "draining"
	case deploy.StepDone:
		return "promoted"
	case deploy.StepFailed, deploy.StepRolledBack:
		return "rolled back"
	case deploy.StepSkipped:
		return "skipped"
	case deploy.StepUnchanged:
		return "unchanged"
	}
	return string(e.Step)
}

// weightIn finds "N%" in a step's message.
func weightIn(msg string) string {
	for f := range strings.FieldsSeq(msg) {
		f = strings.Trim(f, ",;:()")
		if n, ok := strings.CutSuffix(f, "%"); ok {
			if _, err := strconv.Atoi(n); err == nil {
				return f
			}
		}
	}
	return ""
}

// series is a ring of a service's recent figures, for the sparklines.
type series struct {
	at   []time.Time
	rate []float64
	errs []float64
	p99  []float64
}

const seriesLen = 60

func (s *series) add(t time.Time, rate, errRate, p99 float64) {
	s.at = append(s.at, t)
	s.rate = append(s.rate, rate)
	s.errs = append(s.errs, errRate)
	s.p99 = append(s.p99, p99)
	if len(s.at) > seriesLen {
		s.at, s.rate, s.errs, s.p99 = s.at[1:], s.rate[1:], s.errs[1:], s.p99[1:]
	}
}

// Figures are a service's recent traffic through the mesh.
type Figures struct {
	Service   string    `json:"service"`
	Known     bool      `json:"known"`   // the mesh answered
	Rate      float64   `json:"rate"`    // requests per second
	ErrorRate float64   `json:"errors"`  // 0..1
	P99Ms     float64   `json:"p99_ms"`  // milliseconds
	Spark     string    `json:"spark"`   // SVG polyline points of the rate
	Samples   int       `json:"samples"` // points in the sparkline
	At        time.Time `json:"at"`
}

// sparkW and sparkH are the sparkline's box.
const sparkW, sparkH = 84.0, 18.0

func (s *series) figures(service string) Figures {
	f := Figures{Service: service, Samples: len(s.rate)}
	if len(s.rate) == 0 {
		return f
	}
	i := len(s.rate) - 1
	f.Known, f.Rate, f.ErrorRate, f.P99Ms, f.At = true, s.rate[i], s.errs[i], s.p99[i], s.at[i]
	f.Spark = sparkline(s.rate)
	return f
}

func sparkline(v []float64) string {
	hi := 0.0
	for _, x := range v {
		hi = max(hi, x)
	}
	var b strings.Builder
	for i, x := range v {
		px := sparkW
		if len(v) > 1 {
			px = float64(i) * sparkW / float64(seriesLen-1)
		}
		py := sparkH
		if hi > 0 {
			py = sparkH - x/hi*sparkH
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(px, 'f', 1, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(py, 'f', 1, 64))
	}
	return b.String()
}

// sampler keeps every service's figures from the mesh.
type sampler struct {
	mu     sync.Mutex
	series map[string]*series
}

func (s *sampler) figures() map[string]Figures {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Figures{}
	for n, se := range s.series {
		out[n] = se.figures(n)
	}
	return out
}

// sample asks the mesh for each service's serving versions' figures over
// the last window.
func (srv *Server) sample(ctx context.Context) {
	if srv.cfg.Metrics == nil {
		return
	}
	st, err := srv.cfg.Deployer.Status(ctx)
	if err != nil {
		return
	}
	now := time.Now()
	var figs []Figures
	for _, s := range st {
		versions := append([]string{}, s.Canary...)
		if s.Stable != "" {
			versions = append(versions, s.Stable)
		}
		if len(versions) == 0 {
			continue
		}
		var req, errs int64
		var p99 time.Duration
		var window time.Duration
		for _, v := range versions {
			c, cancel := context.WithTimeout(ctx, 2*time.Second)
			stats, err := srv.cfg.Metrics.Stats(c, s.Service, v, srv.cfg.Window)
			cancel()
			if err != nil {
				continue
			}
			req += stats.Requests
			errs += stats.Errors
			p99 = max(p99, stats.P99)
			window = max(window, stats.Window)
		}
		if window <= 0 {
			window = srv.cfg.Window
		}
		rate, er := float64(req)/window.Seconds(), 0.0
		if req > 0 {
			er = float64(errs) / float64(req)
		}
		srv.samples.mu.Lock()
		se := srv.samples.series[s.Service]
		if se == nil {
			se = &series{}
			srv.samples.series[s.Service] = se
		}
		se.add(now, rate, er, float64(p99)/float64(time.Millisecond))
		figs = append(figs, se.figures(s.Service))
		srv.samples.mu.Unlock()
	}
	sort.Slice(figs, func(i, j int) bool { return figs[i].Service < figs[j].Service })
	srv.hub.broadcast("metrics", figs)
}
