// Package supervise runs the local platform's own processes (the event
// bus, the data plane) so that they outlive the control plane that
// started them: each runs detached in a session and process group of its
// own, its output appended to a log file, and a state file in a directory
// records it (pid, what was run, flotilla's version, start time,
// addresses), written atomically. A kill -9 of the control plane leaves
// it running; the next control plane adopts it ([Start] adopts a process
// that still runs the same program and answers its readiness probe, and
// starts one otherwise).
//
// While supervised, a process that exits without being asked to is
// restarted at once (a child is waited for; an adopted process, not a
// child, is polled every [Spec.PollInterval]), with a growing backoff when
// it keeps crashing, and [Spec.OnRestart] is called once the new process
// is ready (the place to push it its configuration again).
//
// A process can inherit files its supervisor keeps for it
// ([Spec.ExtraFiles]: listening sockets that then outlive it, so a crash
// leaves connections waiting in the backlog), and a recorded process that
// runs another program (an upgrade of flotilla) can hand over to the new
// one ([Spec.Handover]: the new one starts beside it and is found ready by
// its own pid, [Spec.ReadyPID], before the old one is stopped) or be kept
// ([Spec.KeepProgram]).
//
// [Process.Stop] ends it (SIGTERM, then SIGKILL at the deadline);
// [Process.Detach] leaves it running, as a kill -9 of the control plane
// would. One supervisor at a time holds a process: [Start] takes a lock
// file beside the state, which the kernel releases when the supervisor's
// process dies; a second Start while it is held fails with [ErrBusy].
package supervise

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Spec is a platform process to run.
type Spec struct {
	// Name names the process ("bus", "dataplane") and its files in Dir:
	// <Name>.json (the state), <Name>.lock, and by default <Name>.log.
	Name string
	// Dir holds the state, lock and log files. Required.
	Dir string
	// Path is the program; Args its arguments (without the program name).
	Path string
	Args []string
	// Env is the process's whole environment; nil inherits this one's.
	Env []string
	// WorkDir is the working directory (default Dir).
	WorkDir string
	// Log is the file stdout and stderr are appended to (default
	// Dir/<Name>.log); the supervisor notes exits and restarts there too.
	Log string
	// Version is flotilla's version, recorded in the state.
	Version string
	// Addrs are the process's addresses, recorded in the state.
	Addrs map[string]string
	// Ready answers nil once the process serves. Nil: running is ready.
	Ready func(ctx context.Context) error
	// ReadyPID, when set, is the readiness probe instead of Ready, given
	// the pid of the process it is to find ready: while a new process
	// takes over from an old one (Handover) both may answer on the same
	// socket, and only the new one's answer counts.
	ReadyPID func(ctx context.Context, pid int) error
	// ExtraFiles, when set, is called before every start and returns the
	// files the process inherits as file descriptors 3, 4, ... (the
	// environment's FilesEnv says how many): listening sockets the
	// supervisor keeps for it, so that they outlive it and connections
	// wait in their backlog while it restarts instead of being refused.
	// The supervisor closes them once the process started.
	ExtraFiles func(ctx context.Context) []*os.File
	// Handover, when the recorded process runs another program (an
	// upgrade of flotilla), starts the new one beside it (ExtraFiles is
	// how it gets the old one's sockets), and stops the old one (SIGTERM:
	// it drains its in-flight requests) only once the new one is ready,
	// instead of stopping the old one first.
	Handover bool
	// KeepProgram adopts the recorded process although it runs another
	// program (an older flotilla), as long as its arguments are the
	// same: for a process whose restart would interrupt what it serves
	// and whose program need not change with flotilla's (the event bus).
	// It runs the new program from its next restart on.
	KeepProgram bool
	// ReadyTimeout bounds the wait for readiness after a start and for an
	// adopted process's first answer (default 30s).
	ReadyTimeout time.Duration
	// StopTimeout is the wait between SIGTERM and SIGKILL when Stop's
	// context has no earlier deadline, and when a process that cannot be
	// adopted is replaced (default 10s).
	StopTimeout time.Duration
	// PollInterval is how often an adopted process is checked for life
	// (default 100ms); a child's exit is noticed at once.
	PollInterval time.Duration
	// Backoff is the delay before the second of consecutive restarts,
	// doubling up to MaxBackoff (defaults 200ms and 10s); the first
	// restart is immediate. A process that ran StableAfter (default 10s)
	// before exiting counts as a fresh crash.
	Backoff, MaxBackoff, StableAfter time.Duration
	// OnRestart is called after a restarted process is ready, from the
	// supervising goroutine (a long call delays noticing the next exit);
	// ctx ends at Stop or Detach. May be nil.
	OnRestart func(ctx context.Context, st Status)
	Logger    *slog.Logger
}

func (s *Spec) fill() error {
	var errs []error
	if s.Name == "" || strings.ContainsAny(s.Name, `/\`) || strings.HasPrefix(s.Name, ".") {
		errs = append(errs, fmt.Errorf("supervise: name %q: want a plain file name (bus, dataplane)", s.Name))
	}
	if s.Dir == "" {
		errs = append(errs, fmt.Errorf("supervise %s: no state directory", s.Name))
	}
	if s.Path == "" {
		errs = append(errs, fmt.Errorf("supervise %s: no program to run", s.Name))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if abs, err := filepath.Abs(s.Dir); err == nil {
		s.Dir = abs
	}
	if s.WorkDir == "" {
		s.WorkDir = s.Dir
	}
	if s.Log == "" {
		s.Log = filepath.Join(s.Dir, s.Name+".log")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&s.ReadyTimeout, 30*time.Second)
	def(&s.StopTimeout, 10*time.Second)
	def(&s.PollInterval, 100*time.Millisecond)
	def(&s.Backoff, 200*time.Millisecond)
	def(&s.MaxBackoff, 10*time.Second)
	def(&s.StableAfter, 10*time.Second)
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	s.Logger = s.Logger.With("process", s.Name)
	return nil
}

// Phase is where a supervised process is.
type Phase string

// The phases.
const (
	Ready      Phase = "ready"
	Restarting Phase = "restarting" // it exited; a new one is starting
	CrashLoop  Phase = "crash-loop" // it keeps exiting; restarts back off
	Stopped    Phase = "stopped"    // Stop ended it
	Detached   Phase = "detached"   // it runs on, no longer supervised here
)

// Status is a supervised process as `flotilla status` shows it.
type Status struct {
	Name  string `json:"name"`
	Phase Phase  `json:"phase"`
	PID   int    `json:"pid"`
	// Started is when the current process started; Restarts counts the
	// restarts after exits not asked for, since the first start (kept
	// across adoptions).
	Started  time.Time `json:"started"`
	Restarts int       `json:"restarts"`
	// Adopted is true when the current process was started by an earlier
	// control plane.
	Adopted bool `json:"adopted"`
	// HandedOver is true when the current process took over from one of
	// another program (an upgrade, Spec.Handover), HandedOverFrom naming it
	// ("pid 1234 running /path/flotilla-…").
	HandedOver     bool              `json:"handed_over,omitempty"`
	HandedOverFrom string            `json:"handed_over_from,omitempty"`
	Version        string            `json:"version,omitempty"`
	Addrs          map[string]string `json:"addrs,omitempty"`
	Log            string            `json:"log"`
	LastExit       string            `json:"last_exit,omitempty"` // how the last process exited ("" if none did)
}

// ErrBusy is returned by Start when another supervisor holds the process.
var ErrBusy = errors.New("another supervisor holds it")

// Process is a supervised platform process.
type Process struct {
	spec Spec
	log  *slog.Logger
	lock *os.File

	stopCh   chan struct{} // closed by Stop or Detach
	doneCh   chan struct{} // closed when the watcher returns
	quitOnce sync.Once
	ctx      context.Context // OnRestart's; cancelled with stopCh
	cancel   context.CancelFunc

	mu         sync.Mutex
	st         State
	phase      Phase
	adopted    bool
	handedOver string     // what the current process took over from ("": nothing)
	running    bool       // st.PID is a process that has not exited yet
	exitCh     chan error // the current process's exit
	lastExit   string
	stopping   bool
	detached   bool
	released   bool
}

// Start adopts the process the state file in spec.Dir records if it
// still runs the same program with the same arguments and answers its
// readiness probe within ReadyTimeout; otherwise it stops what is left of
// it (never a different program that reused its pid), starts the process
// and waits until it is ready. Either way it returns once the process is
// ready, supervised until Stop or Detach. A process that does not get
// ready is killed and the error carries its log's tail.
func Start(ctx context.Context, spec Spec) (*Process, error) {
	if err := spec.fill(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("supervise %s: %w", spec.Name, err)
	}
	lock, err := takeLock(filepath.Join(spec.Dir, spec.Name+".lock"))
	if err != nil {
		return nil, fmt.Errorf("supervise %s: %w", spec.Name, err)
	}
	p := &Process{spec: spec, log: spec.Logger, lock: lock, stopCh: make(chan struct{}), doneCh: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	if err := p.adoptOrStart(ctx); err != nil {
		p.cancel()
		close(p.doneCh) // ends an adopted process's poller
		_ = lock.Close()
		return nil, err
	}
	go p.watch()
	return p, nil
}

func (p *Process) adoptOrStart(ctx context.Context) error {
	s := &p.spec
	prev, err := ReadState(s.Dir, s.Name)
	switch {
	case errors.Is(err, ErrNoState):
	case err != nil:
		return err
	default:
		adopted, err := p.tryAdopt(ctx, prev)
		if adopted || err != nil {
			return err
		}
		p.st.Restarts = prev.Restarts
	}
	if err := p.launch(); err != nil {
		return err
	}
	p.save()
	if err := p.waitReady(ctx); err != nil {
		p.kill()
		return fmt.Errorf("supervise %s: %w%s", s.Name, err, logTail(s.Log))
	}
	p.mu.Lock()
	p.phase = Ready
	p.mu.Unlock()
	p.save()
	return nil
}

// tryAdopt adopts prev if it runs and is ready; a process of prev that
// runs but cannot be adopted is stopped.
func (p *Process) tryAdopt(ctx context.Context, prev State) (bool, error) {
	s := &p.spec
	ok, why := prev.Running()
	if !ok {
		p.log.InfoContext(ctx, "not adopting the recorded process", "pid", prev.PID, "reason", why)
		return false, nil
	}
	replace := func(reason string) (bool, error) {
		p.log.WarnContext(ctx, "replacing the running process", "pid", prev.PID, "reason", reason)
		appendLog(s.Log, fmt.Sprintf("flotilla: replacing process %d: %s", prev.PID, reason))
		if err := stopPID(ctx, prev.PID, s.StopTimeout, s.PollInterval); err != nil {
			return false, fmt.Errorf("supervise %s: replace process %d: %w", s.Name, prev.PID, err)
		}
		return false, nil
	}
	if !equal(prev.Args, s.Args) || prev.Path != s.Path && !s.KeepProgram {
		if s.Handover {
			return p.handover(ctx, prev)
		}
		return replace(fmt.Sprintf("it runs %s %q, want %s %q", prev.Path, prev.Args, s.Path, s.Args))
	}
	exitCh := make(chan error, 1)
	p.mu.Lock()
	p.st = prev
	p.st.Log = s.Log
	p.running, p.adopted, p.exitCh = true, true, exitCh
	p.mu.Unlock()
	go p.poll(prev.PID, exitCh)
	if err := p.waitReady(ctx); err != nil {
		p.mu.Lock()
		p.running, p.adopted = false, false
		p.mu.Unlock()
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return replace("it does not answer its readiness probe: " + err.Error())
	}
	p.mu.Lock()
	p.phase = Ready
	p.mu.Unlock()
	p.log.InfoContext(ctx, "adopted", "pid", prev.PID, "started", prev.Started, "version", prev.Version)
	p.save()
	return true, nil
}

// handover starts the new program beside prev, which runs another one,
// and stops prev once the new process is ready: prev drains what it
// serves while the new one takes the new requests. A new process that
// does not get ready beside prev is killed, and prev is then replaced the
// plain way (stopped, then the new program started: adoptOrStart).
func (p *Process) handover(ctx context.Context, prev State) (bool, error) {
	s := &p.spec
	from := fmt.Sprintf("pid %d running %s", prev.PID, prev.Path)
	p.log.InfoContext(ctx, "handing over to a new program", "from_pid", prev.PID, "from", prev.Path, "to", s.Path)
	appendLog(s.Log, fmt.Sprintf("flotilla: starting %s to take over from process %d (%s)", s.Path, prev.PID, prev.Path))
	p.st.Restarts = prev.Restarts
	if err := p.launch(); err != nil {
		return false, fmt.Errorf("supervise %s: take over from %s: %w", s.Name, from, err)
	}
	if err := p.waitReady(ctx); err != nil {
		p.kill()
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		// An old program that cannot hand over (one from before hand-overs
		// existed): replace it the plain way, stopped first.
		p.log.WarnContext(ctx, "the new program did not take over; replacing the old process instead", "pid", prev.PID, "err", err)
		appendLog(s.Log, fmt.Sprintf("flotilla: %s did not take over from process %d (%v): stopping it first instead", s.Path, prev.PID, err))
		if err := stopPID(ctx, prev.PID, s.StopTimeout, s.PollInterval); err != nil {
			return false, fmt.Errorf("supervise %s: replace process %d: %w", s.Name, prev.PID, err)
		}
		return false, nil
	}
	p.mu.Lock()
	p.handedOver = from
	p.phase = Ready
	p.mu.Unlock()
	p.save()
	// The old one drains; the new one serves meanwhile.
	if err := stopPID(ctx, prev.PID, s.StopTimeout, s.PollInterval); err != nil {
		p.log.ErrorContext(ctx, "the old process did not stop", "pid", prev.PID, "err", err)
	}
	appendLog(s.Log, fmt.Sprintf("flotilla: process %d took over from %s", p.Status().PID, from))
	p.log.InfoContext(ctx, "handed over", "from_pid", prev.PID, "pid", p.Status().PID)
	return true, nil
}

// launch starts a new process in a session (and process group) of its
// own, with no terminal and its output appended to the log: Ctrl-C at the
// control plane's terminal does not reach it, and nothing it writes
// depends on the control plane being there to read.
func (p *Process) launch() error {
	s := &p.spec
	logf, err := os.OpenFile(s.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("supervise %s: open log: %w", s.Name, err)
	}
	defer func() { _ = logf.Close() }()
	if err := os.MkdirAll(s.WorkDir, 0o755); err != nil {
		return fmt.Errorf("supervise %s: working directory: %w", s.Name, err)
	}
	cmd := exec.Command(s.Path, s.Args...)
	cmd.Dir = s.WorkDir
	cmd.Env = s.Env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if s.ExtraFiles != nil {
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		cmd.ExtraFiles = s.ExtraFiles(ctx)
		cancel()
		defer func() {
			for _, f := range cmd.ExtraFiles {
				_ = f.Close()
			}
		}()
		if len(cmd.ExtraFiles) > 0 {
			if cmd.Env == nil {
				cmd.Env = os.Environ()
			}
			cmd.Env = append(withoutVar(cmd.Env, FilesEnv), fmt.Sprintf("%s=%d", FilesEnv, len(cmd.ExtraFiles)))
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping || p.detached {
		return errQuit
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("supervise %s: run %s: %w", s.Name, s.Path, err)
	}
	pid := cmd.Process.Pid
	id := launched(pid, cmd.Args)
	exitCh := make(chan error, 1)
	go func() { exitCh <- cmd.Wait() }()
	p.st = State{
		Name: s.Name, PID: pid, Path: s.Path, Args: s.Args, Version: s.Version,
		Started: time.Now(), Restarts: p.st.Restarts, Addrs: s.Addrs, Log: s.Log, Identity: id,
	}
	p.running, p.adopted, p.exitCh, p.handedOver = true, false, exitCh, ""
	return nil
}

// launched is the identity of a process just started with argv. Right
// after the exec, /proc may still show an empty command line (seen under
// load), which would make the process look like another program to the
// next control plane and keep it from being adopted: then argv itself is
// recorded, and no executable (the start time still tells a reused pid
// apart).
func launched(pid int, argv []string) Identity {
	id, err := identify(pid)
	if err != nil {
		// It exited already; the exit is reported by Wait.
		return Identity{Argv: argv}
	}
	if len(id.Argv) == 0 || len(id.Argv) == 1 && id.Argv[0] == "" {
		id.Argv, id.Exe = argv, ""
	}
	return id
}

// FilesEnv is the environment variable that tells a process started with
// Spec.ExtraFiles how many it inherited (file descriptors 3 to 3+n-1), as
// systemd's LISTEN_FDS does.
const FilesEnv = "FLOTILLA_FDS"

func withoutVar(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

var errQuit = errors.New("supervisor stopping")

// poll reports the exit of an adopted process, which is not a child and
// cannot be waited for; it returns when the supervisor stops or detaches.
func (p *Process) poll(pid int, exitCh chan<- error) {
	tick := time.NewTicker(p.spec.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if !Alive(pid) {
				exitCh <- errors.New("exited (an adopted process: its status is unknown)")
				return
			}
		case <-p.doneCh:
			return
		}
	}
}

// waitReady polls the readiness probe until it answers nil, the process
// exits, ReadyTimeout passes or ctx ends.
func (p *Process) waitReady(ctx context.Context) error {
	s := &p.spec
	p.mu.Lock()
	exitCh := p.exitCh
	pid := p.st.PID
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.ReadyTimeout)
	defer cancel()
	ready := s.Ready
	if s.ReadyPID != nil {
		ready = func(ctx context.Context) error { return s.ReadyPID(ctx, pid) }
	}
	if ready == nil {
		return nil
	}
	var last error
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		last = ready(pctx)
		pcancel()
		if last == nil {
			return nil
		}
		select {
		case err := <-exitCh:
			exitCh <- err // left for whoever handles the exit
			return fmt.Errorf("it exited before it was ready (%s)", exitText(err))
		case <-p.stopCh:
			return errQuit
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("not ready after %v: %w", s.ReadyTimeout, last)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// watch restarts the process whenever it exits without being asked to,
// until Stop or Detach.
func (p *Process) watch() {
	defer close(p.doneCh)
	defer p.cancel()
	s := &p.spec
	consecutive := 0
	for {
		p.mu.Lock()
		exitCh := p.exitCh
		p.mu.Unlock()
		var err error
		select {
		case err = <-exitCh:
		case <-p.stopCh:
			if p.isDetached() {
				return
			}
			err = <-exitCh // Stop signalled it
		}
		p.mu.Lock()
		p.running = false
		p.lastExit = exitText(err)
		if p.stopping || p.detached {
			p.mu.Unlock()
			return
		}
		ranFor := time.Since(p.st.Started)
		pid := p.st.PID
		p.st.Restarts++
		restarts := p.st.Restarts
		consecutive++
		if p.phase == Ready && ranFor > s.StableAfter {
			consecutive = 1
		}
		p.phase = Restarting
		if consecutive > 3 {
			p.phase = CrashLoop
		}
		p.mu.Unlock()
		// What the process forked into its group goes with it.
		signalGroup(pid, syscall.SIGKILL)
		delay := time.Duration(0)
		if consecutive > 1 {
			delay = min(s.Backoff<<min(consecutive-2, 16), s.MaxBackoff)
		}
		p.log.Warn("exited; restarting", "pid", pid, "exit", exitText(err), "restarts", restarts, "delay", delay)
		appendLog(s.Log, fmt.Sprintf("flotilla: process %d %s; restarting in %v", pid, exitText(err), delay))
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-p.stopCh:
				t.Stop()
				return
			}
		}
		if err := p.launch(); err != nil {
			if errors.Is(err, errQuit) {
				return
			}
			p.log.Error("restart failed", "err", err)
			appendLog(s.Log, "flotilla: restart failed: "+err.Error())
			p.mu.Lock()
			p.lastExit = err.Error()
			p.exitCh = closedErr(err)
			p.mu.Unlock()
			continue
		}
		// Recorded before it is ready: a control plane killed meanwhile
		// must find this process, not start a second one.
		p.save()
		if err := p.waitReady(context.Background()); err != nil {
			if errors.Is(err, errQuit) {
				continue // Stop signalled it, or Detach leaves it
			}
			p.log.Error("restarted process not ready; killing it", "err", err)
			appendLog(s.Log, "flotilla: restarted process not ready: "+err.Error())
			p.mu.Lock()
			pid := p.st.PID
			p.mu.Unlock()
			signalGroup(pid, syscall.SIGKILL)
			continue
		}
		p.mu.Lock()
		p.phase = Ready
		p.mu.Unlock()
		p.save()
		p.log.Info("restarted", "pid", p.Status().PID, "restarts", restarts)
		if s.OnRestart != nil {
			s.OnRestart(p.ctx, p.Status())
		}
	}
}

func closedErr(err error) chan error {
	ch := make(chan error, 1)
	ch <- err
	return ch
}

func (p *Process) isDetached() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.detached
}

// Status is the process as it is now.
func (p *Process) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Status{
		Name: p.spec.Name, Phase: p.phase, PID: p.st.PID, Started: p.st.Started, Restarts: p.st.Restarts,
		Adopted: p.adopted, HandedOver: p.handedOver != "", HandedOverFrom: p.handedOver, Version: p.st.Version, Addrs: p.st.Addrs, Log: p.spec.Log, LastExit: p.lastExit,
	}
}

// Stop ends the process: SIGTERM to its process group, then SIGKILL when
// ctx's deadline or StopTimeout (whichever is first) passes. It removes
// the state file and releases the process for another supervisor; it
// returns an error if the process had to be killed. It is safe to call
// more than once, and after Detach (then it does nothing).
func (p *Process) Stop(ctx context.Context) error {
	p.mu.Lock()
	if p.stopping || p.detached {
		p.mu.Unlock()
		<-p.doneCh
		return nil
	}
	p.stopping = true
	pid, running := p.st.PID, p.running
	p.mu.Unlock()
	p.quit()
	if running {
		signalGroup(pid, syscall.SIGTERM)
	}
	timer := time.NewTimer(p.spec.StopTimeout)
	defer timer.Stop()
	var err error
	select {
	case <-p.doneCh:
	case <-timer.C:
		err = fmt.Errorf("supervise %s: process %d still ran %v after SIGTERM: killed", p.spec.Name, pid, p.spec.StopTimeout)
	case <-ctx.Done():
		err = fmt.Errorf("supervise %s: process %d still ran at the deadline after SIGTERM: killed", p.spec.Name, pid)
	}
	if err != nil {
		p.mu.Lock()
		pid = p.st.PID
		p.mu.Unlock()
		signalGroup(pid, syscall.SIGKILL)
		<-p.doneCh
	}
	signalGroup(pid, syscall.SIGKILL) // what it forked into its group goes with it
	p.mu.Lock()
	p.phase = Stopped
	p.mu.Unlock()
	p.log.Info("stopped", "pid", pid)
	if rerr := os.Remove(StatePath(p.spec.Dir, p.spec.Name)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, fmt.Errorf("supervise %s: %w", p.spec.Name, rerr))
	}
	p.release()
	return err
}

// Detach stops supervising and leaves the process running, with its
// state file, for the next Start to adopt: what a kill -9 of the control
// plane does anyway.
func (p *Process) Detach() {
	p.mu.Lock()
	if p.stopping || p.detached {
		p.mu.Unlock()
		return
	}
	p.detached = true
	p.phase = Detached
	p.mu.Unlock()
	p.quit()
	<-p.doneCh
	p.release()
}

// Done is closed when supervision ends (Stop or Detach).
func (p *Process) Done() <-chan struct{} { return p.doneCh }

func (p *Process) quit() { p.quitOnce.Do(func() { close(p.stopCh); p.cancel() }) }

func (p *Process) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.released {
		p.released = true
		_ = p.lock.Close()
	}
}

// kill ends the current process before supervision began (a start that
// did not get ready).
func (p *Process) kill() {
	p.mu.Lock()
	pid, running, exitCh := p.st.PID, p.running, p.exitCh
	p.running = false
	p.mu.Unlock()
	if running {
		signalGroup(pid, syscall.SIGKILL)
		err := <-exitCh
		p.log.Debug("killed before it was ready", "pid", pid, "exit", exitText(err))
	}
}

func (p *Process) save() {
	p.mu.Lock()
	st := p.st
	p.mu.Unlock()
	if err := writeState(p.spec.Dir, st); err != nil {
		p.log.Error("state not saved: a restarted control plane will not adopt the process", "err", err)
	}
}

// stopPID stops a process that is not supervised (one that cannot be
// adopted): SIGTERM to its group, SIGKILL after timeout.
func stopPID(ctx context.Context, pid int, timeout, poll time.Duration) error {
	signalGroup(pid, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for Alive(pid) {
		select {
		case <-ctx.Done():
			signalGroup(pid, syscall.SIGKILL)
			for i := 0; Alive(pid) && i < 50; i++ {
				time.Sleep(poll)
			}
			if Alive(pid) {
				return fmt.Errorf("process %d survived SIGKILL", pid)
			}
			return nil
		case <-tick.C:
		}
	}
	return nil
}

// takeLock locks path, or fails with ErrBusy if a live supervisor holds
// it. The kernel releases the lock when its holder dies.
func takeLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w (is another 'flotilla up' running on this data directory?)", path, ErrBusy)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

func exitText(err error) string {
	if err == nil {
		return "exited with status 0"
	}
	return err.Error()
}

func appendLog(path, line string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }()
	_, _ = fmt.Fprintf(f, "%s %s\n", time.Now().UTC().Format(time.RFC3339), line)
}

// logTail is the end of a log, to say why a process did not start.
func logTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	const max = 2048
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(fi.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return fmt.Sprintf(" (its log %s is empty)", path)
	}
	return fmt.Sprintf("; the end of its log %s:\n%s", path, b)
}
