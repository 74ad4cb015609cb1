// Package local is the deploy target that runs services as processes on
// this machine: each version an artifact built with `go build` into a cache
// under the data directory, each instance a child process in its own
// process group with its own port and environment, its output appended to
// a log file, restarted with backoff when it crashes, and stopped with
// SIGTERM, time to drain, then SIGKILL.
//
// The data directory holds
//
//	bin/<service>/<digest>/<service>    the artifacts (never rebuilt while present;
//	                                    Config.ArtifactDir moves them)
//	logs/<service>/<version>.log        every instance's stdout and stderr
//	logs/<service>/<version>.log.N      the same, rotated (1 the newest; see LogMaxSize)
//	run/<service>/<version>/            its instances' working directory
//	data/<service>.db                   its DATABASE_URL, unless the spec sets one
//	state.json                          the instances, so a restarted control plane adopts them
//
// Instances outlive the control plane: [Target.Close] detaches from them,
// and [Open] adopts the ones still running (and restarts the ones that
// died) from state.json. [Target.Shutdown] stops them all.
//
// # Logs
//
// An instance's stdout and stderr are its version's log file itself,
// opened O_APPEND: the process writes straight to disk with nothing of the
// control plane in between, so it neither blocks nor dies when the
// control plane is killed, and what it writes meanwhile is kept. A pipe
// copied by the control plane would rotate at line boundaries, but a
// killed control plane would take its services with it (a Go program
// writing to a pipe without reader dies of SIGPIPE) or, were the read end
// kept open elsewhere, stall them once the pipe buffer filled; and the
// next control plane could not reattach to it. Services that keep running
// when the control plane is killed matter more.
//
// So logs are rotated from the side, like logrotate's copytruncate, with
// Docker json-file's max-size and max-file ([Config.LogMaxSize],
// [Config.LogMaxFiles]): a file past the size has its front copied to
// name.log.1 (the older files shifting to .2 and on, the oldest dropped)
// and then cut out of the live file in place. On ext4 and XFS the cut is
// FALLOC_FL_COLLAPSE_RANGE over whole blocks, which the kernel orders with
// the process's appends: nothing is lost or written twice, at the price
// of a line that may begin in name.log.1 and end in name.log (readers
// join the files, so `flotilla logs` shows it whole). Elsewhere the rest
// is copied and the file truncated: a few lines written between the last
// copy and the truncation can be lost. Rotation runs every
// [Config.LogCheckInterval], so a file passes the size by up to one
// interval's output, and it pauses while no control plane runs.
// [OpenLog] reads a log with its rotated files as one stream, and follows
// it across rotations.
package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flotilla-ci/flotilla/deploy"
)

var _ deploy.Target = (*Target)(nil)
var _ deploy.Builder = (*Target)(nil)

// Config configures a local target. Zero fields take DefaultConfig's values.
type Config struct {
	// Dir is the data directory (artifacts, logs, state). Required.
	Dir string
	// Root is the Go module root builds run in (the manifest's folder).
	// Required.
	Root string
	// ArtifactDir holds the built artifacts (default Dir/bin); data
	// directories may share one.
	ArtifactDir string
	// Go is the go command (default "go" from PATH).
	Go string
	// Env is given to every instance, under the spec's own Env.
	Env map[string]string
	// ReadyTimeout is the readiness wait when a spec sets none (60s).
	ReadyTimeout time.Duration
	// StopTimeout is how long SIGTERM may take before SIGKILL (15s).
	StopTimeout time.Duration
	// MaxRestarts is how many times an instance may exit before it first
	// becomes ready; one more exit is a crash loop (3).
	MaxRestarts int
	// Backoff is the first restart delay, doubled on every consecutive
	// crash up to MaxBackoff (200ms, 30s).
	Backoff, MaxBackoff time.Duration
	// ProbeInterval is the readiness probe's period until an instance is
	// ready (100ms); HealthInterval its period afterwards (2s).
	ProbeInterval  time.Duration
	HealthInterval time.Duration
	// LogMaxSize is the size in bytes past which a version's log file is
	// rotated (10 MiB; negative: never rotated); LogMaxFiles how many
	// files it keeps with the live one (3: name.log, name.log.1,
	// name.log.2), the oldest dropped, as Docker's json-file driver's
	// max-size and max-file. The size is checked every LogCheckInterval
	// (1s), so a file may pass LogMaxSize by what is written in one
	// interval. Rotation loses nothing on ext4 and XFS; elsewhere it
	// truncates, and may lose the few lines written while it does (see
	// the package doc).
	LogMaxSize       int64
	LogMaxFiles      int
	LogCheckInterval time.Duration
	// ProbeTransport makes the readiness probes (default: plain HTTP
	// without keep-alive); a platform with mutual TLS gives one that
	// dials with the probes' own identity.
	ProbeTransport http.RoundTripper
	Logger         *slog.Logger
}

// DefaultConfig returns the defaults for a data directory and module root.
func DefaultConfig(dir, root string) Config {
	return Config{
		Dir: dir, Root: root, Go: "go",
		ReadyTimeout: 60 * time.Second, StopTimeout: 15 * time.Second,
		MaxRestarts: 3, Backoff: 200 * time.Millisecond, MaxBackoff: 30 * time.Second,
		ProbeInterval: 100 * time.Millisecond, HealthInterval: 2 * time.Second,
		LogMaxSize: 10 << 20, LogMaxFiles: 3, LogCheckInterval: time.Second,
	}
}

func (c *Config) applyDefaults() {
	d := DefaultConfig(c.Dir, c.Root)
	if c.Go == "" {
		c.Go = d.Go
	}
	if c.ArtifactDir == "" && c.Dir != "" {
		c.ArtifactDir = filepath.Join(c.Dir, "bin")
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = d.ReadyTimeout
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = d.StopTimeout
	}
	if c.MaxRestarts == 0 {
		c.MaxRestarts = d.MaxRestarts
	}
	if c.Backoff == 0 {
		c.Backoff = d.Backoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = d.MaxBackoff
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = d.ProbeInterval
	}
	if c.HealthInterval == 0 {
		c.HealthInterval = d.HealthInterval
	}
	if c.LogMaxSize == 0 {
		c.LogMaxSize = d.LogMaxSize
	}
	if c.LogMaxFiles == 0 {
		c.LogMaxFiles = d.LogMaxFiles
	}
	if c.LogCheckInterval == 0 {
		c.LogCheckInterval = d.LogCheckInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every invalid field at once.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("local target: data directory is empty"))
	}
	if c.Root == "" {
		errs = append(errs, errors.New("local target: module root is empty"))
	}
	if c.ReadyTimeout < 0 || c.StopTimeout < 0 || c.Backoff < 0 || c.MaxBackoff < 0 || c.ProbeInterval < 0 || c.HealthInterval < 0 || c.LogCheckInterval < 0 {
		errs = append(errs, errors.New("local target: durations must not be negative"))
	}
	if c.MaxRestarts < 0 {
		errs = append(errs, fmt.Errorf("local target: max restarts %d must not be negative", c.MaxRestarts))
	}
	if c.LogMaxFiles < 0 || c.LogMaxFiles == 1 {
		errs = append(errs, fmt.Errorf("local target: log max files %d: must be at least 2 (the live file and one rotated), or 0 for the default", c.LogMaxFiles))
	}
	return errors.Join(errs...)
}

// Target is the local deploy target. Its methods are safe for concurrent
// use.
type Target struct {
	cfg Config
	log *slog.Logger

	buildMu  sync.Mutex
	building map[string]*sync.Mutex // per artifact path

	lock *os.File // the data directory's lock, held while open

	mu       sync.Mutex
	versions map[key]*version
	starting map[key]chan struct{} // versions being started
	closed   bool                  // no new Apply
	gone     bool                  // detached or shut down: state.json is no longer ours
}

type key struct{ service, version string }

// version is the running instances of one version of a service.
type version struct {
	spec  deploy.Spec
	bin   string
	insts []*instance
	rot   *rotator // rotates its log; nil when rotation is off
}

// Open prepares the data directory and adopts the instances state.json
// lists: those still running are supervised again, those that died are
// restarted.
func Open(ctx context.Context, cfg Config) (*Target, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("local target: %w", err)
	}
	cfg.Root = root
	if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return nil, fmt.Errorf("local target: %w", err)
	}
	if cfg.ArtifactDir, err = filepath.Abs(cfg.ArtifactDir); err != nil {
		return nil, fmt.Errorf("local target: %w", err)
	}
	for _, d := range []string{cfg.Dir, cfg.ArtifactDir, filepath.Join(cfg.Dir, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("local target: %w", err)
		}
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	t := &Target{cfg: cfg, log: cfg.Logger, lock: lock, building: map[string]*sync.Mutex{}, versions: map[key]*version{}, starting: map[key]chan struct{}{}}
	if err := t.adopt(ctx); err != nil {
		_ = lock.Close()
		return nil, err
	}
	return t, nil
}

// Dir returns the data directory.
func (t *Target) Dir() string { return t.cfg.Dir }

// LogFile returns the log file of a version of a service.
func (t *Target) LogFile(service, version string) string {
	return filepath.Join(t.cfg.Dir, "logs", service, version+".log")
}

// Apply implements deploy.Target.
func (t *Target) Apply(ctx context.Context, spec deploy.Spec) ([]deploy.Instance, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	k := key{spec.Service, spec.Version}
	t.mu.Lock()
	// One start of a version at a time: a second Apply waits for the
	// first, then finds its instances.
	for t.starting[k] != nil {
		ch := t.starting[k]
		t.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("%s@%s: %w", spec.Service, spec.Version, ctx.Err())
		}
		t.mu.Lock()
	}
	if t.closed {
		t.mu.Unlock()
		return nil, errors.New("local target is closed")
	}
	if v := t.versions[k]; v != nil {
		t.mu.Unlock()
		return t.waitReady(ctx, v)
	}
	ch := make(chan struct{})
	t.starting[k] = ch
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.starting, k)
		t.mu.Unlock()
		close(ch)
	}()
	if err := t.Build(ctx, spec); err != nil {
		return nil, err
	}
	v, err := t.start(ctx, spec)
	if err != nil {
		return nil, err
	}
	insts, err := t.waitReady(ctx, v)
	if err != nil {
		// Nothing of a failed version stays behind.
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.StopTimeout+5*time.Second)
		defer cancel()
		if rerr := t.Remove(stopCtx, spec.Service, spec.Version); rerr != nil && !errors.Is(rerr, deploy.ErrNotFound) {
			t.log.WarnContext(ctx, "remove failed version", "service", spec.Service, "version", spec.Version, "err", rerr)
		}
		return nil, err
	}
	return insts, nil
}

// start launches the version's instances (not waiting for readiness).
func (t *Target) start(ctx context.Context, spec deploy.Spec) (*version, error) {
	bin := t.artifact(spec)
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("start %s@%s: %w (%s)", spec.Service, spec.Version, deploy.ErrNoArtifact, bin)
	}
	n := max(spec.Replicas, 1)
	v := &version{spec: spec, bin: bin}
	logPath := t.LogFile(spec.Service, spec.Version)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, fmt.Errorf("start %s@%s: %w", spec.Service, spec.Version, err)
	}
	for i := range n {
		port := spec.Port
		if port != 0 {
			if err := portFree(port); err != nil {
				t.stopAll(ctx, v.insts)
				return nil, fmt.Errorf("start %s@%s: port %d: %w (another process listens on it, or another version of the service does: a fixed port cannot run two versions side by side; leave deploy.port unset)", spec.Service, spec.Version, port, deploy.ErrPortInUse)
			}
		} else {
			p, err := freePort()
			if err != nil {
				t.stopAll(ctx, v.insts)
				return nil, fmt.Errorf("start %s@%s: %w", spec.Service, spec.Version, err)
			}
			port = p
		}
		in := newInstance(t, v, i, port, logPath)
		if err := in.launch(); err != nil {
			t.stopAll(ctx, v.insts)
			return nil, fmt.Errorf("start %s@%s: %w", spec.Service, spec.Version, err)
		}
		v.insts = append(v.insts, in)
		go in.supervise()
	}
	t.rotateLogs(v)
	t.mu.Lock()
	t.versions[key{spec.Service, spec.Version}] = v
	t.mu.Unlock()
	t.saveState()
	t.log.InfoContext(ctx, "instances started", "service", spec.Service, "version", spec.Version, "replicas", n)
	return v, nil
}

// waitReady waits until every instance of v is ready, one crash-loops,
// the timeout passes or ctx is done.
func (t *Target) waitReady(ctx context.Context, v *version) ([]deploy.Instance, error) {
	timeout := v.spec.ReadyTimeout
	if timeout == 0 {
		timeout = t.cfg.ReadyTimeout
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, in := range v.insts {
		select {
		case <-in.readyCh:
		case <-in.loopCh:
			return nil, fmt.Errorf("%s@%s: %w: exited %d times before becoming ready (last: %s)%s",
				v.spec.Service, v.spec.Version, deploy.ErrCrashLoop, in.snapshot().Restarts, in.snapshot().LastExit, tailNote(in.logPath))
		case <-deadline.C:
			health := v.spec.Health
			if health == "" {
				health = "/ready"
			}
			return nil, fmt.Errorf("%s@%s: %w: %s on %s did not answer 2xx within %v (last: %s)%s",
				v.spec.Service, v.spec.Version, deploy.ErrNotReady, health, in.addr(), timeout, in.probeNote(), tailNote(in.logPath))
		case <-ctx.Done():
			return nil, fmt.Errorf("%s@%s: wait for readiness: %w", v.spec.Service, v.spec.Version, ctx.Err())
		}
	}
	insts := v.snapshot()
	for _, in := range insts {
		if in.State == deploy.StateCrashLoop {
			return nil, fmt.Errorf("%s@%s: %w: instance %d exited %d times (last: %s)", v.spec.Service, v.spec.Version, deploy.ErrCrashLoop, in.Index, in.Restarts, in.LastExit)
		}
	}
	return insts, nil
}

func (v *version) snapshot() []deploy.Instance {
	out := make([]deploy.Instance, 0, len(v.insts))
	for _, in := range v.insts {
		out = append(out, in.snapshot())
	}
	return out
}

// Status implements deploy.Target.
func (t *Target) Status(ctx context.Context, service string) ([]deploy.Instance, error) {
	t.mu.Lock()
	var out []deploy.Instance
	for k, v := range t.versions {
		if service == "" || k.service == service {
			out = append(out, v.snapshot()...)
		}
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		if a.Version != b.Version {
			return a.Version < b.Version
		}
		return a.Index < b.Index
	})
	return out, nil
}

// Spec returns the spec a running version was started with.
func (t *Target) Spec(service, version string) (deploy.Spec, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v := t.versions[key{service, version}]
	if v == nil {
		return deploy.Spec{}, false
	}
	return v.spec, true
}

// Remove implements deploy.Target: SIGTERM to each instance's process
// group, StopTimeout to exit, then SIGKILL.
func (t *Target) Remove(ctx context.Context, service, version string) error {
	k := key{service, version}
	t.mu.Lock()
	v := t.versions[k]
	delete(t.versions, k)
	t.mu.Unlock()
	if v == nil {
		return fmt.Errorf("remove %s@%s: %w", service, version, deploy.ErrNotFound)
	}
	t.stopAll(ctx, v.insts)
	v.stopRotation()
	t.saveState()
	t.log.InfoContext(ctx, "instances stopped", "service", service, "version", version)
	return nil
}

func (t *Target) stopAll(ctx context.Context, insts []*instance) {
	var wg sync.WaitGroup
	for _, in := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.stop(ctx, t.cfg.StopTimeout)
		}()
	}
	wg.Wait()
}

// Shutdown stops every instance (SIGTERM, drain, SIGKILL) and closes the
// target.
func (t *Target) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	if t.gone {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	var all []*instance
	var vs []*version
	for k, v := range t.versions {
		all = append(all, v.insts...)
		vs = append(vs, v)
		delete(t.versions, k)
	}
	t.mu.Unlock()
	t.stopAll(ctx, all)
	for _, v := range vs {
		v.stopRotation()
	}
	t.saveState()
	t.release()
	return nil
}

// Close detaches from the instances without stopping them: they keep
// running, and the next Open adopts them from state.json. The target is
// unusable afterwards (Shutdown does nothing).
func (t *Target) Close() error {
	t.mu.Lock()
	if t.gone {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	var all []*instance
	var vs []*version
	for _, v := range t.versions {
		all = append(all, v.insts...)
		vs = append(vs, v)
	}
	t.mu.Unlock()
	t.saveState()
	for _, in := range all {
		in.detach()
	}
	// The next control plane rotates the logs again.
	for _, v := range vs {
		v.stopRotation()
	}
	t.release()
	return nil
}

// release gives up the data directory: no more state writes, and the lock
// goes so another control plane may open it.
func (t *Target) release() {
	t.mu.Lock()
	t.gone = true
	t.mu.Unlock()
	if t.lock != nil {
		_ = t.lock.Close()
	}
}

// lockDir takes the data directory's lock, or says which process holds it.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("local target: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		_ = f.Close()
		pid := strings.TrimSpace(string(holder))
		if pid == "" {
			pid = "unknown"
		}
		return nil, fmt.Errorf("local target: %s is in use by another control plane (pid %s); stop it, or use another data directory", dir, pid)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

func tailNote(path string) string {
	lines := tail(path, 10)
	if len(lines) == 0 {
		return ""
	}
	return "; last lines of " + path + ":\n  " + strings.Join(lines, "\n  ")
}
