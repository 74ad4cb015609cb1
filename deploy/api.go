package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/flotilla-ci/flotilla/canary"
)

// Router steers each service's traffic between its versions: the built-in
// mesh locally, Istio on Kubernetes. A subset is named by its version.
type Router interface {
	// SetWeights and Weights are canary.Router's: the share of traffic
	// per subset, changed atomically.
	canary.Router
	// Declare makes sure the service has its stable address (what its
	// callers use) and returns it as host:port.
	Declare(ctx context.Context, service string) (string, error)
	// SetSubset adds the subset, or replaces its endpoints and canary
	// mark. A new subset gets weight 0 unless it is the service's only
	// one. The canary subset is what the header lane (X-Canary: true)
	// reaches; X-Flotilla-Version pins any subset.
	SetSubset(ctx context.Context, service string, sub Subset) error
	// RemoveSubset stops routing to the subset and returns once its
	// in-flight requests have finished (or ctx is done).
	RemoveSubset(ctx context.Context, service, subset string) error
}

// Subset is a version's instances as the Router sees them.
type Subset struct {
	Name      string   // the version
	Canary    bool     // the header lane's subset
	Endpoints []string // host:port
}

// The headers a smoke check sends so it reaches the new version before any
// user request does.
const (
	CanaryHeader  = "X-Canary"
	VersionHeader = "X-Flotilla-Version"
	// UpstreamHeader is what the mesh answers with: the subset that served.
	UpstreamHeader = "X-Flotilla-Upstream-Version"
)

// Gate decides whether a version of a service may be deployed: its event
// schemas are compatible with the registry's, the broker's can-i-deploy
// says yes, a person approved it.
type Gate interface {
	// Name names the gate in reports ("schemas", "can-i-deploy").
	Name() string
	// Check answers for one version. An error means the gate could not
	// answer; the orchestrator treats that as closed (with the error as the
	// reason), never as open.
	Check(ctx context.Context, req GateRequest) (GateResult, error)
}

// GateRequest is what a gate is asked about.
type GateRequest struct {
	Service string
	Version string
	// Source is the source version: what contracts and schemas are
	// registered under, so what can-i-deploy is asked about.
	Source      string
	Environment string // the environment deployed to ("local")
}

// GateResult is a gate's answer.
type GateResult struct {
	Pass   bool
	Reason string // why it is closed (or a note when open)
}

// GateFunc adapts a function to a Gate.
type GateFunc struct {
	GateName string
	Fn       func(ctx context.Context, req GateRequest) (GateResult, error)
}

// Name implements Gate.
func (g GateFunc) Name() string { return g.GateName }

// Check implements Gate.
func (g GateFunc) Check(ctx context.Context, req GateRequest) (GateResult, error) {
	return g.Fn(ctx, req)
}

// Shifter moves a service's traffic from the versions serving it to a new
// one, once the new one is ready and passed its smoke checks: all at once
// by default; the canary analysis moves it in steps, judging each, and
// returns an error to roll back. On an error the orchestrator puts the old
// weights back and removes the new version; on success it drains and stops
// the old versions.
type Shifter interface {
	// Describe says what Shift will do, for progress ("100% to V").
	Describe(service, version string) string
	// Shift moves the traffic. It returns when all of it is on the new
	// version (or with the reason it must roll back).
	Shift(ctx context.Context, req ShiftRequest) error
}

// ShiftRequest is a traffic shift to do.
type ShiftRequest struct {
	Service string
	Version string   // the new version (subset), at weight 0
	Old     []string // the versions serving now (none for a first deploy)
	Router  Router
	// Progress, when not nil, is told of what a shift that takes time
	// decides on its way (a canary's judged intervals), for the release's
	// events (step "analysis").
	Progress func(msg string)
}

// Baker is a Shifter that may go on watching a new version after Shift
// returned (a canary's bake): the version is reported deployed, and the
// old versions are kept on standby until the bake ends, instead of being
// drained at once.
type Baker interface {
	// Baking reports whether a bake of service's version runs now; if so,
	// done is called once, when it ends: with nil when it passed (the old
	// versions may go), or with the reason after the Shifter put the old
	// weights back (the new version must go, and the rollback be recorded).
	Baking(service, version string, done func(ctx context.Context, err error)) bool
}

// ErrInterrupted is wrapped by a Shifter's error when it stopped because
// its context ended (a control plane shutting down) and left the traffic
// as it was, its state kept to take up again ([Resumer]): the
// orchestrator then leaves the weights and the new version alone.
var ErrInterrupted = canary.ErrInterrupted

// Resumer is a Shifter whose shifts outlive a control plane: what a
// stopped one left half done is taken up by the next one's
// [Orchestrator.Restore].
type Resumer interface {
	// Interrupted returns the shifts in progress when the control plane
	// stopped.
	Interrupted(ctx context.Context) ([]Interrupted, error)
	// Resume takes an interrupted shift up again, the versions routed as
	// it left them; it returns as Shift does.
	Resume(ctx context.Context, req ShiftRequest) error
	// Abandon is told of an interrupted shift that cannot be taken up
	// (its new version no longer runs): the old version was routed back,
	// with the reason the history records.
	Abandon(ctx context.Context, service, version, reason string)
}

// Interrupted is a shift a stopped control plane left half done.
type Interrupted struct {
	Service, Version string
	// Weights is the traffic as it was left, keyed by version.
	Weights map[string]int
}

// allAtOnce is the default Shifter.
type allAtOnce struct{}

func (allAtOnce) Describe(_, version string) string { return "100% to " + version }

func (allAtOnce) Shift(ctx context.Context, req ShiftRequest) error {
	return req.Router.SetWeights(ctx, req.Service, map[string]int{req.Version: 100})
}

// OnFailure says what a release does when one of its services fails.
type OnFailure string

const (
	// SkipDependents rolls the failed service back, lets the rest of its
	// wave finish, and skips the later services that depend on it
	// (directly or not); the others still deploy. The default.
	SkipDependents OnFailure = "skip-dependents"
	// RollbackRelease also stops the release after the failing wave and
	// rolls every service it already deployed back, last wave first.
	RollbackRelease OnFailure = "rollback-release"
)

// ParseOnFailure checks a --on-failure value ("" is the default).
func ParseOnFailure(s string) (OnFailure, error) {
	switch OnFailure(s) {
	case "", SkipDependents:
		return SkipDependents, nil
	case RollbackRelease:
		return RollbackRelease, nil
	}
	return "", fmt.Errorf("on-failure %q: want %s or %s", s, SkipDependents, RollbackRelease)
}

// Request asks for a release.
type Request struct {
	// Services names what to deploy; All deploys every service; Changed
	// deploys what changed since Base (affected detection over the
	// working tree). Exactly one of the three.
	Services []string `json:"services,omitempty"`
	All      bool     `json:"all,omitempty"`
	Changed  bool     `json:"changed,omitempty"`
	Base     string   `json:"base,omitempty"`
	// Environment names the environment (informational for gates and
	// history; the target is chosen by whoever built the orchestrator).
	Environment string    `json:"environment,omitempty"`
	MaxParallel int       `json:"max_parallel,omitempty"`
	OnFailure   OnFailure `json:"on_failure,omitempty"`
	// Who is recorded in the history.
	Who string `json:"who,omitempty"`
}

// Validate reports a request that names nothing, or more than one way.
func (r Request) Validate() error {
	n := 0
	if len(r.Services) > 0 {
		n++
	}
	if r.All {
		n++
	}
	if r.Changed {
		n++
	}
	switch {
	case n == 0:
		return errors.New("nothing to deploy: name services, or pass --all or --changed")
	case n > 1:
		return errors.New("name services, or pass --all, or --changed: not more than one of them")
	case r.Changed && r.Base == "":
		return errors.New("--changed needs --base REF (the ref the change is measured from)")
	case r.MaxParallel < 0:
		return fmt.Errorf("max-parallel %d: want 1 or more (0: the default)", r.MaxParallel)
	}
	_, err := ParseOnFailure(string(r.OnFailure))
	return err
}

// Action is what a plan does with a service.
type Action string

// The actions of a plan.
const (
	ActionDeploy    Action = "deploy"
	ActionUnchanged Action = "unchanged" // its version already serves
)

// Plan is a release worked out: its services in waves.
type Plan struct {
	// Waves hold the services in deploy order: every service's
	// dependencies that are in the plan are in earlier waves.
	Waves [][]PlanItem `json:"waves"`
	// Why says how the services were chosen ("changed since main: ...").
	Why string `json:"why,omitempty"`
}

// PlanItem is one service of a plan.
type PlanItem struct {
	Service string `json:"service"`
	Version string `json:"version"`
	// Current is the version serving now ("" when none).
	Current string `json:"current,omitempty"`
	Action  Action `json:"action"`
	Spec    Spec   `json:"spec"`
}

// Services returns the plan's service names in deploy order.
func (p *Plan) Services() []string {
	var out []string
	for _, w := range p.Waves {
		for _, it := range w {
			out = append(out, it.Service)
		}
	}
	return out
}

// Step is a stage of a service's deploy, as reported in events.
type Step string

// The steps, in the order they happen.
const (
	StepGate       Step = "gate"
	StepBuild      Step = "build"
	StepStart      Step = "start"
	StepReady      Step = "ready"
	StepSmoke      Step = "smoke"
	StepShift      Step = "shift"
	StepAnalysis   Step = "analysis" // a decision of a shift in steps (a canary)
	StepDrain      Step = "drain"
	StepDone       Step = "done"      // succeeded
	StepFailed     Step = "failed"    // failed and rolled back
	StepSkipped    Step = "skipped"   // not attempted
	StepUnchanged  Step = "unchanged" // nothing to do
	StepRolledBack Step = "rolled-back"
)

// Final reports whether the step ends a service's part of a release.
func (s Step) Final() bool {
	switch s {
	case StepDone, StepFailed, StepSkipped, StepUnchanged, StepRolledBack:
		return true
	}
	return false
}

// Event is progress: one step of one service, or of the release
// (Service empty).
type Event struct {
	Release int64     `json:"release"`
	Time    time.Time `json:"time"`
	Wave    int       `json:"wave"` // 1-based; 0 for the release itself
	Service string    `json:"service,omitempty"`
	Version string    `json:"version,omitempty"`
	Step    Step      `json:"step"`
	Msg     string    `json:"msg,omitempty"`
}

// Result is how a service fared in a release, as the history records it.
type Result string

// The results.
const (
	Succeeded  Result = "succeeded"
	Failed     Result = "failed"      // rolled back automatically; the old version serves
	Skipped    Result = "skipped"     // a dependency failed, or the release stopped
	Unchanged  Result = "unchanged"   // its version already served
	RolledBack Result = "rolled-back" // succeeded, then undone by a release rollback
)

// Outcome is one service's part of a release.
type Outcome struct {
	Service  string        `json:"service"`
	Wave     int           `json:"wave"`
	Version  string        `json:"version"`
	Previous string        `json:"previous,omitempty"`
	Result   Result        `json:"result"`
	Reason   string        `json:"reason,omitempty"`
	Duration time.Duration `json:"duration"`
	// Warnings are side effects of the outcome that failed (a recorder
	// such as the broker's record-deployment, the history): the service
	// is deployed, and the output and the history say what was not done.
	Warnings []string `json:"warnings,omitempty"`
}

// Report is a finished release.
type Report struct {
	Release  int64         `json:"release"`
	Plan     *Plan         `json:"plan"`
	Outcomes []Outcome     `json:"outcomes"` // in plan order
	Duration time.Duration `json:"duration"`
	// Build is the part of Duration spent building the release's
	// artifacts, before its first wave (0 when all were cached).
	Build time.Duration `json:"build,omitempty"`
}

// Failed returns the outcomes that failed.
func (r *Report) Failed() []Outcome {
	var out []Outcome
	for _, o := range r.Outcomes {
		if o.Result == Failed {
			out = append(out, o)
		}
	}
	return out
}

// ErrBusy is wrapped by a *BusyError: another release is running.
var ErrBusy = errors.New("another deploy is running")

// ErrReleaseFailed is wrapped by Deploy's error when a service failed.
var ErrReleaseFailed = errors.New("release failed")

// Running describes the release in progress.
type Running struct {
	Release  int64     `json:"release"`
	Services []string  `json:"services"`
	Who      string    `json:"who"`
	Started  time.Time `json:"started"`
}

// BusyError refuses a deploy while another runs, and says which.
type BusyError struct{ Running Running }

func (e *BusyError) Error() string {
	return fmt.Sprintf("%v: release %d (%s), started by %s at %s; wait for it to finish",
		ErrBusy, e.Running.Release, strings.Join(e.Running.Services, ", "), e.Running.Who, e.Running.Started.UTC().Format("15:04:05 UTC"))
}

// Unwrap makes errors.Is(err, ErrBusy) true.
func (e *BusyError) Unwrap() error { return ErrBusy }
