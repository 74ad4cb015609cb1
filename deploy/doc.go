// Package deploy is flotilla's deploy orchestrator: it takes a release (some
// services, every service, or what changed since a git ref) from the plan
// to traffic, in dependency order, and rolls back on its own.
//
// The plan ([MakePlan], [Orchestrator.Plan]) puts the services in waves
// from the graph: a service's dependencies that are in the release deploy
// in earlier waves, and the services of one wave deploy in parallel (up to
// MaxParallel). Each service's version is a content hash ([Versioner]), so
// a service whose version already serves is left alone. Per service:
//
//  1. its dependencies must serve (deployed in an earlier wave, or already);
//  2. the gates ([Gate]: schemas compatible, can-i-deploy) must be open;
//  3. its artifact is built ([Builder]: every artifact of a release is
//     built before its first wave, as a phase of its own reported with its
//     progress ([ProgressBuilder]), so a wave's time is its deploy's), and
//     the target starts it next to the old version ([Target].Apply),
//     returning once it is ready;
//  4. the router ([Router]) gets it as the canary subset at 0% weight, and
//     the manifest's smoke checks reach it through the header lane
//     (X-Canary: true, X-Flotilla-Version: V) while users still reach
//     the old version;
//  5. the traffic moves to it ([Shifter]: all at once by default, in
//     judged steps with the canary analysis); the old version is drained
//     (in-flight requests finish) and stopped ([Target].Remove);
//  6. the outcome goes to the history ([Store]) and to the [Recorder]s
//     (the contract broker's record-deployment).
//
// A failure at any step removes the new version again: the old one never
// stopped serving. The rest of its wave finishes, later services that need
// it are skipped, and with [RollbackRelease] everything the release
// already deployed goes back too, last wave first. One release runs at a
// time; another is refused with a [BusyError] naming it. Progress is
// reported as [Event]s to a callback.
//
// A long-running control plane sets Config.Load, so every plan reads
// flotilla.yaml as it is now. [Orchestrator.Restore] routes what a target
// adopted after a restart; [Orchestrator.Rollback] puts a service back on
// an earlier version from its recorded spec and cached artifact.
//
// Targets live in subpackages: deploy/local (processes behind the built-in
// mesh, with local.MeshRouter as the Router). The history's SQL store is deploy/sqlstore, and deploytest is the
// conformance suite of [Store].
//
// The manifest's deploy.port is the service's stable (mesh) port, not an
// instance's: two versions run side by side during a deploy, each on a
// port of its own.
package deploy
