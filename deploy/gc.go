package deploy

import (
	"context"
	"errors"
	"fmt"
	"sort"
)

// Pruner is implemented by a Target that keeps artifacts and logs of past
// versions (the local target's cache), so they can be pruned.
type Pruner interface {
	// Prune removes the artifacts and logs of the versions keep does not
	// list (by service), except those of versions running on the
	// target, and says what it removed. An artifact shared by a kept
	// version (a config-only change) stays.
	Prune(ctx context.Context, keep map[string][]Spec) (Pruned, error)
}

// Pruned is what a prune removed.
type Pruned struct {
	// Artifacts and Logs name what was removed (service@key,
	// service@version), sorted.
	Artifacts []string `json:"artifacts,omitempty"`
	Logs      []string `json:"logs,omitempty"`
	// Bytes is the space freed.
	Bytes int64 `json:"bytes"`
	// Kept counts the versions kept (every service's).
	Kept int `json:"kept"`
}

// DefaultKeepVersions is how many versions of each service a prune keeps
// from the history, newest first, besides the serving, canary and
// previous ones (Config.KeepVersions).
const DefaultKeepVersions = 5

// GC prunes the target's artifacts and logs now (the orchestrator also
// does after every release): per service it keeps the versions a
// rollback may need (the KeepVersions newest that succeeded in the
// history) and always the serving, canary and previous ones. A target
// that keeps nothing prunes nothing. While a release runs it is refused
// with a *BusyError: its new artifacts are in no history yet.
func (o *Orchestrator) GC(ctx context.Context) (Pruned, error) {
	o.mu.Lock()
	if o.running != nil {
		r := *o.running
		o.mu.Unlock()
		return Pruned{}, &BusyError{Running: r}
	}
	o.running = &Running{Services: []string{"(pruning)"}, Who: "gc"}
	o.mu.Unlock()
	defer o.end()
	return o.gc(ctx)
}

// autoGC prunes after a release, unless Config.KeepVersions says never;
// a failure is logged (the release happened).
func (o *Orchestrator) autoGC(ctx context.Context) {
	if o.cfg.KeepVersions < 0 {
		return
	}
	p, err := o.gc(context.WithoutCancel(ctx))
	if err != nil {
		o.log.WarnContext(ctx, "prune artifacts and logs", "err", err)
		return
	}
	if len(p.Artifacts)+len(p.Logs) > 0 {
		o.log.InfoContext(ctx, "pruned", "artifacts", len(p.Artifacts), "logs", len(p.Logs), "bytes", p.Bytes)
	}
}

// gc is GC without claiming the orchestrator.
func (o *Orchestrator) gc(ctx context.Context) (Pruned, error) {
	pr, ok := o.cfg.Target.(Pruner)
	if !ok {
		return Pruned{}, nil
	}
	keep, err := o.keep(ctx)
	if err != nil {
		return Pruned{}, err
	}
	p, err := pr.Prune(ctx, keep)
	for _, specs := range keep {
		p.Kept += len(specs)
	}
	return p, err
}

// keep lists, per service of the manifest, the specs of the versions a
// prune must keep.
func (o *Orchestrator) keep(ctx context.Context) (map[string][]Spec, error) {
	n := o.cfg.KeepVersions
	if n <= 0 {
		n = DefaultKeepVersions
	}
	out := map[string][]Spec{}
	var errs []error
	for _, svc := range o.graph().Manifest().Names() {
		recs, err := o.cfg.Store.List(ctx, svc, 1000)
		if err != nil {
			errs = append(errs, fmt.Errorf("history of %s: %w", svc, err))
			continue
		}
		// The serving and canary versions (every subset routed), and
		// the previous one: what the newest record replaced, and what a
		// rollback without --to goes back to.
		must := map[string]bool{}
		if w, err := o.cfg.Router.Weights(ctx, svc); err == nil {
			for v := range w {
				must[v] = true
			}
		}
		if len(recs) > 0 && recs[0].Previous != "" {
			must[recs[0].Previous] = true
		}
		cur, _ := o.serving(ctx, svc)
		if cur == "" {
			if c, err := o.cfg.Store.Current(ctx, svc); err == nil {
				cur = c.Version
				must[cur] = true
			}
		}
		for _, rec := range recs {
			if rec.Result == Succeeded && rec.Version != cur && rec.Spec.Version == rec.Version {
				must[rec.Version] = true // the rollback's default
				break
			}
		}
		kept := map[string]bool{}
		newest := 0
		for _, rec := range recs {
			if rec.Spec.Version != rec.Version || rec.Spec.Service == "" || kept[rec.Version] {
				continue
			}
			switch {
			case must[rec.Version]:
			case rec.Result == Succeeded && newest < n:
				newest++
			default:
				continue
			}
			kept[rec.Version] = true
			out[svc] = append(out[svc], rec.Spec)
		}
		// A version routed that the history does not know (a restart
		// adopted it) is running: the target keeps it as such.
		sort.Slice(out[svc], func(i, j int) bool { return out[svc][i].Version < out[svc][j].Version })
	}
	return out, errors.Join(errs...)
}
