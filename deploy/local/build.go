package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/flotilla-ci/flotilla/deploy"
)

// artifact is where spec's binary lives in the cache.
func (t *Target) artifact(spec deploy.Spec) string {
	return filepath.Join(t.cfg.ArtifactDir, spec.Service, spec.Key(), spec.Service)
}

// Build implements deploy.Builder: `go build` into the cache, unless the
// artifact is there already. Concurrent builds of one artifact run once.
func (t *Target) Build(ctx context.Context, spec deploy.Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	bin := t.artifact(spec)
	t.buildMu.Lock()
	mu := t.building[bin]
	if mu == nil {
		mu = &sync.Mutex{}
		t.building[bin] = mu
	}
	t.buildMu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	if _, err := os.Stat(bin); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return fmt.Errorf("build %s@%s: %w", spec.Service, spec.Version, err)
	}
	tmp := bin + ".tmp" + strconv.Itoa(os.Getpid())
	args := append([]string{"build"}, spec.Build.Flags...)
	args = append(args, "-o", tmp, spec.Build.Package)
	cmd := exec.CommandContext(ctx, t.cfg.Go, args...)
	cmd.Dir = t.cfg.Root
	out, err := cmd.CombinedOutput()
	if err != nil {
		_ = os.Remove(tmp)
		if ctx.Err() != nil {
			return fmt.Errorf("build %s@%s: %w", spec.Service, spec.Version, ctx.Err())
		}
		var ee *exec.Error
		if errors.As(err, &ee) {
			return fmt.Errorf("build %s@%s: %w", spec.Service, spec.Version, err)
		}
		return &deploy.BuildError{Service: spec.Service, Version: spec.Version, Package: spec.Build.Package, Output: string(out), Err: err}
	}
	if err := os.Rename(tmp, bin); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("build %s@%s: %w", spec.Service, spec.Version, err)
	}
	t.log.InfoContext(ctx, "artifact built", "service", spec.Service, "version", spec.Version, "artifact", bin)
	return nil
}

// Built reports whether spec's artifact is in the cache.
func (t *Target) Built(spec deploy.Spec) bool {
	_, err := os.Stat(t.artifact(spec))
	return err == nil
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// portFree reports an error when port cannot be listened on.
func portFree(port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return ln.Close()
}

// tail returns the last n lines of a file (nil when unreadable).
func tail(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }()
	if st, err := f.Stat(); err == nil && st.Size() > 64<<10 {
		_, _ = f.Seek(st.Size()-64<<10, 0)
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		lines = append(lines, strings.TrimRight(sc.Text(), "\r"))
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}
