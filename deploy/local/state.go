package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/flotilla-ci/flotilla/deploy"
)

// stateFile is state.json: what runs, so a restarted control plane can
// adopt it.
type stateFile struct {
	Versions []stateVersion `json:"versions"`
}

type stateVersion struct {
	Spec      deploy.Spec     `json:"spec"`
	Bin       string          `json:"bin"`
	Instances []stateInstance `json:"instances"`
}

type stateInstance struct {
	Index   int       `json:"index"`
	Port    int       `json:"port"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Log     string    `json:"log"`
}

func (t *Target) statePath() string { return filepath.Join(t.cfg.Dir, "state.json") }

// saveState writes state.json atomically (write, then rename).
func (t *Target) saveState() {
	t.mu.Lock()
	if t.gone {
		t.mu.Unlock()
		return
	}
	var sf stateFile
	for _, v := range t.versions {
		sv := stateVersion{Spec: v.spec, Bin: v.bin}
		for _, in := range v.insts {
			in.mu.Lock()
			sv.Instances = append(sv.Instances, stateInstance{Index: in.index, Port: in.port, PID: in.pid, Started: in.started, Log: in.logPath})
			in.mu.Unlock()
		}
		sf.Versions = append(sf.Versions, sv)
	}
	sort.Slice(sf.Versions, func(i, j int) bool {
		a, b := sf.Versions[i].Spec, sf.Versions[j].Spec
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		return a.Version < b.Version
	})
	data, err := json.MarshalIndent(sf, "", "  ")
	if err == nil {
		// Held across the write so two saves cannot interleave.
		tmp := t.statePath() + ".tmp"
		if err = os.WriteFile(tmp, data, 0o644); err == nil {
			err = os.Rename(tmp, t.statePath())
		}
	}
	t.mu.Unlock()
	if err != nil {
		t.log.Error("write local target state", "path", t.statePath(), "err", err)
	}
}

// adopt reads state.json: instances still running are supervised again;
// those that died are started again from their artifact.
func (t *Target) adopt(ctx context.Context) error {
	data, err := os.ReadFile(t.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("local target: read state: %w", err)
	}
	var sf stateFile
	if err := json.Unmarshal(data, &sf); err != nil {
		return fmt.Errorf("local target: %s: %w (move it away to start from nothing)", t.statePath(), err)
	}
	adopted, restarted := 0, 0
	for _, sv := range sf.Versions {
		v := &version{spec: sv.Spec, bin: sv.Bin}
		for _, si := range sv.Instances {
			logPath := si.Log
			if logPath == "" {
				logPath = t.LogFile(sv.Spec.Service, sv.Spec.Version)
			}
			in := newInstance(t, v, si.Index, si.Port, logPath)
			if alive(si.PID) && runs(si.PID, sv.Bin) {
				in.pid, in.started = si.PID, si.Started
				in.probeOnce() // so Status is right from the start
				adopted++
			} else {
				if _, err := os.Stat(sv.Bin); err != nil {
					t.log.WarnContext(ctx, "cannot restart instance: artifact gone", "service", sv.Spec.Service, "version", sv.Spec.Version, "artifact", sv.Bin)
					continue
				}
				if portFree(in.port) != nil {
					p, err := freePort()
					if err != nil {
						return fmt.Errorf("local target: %w", err)
					}
					in.port = p
				}
				if err := in.launch(); err != nil {
					t.log.WarnContext(ctx, "cannot restart instance", "service", sv.Spec.Service, "version", sv.Spec.Version, "err", err)
					continue
				}
				restarted++
			}
			v.insts = append(v.insts, in)
			go in.supervise()
		}
		if len(v.insts) > 0 {
			t.rotateLogs(v)
			t.versions[key{sv.Spec.Service, sv.Spec.Version}] = v
		}
	}
	t.saveState()
	if adopted+restarted > 0 {
		t.log.InfoContext(ctx, "local instances taken over", "adopted", adopted, "restarted", restarted)
	}
	return nil
}

// runs reports whether pid runs the binary bin (so a reused pid is not
// mistaken for an instance). Where /proc is missing it trusts the pid.
func runs(pid int, bin string) bool {
	if runtime.GOOS != "linux" {
		return true
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	return strings.TrimSuffix(exe, " (deleted)") == bin
}
