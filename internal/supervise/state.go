package supervise

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// State is what a state file (<dir>/<name>.json) records of a running
// platform process, so a restarted control plane can adopt it and
// `flotilla status` can show it.
type State struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	// Path and Args are what was run (Args without the program name).
	Path string   `json:"path"`
	Args []string `json:"args"`
	// Version is flotilla's version that started it.
	Version string `json:"version,omitempty"`
	// Started is when the current process started.
	Started time.Time `json:"started"`
	// Restarts counts the restarts after an exit the supervisor did not
	// ask for, since the first start.
	Restarts int `json:"restarts"`
	// Addrs are the process's addresses by name ("client": "127.0.0.1:7422").
	Addrs map[string]string `json:"addrs,omitempty"`
	Log   string            `json:"log"`
	// Identity tells the process from a later one given the same pid.
	Identity Identity `json:"identity"`
}

// ErrNoState is returned by ReadState when no state file exists.
var ErrNoState = errors.New("no state file")

// StatePath is the state file of the process name in dir.
func StatePath(dir, name string) string { return filepath.Join(dir, name+".json") }

// ReadState reads the state file of the process name in dir; ErrNoState
// (wrapped) when there is none.
func ReadState(dir, name string) (State, error) {
	path := StatePath(dir, name)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return State{}, fmt.Errorf("%s: %w", path, ErrNoState)
	}
	if err != nil {
		return State{}, fmt.Errorf("read %s: %w", path, err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return State{}, fmt.Errorf("%s: %w (remove it; the process, if it runs, is then started anew)", path, err)
	}
	if st.Name != name {
		return State{}, fmt.Errorf("%s: names process %q, want %q (remove it)", path, st.Name, name)
	}
	return st, nil
}

// Running reports whether the process the state records still runs: its
// pid is alive and is the same process (start time, executable and
// arguments), not a later one that got the pid. If not, it says why.
func (st State) Running() (bool, string) {
	if !Alive(st.PID) {
		return false, fmt.Sprintf("process %d is gone", st.PID)
	}
	id, err := identify(st.PID)
	if err != nil {
		return false, err.Error()
	}
	if ok, why := st.Identity.same(id); !ok {
		return false, fmt.Sprintf("process %d is another program: %s", st.PID, why)
	}
	return true, ""
}

// writeState writes the state file atomically: a temporary file, synced,
// renamed over the old one, so a crash leaves the old file or the new.
func writeState(dir string, st State) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	path := StatePath(dir, st.Name)
	f, err := os.CreateTemp(dir, "."+st.Name+".json.*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// RecordSelf writes a state file for this process (one nobody
// supervises, such as the control plane itself), so another can find it
// and tell it from a later process given its pid (State.Running).
func RecordSelf(dir, name, version string, addrs map[string]string) error {
	pid := os.Getpid()
	id, err := identify(pid)
	if err != nil {
		return err
	}
	exe, _ := os.Executable()
	st := State{Name: name, PID: pid, Path: exe, Args: os.Args[1:], Version: version, Started: time.Now(), Addrs: addrs, Identity: id}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return writeState(dir, st)
}
