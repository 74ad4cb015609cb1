package local

import (
	"context"
	"fmt"
	"sort"
	"syscall"

	"github.com/flotilla-ci/flotilla/deploy"
)

// Kill sends SIGKILL to the process group of one running instance of the
// service (all false: the first that runs, by version and index) or of
// every instance of every version it runs, as a crash would, and returns
// the instances it killed as they were. The supervisor restarts them with
// its backoff and counts the restarts; Kill does not wait for that. A
// service with no running instance is deploy.ErrNotFound.
func (t *Target) Kill(ctx context.Context, service string, all bool) ([]deploy.Instance, error) {
	t.mu.Lock()
	var insts []*instance
	for k, v := range t.versions {
		if k.service == service {
			insts = append(insts, v.insts...)
		}
	}
	t.mu.Unlock()
	sort.Slice(insts, func(i, j int) bool {
		if insts[i].v.spec.Version != insts[j].v.spec.Version {
			return insts[i].v.spec.Version < insts[j].v.spec.Version
		}
		return insts[i].index < insts[j].index
	})
	var killed []deploy.Instance
	for _, in := range insts {
		snap := in.snapshot()
		in.mu.Lock()
		pid, stopping := in.pid, in.stopping || in.detached
		in.mu.Unlock()
		if stopping || !alive(pid) {
			continue
		}
		signalGroup(pid, syscall.SIGKILL)
		t.log.WarnContext(ctx, "instance killed on purpose (SIGKILL)", "service", service, "version", snap.Version, "instance", snap.Index, "pid", pid)
		appendLog(in.logPath, fmt.Sprintf("flotilla: pid %d killed on purpose (SIGKILL, a chaos experiment)", pid))
		killed = append(killed, snap)
		if !all {
			break
		}
	}
	if len(killed) == 0 {
		return nil, fmt.Errorf("kill %s: no running instance: %w", service, deploy.ErrNotFound)
	}
	return killed, nil
}
