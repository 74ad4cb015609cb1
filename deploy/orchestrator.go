package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-ci/flotilla/affected"
	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/graph"
)

// Config wires an orchestrator. Graph, Target, Router and Store are
// required.
type Config struct {
	// Graph is the manifest's graph; Load, when set, reads the manifest
	// again for every plan (a long-running control plane sees edits to
	// flotilla.yaml without a restart).
	Graph  *graph.Graph
	Load   func() (*graph.Graph, error)
	Target Target
	Router Router
	Store  Store
	Gates  []Gate
	// Recorders are told of every record the history gets (the broker's
	// record-deployment); optional.
	Recorders []Recorder
	// Shifter moves the traffic to a new version once its smoke checks
	// passed (nil: all at once). Rollbacks always shift at once.
	Shifter Shifter
	// BuildFlags are the `go build` flags of every service (part of its
	// version). Nil means DefaultBuildFlags; an empty slice means none.
	BuildFlags []string
	// Env returns the platform's environment for a service's instances:
	// DATABASE_URL, BUS_URL, REGISTRY_URL, OTEL_*. The addresses of its
	// dependencies (<DEP>_URL, through the Router) are added by the
	// orchestrator. Nil means none.
	Env func(service string) map[string]string
	// Environment names the environment the target deploys to (default
	// "local"); a request for another one is refused.
	Environment string
	// MaxParallel bounds the services of a wave deployed at once (4).
	MaxParallel int
	// KeepVersions is how many versions of each service the target's
	// artifacts and logs are kept for after a release, newest first from
	// the history, besides the serving, canary and previous ones
	// (DefaultKeepVersions when 0; negative: never pruned on its own, only
	// by GC). See Orchestrator.GC.
	KeepVersions int
	// BuildParallel bounds the artifacts of a release built at once
	// (default GOMAXPROCS). A release builds all of its artifacts when it
	// starts, not wave by wave: builds do not depend on the deploy order.
	// A target that is a BatchBuilder builds them in one batch instead.
	BuildParallel int
	// SmokeTimeout bounds each smoke check (10s); DrainTimeout the wait
	// for an old version's in-flight requests (30s).
	SmokeTimeout time.Duration
	DrainTimeout time.Duration
	// Client makes the smoke checks (default: a plain http.Client).
	Client *http.Client
	Logger *slog.Logger
}

// Orchestrator deploys releases: the plan from the graph, then per wave,
// per service: gates, build, start beside the old version, readiness,
// smoke checks through the header lane, the traffic shift, drain and stop
// of the old version, and a history record. One release runs at a time.
// Its methods are what the control plane's HTTP API exposes.
type Orchestrator struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	running *Running
	g       *graph.Graph // the manifest as last loaded

	// bg bounds the shifts Restore resumed, which outlive it; Close ends
	// them (their Shifter keeps their state) and waits.
	bg     context.Context
	stopBg context.CancelFunc
	bgWG   sync.WaitGroup
}

// DefaultBuildFlags leave the symbol table and DWARF out of the
// services' binaries: with a warm build cache a service's build is only
// its link, and without DWARF the linker does a quarter less work (ten
// links are most of a cold `flotilla up`). Stack traces and profiles keep
// their function names and lines (the runtime's own tables); debuggers
// need a build without them (Config.BuildFlags).
var DefaultBuildFlags = []string{"-ldflags=-s -w"}

// New checks cfg and returns an orchestrator.
func New(cfg Config) (*Orchestrator, error) {
	var errs []error
	if cfg.Graph == nil {
		errs = append(errs, errors.New("orchestrator: no graph"))
	}
	if cfg.Target == nil {
		errs = append(errs, errors.New("orchestrator: no target"))
	}
	if cfg.Router == nil {
		errs = append(errs, errors.New("orchestrator: no router"))
	}
	if cfg.Store == nil {
		errs = append(errs, errors.New("orchestrator: no history store"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.MaxParallel <= 0 {
		cfg.MaxParallel = 4
	}
	if cfg.BuildParallel <= 0 {
		cfg.BuildParallel = runtime.GOMAXPROCS(0)
	}
	if cfg.BuildFlags == nil {
		cfg.BuildFlags = DefaultBuildFlags
	}
	if cfg.Environment == "" {
		cfg.Environment = "local"
	}
	if cfg.SmokeTimeout <= 0 {
		cfg.SmokeTimeout = 10 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	bg, stop := context.WithCancel(context.Background())
	return &Orchestrator{cfg: cfg, log: cfg.Logger, g: cfg.Graph, bg: bg, stopBg: stop}, nil
}

// Close interrupts the shifts Restore resumed (a Resumer keeps their
// state for the next control plane) and waits for them to stop.
func (o *Orchestrator) Close() {
	o.stopBg()
	o.bgWG.Wait()
}

// Graph returns the manifest's graph as last loaded (for every plan).
func (o *Orchestrator) Graph() *graph.Graph { return o.graph() }

// graph returns the manifest's graph as last loaded.
func (o *Orchestrator) graph() *graph.Graph {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.g
}

// refresh loads the manifest again when Config.Load is set, so a plan
// sees the manifest as it is now; a manifest that no longer loads is an
// error and the last good one stays.
func (o *Orchestrator) refresh() (*graph.Graph, error) {
	if o.cfg.Load == nil {
		return o.graph(), nil
	}
	g, err := o.cfg.Load()
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	o.g = g
	o.mu.Unlock()
	return g, nil
}

// Running returns the release in progress, or nil.
func (o *Orchestrator) Running() *Running {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.running == nil {
		return nil
	}
	r := *o.running
	return &r
}

// Plan works out a release without changing anything: the services the
// request names (or all, or the changed ones) with their versions, in
// waves. A service whose version already serves is in the plan as
// unchanged. An unknown service, a graph with problems or a bad git ref is
// an error.
func (o *Orchestrator) Plan(ctx context.Context, req Request) (*Plan, error) {
	if req.Environment != "" && req.Environment != o.cfg.Environment {
		return nil, fmt.Errorf("environment %s: this control plane deploys to %s; point the command at %s's control plane", req.Environment, o.cfg.Environment, req.Environment)
	}
	g, err := o.refresh()
	if err != nil {
		return nil, err
	}
	return MakePlan(ctx, g, req, o.cfg.BuildFlags, o.serving)
}

// MakePlan is Plan without an orchestrator (what `flotilla deploy
// --dry-run` prints when no control plane runs): current returns the
// version serving a service ("" when none; nil means nothing is deployed).
func MakePlan(ctx context.Context, g *graph.Graph, req Request, flags []string, current func(ctx context.Context, service string) (string, error)) (*Plan, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if probs := g.Validate(); len(probs) > 0 {
		var errs []error
		for _, p := range probs {
			errs = append(errs, errors.New(p.String()))
		}
		return nil, fmt.Errorf("the manifest has problems (run 'flotilla graph check'):\n%w", errors.Join(errs...))
	}
	plan := &Plan{}
	var names []string
	switch {
	case req.All:
		names = g.Manifest().Names()
		plan.Why = "every service"
	case req.Changed:
		r, err := affected.Run(ctx, g, affected.Options{Base: req.Base})
		if err != nil {
			return nil, fmt.Errorf("changed since %s: %w", req.Base, err)
		}
		names = r.Changed
		plan.Why = fmt.Sprintf("changed since %s: %s", req.Base, orNone(r.Changed))
		if len(names) == 0 {
			return plan, nil
		}
	default:
		seen := map[string]bool{}
		for _, n := range req.Services {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
		plan.Why = "named: " + strings.Join(names, ", ")
	}
	waves, err := g.Waves(names)
	if err != nil {
		return nil, err
	}
	vs := NewVersioner(g.Manifest(), flags)
	var errs []error
	for _, w := range waves {
		var items []PlanItem
		for _, name := range w {
			it, err := planItem(ctx, g.Manifest(), g.Manifest().Service(name), vs, flags, current)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			items = append(items, it)
		}
		plan.Waves = append(plan.Waves, items)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err // every service that cannot be planned, at once
	}
	return plan, nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}

func planItem(ctx context.Context, m *graph.Manifest, s *graph.Service, vs *Versioner, flags []string, current func(context.Context, string) (string, error)) (PlanItem, error) {
	fp, err := vs.Of(ctx, s.Name)
	if err != nil {
		return PlanItem{}, err
	}
	pkg, err := mainPackage(m, s)
	if err != nil {
		return PlanItem{}, err
	}
	spec := Spec{
		Service: s.Name, Version: fp.Version, Source: fp.Source,
		Build:    Build{Package: pkg, Flags: flags, Digest: fp.Digest},
		Env:      copyEnv(s.Deploy.Env),
		Replicas: s.Deploy.Replicas, Health: s.Health, ReadyTimeout: s.Deploy.Timeout.D(),
	}
	if spec.Health == "" {
		spec.Health = "/ready"
	}
	cur := ""
	if current != nil {
		if cur, err = current(ctx, s.Name); err != nil {
			return PlanItem{}, err
		}
	}
	it := PlanItem{Service: s.Name, Version: fp.Version, Current: cur, Action: ActionDeploy, Spec: spec}
	if cur == fp.Version {
		it.Action = ActionUnchanged
	}
	return it, nil
}

// serving returns the version getting the most traffic ("" when none).
func (o *Orchestrator) serving(ctx context.Context, service string) (string, error) {
	w, err := o.cfg.Router.Weights(ctx, service)
	if errors.Is(err, canary.ErrUnknownService) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("weights of %s: %w", service, err)
	}
	best, bestW := "", 0
	for name, x := range w {
		if x > bestW || x == bestW && x > 0 && name < best {
			best, bestW = name, x
		}
	}
	return best, nil
}

func copyEnv(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// begin claims the orchestrator for a release, or says who holds it.
func (o *Orchestrator) begin(ctx context.Context, who string, services []string) (int64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.running != nil {
		return 0, &BusyError{Running: *o.running}
	}
	now := time.Now()
	id, err := o.cfg.Store.StartRelease(ctx, who, services, now)
	if err != nil {
		return 0, fmt.Errorf("record release: %w", err)
	}
	o.running = &Running{Release: id, Services: services, Who: who, Started: now}
	return id, nil
}

func (o *Orchestrator) end() {
	o.mu.Lock()
	o.running = nil
	o.mu.Unlock()
}

// Deploy runs a release and reports every step to events (which may be
// nil; it is called from several goroutines, never concurrently). A
// request while another release runs is refused with a *BusyError. A
// failed service is rolled back at once (its old version never stopped
// serving), the rest of its wave finishes, and what depends on it is
// skipped; with RollbackRelease the services the release already deployed
// are rolled back too, last wave first. The error wraps ErrReleaseFailed
// and names each failed service with its reason; the report is returned
// either way once the release started.
func (o *Orchestrator) Deploy(ctx context.Context, req Request, events func(Event)) (*Report, error) {
	plan, err := o.Plan(ctx, req)
	if err != nil {
		return nil, err
	}
	return o.Execute(ctx, plan, req, events)
}

// Execute runs a plan made by Plan (Deploy is Plan then Execute).
func (o *Orchestrator) Execute(ctx context.Context, plan *Plan, req Request, events func(Event)) (*Report, error) {
	who := req.Who
	if who == "" {
		who = "unknown"
	}
	onFailure, err := ParseOnFailure(string(req.OnFailure))
	if err != nil {
		return nil, err
	}
	if len(plan.Services()) == 0 {
		return &Report{Plan: plan}, nil // nothing changed: no release
	}
	id, err := o.begin(ctx, who, plan.Services())
	if err != nil {
		return nil, err
	}
	defer o.end()
	env := req.Environment
	if env == "" {
		env = o.cfg.Environment
	}
	r := &release{o: o, g: o.graph(), id: id, who: who, env: env, emitFn: events, outcomes: map[string]*Outcome{}}
	r.progress.emit = r.emit
	start := time.Now()
	o.log.InfoContext(ctx, "release started", "release", id, "services", plan.Services(), "who", who)
	// Every artifact of the release is built first, as a phase of its
	// own with its progress: builds do not depend on the deploy order,
	// and a wave's time is then its deploy's, not the build's. A failed
	// build fails its service in its wave. Returning (or a cancelled
	// ctx) stops the builds still running, and waits for them.
	bctx, stopBuilds := context.WithCancel(ctx)
	var builders sync.WaitGroup
	defer func() { stopBuilds(); builders.Wait() }()
	r.buildAll(bctx, plan, &builders)
	// The contract gate prepares (publishes pacts, verifies providers)
	// while the artifacts build.
	r.prepared = o.prepare(ctx, r, plan)
	buildTime := r.awaitBuilds(ctx)
	parallel := req.MaxParallel
	if parallel <= 0 {
		parallel = o.cfg.MaxParallel
	}
	stopped, rollback := "", false
	for wi, wave := range plan.Waves {
		if stopped == "" && ctx.Err() != nil {
			stopped = "the release was interrupted: " + ctx.Err().Error()
		}
		if stopped != "" {
			stopBuilds()
			for _, it := range wave {
				r.finish(ctx, wi+1, it, Outcome{Result: Skipped, Reason: stopped}, time.Now())
			}
			continue
		}
		sem := make(chan struct{}, parallel)
		var wg sync.WaitGroup
		for _, it := range wave {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				r.service(ctx, wi+1, it)
			}()
		}
		wg.Wait()
		if onFailure == RollbackRelease {
			for _, it := range wave {
				if oc := r.outcome(it.Service); oc.Result == Failed {
					stopped = fmt.Sprintf("the release is rolled back: %s failed", it.Service)
					rollback = true
					break
				}
			}
		}
	}
	if rollback {
		r.rollbackRelease(ctx, plan)
	}
	rep := &Report{Release: id, Plan: plan, Duration: time.Since(start), Build: buildTime}
	var errs []error
	for _, name := range plan.Services() {
		oc := r.outcome(name)
		rep.Outcomes = append(rep.Outcomes, oc)
		if oc.Result == Failed {
			errs = append(errs, fmt.Errorf("%s@%s: %s", oc.Service, oc.Version, oc.Reason))
		}
	}
	r.emit(Event{Step: StepDone, Msg: summary(rep)})
	o.log.InfoContext(ctx, "release finished", "release", id, "summary", summary(rep), "duration", rep.Duration)
	o.autoGC(ctx)
	if len(errs) > 0 {
		return rep, fmt.Errorf("%w: %w", ErrReleaseFailed, errors.Join(errs...))
	}
	return rep, nil
}

func summary(rep *Report) string {
	count := map[Result]int{}
	for _, oc := range rep.Outcomes {
		count[oc.Result]++
	}
	var parts []string
	for _, r := range []Result{Succeeded, Unchanged, Failed, Skipped, RolledBack} {
		if count[r] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[r], r))
		}
	}
	return orNone(parts)
}

// release is one run of Execute.
type release struct {
	o   *Orchestrator
	g   *graph.Graph // the manifest the release was planned from
	id  int64
	who string
	env string

	emitMu sync.Mutex
	emitFn func(Event)

	mu       sync.Mutex
	outcomes map[string]*Outcome
	order    []PlanItem // succeeded deploys, in the order they finished

	// builds are the release's artifacts being built (nil when the
	// target does not build); buildTodo counts those not cached, and
	// progress is how far a batch build has come.
	builds    map[string]*build
	buildTodo int
	progress  buildProgress
	// buildStart is when the builds started; a build's at, when it ended.
	buildStart time.Time
	// prepared holds the error of each gate whose Prepare failed.
	prepared map[string]error
}

// Preparer is a Gate that needs the whole release before it answers for
// any of its services: the contract gate publishes the pacts of the
// services the release deploys and verifies their providers, so the
// broker has data to answer can-i-deploy. Prepare runs once per release,
// while the artifacts build, before the first gate is asked. An error
// closes the gate for every service of the release (it could not answer).
type Preparer interface {
	Gate
	Prepare(ctx context.Context, req PrepareRequest) error
}

// PrepareRequest is what a Preparer is given.
type PrepareRequest struct {
	Plan        *Plan
	Environment string
	// Progress reports a step of the preparation on a service's line.
	Progress func(service, msg string)
}

// prepare runs every Preparer gate for the release and returns the
// errors by gate name.
func (o *Orchestrator) prepare(ctx context.Context, r *release, plan *Plan) map[string]error {
	out := map[string]error{}
	wave := map[string]int{}
	for wi, w := range plan.Waves {
		for _, it := range w {
			wave[it.Service] = wi + 1
		}
	}
	for _, g := range o.cfg.Gates {
		p, ok := g.(Preparer)
		if !ok {
			continue
		}
		err := p.Prepare(ctx, PrepareRequest{Plan: plan, Environment: r.env, Progress: func(service, msg string) {
			r.emit(Event{Wave: wave[service], Service: service, Step: StepGate, Msg: g.Name() + ": " + msg})
		}})
		if err != nil {
			o.log.WarnContext(ctx, "gate could not prepare", "gate", g.Name(), "release", r.id, "err", err)
			out[g.Name()] = err
		}
	}
	return out
}

// build is one artifact of a release: done is closed once err and at are
// set.
type build struct {
	done chan struct{}
	err  error
	at   time.Time // when it ended
}

// finish records the build's end and wakes its waiters.
func (bd *build) finish() {
	bd.at = time.Now()
	close(bd.done)
}

// buildAll starts the builds of every service plan deploys, in plan order
// (the first wave's first), BuildParallel at a time, into r.builds by
// service; wg is done when the builders are. Progress goes out as release
// events (Service empty, Step StepBuild). It returns at once; r.builds
// stays nil when the target does not build.
func (r *release) buildAll(ctx context.Context, plan *Plan, wg *sync.WaitGroup) {
	o, emit := r.o, r.emit
	b, ok := o.cfg.Target.(Builder)
	if !ok {
		return
	}
	var items []PlanItem
	out := map[string]*build{}
	r.builds, r.buildStart = out, time.Now()
	cached, _ := b.(interface{ Built(Spec) bool })
	todo := 0
	for _, w := range plan.Waves {
		for _, it := range w {
			if it.Action == ActionUnchanged {
				continue
			}
			items = append(items, it)
			out[it.Service] = &build{done: make(chan struct{})}
			if cached == nil || !cached.Built(it.Spec) {
				todo++
			}
		}
	}
	r.buildTodo = todo
	if todo > 0 {
		msg := fmt.Sprintf("%d artifact(s) to build", todo)
		if n := len(items) - todo; n > 0 {
			msg += fmt.Sprintf(", %d cached", n)
		}
		emit(Event{Step: StepBuild, Msg: msg})
	}
	if bb, ok := b.(BatchBuilder); ok && len(items) > 1 {
		// All at once: every service waits for the batch, which takes
		// less than the same builds BuildParallel at a time.
		wg.Go(func() {
			specs := make([]Spec, len(items))
			for i, it := range items {
				specs[i] = it.Spec
			}
			var errs []error
			if err := ctx.Err(); err == nil {
				if pb, ok := bb.(ProgressBuilder); ok {
					errs = pb.BuildManyProgress(ctx, specs, r.progress.report)
				} else {
					errs = bb.BuildMany(ctx, specs)
				}
			}
			for i, it := range items {
				bd := out[it.Service]
				switch {
				case i < len(errs):
					bd.err = errs[i]
				case ctx.Err() != nil:
					bd.err = ctx.Err()
				default:
					bd.err = fmt.Errorf("build %s: no result from the batch", it.Service)
				}
				bd.finish()
			}
		})
		return
	}
	queue := make(chan PlanItem, len(items))
	for _, it := range items {
		queue <- it
	}
	close(queue)
	var mu sync.Mutex
	finished := 0
	for range min(o.cfg.BuildParallel, len(items)) {
		wg.Go(func() {
			for it := range queue {
				bd := out[it.Service]
				if bd.err = ctx.Err(); bd.err == nil {
					bd.err = b.Build(ctx, it.Spec)
				}
				mu.Lock()
				finished++
				if todo > 0 && bd.err == nil {
					emit(Event{Step: StepBuild, Msg: fmt.Sprintf("%d/%d artifact(s) ready: %s", finished, len(items), it.Service)})
				}
				mu.Unlock()
				bd.finish()
			}
		})
	}
}

// buildProgress turns a batch build's progress into events: one per
// twentieth of the packages, or every 10 seconds while it compiles, so a
// first build of hundreds of packages is a few dozen lines.
type buildProgress struct {
	emit  func(Event)
	last  BuildProgress // as last reported
	at    time.Time
	final BuildProgress // as last heard
}

func (p *buildProgress) report(bp BuildProgress) {
	p.final = bp
	step := func(x BuildProgress) int {
		if x.Packages > 0 {
			return x.Compiled * 20 / x.Packages
		}
		return x.Compiled / 25
	}
	if p.last.Compiled > 0 && step(bp) == step(p.last) && time.Since(p.at) < 10*time.Second {
		return
	}
	if bp.Compiled == p.last.Compiled {
		return
	}
	p.last, p.at = bp, time.Now()
	msg := fmt.Sprintf("compiled %d package(s)", bp.Compiled)
	if bp.Packages > 0 {
		msg = fmt.Sprintf("compiled %d of %d package(s)", bp.Compiled, bp.Packages)
	}
	if bp.Package != "" {
		msg += " (" + bp.Package + ")"
	}
	p.emit(Event{Step: StepBuild, Msg: msg})
}

// awaitBuilds waits for every build of the release (or ctx), says how the
// build phase went, and returns how long it took (0 when nothing was
// built).
func (r *release) awaitBuilds(ctx context.Context) time.Duration {
	if len(r.builds) == 0 {
		return 0
	}
	for _, bd := range r.builds {
		select {
		case <-bd.done:
		case <-ctx.Done():
			return time.Since(r.buildStart)
		}
	}
	// The phase ends with its last build, which may be before the
	// contract gate finished preparing.
	var took time.Duration
	for _, bd := range r.builds {
		took = max(took, bd.at.Sub(r.buildStart))
	}
	if r.buildTodo == 0 {
		return 0 // every artifact was cached: a quiet phase
	}
	failed := 0
	for _, bd := range r.builds {
		if bd.err != nil {
			failed++
		}
	}
	msg := fmt.Sprintf("%d artifact(s) ready in %v", len(r.builds)-failed, took.Round(time.Millisecond))
	if f := r.progress.final; f.Packages > 0 {
		msg += fmt.Sprintf(": %d of %d package(s) compiled, the rest from the build cache", f.Compiled, f.Packages)
	}
	if failed > 0 {
		msg += fmt.Sprintf("; %d failed (see their services)", failed)
	}
	r.emit(Event{Step: StepBuild, Msg: msg})
	return took
}

func (r *release) emit(e Event) {
	e.Release = r.id
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	r.emitMu.Lock()
	defer r.emitMu.Unlock()
	if r.emitFn != nil {
		r.emitFn(e)
	}
}

func (r *release) outcome(service string) Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	if oc := r.outcomes[service]; oc != nil {
		return *oc
	}
	return Outcome{Service: service}
}

// finish records a service's outcome: in the release, the history and the
// events.
func (r *release) finish(ctx context.Context, wave int, it PlanItem, oc Outcome, started time.Time) {
	oc.Service, oc.Wave, oc.Version, oc.Previous = it.Service, wave, it.Version, it.Current
	oc.Duration = time.Since(started)
	r.mu.Lock()
	r.outcomes[it.Service] = &oc
	if oc.Result == Succeeded {
		r.order = append(r.order, it)
	}
	r.mu.Unlock()
	step := map[Result]Step{Succeeded: StepDone, Failed: StepFailed, Skipped: StepSkipped, Unchanged: StepUnchanged, RolledBack: StepRolledBack}[oc.Result]
	msg := oc.Reason
	action, previous := RecordDeploy, it.Current
	if oc.Result == Succeeded {
		// Nothing served, but the history says something did: the
		// platform was stopped and this starts the service again.
		if it.Current == "" {
			if last, err := r.o.cfg.Store.Current(context.WithoutCancel(ctx), it.Service); err == nil && last.Version != "" {
				action, previous = RecordStart, last.Version
			}
		}
		d := oc.Duration.Round(time.Millisecond)
		switch {
		case action == RecordStart && previous == it.Version:
			msg = fmt.Sprintf("serving %s again (started after a stop) in %v", it.Version, d)
		case action == RecordStart:
			msg = fmt.Sprintf("serving %s (%s served before the stop) in %v", it.Version, previous, d)
		case previous == "":
			msg = fmt.Sprintf("serving %s (was not deployed) in %v", it.Version, d)
		default:
			msg = fmt.Sprintf("serving %s (was %s) in %v", it.Version, previous, d)
		}
	}
	if oc.Result != Unchanged { // nothing happened: no history
		rec := Record{Release: r.id, Service: it.Service, Version: it.Version, Previous: previous, Action: action,
			Result: oc.Result, Reason: oc.Reason, Who: r.who, Started: started, Duration: oc.Duration, Spec: it.Spec}
		if warn := r.o.record(ctx, rec); len(warn) > 0 {
			r.mu.Lock()
			r.outcomes[it.Service].Warnings = warn
			r.mu.Unlock()
			msg = withWarnings(msg, warn)
		}
	}
	r.emit(Event{Wave: wave, Service: it.Service, Version: it.Version, Step: step, Msg: msg})
}

// withWarnings appends a record's failed side effects to a message.
func withWarnings(msg string, warn []string) string {
	if msg != "" {
		msg += "; "
	}
	return msg + strings.Join(warn, "; ")
}

// record tells the recorders of a record, then writes it to the history.
// Neither can fail a release that already happened, and neither is
// silent: a recorder that fails is named in the record's reason and in
// what record returns (the outcome's warnings, the progress line); a
// history that cannot be written is logged as an error.
func (o *Orchestrator) record(ctx context.Context, rec Record) []string {
	ctx = context.WithoutCancel(ctx)
	var warn []string
	for _, rc := range o.cfg.Recorders {
		if err := rc.Record(ctx, rec); err != nil {
			o.log.WarnContext(ctx, "recorder failed", "service", rec.Service, "version", rec.Version, "result", string(rec.Result), "err", err)
			warn = append(warn, "recording it failed: "+err.Error())
		}
	}
	if len(warn) > 0 {
		rec.Reason = withWarnings(rec.Reason, warn)
	}
	if _, err := o.cfg.Store.Add(ctx, rec); err != nil {
		o.log.ErrorContext(ctx, "record deployment", "service", rec.Service, "version", rec.Version, "err", err)
		warn = append(warn, "the history could not record it: "+err.Error())
	}
	return warn
}

// service deploys one service of a wave.
func (r *release) service(ctx context.Context, wave int, it PlanItem) {
	started := time.Now()
	o := r.o
	fail := func(format string, args ...any) {
		// The report names the service and version already.
		reason := strings.TrimPrefix(fmt.Sprintf(format, args...), it.Service+"@"+it.Version+": ")
		r.finish(ctx, wave, it, Outcome{Result: Failed, Reason: reason}, started)
	}
	if it.Action == ActionUnchanged {
		r.finish(ctx, wave, it, Outcome{Result: Unchanged, Reason: "version " + it.Version + " already serves"}, started)
		return
	}
	// Dependencies: deployed in an earlier wave of this release, or
	// already serving.
	for _, dep := range r.g.DependsOn(it.Service) {
		r.mu.Lock()
		doc := r.outcomes[dep]
		r.mu.Unlock()
		if doc != nil {
			if doc.Result == Failed || doc.Result == Skipped {
				r.finish(ctx, wave, it, Outcome{Result: Skipped, Reason: fmt.Sprintf("its dependency %s %s", dep, doc.Result)}, started)
				return
			}
			continue
		}
		cur, err := o.serving(ctx, dep)
		if err != nil {
			fail("%v", err)
			return
		}
		if cur == "" {
			fail("its dependency %s is not deployed; deploy it first (flotilla deploy %s) or in the same release", dep, dep)
			return
		}
	}
	ev := func(step Step, msg string) {
		r.emit(Event{Wave: wave, Service: it.Service, Version: it.Version, Step: step, Msg: msg})
	}
	for _, g := range o.cfg.Gates {
		ev(StepGate, g.Name())
		if err := r.prepared[g.Name()]; err != nil {
			fail("gate %s could not answer: %v", g.Name(), err)
			return
		}
		res, err := g.Check(ctx, GateRequest{Service: it.Service, Version: it.Version, Source: it.Spec.Source, Environment: r.env})
		if err != nil {
			fail("gate %s could not answer: %v", g.Name(), err)
			return
		}
		if !res.Pass {
			fail("gate %s is closed: %s", g.Name(), res.Reason)
			return
		}
	}
	if bd := r.builds[it.Service]; bd != nil {
		// Started with the release; most often done by now.
		ev(StepBuild, it.Spec.Build.Package)
		select {
		case <-bd.done:
		case <-ctx.Done():
			fail("build %s@%s: %v", it.Service, it.Version, ctx.Err())
			return
		}
		if bd.err != nil {
			fail("%v", bd.err)
			return
		}
	}
	old, err := o.versions(ctx, it.Service)
	if err != nil {
		fail("%v", err)
		return
	}
	smoke := r.g.Manifest().Service(it.Service).Smoke
	if err := o.switchTo(ctx, r.g, it.Spec, old, smoke, o.cfg.Shifter, ev); err != nil {
		fail("%v", err)
		return
	}
	r.finish(ctx, wave, it, Outcome{Result: Succeeded}, started)
}

// versions returns the subsets the router knows for a service.
func (o *Orchestrator) versions(ctx context.Context, service string) ([]string, error) {
	w, err := o.cfg.Router.Weights(ctx, service)
	if errors.Is(err, canary.ErrUnknownService) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("weights of %s: %w", service, err)
	}
	out := make([]string, 0, len(w))
	for v := range w {
		out = append(out, v)
	}
	sort.Strings(out)
	return out, nil
}

// switchTo starts spec's version as the canary subset at 0%, runs the
// smoke checks through the header lane, moves all traffic to it, then
// drains and stops the old versions. Until the shift the old version
// serves every user request; on failure the new one is removed again.
func (o *Orchestrator) switchTo(ctx context.Context, g *graph.Graph, spec Spec, old []string, smoke []graph.SmokeCheck, shift Shifter, ev func(Step, string)) error {
	svc := spec.Service
	addr, err := o.cfg.Router.Declare(ctx, svc)
	if err != nil {
		return fmt.Errorf("route %s: %w", svc, err)
	}
	run := spec
	run.Env, err = o.env(ctx, g, spec)
	if err != nil {
		return err
	}
	ev(StepStart, fmt.Sprintf("beside %s", orNone(old)))
	insts, err := o.cfg.Target.Apply(ctx, run)
	if err != nil {
		return err
	}
	ev(StepReady, fmt.Sprintf("%d instance(s): %s", len(insts), strings.Join(Endpoints(insts), ", ")))
	// The weights before the new version joined: what a failure puts back.
	before, err := o.cfg.Router.Weights(ctx, svc)
	if err != nil && !errors.Is(err, canary.ErrUnknownService) {
		return fmt.Errorf("weights of %s: %w", svc, err)
	}
	undo := func(cause error) error {
		if errors.Is(cause, ErrInterrupted) {
			// The Shifter left the traffic as it was and kept its state:
			// a restarted control plane takes it up (Restore).
			return fmt.Errorf("%w; the traffic is left as it was: the next control plane resumes the shift, or routes the old version back", cause)
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.cfg.DrainTimeout)
		defer cancel()
		restore := map[string]int{}
		for v, w := range before {
			if v != spec.Version && w > 0 {
				restore[v] = w
			}
		}
		if len(restore) > 0 {
			if err := o.cfg.Router.SetWeights(cctx, svc, restore); err != nil {
				o.log.ErrorContext(ctx, "put the old weights back", "service", svc, "weights", restore, "err", err)
			}
		}
		if err := o.cfg.Router.RemoveSubset(cctx, svc, spec.Version); err != nil {
			o.log.WarnContext(ctx, "remove failed subset", "service", svc, "version", spec.Version, "err", err)
		}
		if err := o.cfg.Target.Remove(cctx, svc, spec.Version); err != nil {
			o.log.WarnContext(ctx, "stop failed version", "service", svc, "version", spec.Version, "err", err)
		}
		return cause
	}
	sub := Subset{Name: spec.Version, Canary: true, Endpoints: Endpoints(insts)}
	if err := o.cfg.Router.SetSubset(ctx, svc, sub); err != nil {
		return undo(fmt.Errorf("route %s@%s: %w", svc, spec.Version, err))
	}
	for _, c := range smoke {
		ev(StepSmoke, c.Name)
		if err := o.smoke(ctx, addr, spec.Version, c); err != nil {
			return undo(err)
		}
	}
	if shift == nil {
		shift = allAtOnce{}
	}
	ev(StepShift, shift.Describe(spec.Service, spec.Version))
	var serving []string
	for v, w := range before {
		if v != spec.Version && w > 0 {
			serving = append(serving, v)
		}
	}
	sort.Strings(serving)
	progress := func(msg string) { ev(StepAnalysis, msg) }
	if err := shift.Shift(ctx, ShiftRequest{Service: svc, Version: spec.Version, Old: serving, Router: o.cfg.Router, Progress: progress}); err != nil {
		return undo(fmt.Errorf("shift %s to %s: %w", svc, spec.Version, err))
	}
	sub.Canary = false
	if err := o.cfg.Router.SetSubset(ctx, svc, sub); err != nil {
		o.log.WarnContext(ctx, "clear canary mark", "service", svc, "version", spec.Version, "err", err)
	}
	o.afterShift(ctx, shift, svc, spec.Version, old, ev)
	return nil
}

// afterShift drains and stops a service's old versions once its traffic
// is on version, or, while a Baker's bake watches version, leaves them on
// standby and does it when the bake passes (and removes version and
// records the rollback when it fails).
func (o *Orchestrator) afterShift(ctx context.Context, shift Shifter, svc, version string, old []string, ev func(Step, string)) {
	var standby []string
	for _, v := range old {
		if v != version {
			standby = append(standby, v)
		}
	}
	if b, ok := shift.(Baker); ok && len(standby) > 0 {
		if b.Baking(svc, version, func(ctx context.Context, err error) { o.bakeEnded(ctx, svc, version, standby, err) }) {
			ev(StepAnalysis, fmt.Sprintf("baking in the background; %s on standby until it passes", strings.Join(standby, ", ")))
			return
		}
	}
	o.drain(ctx, svc, standby, ev)
}

// drain removes old versions of a service from the router, waiting for
// their requests in flight, and stops them.
func (o *Orchestrator) drain(ctx context.Context, svc string, old []string, ev func(Step, string)) {
	for _, v := range old {
		ev(StepDrain, v)
		dctx, cancel := context.WithTimeout(ctx, o.cfg.DrainTimeout)
		if err := o.cfg.Router.RemoveSubset(dctx, svc, v); err != nil {
			o.log.WarnContext(ctx, "drain old version", "service", svc, "version", v, "err", err)
		}
		if err := o.cfg.Target.Remove(dctx, svc, v); err != nil && !errors.Is(err, ErrNotFound) {
			o.log.WarnContext(ctx, "stop old version", "service", svc, "version", v, "err", err)
		}
		cancel()
	}
}

// bakeEnded finishes a release's service once its bake ended: drains the
// old versions when it passed; when it failed (the Shifter put the old
// weights back), stops the new version and records the rollback.
func (o *Orchestrator) bakeEnded(ctx context.Context, svc, version string, standby []string, err error) {
	ctx = context.WithoutCancel(ctx)
	nop := func(Step, string) {}
	// Rolled back or replaced meanwhile (a release rollback, a manual
	// one): what serves now is not the bake's to touch. (A failed bake
	// has put the old weights back itself: the version is still routed,
	// at 0.)
	cur, _ := o.serving(ctx, svc)
	routed, _ := o.versions(ctx, svc)
	if (err == nil && cur != version) || !slices.Contains(routed, version) {
		o.log.InfoContext(ctx, "bake ended on a version no longer serving", "service", svc, "version", version, "serving", cur, "err", err)
		return
	}
	if err == nil {
		o.log.InfoContext(ctx, "bake passed", "service", svc, "version", version, "drain", strings.Join(standby, ","))
		o.drain(ctx, svc, standby, nop)
		return
	}
	o.log.WarnContext(ctx, "bake failed", "service", svc, "version", version, "err", err)
	o.rolledBack(ctx, svc, version, "rolled back during the bake: "+err.Error(), time.Now())
}

// rolledBack removes a version a Shifter rolled back after its release
// (the old weights already back) and records the rollback to the version
// serving now.
func (o *Orchestrator) rolledBack(ctx context.Context, svc, version, reason string, started time.Time) {
	ctx = context.WithoutCancel(ctx)
	cctx, cancel := context.WithTimeout(ctx, o.cfg.DrainTimeout)
	defer cancel()
	prev, _ := o.serving(cctx, svc)
	if err := o.cfg.Router.RemoveSubset(cctx, svc, version); err != nil {
		o.log.WarnContext(ctx, "remove rolled back subset", "service", svc, "version", version, "err", err)
	}
	if err := o.cfg.Target.Remove(cctx, svc, version); err != nil && !errors.Is(err, ErrNotFound) {
		o.log.WarnContext(ctx, "stop rolled back version", "service", svc, "version", version, "err", err)
	}
	rec := Record{Service: svc, Version: prev, Previous: version, Action: RecordRollback, Result: Succeeded,
		Reason: reason, Who: "canary", Started: started, Duration: time.Since(started)}
	if prev == "" || prev == version {
		rec.Version, rec.Result = version, RolledBack
	} else if pr, err := o.recordOf(ctx, svc, prev); err == nil {
		rec.Spec = pr.Spec
	}
	o.record(ctx, rec)
}

// env is the platform's environment for spec plus the addresses of its
// dependencies through the router, under the spec's own.
func (o *Orchestrator) env(ctx context.Context, g *graph.Graph, spec Spec) (map[string]string, error) {
	out := map[string]string{}
	if o.cfg.Env != nil {
		for k, v := range o.cfg.Env(spec.Service) {
			out[k] = v
		}
	}
	for _, dep := range g.DependsOn(spec.Service) {
		addr, err := o.cfg.Router.Declare(ctx, dep)
		if err != nil {
			return nil, fmt.Errorf("address of %s's dependency %s: %w", spec.Service, dep, err)
		}
		out[DepEnv(dep)] = "http://" + addr
	}
	for k, v := range spec.Env {
		out[k] = v
	}
	return out, nil
}

// DepEnv is the variable a dependency's base URL is given in:
// order-service → ORDER_URL (what shop/kit reads).
func DepEnv(service string) string {
	short := strings.TrimSuffix(service, "-service")
	return strings.ToUpper(strings.ReplaceAll(short, "-", "_")) + "_URL"
}

// rollbackRelease puts back what the release replaced, last deployed
// first.
func (r *release) rollbackRelease(ctx context.Context, plan *Plan) {
	r.mu.Lock()
	done := append([]PlanItem(nil), r.order...)
	r.mu.Unlock()
	waveOf := map[string]int{}
	for wi, w := range plan.Waves {
		for _, it := range w {
			waveOf[it.Service] = wi + 1
		}
	}
	sort.SliceStable(done, func(i, j int) bool { return waveOf[done[i].Service] > waveOf[done[j].Service] })
	for _, it := range done {
		started := time.Now()
		wave := waveOf[it.Service]
		err := r.o.restore(ctx, it.Service, it.Version, it.Current, func(step Step, msg string) {
			r.emit(Event{Wave: wave, Service: it.Service, Version: it.Current, Step: step, Msg: msg})
		})
		reason, result, step := "the release was rolled back", RolledBack, StepRolledBack
		rec := Record{Release: r.id, Service: it.Service, Version: it.Current, Previous: it.Version, Action: RecordRollback,
			Result: Succeeded, Who: r.who, Started: started, Duration: time.Since(started)}
		if prev, perr := r.o.recordOf(ctx, it.Service, it.Current); perr == nil {
			rec.Spec = prev.Spec
		}
		if it.Current == "" {
			rec.Version, rec.Result = it.Version, RolledBack // nothing served before: the version is gone
		}
		if err != nil {
			// Nothing may claim the rollback happened: the service
			// failed, and what serves now is whatever the error left.
			what := "putting " + it.Current + " back"
			if it.Current == "" {
				what = "stopping " + it.Version + " (nothing served before)"
			}
			reason = "the release was rolled back, but " + what + " failed: " + err.Error()
			result, step, rec.Result = Failed, StepFailed, Failed
		}
		rec.Reason = reason
		warn := r.o.record(ctx, rec)
		r.mu.Lock()
		oc := r.outcomes[it.Service]
		oc.Result, oc.Reason, oc.Warnings = result, reason, append(oc.Warnings, warn...)
		r.mu.Unlock()
		msg := reason
		if len(warn) > 0 {
			msg = withWarnings(msg, warn)
		}
		r.emit(Event{Wave: wave, Service: it.Service, Version: it.Version, Step: step, Msg: msg})
	}
}

// restore moves a service from version cur back to prev (stopping cur
// when prev is empty: the service did not run before).
func (o *Orchestrator) restore(ctx context.Context, service, cur, prev string, ev func(Step, string)) error {
	if prev == "" {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.cfg.DrainTimeout)
		defer cancel()
		_ = o.cfg.Router.RemoveSubset(cctx, service, cur)
		return o.cfg.Target.Remove(cctx, service, cur)
	}
	rec, err := o.recordOf(ctx, service, prev)
	if err != nil {
		return err
	}
	return o.switchTo(ctx, o.graph(), rec.Spec, []string{cur}, nil, nil, ev)
}

// recordOf finds the spec a version of a service last served with.
func (o *Orchestrator) recordOf(ctx context.Context, service, version string) (Record, error) {
	recs, err := o.cfg.Store.List(ctx, service, 1000)
	if err != nil {
		return Record{}, fmt.Errorf("history of %s: %w", service, err)
	}
	for _, rec := range recs {
		if rec.Version == version && rec.Result == Succeeded && rec.Spec.Version == version {
			return rec, nil
		}
	}
	return Record{}, fmt.Errorf("%s@%s: %w (no successful deployment of it in the history)", service, version, ErrNoHistory)
}

// RollbackRequest asks to put a service back on an earlier version.
type RollbackRequest struct {
	Service string `json:"service"`
	// To is the version to go back to; empty means the one that served
	// before the current one.
	To  string `json:"to,omitempty"`
	Who string `json:"who,omitempty"`
}

// ResolveRollback checks a rollback request and fills in the version it
// goes back to: an unknown service, one not deployed, no earlier version
// in the history, or the version already serving are errors.
func (o *Orchestrator) ResolveRollback(ctx context.Context, req RollbackRequest) (RollbackRequest, error) {
	if o.graph().Manifest().Service(req.Service) == nil {
		return req, fmt.Errorf("unknown service %q", req.Service)
	}
	cur, err := o.serving(ctx, req.Service)
	if err != nil {
		return req, err
	}
	if cur == "" {
		return req, fmt.Errorf("%s is not deployed: nothing to roll back", req.Service)
	}
	if req.To == "" {
		recs, err := o.cfg.Store.List(ctx, req.Service, 1000)
		if err != nil {
			return req, fmt.Errorf("history of %s: %w", req.Service, err)
		}
		for _, rec := range recs {
			if rec.Result == Succeeded && rec.Version != cur && rec.Spec.Version == rec.Version {
				req.To = rec.Version
				break
			}
		}
		if req.To == "" {
			return req, fmt.Errorf("%s has no earlier version in the history to roll back to", req.Service)
		}
	}
	if req.To == cur {
		return req, fmt.Errorf("%s already serves %s", req.Service, req.To)
	}
	if _, err := o.recordOf(ctx, req.Service, req.To); err != nil {
		return req, err
	}
	return req, nil
}

// Rollback puts a service back on an earlier version (started again from
// its recorded spec and cached artifact, readiness checked, then the
// traffic shift and the drain), recorded as a release of its own. Bad
// requests fail as ResolveRollback says.
func (o *Orchestrator) Rollback(ctx context.Context, req RollbackRequest, events func(Event)) (*Report, error) {
	req, err := o.ResolveRollback(ctx, req)
	if err != nil {
		return nil, err
	}
	cur, err := o.serving(ctx, req.Service)
	if err != nil {
		return nil, err
	}
	to := req.To
	rec, err := o.recordOf(ctx, req.Service, to)
	if err != nil {
		return nil, err
	}
	who := req.Who
	if who == "" {
		who = "unknown"
	}
	id, err := o.begin(ctx, who, []string{req.Service})
	if err != nil {
		return nil, err
	}
	defer o.end()
	r := &release{o: o, g: o.graph(), id: id, who: who, emitFn: events, outcomes: map[string]*Outcome{}}
	started := time.Now()
	old, err := o.versions(ctx, req.Service)
	if err == nil {
		err = o.switchTo(ctx, r.g, rec.Spec, old, nil, nil, func(step Step, msg string) {
			r.emit(Event{Wave: 1, Service: req.Service, Version: to, Step: step, Msg: msg})
		})
	}
	oc := Outcome{Service: req.Service, Wave: 1, Version: to, Previous: cur, Result: Succeeded, Duration: time.Since(started)}
	if err != nil {
		oc.Result, oc.Reason = Failed, err.Error()
	}
	msg := oc.Reason
	if err == nil {
		msg = fmt.Sprintf("serving %s again (rolled back from %s) in %v", to, cur, oc.Duration.Round(time.Millisecond))
	}
	rspec := rec.Spec
	if warn := o.record(ctx, Record{Release: id, Service: req.Service, Version: to, Previous: cur,
		Action: RecordRollback, Result: oc.Result, Reason: oc.Reason, Who: who, Started: started, Duration: oc.Duration, Spec: rspec}); len(warn) > 0 {
		oc.Warnings, msg = warn, withWarnings(msg, warn)
	}
	r.emit(Event{Wave: 1, Service: req.Service, Version: to, Step: map[Result]Step{Succeeded: StepDone, Failed: StepFailed}[oc.Result], Msg: msg})
	plan := &Plan{Waves: [][]PlanItem{{{Service: req.Service, Version: to, Current: cur, Action: ActionDeploy, Spec: rspec}}}, Why: "rollback"}
	rep := &Report{Release: id, Plan: plan, Outcomes: []Outcome{oc}, Duration: oc.Duration}
	o.autoGC(ctx)
	if err != nil {
		return rep, fmt.Errorf("%w: roll %s back to %s: %w", ErrReleaseFailed, req.Service, to, err)
	}
	return rep, nil
}

// History returns the deployment records, newest first.
func (o *Orchestrator) History(ctx context.Context, service string, limit int) ([]Record, error) {
	if service != "" && o.graph().Manifest().Service(service) == nil {
		return nil, fmt.Errorf("unknown service %q", service)
	}
	return o.cfg.Store.List(ctx, service, limit)
}

// ServiceStatus is what runs of a service and where its traffic goes.
type ServiceStatus struct {
	Service string `json:"service"`
	// Stable is the version getting the most traffic ("" when not
	// deployed); Canary the subsets besides it.
	Stable  string         `json:"stable,omitempty"`
	Canary  []string       `json:"canary,omitempty"`
	Weights map[string]int `json:"weights,omitempty"`
	// Health is "ready" (every instance of the stable version ready),
	// "degraded" (some), "down" (none), or "not deployed".
	Health    string     `json:"health"`
	Since     time.Time  `json:"since,omitzero"` // when the stable version was deployed
	Instances []Instance `json:"instances,omitempty"`
}

// Status reports every service of the manifest.
func (o *Orchestrator) Status(ctx context.Context) ([]ServiceStatus, error) {
	insts, err := o.cfg.Target.Status(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("target status: %w", err)
	}
	var out []ServiceStatus
	for _, name := range o.graph().Manifest().Names() {
		st := ServiceStatus{Service: name, Health: "not deployed"}
		w, err := o.cfg.Router.Weights(ctx, name)
		if err != nil && !errors.Is(err, canary.ErrUnknownService) {
			return nil, fmt.Errorf("weights of %s: %w", name, err)
		}
		if len(w) > 0 {
			st.Weights = w
		}
		st.Stable, _ = o.serving(ctx, name)
		for v := range w {
			if v != st.Stable {
				st.Canary = append(st.Canary, v)
			}
		}
		sort.Strings(st.Canary)
		ready, total := 0, 0
		for _, in := range insts {
			if in.Service != name {
				continue
			}
			st.Instances = append(st.Instances, in)
			if in.Version == st.Stable {
				total++
				if in.State == StateReady {
					ready++
				}
			}
		}
		switch {
		case st.Stable == "":
		case ready == total && total > 0:
			st.Health = "ready"
		case ready > 0:
			st.Health = "degraded"
		default:
			st.Health = "down"
		}
		if rec, err := o.cfg.Store.Current(ctx, name); err == nil && rec.Version == st.Stable {
			st.Since = rec.Started.Add(rec.Duration)
		}
		out = append(out, st)
	}
	return out, nil
}

// Restore routes what the target runs after a control-plane restart (the
// router starts empty; the target adopted its instances): per service, the
// version the history says serves, if it runs, or else the newest running
// one. Other running versions are leftovers of an interrupted deploy and
// are stopped.
func (o *Orchestrator) Restore(ctx context.Context) error {
	insts, err := o.cfg.Target.Status(ctx, "")
	if err != nil {
		return fmt.Errorf("target status: %w", err)
	}
	byService := map[string]map[string][]Instance{}
	for _, in := range insts {
		if byService[in.Service] == nil {
			byService[in.Service] = map[string][]Instance{}
		}
		byService[in.Service][in.Version] = append(byService[in.Service][in.Version], in)
	}
	var errs []error
	interrupted := map[string]Interrupted{}
	resumer, _ := o.cfg.Shifter.(Resumer)
	if resumer != nil {
		its, err := resumer.Interrupted(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("interrupted shifts: %w", err))
		}
		for _, it := range its {
			interrupted[it.Service] = it
		}
	}
	var resume []Interrupted
	for svc, versions := range byService {
		if it, ok := interrupted[svc]; ok {
			if err := o.reroute(ctx, it, versions); err == nil {
				resume = append(resume, it)
				delete(interrupted, svc)
				continue
			} else {
				o.log.WarnContext(ctx, "interrupted shift cannot be resumed", "service", svc, "version", it.Version, "err", err)
			}
		}
		keep := ""
		if rec, err := o.cfg.Store.Current(ctx, svc); err == nil && versions[rec.Version] != nil {
			keep = rec.Version
		} else {
			var newest time.Time
			for v, is := range versions {
				if is[0].Started.After(newest) {
					keep, newest = v, is[0].Started
				}
			}
		}
		if _, err := o.cfg.Router.Declare(ctx, svc); err != nil {
			errs = append(errs, fmt.Errorf("route %s: %w", svc, err))
			continue
		}
		if err := o.cfg.Router.SetSubset(ctx, svc, Subset{Name: keep, Endpoints: Endpoints(versions[keep])}); err != nil {
			errs = append(errs, fmt.Errorf("route %s@%s: %w", svc, keep, err))
			continue
		}
		if err := o.cfg.Router.SetWeights(ctx, svc, map[string]int{keep: 100}); err != nil {
			errs = append(errs, fmt.Errorf("route %s@%s: %w", svc, keep, err))
		}
		for v := range versions {
			if v != keep {
				if err := o.cfg.Target.Remove(ctx, svc, v); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	for _, it := range interrupted {
		o.abandon(ctx, resumer, it)
	}
	for _, it := range resume {
		o.bgWG.Add(1)
		go func() {
			defer o.bgWG.Done()
			o.resume(o.bg, resumer, it)
		}()
	}
	return errors.Join(errs...)
}

// reroute routes an interrupted shift's versions as they were left, when
// every one with traffic still runs.
func (o *Orchestrator) reroute(ctx context.Context, it Interrupted, versions map[string][]Instance) error {
	if versions[it.Version] == nil {
		return fmt.Errorf("%s@%s no longer runs", it.Service, it.Version)
	}
	weights := map[string]int{}
	for v, w := range it.Weights {
		if versions[v] == nil {
			if w > 0 {
				return fmt.Errorf("%s@%s, which had %d%% of the traffic, no longer runs", it.Service, v, w)
			}
			continue
		}
		weights[v] = w
	}
	if weights[it.Version] == 0 && len(weights) < 2 {
		return fmt.Errorf("%s: no version to fall back on beside %s", it.Service, it.Version)
	}
	if _, err := o.cfg.Router.Declare(ctx, it.Service); err != nil {
		return fmt.Errorf("route %s: %w", it.Service, err)
	}
	for v := range weights {
		sub := Subset{Name: v, Canary: v == it.Version, Endpoints: Endpoints(versions[v])}
		if err := o.cfg.Router.SetSubset(ctx, it.Service, sub); err != nil {
			return fmt.Errorf("route %s@%s: %w", it.Service, v, err)
		}
	}
	if err := o.cfg.Router.SetWeights(ctx, it.Service, weights); err != nil {
		return fmt.Errorf("route %s: %w", it.Service, err)
	}
	for v := range versions {
		if _, ok := weights[v]; !ok {
			if err := o.cfg.Target.Remove(ctx, it.Service, v); err != nil {
				o.log.WarnContext(ctx, "stop leftover version", "service", it.Service, "version", v, "err", err)
			}
		}
	}
	return nil
}

// abandon records an interrupted shift that could not be resumed: Restore
// routed the old version back.
func (o *Orchestrator) abandon(ctx context.Context, resumer Resumer, it Interrupted) {
	cur, _ := o.serving(ctx, it.Service)
	reason := fmt.Sprintf("the control plane restarted during the shift to %s, which no longer runs: traffic back on %s", it.Version, orNone([]string{cur}))
	if cur == "" {
		reason = fmt.Sprintf("the control plane restarted during the shift to %s, and none of its versions runs", it.Version)
	}
	resumer.Abandon(ctx, it.Service, it.Version, reason)
	o.log.InfoContext(ctx, "interrupted shift not resumed", "service", it.Service, "version", it.Version, "reason", reason)
	if cur == "" {
		// Nothing runs (the platform was stopped): nothing was rolled
		// back; what starts next is recorded as such.
		return
	}
	rec := Record{Service: it.Service, Version: cur, Previous: it.Version, Action: RecordRollback, Result: Succeeded,
		Reason: reason, Who: "canary", Started: time.Now()}
	if pr, err := o.recordOf(ctx, it.Service, cur); err == nil {
		rec.Spec = pr.Spec
	}
	o.record(ctx, rec)
}

// resume takes an interrupted shift up again and finishes it as a release
// would: the old versions drained (after a bake) on success, the new one
// removed and the rollback recorded on failure.
func (o *Orchestrator) resume(ctx context.Context, resumer Resumer, it Interrupted) {
	started := time.Now()
	var old []string
	for v := range it.Weights { // on standby at 0 during a bake too
		if v != it.Version {
			old = append(old, v)
		}
	}
	sort.Strings(old)
	o.log.InfoContext(ctx, "resume interrupted shift", "service", it.Service, "version", it.Version, "weights", it.Weights)
	err := resumer.Resume(ctx, ShiftRequest{Service: it.Service, Version: it.Version, Old: old, Router: o.cfg.Router})
	switch {
	case errors.Is(err, ErrInterrupted):
		return // stopped again: the next control plane takes it up
	case err != nil:
		o.rolledBack(ctx, it.Service, it.Version, "resumed after a control-plane restart, then rolled back: "+err.Error(), started)
		return
	}
	wctx := context.WithoutCancel(ctx)
	insts, _ := o.cfg.Target.Status(wctx, it.Service)
	var eps []Instance
	for _, in := range insts {
		if in.Version == it.Version {
			eps = append(eps, in)
		}
	}
	if err := o.cfg.Router.SetSubset(wctx, it.Service, Subset{Name: it.Version, Endpoints: Endpoints(eps)}); err != nil {
		o.log.WarnContext(ctx, "clear canary mark", "service", it.Service, "version", it.Version, "err", err)
	}
	if it.Weights[it.Version] >= 100 {
		// It had been promoted (and recorded) already: a bake resumed.
		o.afterShift(wctx, o.cfg.Shifter, it.Service, it.Version, old, func(Step, string) {})
		return
	}
	rec := Record{Service: it.Service, Version: it.Version, Action: RecordDeploy, Result: Succeeded,
		Reason: "resumed after a control-plane restart, then promoted", Who: "canary", Started: started, Duration: time.Since(started)}
	if len(old) > 0 {
		rec.Previous = old[0]
	}
	if recs, err := o.cfg.Store.List(wctx, it.Service, 1000); err == nil {
		for _, r := range recs {
			if r.Spec.Version == it.Version {
				rec.Spec = r.Spec
				break
			}
		}
	}
	o.record(wctx, rec)
	o.afterShift(wctx, o.cfg.Shifter, it.Service, it.Version, old, func(Step, string) {})
}
