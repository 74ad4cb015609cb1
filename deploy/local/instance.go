package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/flotilla-ci/flotilla/deploy"
)

// instance is one supervised process of a version. The supervisor
// goroutine owns the process: it waits for it, restarts it with backoff
// after a crash, and gives up on a crash loop before the first readiness.
type instance struct {
	t       *Target
	v       *version
	index   int
	port    int
	logPath string

	readyCh  chan struct{} // closed the first time it is ready
	loopCh   chan struct{} // closed when it crash-loops before being ready
	stopCh   chan struct{} // closed by stop or detach
	doneCh   chan struct{} // closed when the supervisor returns
	stopOnce sync.Once
	ready1   sync.Once

	mu       sync.Mutex
	cmd      *exec.Cmd // nil for an adopted process
	pid      int
	state    deploy.InstanceState
	restarts int
	lastExit string
	started  time.Time
	probe1   string // the last readiness probe's outcome
	stopping bool
	detached bool
}

func newInstance(t *Target, v *version, index, port int, logPath string) *instance {
	return &instance{
		t: t, v: v, index: index, port: port, logPath: logPath,
		readyCh: make(chan struct{}), loopCh: make(chan struct{}),
		stopCh: make(chan struct{}), doneCh: make(chan struct{}),
		state: deploy.StateStarting,
	}
}

func (in *instance) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(in.port)) }

func (in *instance) snapshot() deploy.Instance {
	in.mu.Lock()
	defer in.mu.Unlock()
	return deploy.Instance{
		Service: in.v.spec.Service, Version: in.v.spec.Version, Index: in.index,
		Addr: in.addr(), PID: in.pid, State: in.state, Restarts: in.restarts,
		LastExit: in.lastExit, Started: in.started, Log: in.logPath,
	}
}

func (in *instance) probeNote() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.probe1 == "" {
		return "no answer yet"
	}
	return in.probe1
}

// env is the process environment: the target's, the spec's, then what the
// target decides (port, name, version), in that order of precedence.
func (in *instance) env() []string {
	spec := in.v.spec
	m := map[string]string{}
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "TZ", "LANG", "USER"} {
		if v, ok := os.LookupEnv(k); ok {
			m[k] = v
		}
	}
	for k, v := range in.t.cfg.Env {
		m[k] = v
	}
	for k, v := range spec.Env {
		m[k] = v
	}
	if _, ok := m["DATABASE_URL"]; !ok {
		// A service's own SQLite file in the data directory, never in
		// the repository.
		m["DATABASE_URL"] = filepath.Join(in.t.cfg.Dir, "data", spec.Service+".db")
	}
	m["PORT"] = strconv.Itoa(in.port)
	m["ADDR"] = in.addr()
	m["FLOTILLA_SERVICE"] = spec.Service
	m["FLOTILLA_VERSION"] = spec.Version
	m["FLOTILLA_INSTANCE"] = strconv.Itoa(in.index)
	if _, ok := m["OTEL_SERVICE_NAME"]; !ok {
		m["OTEL_SERVICE_NAME"] = spec.Service
	}
	if _, ok := m["OTEL_RESOURCE_ATTRIBUTES"]; !ok {
		m["OTEL_RESOURCE_ATTRIBUTES"] = "service.version=" + spec.Version
	}
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// launch starts the process in its own process group, its output
// appended to the log file.
func (in *instance) launch() error {
	logf, err := os.OpenFile(in.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer func() { _ = logf.Close() }()
	// Each version of a service runs in a folder of its own under the
	// data directory, so relative paths it writes to stay out of the
	// repository, and a file one version holds locked (search-service's
	// Bleve index) does not keep the next from starting beside it.
	wd := filepath.Join(in.t.cfg.Dir, "run", in.v.spec.Service, in.v.spec.Version)
	if err := os.MkdirAll(wd, 0o755); err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(in.t.cfg.Dir, "data"), 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	cmd := exec.Command(in.v.bin)
	cmd.Dir = wd
	cmd.Env = in.env()
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", in.v.bin, err)
	}
	in.mu.Lock()
	in.cmd, in.pid, in.started, in.probe1 = cmd, cmd.Process.Pid, time.Now(), ""
	if in.state != deploy.StateCrashLoop {
		in.state = deploy.StateStarting
	}
	in.mu.Unlock()
	return nil
}

// wait returns a channel that yields the process's exit.
func (in *instance) wait() <-chan error {
	ch := make(chan error, 1)
	in.mu.Lock()
	cmd, pid := in.cmd, in.pid
	in.mu.Unlock()
	if cmd != nil {
		go func() { ch <- cmd.Wait() }()
		return ch
	}
	// An adopted process is not our child: poll for it.
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			if !alive(pid) {
				ch <- errors.New("exited (adopted process; status unknown)")
				return
			}
		}
	}()
	return ch
}

func (in *instance) supervise() {
	defer close(in.doneCh)
	consecutive := 0
	for {
		exited := in.wait()
		probeDone := make(chan struct{})
		go in.probe(probeDone)
		var err error
		select {
		case err = <-exited:
		case <-in.stopCh:
			in.mu.Lock()
			detached := in.detached && !in.stopping
			in.mu.Unlock()
			if detached {
				close(probeDone)
				return // the process runs on; the next Open adopts it
			}
			err = <-exited // stop signalled the process; wait for it to go
		}
		close(probeDone)
		in.mu.Lock()
		if in.stopping || in.detached {
			if in.stopping {
				in.state = deploy.StateStopped
			}
			in.mu.Unlock()
			return
		}
		wasReady := in.state == deploy.StateReady
		in.restarts++
		consecutive++
		if wasReady && time.Since(in.started) > time.Minute {
			consecutive = 1 // it ran well for a while: a fresh crash
		}
		in.lastExit = exitText(err)
		everReady := isClosed(in.readyCh)
		loop := consecutive > in.t.cfg.MaxRestarts
		if loop {
			in.state = deploy.StateCrashLoop
		} else {
			in.state = deploy.StateStarting
		}
		spec := in.v.spec
		in.mu.Unlock()
		backoff := in.t.cfg.Backoff << min(consecutive-1, 16)
		if backoff > in.t.cfg.MaxBackoff || backoff <= 0 {
			backoff = in.t.cfg.MaxBackoff
		}
		in.t.log.Warn("instance exited", "service", spec.Service, "version", spec.Version, "instance", in.index, "exit", in.lastExit, "restarts", in.restarts)
		if loop && !everReady {
			appendLog(in.logPath, fmt.Sprintf("flotilla: %s; crash loop (%d exits before becoming ready): not restarting", in.lastExit, consecutive))
			close(in.loopCh)
			return
		}
		appendLog(in.logPath, fmt.Sprintf("flotilla: %s; restarting in %v", in.lastExit, backoff))
		select {
		case <-time.After(backoff):
		case <-in.stopCh:
			in.mu.Lock()
			if in.stopping {
				in.state = deploy.StateStopped
			}
			in.mu.Unlock()
			return
		}
		in.mu.Lock()
		quit := in.stopping || in.detached
		in.mu.Unlock()
		if quit {
			return
		}
		if err := in.launch(); err != nil {
			appendLog(in.logPath, "flotilla: restart failed: "+err.Error())
			in.mu.Lock()
			in.state = deploy.StateCrashLoop
			in.lastExit = err.Error()
			in.mu.Unlock()
			if !everReady {
				close(in.loopCh)
			}
			return
		}
		in.t.saveState()
	}
}

// probe polls the health path: every ProbeInterval until the process is
// ready, then every HealthInterval while it runs, so its state follows it
// (ready, or unready when a ready instance starts failing its probe).
// It returns when done is closed (the process exited or is stopping).
func (in *instance) probe(done <-chan struct{}) {
	interval := in.t.cfg.ProbeInterval
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-done:
			return
		case <-timer.C:
		}
		if in.probeOnce() {
			interval = in.t.cfg.HealthInterval
		}
		timer.Reset(interval)
	}
}

// probeOnce asks the health path once and moves the state with the
// answer; it reports whether the instance is ready.
func (in *instance) probeOnce() bool {
	health := in.v.spec.Health
	if health == "" {
		health = "/ready"
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+in.addr()+health, nil)
	client := probeClient
	if rt := in.t.cfg.ProbeTransport; rt != nil {
		client = &http.Client{Timeout: time.Second, Transport: rt}
	}
	resp, err := client.Do(req)
	note := ""
	ok := false
	if err != nil {
		note = err.Error()
	} else {
		_ = resp.Body.Close()
		note = resp.Status
		ok = resp.StatusCode >= 200 && resp.StatusCode < 300
	}
	in.mu.Lock()
	in.probe1 = note
	switch {
	case ok && (in.state == deploy.StateStarting || in.state == deploy.StateUnready):
		in.state = deploy.StateReady
	case !ok && in.state == deploy.StateReady:
		in.state = deploy.StateUnready
	}
	in.mu.Unlock()
	if ok {
		in.ready1.Do(func() { close(in.readyCh) })
	}
	return ok
}

// probeClient makes the readiness probes (no keep-alive: an instance's
// connections must not outlive it).
var probeClient = &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// stop sends SIGTERM to the process group, waits up to timeout (or until
// ctx is done), then sends SIGKILL.
func (in *instance) stop(ctx context.Context, timeout time.Duration) {
	in.mu.Lock()
	in.stopping = true
	if in.state != deploy.StateStopped {
		in.state = deploy.StateStopping
	}
	pid := in.pid
	in.mu.Unlock()
	in.stopOnce.Do(func() { close(in.stopCh) })
	signalGroup(pid, syscall.SIGTERM)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-in.doneCh:
	case <-timer.C:
		signalGroup(pid, syscall.SIGKILL)
		<-in.doneCh
	case <-ctx.Done():
		signalGroup(pid, syscall.SIGKILL)
		<-in.doneCh
	}
	// Anything the service forked into its group goes with it.
	signalGroup(pid, syscall.SIGKILL)
	in.mu.Lock()
	in.state = deploy.StateStopped
	in.mu.Unlock()
}

// detach stops supervising without stopping the process.
func (in *instance) detach() {
	in.mu.Lock()
	in.detached = true
	in.mu.Unlock()
	in.stopOnce.Do(func() { close(in.stopCh) })
}

func signalGroup(pid int, sig syscall.Signal) {
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(-pid, sig)
}

// alive reports whether the process runs: it exists and is not a zombie
// (an exited instance whose new parent, after the control plane that
// started it died, has not reaped it yet).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// The state is the field after the ")" that ends the command name.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'Z' {
			return false
		}
	}
	return true
}

func exitText(err error) string {
	if err == nil {
		return "exited with status 0"
	}
	return err.Error()
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func appendLog(path, line string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }()
	_, _ = fmt.Fprintf(f, "%s %s\n", time.Now().UTC().Format(time.RFC3339), line)
}
