package canary

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ShiftRequest is a traffic shift for the analysis to run: the new
// version, already started at weight 0 behind the Router, the smoke
// checks passed through its header lane. It carries what the
// orchestrator's deploy.ShiftRequest carries (deploy imports this
// package, so the adapter that makes an [Analysis] a deploy.Shifter lives
// with the wiring and copies the fields across).
type ShiftRequest struct {
	Service string
	Version string   // the new version (subset), at weight 0
	Old     []string // the versions serving now (none for a first deploy)
	Router  Router
}

// LoadDriver sends synthetic traffic to one version of a service, for
// policies with SyntheticLoad: what `flotilla load` does (the service's
// smoke checks replayed), pinned to the version (X-Flotilla-Version; for
// the canary, its header lane X-Canary: true reaches it too). The
// canary gets it when an interval has fewer than MinRequests; with the
// baseline comparison on, so does a baseline short of them, so both
// sides are judged on the same kind of traffic.
type LoadDriver interface {
	// Drive sends the requests and returns once they have completed, or
	// when ctx ends (it allows the interval's length). An error is
	// recorded in the decision; the interval is judged on what arrived.
	Drive(ctx context.Context, req LoadRequest) error
}

// LoadRequest is synthetic traffic to drive.
type LoadRequest struct {
	Service, Version string
	// Requests is how many the interval lacked to reach MinRequests.
	Requests int64
	// Rate is the pace, in requests per second (the policy's
	// SyntheticLoad).
	Rate float64
}

// Clock is the time an analysis runs on; tests pass a fake one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config wires an [Analysis]. Metrics is required.
type Config struct {
	// Metrics gives the canary's and the baseline's figures.
	Metrics Metrics
	// Querier evaluates custom query judges; required by a policy with
	// queries.
	Querier Querier
	// Load drives synthetic traffic; required by a policy with
	// SyntheticLoad.
	Load LoadDriver
	// Policy returns a service's policy (nil: DefaultPolicy for all). An
	// error refuses the shift before any weight moves.
	Policy func(service string) (Policy, error)
	// Observer is told of every decision with the state after it: one
	// canary's in order, different canaries' (a wave, the bakes)
	// concurrently. It is called on the analysis's path, so keep it
	// quick. What the deploy's output shows live and what the history
	// and a restarted control plane keep.
	Observer func(ctx context.Context, st State, d Decision)
	// BakeEnded is called when a bake ends: err nil when it passed (the
	// old version may be drained and stopped now), else a *RollbackError
	// after the analysis put the old weights back (the new version should
	// be removed, and the rollback recorded). Required when a policy has
	// a bake.
	BakeEnded func(ctx context.Context, st State, err error)
	// Namespace is the environment's namespace, what {{namespace}} in a
	// query stands for (empty locally).
	Namespace string
	// Provider names where the figures come from ("mesh", "prometheus
	// at http://..."), for the first decision of every canary; empty
	// leaves it out.
	Provider string
	// Client calls the webhooks (default: a plain http.Client; each call
	// is bounded by its webhook's timeout).
	Client *http.Client
	Clock  Clock
	Logger *slog.Logger
}

// Analysis runs canaries: each Shift moves one service's traffic to its
// new version in steps, judging every interval, and promotes or rolls it
// back; a bake then watches the promoted version in the background. Many
// services' canaries run at once (a wave), one per service. Its methods
// are safe for concurrent use.
type Analysis struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context // the bakes' lifetime, ended by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	runs map[string]*run // by service: the running, baking or last finished canary
}

// New checks cfg and returns an analysis.
func New(cfg Config) (*Analysis, error) {
	if cfg.Metrics == nil {
		return nil, errors.New("canary analysis: no metrics source")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Analysis{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel, runs: map[string]*run{}}, nil
}

// Close stops the bakes in progress (their state stays "baking", for a
// restarted control plane to resume) and waits for them.
func (a *Analysis) Close() error {
	a.cancel()
	a.wg.Wait()
	return nil
}

// PolicyFor returns the policy the analysis applies to a service, checked.
func (a *Analysis) PolicyFor(service string) (Policy, error) {
	p := DefaultPolicy()
	if a.cfg.Policy != nil {
		var err error
		if p, err = a.cfg.Policy(service); err != nil {
			return Policy{}, fmt.Errorf("canary policy of %s: %w", service, err)
		}
	}
	if err := p.Validate(); err != nil {
		return Policy{}, fmt.Errorf("canary policy of %s: %w", service, err)
	}
	var errs []error
	if len(p.Queries) > 0 && a.cfg.Querier == nil {
		errs = append(errs, errors.New("it has query judges but no query source (Prometheus) is configured"))
	}
	if p.SyntheticLoad > 0 && a.cfg.Load == nil {
		errs = append(errs, errors.New("synthetic_load is on but no load driver is configured"))
	}
	if p.Bake > 0 && a.cfg.BakeEnded == nil {
		errs = append(errs, errors.New("it has a bake but nothing handles the bake's end"))
	}
	if err := errors.Join(errs...); err != nil {
		return Policy{}, fmt.Errorf("canary policy of %s: %w", service, err)
	}
	return p, nil
}

// Describe says what Shift will do for a service ("canary 10/50/100%
// every 1m0s, threshold 2, lane first, bake 5m0s"); the shape of
// deploy.Shifter's Describe.
func (a *Analysis) Describe(service, _ string) string {
	p, err := a.PolicyFor(service)
	if err != nil {
		return "refused: " + err.Error()
	}
	return p.Describe()
}

// Shift runs the canary of req.Version and returns nil once it is
// promoted (all the traffic on it; the bake, if any, goes on in the
// background), or a *RollbackError (wrapping ErrRolledBack) once it was
// rolled back, the old weights put back. It is deploy.Shifter's Shift.
//
// The smoke checks have already reached the new version through its
// header lane before Shift is called; with LaneFirst the analysis then
// judges that lane's traffic for an interval before any weight moves.
// When ctx ends, Shift returns an error wrapping ErrInterrupted and
// leaves the weights as they are: the saved State can be resumed or
// restored. A held canary keeps Shift waiting until Promote or Abort.
func (a *Analysis) Shift(ctx context.Context, req ShiftRequest) error {
	p, err := a.PolicyFor(req.Service)
	if err != nil {
		return err
	}
	if req.Router == nil {
		return fmt.Errorf("canary %s@%s: no router", req.Service, req.Version)
	}
	if r := a.running(req.Service, req.Version); r != nil {
		// The same version's canary runs already (resumed after a
		// restart, and released again by the restarted control plane's
		// own release): this release waits for its outcome.
		return r.join(ctx)
	}
	before, err := req.Router.Weights(ctx, req.Service)
	if err != nil && !errors.Is(err, ErrUnknownService) {
		return fmt.Errorf("canary %s@%s: weights: %w", req.Service, req.Version, err)
	}
	now := a.cfg.Clock.Now()
	st := State{
		Service: req.Service, Version: req.Version, Strategy: p.Strategy,
		Steps: append([]int(nil), p.Steps...), Before: map[string]int{},
		Phase: PhaseProgressing, Threshold: p.Threshold, Started: now, Updated: now,
	}
	for v, w := range before {
		if v != req.Version && w > 0 {
			st.Before[v] = w
		}
	}
	st.Baseline = heaviest(st.Before)
	r, err := a.start(req, p, st)
	if err != nil {
		return err
	}
	why := fmt.Sprintf("%s; baseline %s", p.Describe(), orNone(st.Baseline))
	if a.cfg.Provider != "" {
		why += "; metrics from " + a.cfg.Provider
	}
	r.decide(ctx, Decision{Action: ActionStart, Reason: why})
	return r.progress(ctx)
}

// Resume takes up a canary from a saved state (after a restart of the
// control plane) under the service's current policy: an analysis in
// progress goes on from its step, a bake goes on in the background until
// its end, a finished one returns its outcome. req names the same service
// and version as st.
func (a *Analysis) Resume(ctx context.Context, req ShiftRequest, st State) error {
	if req.Service != st.Service || req.Version != st.Version {
		return fmt.Errorf("resume canary: the state is %s@%s, the request %s@%s", st.Service, st.Version, req.Service, req.Version)
	}
	p, err := a.PolicyFor(req.Service)
	if err != nil {
		return err
	}
	st = st.clone()
	st.Threshold = p.Threshold
	r, err := a.start(req, p, st)
	if err != nil {
		return err
	}
	switch st.Phase {
	case PhaseSucceeded:
		return nil
	case PhaseRolledBack:
		return &RollbackError{Service: st.Service, Version: st.Version, Phase: st.Phase, Step: st.Step, Weight: st.Weight, Reason: st.Reason}
	case PhaseBaking:
		r.decide(ctx, Decision{Action: ActionResume, Reason: fmt.Sprintf("bake resumed until %s", st.BakeUntil.UTC().Format(time.RFC3339))})
		r.startBake()
		return nil
	}
	r.decide(ctx, Decision{Action: ActionResume, Reason: fmt.Sprintf("resumed at step %d (%d%%) with %d failed check(s)", st.Step, st.Weight, st.FailedChecks)})
	return r.progress(ctx)
}

// Restore puts back the weights a saved canary replaced (st.Before) and
// records the rollback: what a restarted control plane does with a
// canary it will not resume.
func (a *Analysis) Restore(ctx context.Context, router Router, st State, reason string) error {
	st = st.clone()
	var err error
	if len(st.Before) > 0 {
		err = router.SetWeights(ctx, st.Service, st.Before)
	}
	r := &run{a: a, req: ShiftRequest{Service: st.Service, Version: st.Version, Router: router}, st: st, override: make(chan override, 1), done: make(chan struct{})}
	close(r.done)
	r.st.Phase = PhaseRolledBack
	r.st.Weight = 0
	if err != nil {
		reason += fmt.Sprintf(" (putting the old weights back failed: %v)", err)
	}
	a.mu.Lock()
	a.runs[st.Service] = r
	a.mu.Unlock()
	r.decide(ctx, Decision{Action: ActionRollback, Reason: reason})
	if err != nil {
		return fmt.Errorf("restore %s: %w", st.Service, err)
	}
	return nil
}

// Promote ends a service's canary (or its bake) as passed, as `kubectl
// argo rollouts promote --full` does: the remaining steps and the
// confirm-promotion webhooks are skipped. It returns ErrNotRunning when
// the service has no canary in progress or baking.
func (a *Analysis) Promote(service, reason string) error {
	return a.signal(service, override{promote: true, reason: reason})
}

// Abort rolls a service's canary (or its bake) back now. It returns
// ErrNotRunning when the service has no canary in progress or baking.
func (a *Analysis) Abort(service, reason string) error {
	return a.signal(service, override{reason: reason})
}

func (a *Analysis) signal(service string, o override) error {
	a.mu.Lock()
	r := a.runs[service]
	a.mu.Unlock()
	if r == nil || r.status().Phase.Final() || !r.isActive() {
		return fmt.Errorf("%s: %w", service, ErrNotRunning)
	}
	select {
	case r.override <- o:
		return nil
	default:
		return fmt.Errorf("%s: a manual decision is already pending", service)
	}
}

// Status returns a service's canary as it stands (the running, baking or
// last finished one).
func (a *Analysis) Status(service string) (State, bool) {
	a.mu.Lock()
	r := a.runs[service]
	a.mu.Unlock()
	if r == nil {
		return State{}, false
	}
	return r.status(), true
}

// States returns every service's canary, by service name.
func (a *Analysis) States() []State {
	a.mu.Lock()
	rs := make([]*run, 0, len(a.runs))
	for _, r := range a.runs {
		rs = append(rs, r)
	}
	a.mu.Unlock()
	out := make([]State, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

// start registers a run for the service: refused while another canary of
// the service is in progress; a bake of an earlier version is stopped
// (the new release supersedes it).
func (a *Analysis) start(req ShiftRequest, p Policy, st State) (*run, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.runs[req.Service]; old != nil {
		ph := old.status().Phase
		switch {
		case ph == PhaseBaking:
			old.stopBake(req.Version)
		case !ph.Final() && old.isActive():
			return nil, fmt.Errorf("canary %s: %s is already in progress (%s)", req.Service, old.req.Version, ph)
		}
	}
	r := &run{a: a, req: req, p: p, judges: Judges(p, a.cfg.Querier), st: st, override: make(chan override, 1), done: make(chan struct{})}
	a.runs[req.Service] = r
	return r, nil
}

// running returns the service's canary of version when it is in
// progress or baking, else nil.
func (a *Analysis) running(service, version string) *run {
	a.mu.Lock()
	r := a.runs[service]
	a.mu.Unlock()
	if r == nil || r.req.Version != version || r.status().Phase.Final() {
		return nil
	}
	select {
	case <-r.done: // its analysis ended (interrupted): not to be joined
		return nil
	default:
		return r
	}
}

// join waits for a canary in progress to end and returns its outcome, as
// Shift would; a baking one was promoted already.
func (r *run) join(ctx context.Context) error {
	if r.status().Phase == PhaseBaking {
		return nil
	}
	r.joined.Add(1)
	defer r.joined.Add(-1)
	select {
	case <-r.done:
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.result
	case <-ctx.Done():
		return fmt.Errorf("canary %s@%s: %w: %w", r.req.Service, r.req.Version, ErrInterrupted, ctx.Err())
	}
}

type override struct {
	promote bool
	reason  string
}

// run is one service's canary.
type run struct {
	a      *Analysis
	req    ShiftRequest
	p      Policy
	judges []Judge

	mu         sync.Mutex
	st         State
	bakeStop   context.CancelFunc
	superseded string // the version whose release cut the bake short
	active     int    // the loop and the bake goroutine running
	result     error  // the analysis's outcome, once done is closed

	override chan override
	done     chan struct{} // closed when the analysis (not the bake) ends
	joined   atomic.Int32  // releases of the same version waiting in join
}

func (r *run) status() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st.clone()
}

// isActive reports whether the analysis loop or the bake runs (and so
// reads manual overrides).
func (r *run) isActive() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active > 0
}

func (r *run) enter() {
	r.mu.Lock()
	r.active++
	r.mu.Unlock()
}

func (r *run) leave() {
	r.mu.Lock()
	r.active--
	r.mu.Unlock()
}

func (r *run) update(f func(*State)) {
	r.mu.Lock()
	f(&r.st)
	r.mu.Unlock()
}

// decide records a decision (filling in where the canary is), tells the
// event webhooks and the observer.
func (r *run) decide(ctx context.Context, d Decision) { r.decideAt(ctx, d, -1, -1) }

// decideAt records a decision taken about the canary at step and weight
// (the interval judged, before the decision moved it); -1 for where it
// is now.
func (r *run) decideAt(ctx context.Context, d Decision, step, weight int) {
	now := r.a.cfg.Clock.Now()
	r.mu.Lock()
	d.Time = now
	if d.Phase == "" {
		d.Phase = r.st.Phase
	}
	d.Step, d.Weight, d.FailedChecks = r.st.Step, r.st.Weight, r.st.FailedChecks
	if step >= 0 {
		d.Step, d.Weight = step, weight
	}
	finite(d.Judgements)
	r.st.Updated = now
	if d.Action != ActionNotify { // the state's reason stays the outcome's
		r.st.Reason = d.Reason
	}
	r.st.Decisions = append(r.st.Decisions, d)
	if n := len(r.st.Decisions); n > MaxDecisions {
		r.st.Decisions = append([]Decision(nil), r.st.Decisions[n-MaxDecisions:]...)
	}
	st := r.st.clone()
	r.mu.Unlock()

	var failed []HookResult
	for _, w := range r.p.Webhooks {
		if w.Kind != HookEvent {
			continue
		}
		if h := callHook(ctx, r.a.cfg.Client, w, st); !h.OK {
			r.a.log.WarnContext(ctx, "canary event webhook failed", "service", st.Service, "version", st.Version, "webhook", w.Name, "reason", h.Reason)
			failed = append(failed, h)
		}
	}
	if len(failed) > 0 {
		r.mu.Lock()
		last := &r.st.Decisions[len(r.st.Decisions)-1]
		last.Hooks = append(last.Hooks, failed...)
		d = *last
		st = r.st.clone()
		r.mu.Unlock()
	}
	r.a.log.InfoContext(ctx, "canary decision", "service", st.Service, "version", st.Version, "phase", d.Phase,
		"step", d.Step, "weight", d.Weight, "verdict", d.Verdict, "action", d.Action, "reason", d.Reason)
	if r.a.cfg.Observer != nil {
		r.a.cfg.Observer(ctx, st, d)
	}
}

// hooks calls the policy's webhooks of a kind, in order.
func (r *run) hooks(ctx context.Context, kind WebhookKind) (all []HookResult, ok bool) {
	ok = true
	st := r.status()
	for _, w := range r.p.Webhooks {
		if w.Kind != kind {
			continue
		}
		h := callHook(ctx, r.a.cfg.Client, w, st)
		all = append(all, h)
		ok = ok && h.OK
	}
	return all, ok
}

// wait waits an interval; it returns a manual decision made meanwhile,
// or an error wrapping ErrInterrupted when ctx ends.
func (r *run) wait(ctx context.Context) (*override, error) {
	r.update(func(s *State) { s.NextAt = r.a.cfg.Clock.Now().Add(r.p.Interval) })
	defer r.update(func(s *State) { s.NextAt = time.Time{} })
	select {
	case <-r.a.cfg.Clock.After(r.p.Interval):
		return nil, nil
	case o := <-r.override:
		return &o, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("canary %s@%s: %w: %w", r.req.Service, r.req.Version, ErrInterrupted, ctx.Err())
	}
}

// progress runs the canary from where its state is to a promotion or a
// rollback.
func (r *run) progress(ctx context.Context) (err error) {
	r.enter()
	defer r.leave()
	defer func() {
		r.mu.Lock()
		r.result = err
		r.mu.Unlock()
		close(r.done)
	}()
	manual := func(o *override) error {
		who := o.reason
		if who == "" {
			who = "by hand"
		}
		if o.promote {
			return r.promote(ctx, "promoted by hand: "+who, nil)
		}
		return r.rollback(ctx, "aborted by hand: "+who, intervalResult{}, true)
	}

	// confirm-rollout: wait for a yes.
	for !r.status().Confirmed {
		hs, ok := r.hooks(ctx, HookConfirmRollout)
		if ok {
			r.update(func(s *State) { s.Confirmed = true; s.Phase = PhaseProgressing })
			if len(hs) > 0 {
				r.decide(ctx, Decision{Hooks: hs, Action: ActionAdvance, Reason: "confirm-rollout: confirmed"})
			}
			break
		}
		r.update(func(s *State) { s.Phase = PhaseWaiting })
		r.decide(ctx, Decision{Hooks: hs, Action: ActionWait, Reason: "confirm-rollout: " + summarize("", nil, hs)})
		o, err := r.wait(ctx)
		if err != nil {
			return err
		}
		if o != nil {
			return manual(o)
		}
	}

	st := r.status()
	if st.Baseline == "" && st.Step == 0 {
		return r.promote(ctx, "first deploy: no version serves traffic to shift from or compare with", nil)
	}
	if r.p.Strategy == StrategyDirect {
		return r.promote(ctx, "strategy direct: all the traffic at once", nil)
	}

	// The header lane at 0%: the smoke checks have reached the canary
	// through it already; judge what the lane carried before any user's
	// request does.
	if r.p.Strategy == StrategyCanary && r.p.LaneFirst && !st.LaneDone && st.Step == 0 {
		r.update(func(s *State) { s.Phase = PhaseLane; s.Weight = 0 })
		// The first lane interval reaches back one more interval, to
		// the smoke checks made just before the shift: at 0% every
		// request the new version served came through its lane, and
		// they count (the mesh's and Prometheus's windows are rounded
		// to their resolution, which the smoke checks fall inside).
		window := 2 * r.p.Interval
		for {
			o, err := r.wait(ctx)
			if err != nil {
				return err
			}
			if o != nil {
				return manual(o)
			}
			iv := r.interval(ctx, window)
			window = r.p.Interval
			if iv.forced != "" {
				return r.rollback(ctx, iv.forced, iv, false)
			}
			switch iv.verdict {
			case Fail:
				if done, err := r.failed(ctx, iv); done {
					return err
				}
				continue
			case Error:
				// Nothing has moved yet: stay on the lane until the source
				// answers (past the limit, errors count as failures).
				if done, err := r.errored(ctx, iv); done {
					return err
				}
				continue
			}
			r.update(func(s *State) { s.LaneDone = true; s.Inconclusive = 0; s.Errors = 0 })
			why := "header lane at 0%: " + orText(iv.summary(), string(iv.verdict))
			if iv.verdict == Inconclusive {
				// As Flagger, which judges nothing while no traffic is
				// routed to the canary: too little lane traffic is no
				// check at all, and the weighted steps judge it.
				why = "header lane at 0%: too little lane traffic to judge, the weighted steps will: " + iv.summary()
			}
			r.decide(ctx, Decision{Verdict: iv.verdict, Judgements: iv.judgements, Hooks: iv.hooks, Action: ActionAdvance, Reason: why})
			break
		}
	}

	// pre-rollout: before any weighted traffic.
	for !r.status().PreRolloutDone {
		hs, ok := r.hooks(ctx, HookPreRollout)
		if ok {
			r.update(func(s *State) { s.PreRolloutDone = true })
			break
		}
		iv := intervalResult{verdict: Fail, hooks: hs}
		if done, err := r.failed(ctx, iv); done {
			return err
		}
		o, err := r.wait(ctx)
		if err != nil {
			return err
		}
		if o != nil {
			return manual(o)
		}
	}

	if r.status().Step == 0 {
		r.update(func(s *State) { s.Phase = PhaseProgressing })
		if r.p.Strategy == StrategyCanary {
			if err := r.setStep(ctx, 1); err != nil {
				return r.rollback(ctx, err.Error(), intervalResult{}, false)
			}
			r.decide(ctx, Decision{Action: ActionAdvance, Reason: fmt.Sprintf("step 1: %d%% to %s", r.p.Steps[0], r.req.Version)})
		}
	}

	for {
		o, err := r.wait(ctx)
		if err != nil {
			return err
		}
		if o != nil {
			return manual(o)
		}
		iv := r.interval(ctx, r.p.Interval)
		if iv.forced != "" {
			return r.rollback(ctx, iv.forced, iv, false)
		}
		st := r.status()
		switch iv.verdict {
		case Fail:
			if done, err := r.failed(ctx, iv); done {
				return err
			}
			continue
		case Error:
			if done, err := r.errored(ctx, iv); done {
				return err
			}
			continue
		case Inconclusive:
			r.update(func(s *State) {
				s.Errors = 0
				s.Inconclusive++
				if s.Inconclusive > r.p.InconclusiveLimit {
					s.Phase = PhaseHeld
				}
			})
			st = r.status()
			act, why := ActionStay, "inconclusive, judged again next interval"
			if st.Phase == PhaseHeld {
				act = ActionHold
				why = fmt.Sprintf("held: inconclusive %d interval(s) in a row (limit %d); waiting for canary promote or abort", st.Inconclusive, r.p.InconclusiveLimit)
			}
			r.decide(ctx, Decision{Verdict: iv.verdict, Judgements: iv.judgements, Hooks: iv.hooks, Action: act, Reason: why + ": " + iv.summary()})
			continue
		}
		// A passing interval.
		r.update(func(s *State) { s.Errors = 0; s.Inconclusive = 0 })
		if st.Phase == PhaseHeld {
			r.decide(ctx, Decision{Verdict: Pass, Judgements: iv.judgements, Hooks: iv.hooks, Action: ActionHold,
				Reason: "held: passed this interval; waiting for canary promote or abort"})
			continue
		}
		last := st.Step >= len(r.p.Steps)
		if r.p.Strategy == StrategyBlueGreen {
			r.update(func(s *State) { s.Step++ })
			last = st.Step+1 >= r.p.Iterations
			if !last {
				r.decide(ctx, Decision{Verdict: Pass, Judgements: iv.judgements, Hooks: iv.hooks, Action: ActionStay,
					Reason: fmt.Sprintf("interval %d of %d at 0%% passed", st.Step+1, r.p.Iterations)})
				continue
			}
		}
		if !last {
			next := st.Step + 1
			if err := r.setStep(ctx, next); err != nil {
				return r.rollback(ctx, err.Error(), iv, false)
			}
			r.decideAt(ctx, Decision{Verdict: Pass, Judgements: iv.judgements, Hooks: iv.hooks, Action: ActionAdvance,
				Reason: iv.noted(fmt.Sprintf("passed; step %d: %d%% to %s", next, r.p.Steps[next-1], r.req.Version))}, st.Step, st.Weight)
			continue
		}
		hs, ok := r.hooks(ctx, HookConfirmPromotion)
		if !ok {
			r.update(func(s *State) { s.Phase = PhaseWaitingPromotion })
			r.decide(ctx, Decision{Verdict: Pass, Judgements: iv.judgements, Hooks: append(iv.hooks, hs...), Action: ActionWait,
				Reason: "confirm-promotion: " + summarize("", nil, hs)})
			continue
		}
		iv.hooks = append(iv.hooks, hs...)
		return r.promote(ctx, iv.noted("every step passed"), &iv)
	}
}

// failed counts a failed analysis and rolls back at the threshold; it
// reports whether the run is over.
func (r *run) failed(ctx context.Context, iv intervalResult) (bool, error) {
	var n int
	r.update(func(s *State) { s.FailedChecks++; s.Errors = 0; n = s.FailedChecks })
	why := fmt.Sprintf("%d failed analysis(es) of threshold %d: %s", n, r.p.Threshold, iv.summary())
	if n >= r.p.Threshold {
		return true, r.rollback(ctx, why, iv, false)
	}
	r.decide(ctx, Decision{Verdict: Fail, Judgements: iv.judgements, Hooks: iv.hooks, Action: ActionStay, Reason: why})
	return false, nil
}

// errored counts an interval a source could not answer; past the
// consecutive error limit it counts as a failed analysis too.
func (r *run) errored(ctx context.Context, iv intervalResult) (bool, error) {
	var n, failed int
	r.update(func(s *State) {
		s.Errors++
		n = s.Errors
		if n > r.p.ConsecutiveErrorLimit {
			s.FailedChecks++
		}
		failed = s.FailedChecks
	})
	if n > r.p.ConsecutiveErrorLimit {
		why := fmt.Sprintf("the metrics could not be read %d interval(s) in a row (limit %d): %d failed analysis(es) of threshold %d: %s",
			n, r.p.ConsecutiveErrorLimit, failed, r.p.Threshold, iv.summary())
		if failed >= r.p.Threshold {
			return true, r.rollback(ctx, why, iv, false)
		}
		r.decide(ctx, Decision{Verdict: Error, Judgements: iv.judgements, Hooks: iv.hooks, Action: ActionStay, Reason: why})
		return false, nil
	}
	r.decide(ctx, Decision{Verdict: Error, Judgements: iv.judgements, Hooks: iv.hooks, Action: ActionStay,
		Reason: fmt.Sprintf("metrics error %d of %d tolerated in a row: %s", n, r.p.ConsecutiveErrorLimit, iv.summary())})
	return false, nil
}

// setStep moves the traffic to step i (1-based) of a canary.
func (r *run) setStep(ctx context.Context, i int) error {
	w := r.p.Steps[i-1]
	st := r.status()
	weights := split(st.Before, r.req.Version, w)
	if err := r.req.Router.SetWeights(ctx, r.req.Service, weights); err != nil {
		return fmt.Errorf("set weights %v: %w", weights, err)
	}
	r.update(func(s *State) { s.Step, s.Weight = i, w })
	return nil
}

// promote moves all the traffic to the new version and starts the bake.
func (r *run) promote(ctx context.Context, why string, iv *intervalResult) error {
	if err := r.req.Router.SetWeights(ctx, r.req.Service, map[string]int{r.req.Version: 100}); err != nil {
		return r.rollback(ctx, fmt.Sprintf("promotion failed: set weights: %v", err), intervalResult{}, false)
	}
	before := r.status()
	bake := r.p.Bake > 0 && before.Baseline != ""
	r.update(func(s *State) {
		s.Weight = 100
		s.Phase = PhaseSucceeded
		if bake {
			s.Phase = PhaseBaking
			s.BakeUntil = r.a.cfg.Clock.Now().Add(r.p.Bake)
			s.FailedChecks, s.Errors, s.Inconclusive = 0, 0, 0
		}
	})
	d := Decision{Phase: before.Phase, Action: ActionPromote, Reason: why}
	if iv != nil {
		d.Verdict, d.Judgements, d.Hooks = iv.verdict, iv.judgements, iv.hooks
	}
	switch {
	case bake:
		d.Reason += fmt.Sprintf("; baking for %v with %s on standby", r.p.Bake, before.Baseline)
	case r.p.Bake > 0:
		d.Reason += "; no bake: no older version to fall back to"
	}
	r.decideAt(ctx, d, before.Step, before.Weight)
	r.postRollout(ctx)
	if bake {
		r.startBake()
	}
	return nil
}

// rollback puts the old weights back and returns the verdict.
func (r *run) rollback(ctx context.Context, why string, iv intervalResult, aborted bool) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	st := r.status()
	if len(st.Before) > 0 {
		if err := r.req.Router.SetWeights(cctx, r.req.Service, st.Before); err != nil {
			why += fmt.Sprintf(" (putting the old weights back failed: %v)", err)
		}
	}
	phase := st.Phase
	r.update(func(s *State) { s.Phase = PhaseRolledBack; s.Weight = 0; s.NextAt = time.Time{} })
	r.decideAt(cctx, Decision{Phase: phase, Verdict: iv.verdict, Judgements: iv.judgements, Hooks: iv.hooks, Action: ActionRollback, Reason: why}, st.Step, st.Weight)
	r.postRollout(cctx)
	var failed []Judgement
	for _, j := range iv.judgements {
		if j.Verdict == Fail {
			failed = append(failed, j)
		}
	}
	return &RollbackError{Service: st.Service, Version: st.Version, Phase: phase, Step: st.Step, Weight: st.Weight, Reason: why, Failed: failed, Aborted: aborted}
}

// postRollout calls the post-rollout webhooks; a failure is recorded.
func (r *run) postRollout(ctx context.Context) {
	hs, ok := r.hooks(ctx, HookPostRollout)
	if len(hs) > 0 && !ok {
		r.decide(ctx, Decision{Hooks: hs, Action: ActionNotify, Reason: "post-rollout: " + summarize("", nil, hs)})
	}
}

// intervalResult is one judged interval.
type intervalResult struct {
	verdict    Verdict
	judgements []Judgement
	hooks      []HookResult
	notes      []string
	forced     string // a rollback webhook's demand
}

// noted is s with the interval's notes (synthetic load) after it.
func (iv intervalResult) noted(s string) string {
	if len(iv.notes) == 0 {
		return s
	}
	return s + " (" + strings.Join(iv.notes, "; ") + ")"
}

func (iv intervalResult) summary() string {
	s := summarize(iv.verdict, iv.judgements, iv.hooks)
	if len(iv.notes) > 0 {
		s = strings.Join(append(iv.notes, s), "; ")
	}
	return s
}

// interval asks the rollback and rollout webhooks, reads both versions'
// figures over the window ending now and runs the judges.
func (r *run) interval(ctx context.Context, window time.Duration) intervalResult {
	var iv intervalResult
	if hs, _ := r.hooks(ctx, HookRollback); len(hs) > 0 {
		iv.hooks = append(iv.hooks, hs...)
		for _, h := range hs {
			if h.OK {
				iv.forced = fmt.Sprintf("webhook %s asked for a rollback", h.Name)
				return iv
			}
		}
	}
	hs, hooksOK := r.hooks(ctx, HookRollout)
	iv.hooks = append(iv.hooks, hs...)
	iv.judgements, iv.notes = r.judge(ctx, false, window)
	iv.verdict = combine(iv.judgements)
	if !hooksOK {
		iv.verdict = Fail
	}
	return iv
}

// judge reads the figures and runs the judges: during the bake (or at
// 100%) the baseline has no traffic and its comparison is left out.
func (r *run) judge(ctx context.Context, baking bool, window time.Duration) ([]Judgement, []string) {
	st := r.status()
	svc, ver := r.req.Service, r.req.Version
	var notes []string
	o := Observation{Service: svc, Version: ver, Baseline: st.Baseline, Namespace: r.a.cfg.Namespace, Window: window, MinRequests: r.p.MinRequests}
	// With synthetic load, a side short of MinRequests gets the requests
	// it lacks (the canary through its header lane, the baseline pinned
	// by version) and is read again.
	topUp := func(version string, st Stats, err error) (Stats, error) {
		want := max(r.p.MinRequests, 1)
		if r.p.SyntheticLoad <= 0 || baking || (err != nil && !errors.Is(err, ErrNoData)) || st.Requests >= want {
			return st, err
		}
		n := want - st.Requests
		lctx, cancel := context.WithTimeout(ctx, window)
		derr := r.a.cfg.Load.Drive(lctx, LoadRequest{Service: svc, Version: version, Requests: n, Rate: r.p.SyntheticLoad})
		cancel()
		if derr != nil {
			notes = append(notes, fmt.Sprintf("synthetic load of %d request(s) to %s failed: %v", n, version, derr))
		} else {
			notes = append(notes, fmt.Sprintf("%d synthetic request(s) to %s", n, version))
		}
		return r.a.cfg.Metrics.Stats(ctx, svc, version, window)
	}
	o.Canary, o.CanaryErr = r.a.cfg.Metrics.Stats(ctx, svc, ver, window)
	o.Canary, o.CanaryErr = topUp(ver, o.Canary, o.CanaryErr)
	if !baking && st.Baseline != "" {
		o.BaselineWeight = 100 - st.Weight
		if o.BaselineWeight > 0 {
			o.Base, o.BaseErr = r.a.cfg.Metrics.Stats(ctx, svc, st.Baseline, window)
			if r.p.Compare.Baseline {
				o.Base, o.BaseErr = topUp(st.Baseline, o.Base, o.BaseErr)
			}
		}
	}
	var out []Judgement
	for _, j := range r.judges {
		switch j.(type) {
		case BaselineLatencyJudge, BaselineErrorJudge:
			if o.BaselineWeight == 0 {
				continue
			}
		}
		out = append(out, j.Judge(ctx, o))
	}
	if len(out) == 0 {
		notes = append(notes, "no judge applies without baseline traffic")
	}
	return out, notes
}

// combine is an interval's verdict: any fail, else any error, else any
// inconclusive, else pass (no judge at all: pass).
func combine(js []Judgement) Verdict {
	v := Pass
	for _, j := range js {
		switch {
		case j.Verdict == Fail:
			return Fail
		case j.Verdict == Error:
			v = Error
		case j.Verdict == Inconclusive && v == Pass:
			v = Inconclusive
		}
	}
	return v
}

// startBake judges the promoted version in the background until the
// bake ends, and rolls it back on failure.
func (r *run) startBake() {
	ctx, cancel := context.WithCancel(r.a.ctx)
	r.mu.Lock()
	r.bakeStop = cancel
	r.active++
	r.mu.Unlock()
	r.a.wg.Add(1)
	go func() {
		defer r.a.wg.Done()
		defer r.leave()
		defer cancel()
		r.bake(ctx)
	}()
}

// stopBake cuts the bake short for a newer version's release: the baked
// version counts as succeeded.
func (r *run) stopBake(next string) {
	r.mu.Lock()
	stop := r.bakeStop
	r.superseded = next
	r.mu.Unlock()
	if stop != nil {
		stop()
	}
}

func (r *run) bake(ctx context.Context) {
	end := func(err error) {
		if r.a.cfg.BakeEnded != nil {
			r.a.cfg.BakeEnded(ctx, r.status(), err)
		}
	}
	for {
		st := r.status()
		left := st.BakeUntil.Sub(r.a.cfg.Clock.Now())
		if left <= 0 {
			r.update(func(s *State) { s.Phase = PhaseSucceeded; s.BakeUntil = time.Time{}; s.NextAt = time.Time{} })
			r.decide(ctx, Decision{Phase: PhaseBaking, Action: ActionBaked, Reason: fmt.Sprintf("bake of %v passed; %s may go", r.p.Bake, orNone(st.Baseline))})
			end(nil)
			return
		}
		var o *override
		d := min(r.p.Interval, left)
		r.update(func(s *State) { s.NextAt = r.a.cfg.Clock.Now().Add(d) })
		select {
		case <-r.a.cfg.Clock.After(d):
		case ov := <-r.override:
			o = &ov
		case <-ctx.Done():
			r.mu.Lock()
			r.st.NextAt = time.Time{}
			next := r.superseded
			r.mu.Unlock()
			if next == "" {
				return // stopped by Close: the state stays "baking", to resume
			}
			bctx := context.WithoutCancel(ctx)
			r.update(func(s *State) { s.Phase = PhaseSucceeded; s.BakeUntil = time.Time{}; s.NextAt = time.Time{} })
			r.decide(bctx, Decision{Phase: PhaseBaking, Action: ActionBaked, Reason: fmt.Sprintf("bake cut short: %s is being released", next)})
			if r.a.cfg.BakeEnded != nil {
				r.a.cfg.BakeEnded(bctx, r.status(), nil)
			}
			return
		}
		r.update(func(s *State) { s.NextAt = time.Time{} })
		if o != nil {
			if o.promote {
				r.update(func(s *State) { s.BakeUntil = r.a.cfg.Clock.Now() })
				continue
			}
			end(r.rollback(ctx, "bake aborted by hand: "+orText(o.reason, "by hand"), intervalResult{}, true))
			return
		}
		js, notes := r.judge(ctx, true, r.p.Interval)
		iv := intervalResult{verdict: combine(js), judgements: js, notes: notes}
		switch iv.verdict {
		case Fail:
			var n int
			r.update(func(s *State) { s.FailedChecks++; s.Errors = 0; n = s.FailedChecks })
			why := fmt.Sprintf("bake: %d failed analysis(es) of threshold %d: %s", n, r.p.Threshold, iv.summary())
			if n >= r.p.Threshold {
				end(r.rollback(ctx, why, iv, false))
				return
			}
			r.decide(ctx, Decision{Verdict: Fail, Judgements: js, Action: ActionBake, Reason: why})
		case Error:
			var n, failed int
			r.update(func(s *State) {
				s.Errors++
				n = s.Errors
				if n > r.p.ConsecutiveErrorLimit {
					s.FailedChecks++
				}
				failed = s.FailedChecks
			})
			why := "bake: " + iv.summary()
			if n > r.p.ConsecutiveErrorLimit {
				why = fmt.Sprintf("bake: the metrics could not be read %d interval(s) in a row (limit %d): %d failed analysis(es) of threshold %d: %s",
					n, r.p.ConsecutiveErrorLimit, failed, r.p.Threshold, iv.summary())
				if failed >= r.p.Threshold {
					end(r.rollback(ctx, why, iv, false))
					return
				}
			}
			r.decide(ctx, Decision{Verdict: Error, Judgements: js, Action: ActionBake, Reason: why})
		default:
			r.update(func(s *State) { s.Errors = 0 })
			r.decide(ctx, Decision{Verdict: iv.verdict, Judgements: js, Action: ActionBake, Reason: "bake: " + orText(iv.summary(), string(iv.verdict))})
		}
	}
}

// split gives the canary w% and the old versions the rest in proportion
// to their weights before (the heaviest takes the rounding).
func split(before map[string]int, version string, w int) map[string]int {
	out := map[string]int{version: w}
	total := 0
	for _, v := range before {
		total += v
	}
	if total == 0 {
		out[version] = 100
		return out
	}
	rest := 100 - w
	given := 0
	for v, bw := range before {
		out[v] = rest * bw / total
		given += out[v]
	}
	out[heaviest(before)] += rest - given
	return out
}

// heaviest is the version with the most weight (ties: the first by name).
func heaviest(ws map[string]int) string {
	best, bw := "", 0
	for v, w := range ws {
		if w > bw || (w == bw && w > 0 && v < best) {
			best, bw = v, w
		}
	}
	return best
}

func orNone(s string) string { return orText(s, "none") }

func orText(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}
