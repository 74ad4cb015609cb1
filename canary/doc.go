// Package canary is flotilla's progressive delivery: the analysis loop that
// shifts traffic to a new version step by step and promotes or rolls it back
// on what the judges see.
//
// The loop drives two small backends, defined here and implemented
// elsewhere: a [Router] that moves traffic between the subsets of a service
// (the built-in mesh, or Istio on Kubernetes) and a [Metrics] source that
// reports how a version behaved over a window (the built-in mesh, or
// Prometheus). Custom query judges go through a [Querier] (PromQL for the
// Prometheus provider) and synthetic traffic through a [LoadDriver].
//
// # A release under a Policy
//
// The orchestrator starts the new version beside the old one at 0% and
// runs its smoke checks through the header lane (X-Canary: true); then it
// calls [Analysis.Shift] (deploy.Shifter's Shift, through a two-line
// adapter on deploy's side, since deploy imports this package):
//
//  1. confirm-rollout webhooks are asked until they say yes;
//  2. with LaneFirst, the canary is judged for an interval on its header
//     lane's traffic alone, before any weight moves;
//  3. pre-rollout webhooks run;
//  4. each step's weight is set and held for an Interval, then the judges
//     (and rollout webhooks) give their verdicts on the canary's and the
//     baseline's figures over that interval: a pass advances, a failure
//     counts (Threshold failures roll back), an error counts towards
//     ConsecutiveErrorLimit, an inconclusive interval is judged again, and
//     past InconclusiveLimit the canary is held for a person;
//  5. after the last step, confirm-promotion webhooks are asked, and the
//     new version gets all the traffic: Shift returns nil;
//  6. the bake judges the promoted version in the background with the old
//     one on standby, and rolls back through Config.BakeEnded on failure.
//
// Every decision, with its measurements, verdicts and reasons, goes to
// Config.Observer with the canary's [State], which round-trips through
// JSON: what `flotilla canary status -o json` shows and what a restarted
// control plane gives [Analysis.Resume] or [Analysis.Restore].
// [Analysis.Promote] and [Analysis.Abort] are the manual overrides.
//
// # Judges
//
// Threshold judges look at the canary's own figures ([ErrorRateJudge],
// [LatencyJudge], [QueryJudge]); the baseline comparison looks at both, as
// Kayenta does: [MannWhitney] on the latency histograms
// ([BaselineLatencyJudge]) and [TwoProportions] on the error counts
// ([BaselineErrorJudge]), each failing only when the canary is worse with
// the configured confidence and by at least the minimum effect. No data,
// or fewer requests than MinRequests, is inconclusive: never a failure.
package canary
