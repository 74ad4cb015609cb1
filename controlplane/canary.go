package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/mesh"
)

// Canary is the canary analysis as the orchestrator's Shifter: every
// service's new version is released by its manifest policy (a service
// without a canary block gets the project's defaults; strategy direct
// keeps the all-at-once switch, then the bake), judged on the mesh's
// per-version metrics. Each decision goes to the release's progress
// events and to a state file per service (Dir), from which a restarted
// control plane resumes a canary or puts its old weights back
// ([deploy.Resumer]); the outcomes go to the history through the
// orchestrator. It implements deploy.Shifter, deploy.Baker and
// deploy.Resumer.
type Canary struct {
	a      *canary.Analysis
	dir    string
	router canary.Router
	log    *slog.Logger

	// life ends with Close: it interrupts the canaries in progress (their
	// state kept), as a stopping control plane must not wait for them.
	life context.Context
	end  context.CancelFunc

	mu    sync.Mutex
	bakes map[string]bakeWatch // by service
}

// bakeWatch is the orchestrator's wait for one version's bake: done, or
// the bake's end when it came first.
type bakeWatch struct {
	version string
	done    func(ctx context.Context, err error)
	ended   bool
	err     error
}

// MetricsProvider is where the canary analysis reads the versions'
// figures: the zero value is the mesh's own measurements (the data
// plane's); `flotilla up --metrics-provider prometheus` gives a
// Prometheus that scrapes the control plane's /metrics, as Flagger's
// metricsServer does.
type MetricsProvider struct {
	// Name says which, in every canary's first decision ("prometheus at
	// http://127.0.0.1:9090").
	Name string
	// Metrics gives the figures (nil: the mesh's own).
	Metrics canary.Metrics
	// Querier evaluates the policies' custom query judges; nil refuses
	// a policy with queries.
	Querier canary.Querier
}

// CanaryConfig wires a [Canary].
type CanaryConfig struct {
	// Metrics gives the versions' figures: the mesh, or Provider's.
	Metrics canary.Metrics
	// Querier evaluates custom query judges (nil: policies with queries
	// are refused); Provider names the source, for the decisions.
	Querier  canary.Querier
	Provider string
	// Graph returns the manifest as last loaded, whose policies apply.
	Graph func() *graph.Graph
	// Router is the router the orchestrator uses (for a restore after a
	// restart).
	Router canary.Router
	// Dir keeps one state file per service's canary.
	Dir string
	// Addr returns a service's mesh address, where synthetic load is sent
	// (policies with synthetic_load); nil refuses such policies.
	Addr func(service string) (string, error)
	// Client sends the synthetic load (default: plain HTTP; a platform
	// with mutual TLS gives the smoke checks' client).
	Client *http.Client
	Clock  canary.Clock
	Logger *slog.Logger
}

type progressKey struct{}

// NewCanary returns the analysis wired for a control plane.
func NewCanary(cfg CanaryConfig) (*Canary, error) {
	if cfg.Graph == nil || cfg.Router == nil || cfg.Dir == "" {
		return nil, errors.New("canary: a graph, a router and a state directory are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("canary state: %w", err)
	}
	life, end := context.WithCancel(context.Background())
	c := &Canary{dir: cfg.Dir, router: cfg.Router, log: cfg.Logger, bakes: map[string]bakeWatch{}, life: life, end: end}
	var load canary.LoadDriver
	if cfg.Addr != nil {
		client := cfg.Client
		if client == nil {
			client = &http.Client{}
		}
		load = laneLoad{graph: cfg.Graph, addr: cfg.Addr, client: client}
	}
	a, err := canary.New(canary.Config{
		Metrics:  cfg.Metrics,
		Querier:  cfg.Querier,
		Provider: cfg.Provider,
		Load:     load,
		Policy: func(service string) (canary.Policy, error) {
			s := cfg.Graph().Manifest().Service(service)
			if s == nil {
				return canary.Policy{}, fmt.Errorf("unknown service %q", service)
			}
			return PolicyOf(s.Policy), nil
		},
		Observer:  c.observe,
		BakeEnded: c.bakeEnded,
		Clock:     cfg.Clock,
		Logger:    cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	c.a = a
	return c, nil
}

// PolicyOf is the analysis's policy for a manifest's (resolved) one.
func PolicyOf(p graph.Policy) canary.Policy {
	out := canary.Policy{
		Strategy: canary.Strategy(p.Strategy), Steps: append([]int(nil), p.Steps...), Iterations: p.Iterations,
		Interval: p.Interval.D(), Threshold: p.Threshold, MinRequests: int64(p.MinRequests),
		MaxErrorRate: p.MaxErrorRate, MaxP50: p.MaxP50.D(), MaxP99: p.MaxP99.D(),
		Compare:   canary.Compare{Baseline: p.Compare == graph.CompareBaseline, Confidence: p.Confidence, MinEffect: p.MinEffect},
		LaneFirst: p.LaneFirst, SyntheticLoad: p.SyntheticLoad, InconclusiveLimit: p.InconclusiveLimit,
		ConsecutiveErrorLimit: p.ConsecutiveErrorLimit, Bake: p.Bake.D(),
	}
	for _, q := range p.Queries {
		out.Queries = append(out.Queries, canary.Query{Name: q.Name, Query: q.Query, Range: q.Range.D(), Max: q.Max, Min: q.Min})
	}
	for _, w := range p.Webhooks {
		out.Webhooks = append(out.Webhooks, canary.Webhook{Name: w.Name, Kind: canary.WebhookKind(w.Type), URL: w.URL, Timeout: w.Timeout.D(), Metadata: w.Metadata})
	}
	return out
}

// Analysis is the engine, for status and the manual overrides.
func (c *Canary) Analysis() *canary.Analysis { return c.a }

// Close interrupts the canaries in progress (Shift returns
// deploy.ErrInterrupted) and stops the bakes; their states stay, for the
// next control plane to resume or roll back.
func (c *Canary) Close() error {
	c.end()
	return c.a.Close()
}

// Interrupt interrupts the canaries in progress (their Shift returns
// deploy.ErrInterrupted, their states kept), leaving the bakes to Close:
// what a stopping control plane does first, so that the releases waiting
// on a canary end before its API stops taking requests (an API that
// drained them first would wait for every canary to finish).
func (c *Canary) Interrupt() { c.end() }

// Describe implements deploy.Shifter.
func (c *Canary) Describe(service, version string) string { return c.a.Describe(service, version) }

// Shift implements deploy.Shifter: the canary of req.Version, its
// decisions told to req.Progress.
func (c *Canary) Shift(ctx context.Context, req deploy.ShiftRequest) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.life, cancel)()
	// A first deploy has nothing to shift from or judge against: its
	// decisions are kept, not shown.
	if req.Progress != nil && len(req.Old) > 0 {
		ctx = context.WithValue(ctx, progressKey{}, req.Progress)
	}
	c.mu.Lock()
	delete(c.bakes, req.Service) // a bake of an earlier version ends now
	c.mu.Unlock()
	return c.a.Shift(ctx, canary.ShiftRequest{Service: req.Service, Version: req.Version, Old: req.Old, Router: req.Router})
}

// Baking implements deploy.Baker.
func (c *Canary) Baking(service, version string, done func(ctx context.Context, err error)) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w, ok := c.bakes[service]; ok && w.version == version && w.ended {
		delete(c.bakes, service)
		go done(context.Background(), w.err)
		return true
	}
	st, ok := c.a.Status(service)
	if !ok || st.Version != version {
		return false
	}
	// A bake that rolled back but has not told us yet still will.
	if st.Phase == canary.PhaseBaking || (st.Phase == canary.PhaseRolledBack && st.Weight == 0 && bakedOnce(st)) {
		c.bakes[service] = bakeWatch{version: version, done: done}
		return true
	}
	return false
}

// bakedOnce reports whether the canary was promoted to a bake.
func bakedOnce(st canary.State) bool {
	for _, d := range st.Decisions {
		if d.Phase == canary.PhaseBaking {
			return true
		}
	}
	return false
}

func (c *Canary) bakeEnded(ctx context.Context, st canary.State, err error) {
	c.mu.Lock()
	w, ok := c.bakes[st.Service]
	if !ok || w.version != st.Version || w.done == nil {
		c.bakes[st.Service] = bakeWatch{version: st.Version, ended: true, err: err}
		c.mu.Unlock()
		return
	}
	delete(c.bakes, st.Service)
	c.mu.Unlock()
	w.done(ctx, err)
}

// observe shows a decision in the release's progress and keeps the state.
func (c *Canary) observe(ctx context.Context, st canary.State, d canary.Decision) {
	if p, ok := ctx.Value(progressKey{}).(func(string)); ok {
		p(DecisionLine(d))
	}
	if err := c.save(st); err != nil {
		c.log.WarnContext(ctx, "keep canary state", "service", st.Service, "err", err)
	}
}

// DecisionLine is a decision on one line, without its time: "progressing
// 20% fail stay: error-rate 31.2% > 1% ...".
func DecisionLine(d canary.Decision) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d%%", d.Phase, d.Weight)
	if d.Verdict != "" {
		b.WriteString(" " + string(d.Verdict))
	}
	fmt.Fprintf(&b, " %s: %s", d.Action, d.Reason)
	return b.String()
}

func (c *Canary) file(service string) string { return filepath.Join(c.dir, service+".json") }

func (c *Canary) save(st canary.State) error {
	if cur, ok := c.a.Status(st.Service); ok && cur.Version != st.Version {
		return nil // a bake cut short by the service's next canary: that one's state is kept
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	// A bake cut short and the next canary of the service may write at
	// once: each through its own temporary file, renamed into place.
	f, err := os.CreateTemp(c.dir, st.Service+".*.tmp")
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), c.file(st.Service))
}

func (c *Canary) load(service string) (canary.State, error) {
	var st canary.State
	b, err := os.ReadFile(c.file(service))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", c.file(service), err)
	}
	return st, nil
}

// States returns every service's canary: the engine's, or the kept state
// of one it has not run since the control plane started.
func (c *Canary) States() []canary.State {
	byService := map[string]canary.State{}
	if ents, err := os.ReadDir(c.dir); err == nil {
		for _, e := range ents {
			name, ok := strings.CutSuffix(e.Name(), ".json")
			if !ok {
				continue
			}
			if st, err := c.load(name); err == nil {
				byService[name] = st
			}
		}
	}
	for _, st := range c.a.States() {
		byService[st.Service] = st
	}
	out := make([]canary.State, 0, len(byService))
	for _, st := range byService {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

// Interrupted implements deploy.Resumer: the kept states of canaries in
// progress or baking.
func (c *Canary) Interrupted(_ context.Context) ([]deploy.Interrupted, error) {
	var out []deploy.Interrupted
	for _, st := range c.States() {
		if st.Phase.Final() || st.Phase == "" {
			continue
		}
		out = append(out, deploy.Interrupted{Service: st.Service, Version: st.Version, Weights: weightsOf(st)})
	}
	return out, nil
}

// weightsOf is the traffic a canary left: its weight, the rest to the
// versions before it in proportion (the heaviest takes the rounding); a
// bake keeps the old versions on standby at 0.
func weightsOf(st canary.State) map[string]int {
	out := map[string]int{st.Version: st.Weight}
	total := 0
	for _, w := range st.Before {
		total += w
	}
	left, heaviest, hw := 100-st.Weight, "", -1
	given := 0
	for v, w := range st.Before {
		if v == st.Version {
			continue
		}
		share := 0
		if total > 0 {
			share = left * w / total
		}
		out[v] = share
		given += share
		if w > hw || (w == hw && v < heaviest) {
			heaviest, hw = v, w
		}
	}
	if heaviest != "" {
		out[heaviest] += left - given
	}
	return out
}

// Resume implements deploy.Resumer.
func (c *Canary) Resume(ctx context.Context, req deploy.ShiftRequest) error {
	st, err := c.load(req.Service)
	if err != nil {
		return fmt.Errorf("resume canary of %s: %w", req.Service, err)
	}
	err = c.a.Resume(ctx, canary.ShiftRequest{Service: req.Service, Version: req.Version, Old: req.Old, Router: req.Router}, st)
	return err
}

// Abandon implements deploy.Resumer: the canary is recorded as rolled
// back (the orchestrator routed the old version back).
func (c *Canary) Abandon(ctx context.Context, service, version, reason string) {
	st, err := c.load(service)
	if err != nil || st.Version != version {
		return
	}
	if err := c.a.Restore(ctx, c.router, st, reason); err != nil {
		c.log.WarnContext(ctx, "restore canary", "service", service, "version", version, "err", err)
	}
}

var (
	_ deploy.Shifter = (*Canary)(nil)
	_ deploy.Baker   = (*Canary)(nil)
	_ deploy.Resumer = (*Canary)(nil)
)

// openCanary wires the analysis of a local control plane: the mesh's
// metrics, the manifest's policies, states kept under the data directory.
func openCanary(cfg LocalConfig, l *Local) (*Canary, error) {
	// The figures and the addresses come from the mesh in this process,
	// or from the data plane's (its client is the router then).
	var metrics canary.Metrics
	var addr func(string) (string, error)
	if cfg.Mesh != nil {
		metrics, addr = cfg.Mesh, cfg.Mesh.Addr
	} else {
		m, ok := l.Router.(canary.Metrics)
		if !ok && cfg.Metrics.Metrics == nil {
			return nil, errors.New("canary analysis: the router gives no metrics (want the mesh, or the data plane's client)")
		}
		metrics = m
		addr = func(service string) (string, error) { return l.Router.Declare(context.Background(), service) }
	}
	if cfg.Metrics.Metrics != nil {
		metrics = cfg.Metrics.Metrics
	}
	return NewCanary(CanaryConfig{
		Metrics:  metrics,
		Querier:  cfg.Metrics.Querier,
		Provider: cfg.Metrics.Name,
		Graph: func() *graph.Graph {
			if l.Orchestrator != nil {
				return l.Orchestrator.Graph()
			}
			return cfg.Graph
		},
		Router: l.Router,
		Dir:    filepath.Join(cfg.Data, "canary"),
		Addr:   addr,
		Client: cfg.SmokeClient,
		Logger: cfg.Logger,
	})
}

// stopCanaries interrupts the canaries in progress (the releases that run
// them then end at once) and the bakes: their states stay for the next
// control plane, which resumes them or routes the old versions back.
func (l *Local) stopCanaries() {
	_ = l.Canary.Close()
	l.Orchestrator.Close()
}

// CanaryOverride is the body of POST /api/canaries/{service}/promote and
// /abort.
type CanaryOverride struct {
	Who    string `json:"who,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func (a *API) knownService(w http.ResponseWriter, service string) bool {
	if a.orch.Graph().Manifest().Service(service) == nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("unknown service %q", service))
		return false
	}
	return true
}

func (a *API) canaries(w http.ResponseWriter, r *http.Request) {
	if a.canary == nil {
		writeError(w, http.StatusNotFound, errors.New("this control plane runs no canary analysis"))
		return
	}
	service := r.URL.Query().Get("service")
	if service != "" && !a.knownService(w, service) {
		return
	}
	out := []canary.State{}
	for _, st := range a.canary.States() {
		if service == "" || st.Service == service {
			out = append(out, st)
		}
	}
	if service != "" && len(out) == 0 {
		writeError(w, http.StatusNotFound, fmt.Errorf("%s has had no canary yet", service))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"canaries": out})
}

func (a *API) canaryOverride(w http.ResponseWriter, r *http.Request) {
	if a.canary == nil {
		writeError(w, http.StatusNotFound, errors.New("this control plane runs no canary analysis"))
		return
	}
	service := r.PathValue("service")
	if !a.knownService(w, service) {
		return
	}
	var req CanaryOverride
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	req.Who = actor(r.Context(), req.Who)
	promote := strings.HasSuffix(r.URL.Path, "/promote")
	what := "aborted"
	if promote {
		what = "promoted"
	}
	reason := what + " by " + orWho(req.Who)
	if req.Reason != "" {
		reason += ": " + req.Reason
	}
	var err error
	if promote {
		err = a.canary.a.Promote(service, reason)
	} else {
		err = a.canary.a.Abort(service, reason)
	}
	switch {
	case err != nil: // none in progress, or a decision already pending
		writeError(w, http.StatusUnprocessableEntity, err)
		return
	}
	a.log.InfoContext(r.Context(), "canary override", "service", service, "action", what, "who", req.Who)
	st, _ := a.canary.a.Status(service)
	writeJSON(w, http.StatusOK, map[string]any{"canary": st})
}

func orWho(who string) string {
	if who == "" {
		return "someone"
	}
	return who
}

// Canaries returns the canaries (of one service when service is not
// empty), as they stand.
func (c *Client) Canaries(ctx context.Context, service string) ([]canary.State, error) {
	path := "/api/canaries"
	if service != "" {
		path += "?service=" + url.QueryEscape(service)
	}
	var out struct {
		Canaries []canary.State `json:"canaries"`
	}
	if err := c.getJSON(ctx, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	return out.Canaries, nil
}

// PromoteCanary promotes a service's canary now (or ends its bake).
func (c *Client) PromoteCanary(ctx context.Context, service string, req CanaryOverride) (canary.State, error) {
	return c.override(ctx, service, "promote", req)
}

// AbortCanary rolls a service's canary back now.
func (c *Client) AbortCanary(ctx context.Context, service string, req CanaryOverride) (canary.State, error) {
	return c.override(ctx, service, "abort", req)
}

func (c *Client) override(ctx context.Context, service, action string, req CanaryOverride) (canary.State, error) {
	var out struct {
		Canary canary.State `json:"canary"`
	}
	err := c.getJSON(ctx, http.MethodPost, "/api/canaries/"+url.PathEscape(service)+"/"+action, req, &out)
	return out.Canary, err
}

// WithCanary serves the canary routes of c; it returns a.
func (a *API) WithCanary(c *Canary) *API {
	a.canary = c
	return a
}

// laneLoad is the synthetic load of policies with synthetic_load: the
// service's smoke checks replayed (GET / when it has none) through its
// mesh address, pinned to the version and on the canary's header lane,
// as `flotilla load` would send them.
type laneLoad struct {
	graph  func() *graph.Graph
	addr   func(service string) (string, error)
	client *http.Client
}

// Drive implements canary.LoadDriver.
func (l laneLoad) Drive(ctx context.Context, req canary.LoadRequest) error {
	s := l.graph().Manifest().Service(req.Service)
	if s == nil {
		return fmt.Errorf("synthetic load: unknown service %q", req.Service)
	}
	addr, err := l.addr(req.Service)
	if err != nil {
		return fmt.Errorf("synthetic load of %s: %w", req.Service, err)
	}
	checks := s.Smoke
	if len(checks) == 0 {
		checks = []graph.SmokeCheck{{Name: "root", Path: "/"}}
	}
	rate := req.Rate
	if rate <= 0 {
		rate = 10
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	var failed int
	var last error
send:
	for i := int64(0); i < req.Requests; i++ {
		if err := l.send(ctx, addr, req.Version, checks[int(i)%len(checks)]); err != nil {
			if ctx.Err() != nil {
				break
			}
			failed++
			last = err
		}
		select {
		case <-ctx.Done():
			break send
		case <-tick.C:
		}
	}
	if failed > 0 {
		return fmt.Errorf("synthetic load of %s@%s: %d request(s) could not be sent, the last: %w", req.Service, req.Version, failed, last)
	}
	return nil
}

func (l laneLoad) send(ctx context.Context, addr, version string, c graph.SmokeCheck) error {
	method := c.Method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if c.Body != "" {
		body = strings.NewReader(c.Body)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, "http://"+addr+c.Path, body)
	if err != nil {
		return err
	}
	if c.Body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(mesh.CanaryHeader, "true")
	req.Header.Set(mesh.VersionHeader, version)
	resp, err := l.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.Body.Close()
}
