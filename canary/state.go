package canary

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Phase is where a canary is.
type Phase string

// The phases, roughly in the order a canary goes through them.
const (
	// PhaseWaiting: a confirm-rollout webhook has not said yes yet.
	PhaseWaiting Phase = "waiting"
	// PhaseLane: judged at 0% on its header lane's traffic.
	PhaseLane Phase = "lane"
	// PhaseProgressing: at a step, judged every interval.
	PhaseProgressing Phase = "progressing"
	// PhaseHeld: inconclusive for too long; judging goes on (failures
	// still roll back) but it moves only on a manual promote or abort.
	PhaseHeld Phase = "held"
	// PhaseWaitingPromotion: the last step passed; a confirm-promotion
	// webhook has not said yes yet.
	PhaseWaitingPromotion Phase = "waiting-promotion"
	// PhaseBaking: promoted (all the traffic on the new version) and
	// judged in the background, the old version on standby.
	PhaseBaking Phase = "baking"
	// PhaseSucceeded: promoted, and the bake (if any) passed.
	PhaseSucceeded Phase = "succeeded"
	// PhaseRolledBack: rolled back (by the judges, a webhook, a manual
	// abort, or during the bake); the old weights are back.
	PhaseRolledBack Phase = "rolled-back"
)

// Final reports whether the phase ends the canary.
func (p Phase) Final() bool { return p == PhaseSucceeded || p == PhaseRolledBack }

// Action is what a decision did.
type Action string

// The actions.
const (
	ActionStart    Action = "start"    // the analysis began
	ActionWait     Action = "wait"     // a confirm webhook said no: ask again next interval
	ActionStay     Action = "stay"     // judged again at the same step next interval
	ActionAdvance  Action = "advance"  // moved to the next step's weight
	ActionHold     Action = "hold"     // held: waits for a manual promote or abort
	ActionPromote  Action = "promote"  // all the traffic on the new version
	ActionRollback Action = "rollback" // the old weights put back
	ActionBake     Action = "bake"     // judged during the bake
	ActionBaked    Action = "baked"    // the bake passed: the old version may go
	ActionResume   Action = "resume"   // taken up again from a saved state
	ActionNotify   Action = "notify"   // a post-rollout webhook failed (recorded, nothing else)
)

// Decision is one step of a canary's analysis: what was measured, what
// the judges and webhooks said, and what was done about it.
type Decision struct {
	Time  time.Time `json:"time"`
	Phase Phase     `json:"phase"` // the phase the decision was taken in
	// Step (1-based; 0 before the first) and Weight are where the canary
	// was: for a judged interval, the step it was judged at (an advance
	// or a promotion says in its Reason where it went).
	Step   int `json:"step"`
	Weight int `json:"weight"`
	// Verdict is the interval's, when one was judged: fail when a judge
	// or a rollout webhook failed, else error when a source could not be
	// asked, else inconclusive when a judge was, else pass.
	Verdict    Verdict      `json:"verdict,omitempty"`
	Judgements []Judgement  `json:"judgements,omitempty"`
	Hooks      []HookResult `json:"hooks,omitempty"`
	Action     Action       `json:"action"`
	Reason     string       `json:"reason"`
	// FailedChecks is the count after this decision.
	FailedChecks int `json:"failed_checks"`
}

// State is a canary's analysis as it stands: everything needed to show it
// (flotilla canary status -o json) and to take it up again after a
// restart ([Analysis.Resume]) or put the old weights back
// ([Analysis.Restore]). It round-trips through encoding/json.
type State struct {
	Service  string   `json:"service"`
	Version  string   `json:"version"`
	Baseline string   `json:"baseline,omitempty"` // the version compared with
	Strategy Strategy `json:"strategy"`
	Steps    []int    `json:"steps,omitempty"`
	// Before is the weights before the canary: what a rollback restores.
	Before map[string]int `json:"before,omitempty"`
	Phase  Phase          `json:"phase"`
	// Step is the 1-based step the canary is at (for blue/green, the
	// intervals passed); 0 before the first.
	Step   int `json:"step"`
	Weight int `json:"weight"` // the canary's share of traffic now
	// Progress markers, so a resumed analysis does not repeat them.
	Confirmed      bool `json:"confirmed,omitempty"`
	LaneDone       bool `json:"lane_done,omitempty"`
	PreRolloutDone bool `json:"pre_rollout_done,omitempty"`
	// FailedChecks counts failed analyses over the run (the bake counts
	// its own from 0) towards Threshold; Inconclusive and Errors count the
	// current streaks.
	FailedChecks int       `json:"failed_checks"`
	Threshold    int       `json:"threshold"`
	Inconclusive int       `json:"inconclusive"`
	Errors       int       `json:"errors"`
	Started      time.Time `json:"started"`
	Updated      time.Time `json:"updated"`
	// NextAt is when the next interval ends and is judged (zero when
	// nothing waits).
	NextAt time.Time `json:"next_at,omitzero"`
	// BakeUntil is when the bake ends (zero unless baking).
	BakeUntil time.Time `json:"bake_until,omitzero"`
	Reason    string    `json:"reason,omitempty"` // the last decision's
	// Decisions are the most recent decisions, oldest first (at most
	// MaxDecisions; the observer sees them all).
	Decisions []Decision `json:"decisions,omitempty"`
}

// MaxDecisions is how many decisions a State keeps.
const MaxDecisions = 100

// ErrRolledBack is wrapped by the error of an analysis that rolled the
// canary back; ErrAborted too when a person aborted it.
var (
	ErrRolledBack = errors.New("canary rolled back")
	ErrAborted    = errors.New("canary aborted")
	// ErrInterrupted is wrapped when the analysis stopped because its
	// context ended (a control plane shutting down): the weights are left
	// as they were, for Resume or Restore.
	ErrInterrupted = errors.New("canary analysis interrupted")
	// ErrNotRunning is returned by Promote and Abort for a service with
	// no canary in progress or baking.
	ErrNotRunning = errors.New("no canary in progress")
)

// RollbackError is an analysis's verdict against a canary: where it was,
// and the judges and figures that failed it.
type RollbackError struct {
	Service, Version string
	Phase            Phase // where it was when rolled back
	Step, Weight     int
	Reason           string
	// Failed are the failing judgements of the last interval.
	Failed  []Judgement
	Aborted bool
}

func (e *RollbackError) Error() string {
	where := fmt.Sprintf("at %d%%", e.Weight)
	switch e.Phase {
	case PhaseBaking:
		where = "during the bake"
	case PhaseLane:
		where = "on its header lane (0%)"
	}
	return fmt.Sprintf("canary %s@%s rolled back %s: %s", e.Service, e.Version, where, e.Reason)
}

// Unwrap makes errors.Is(err, ErrRolledBack) true, and ErrAborted for a
// manual abort.
func (e *RollbackError) Unwrap() []error {
	if e.Aborted {
		return []error{ErrRolledBack, ErrAborted}
	}
	return []error{ErrRolledBack}
}

// summarize says which judgements of a verdict decided it.
func summarize(v Verdict, js []Judgement, hooks []HookResult) string {
	var parts []string
	for _, h := range hooks {
		if !h.OK && (v == Fail || v == "") {
			parts = append(parts, h.Reason)
		}
	}
	for _, j := range js {
		if j.Verdict == v {
			parts = append(parts, j.Judge+": "+j.Reason)
		}
	}
	return strings.Join(parts, "; ")
}

// finite drops the measurements JSON cannot carry (NaN, ±Inf).
func finite(js []Judgement) {
	for _, j := range js {
		for k, v := range j.Measurements {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				delete(j.Measurements, k)
			}
		}
	}
}

func (s State) clone() State {
	c := s
	c.Steps = append([]int(nil), s.Steps...)
	if s.Before != nil {
		c.Before = make(map[string]int, len(s.Before))
		for k, v := range s.Before {
			c.Before[k] = v
		}
	}
	c.Decisions = append([]Decision(nil), s.Decisions...)
	return c
}

// String renders a decision on one line, for the deploy's live output and
// the history: "12:00:20 10% pass advance: passed; step 2: 50% to v2".
func (d Decision) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %d%%", d.Time.UTC().Format("15:04:05"), d.Phase, d.Weight)
	if d.Verdict != "" {
		b.WriteString(" " + string(d.Verdict))
	}
	fmt.Fprintf(&b, " %s: %s", d.Action, d.Reason)
	return b.String()
}

// Summary says where a canary stands, on one line, for `flotilla canary
// status`: "svc@v2 progressing at 50% (step 2 of 3), 1 of 2 failed
// analyses, next judged 12:00:30; baseline v1".
func (s State) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s@%s %s", s.Service, s.Version, s.Phase)
	switch {
	case s.Phase == PhaseBaking:
		fmt.Fprintf(&b, " at 100%% until %s", s.BakeUntil.UTC().Format("15:04:05"))
	case s.Phase.Final():
	case s.Strategy == StrategyCanary && s.Step > 0:
		fmt.Fprintf(&b, " at %d%% (step %d of %d)", s.Weight, s.Step, len(s.Steps))
	default:
		fmt.Fprintf(&b, " at %d%%", s.Weight)
	}
	if !s.Phase.Final() || s.FailedChecks > 0 {
		fmt.Fprintf(&b, ", %d of %d failed analyses", s.FailedChecks, s.Threshold)
	}
	if !s.NextAt.IsZero() {
		fmt.Fprintf(&b, ", next judged %s", s.NextAt.UTC().Format("15:04:05"))
	}
	if s.Baseline != "" {
		b.WriteString("; baseline " + s.Baseline)
	}
	if s.Reason != "" {
		b.WriteString(": " + s.Reason)
	}
	return b.String()
}
