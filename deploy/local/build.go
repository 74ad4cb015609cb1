package local

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/flotilla-ci/flotilla/deploy"
)

// artifact is where spec's binary lives in the cache.
func (t *Target) artifact(spec deploy.Spec) string {
	return filepath.Join(t.cfg.ArtifactDir, spec.Service, spec.Key(), spec.Service)
}

// lockArtifact locks the artifact path bin against other builds of it and
// returns the unlock: concurrent builds of one artifact run once.
func (t *Target) lockArtifact(bin string) func() {
	t.buildMu.Lock()
	mu := t.building[bin]
	if mu == nil {
		mu = &sync.Mutex{}
		t.building[bin] = mu
	}
	t.buildMu.Unlock()
	mu.Lock()
	return mu.Unlock
}

// Build implements deploy.Builder: `go build` into the cache, unless the
// artifact is there already. Concurrent builds of one artifact run once.
func (t *Target) Build(ctx context.Context, spec deploy.Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	bin := t.artifact(spec)
	defer t.lockArtifact(bin)()
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

// BuildMany implements deploy.BatchBuilder: the specs whose artifacts are
// not cached yet, built by one `go build -o DIR pkg…` per set of build
// flags. With a warm build cache a build is its link, and one go command
// linking ten binaries takes about three quarters of the time of ten
// commands two at a time (the packages are loaded and hashed once). A
// batch that fails, or packages whose binaries would have the same name,
// are built one by one, so each error is the spec's own.
func (t *Target) BuildMany(ctx context.Context, specs []deploy.Spec) []error {
	return t.BuildManyProgress(ctx, specs, nil)
}

// BuildManyProgress implements deploy.ProgressBuilder: BuildMany, saying
// how many packages the batch compiled so far (`go build -v` names each
// as it starts compiling it) of the packages it takes in (`go list
// -deps`, run beside it), so a first build of the whole shop, minutes
// with an empty build cache, shows its progress.
func (t *Target) BuildManyProgress(ctx context.Context, specs []deploy.Spec, progress func(deploy.BuildProgress)) []error {
	errs := make([]error, len(specs))
	type group struct {
		flags []string
		pkgs  map[string][]int // package → the specs built from it
	}
	var groups []*group
	var alone []int
	for i, spec := range specs {
		if err := spec.Validate(); err != nil {
			errs[i] = err
			continue
		}
		if t.Built(spec) {
			continue
		}
		var g *group
		for _, x := range groups {
			if slices.Equal(x.flags, spec.Build.Flags) {
				g = x
			}
		}
		if g == nil {
			g = &group{flags: spec.Build.Flags, pkgs: map[string][]int{}}
			groups = append(groups, g)
		}
		g.pkgs[spec.Build.Package] = append(g.pkgs[spec.Build.Package], i)
	}
	for _, g := range groups {
		// go build -o DIR names each binary after its package's last
		// element: packages that share one are built alone.
		byName := map[string][]string{}
		for pkg := range g.pkgs {
			byName[path.Base(filepath.ToSlash(pkg))] = append(byName[path.Base(filepath.ToSlash(pkg))], pkg)
		}
		var batch []string
		for name, pkgs := range byName {
			if len(pkgs) > 1 || name == "." || name == "/" {
				for _, pkg := range pkgs {
					alone = append(alone, g.pkgs[pkg]...)
				}
				continue
			}
			batch = append(batch, pkgs[0])
		}
		slices.Sort(batch)
		if len(batch) == 1 {
			alone = append(alone, g.pkgs[batch[0]]...)
			continue
		}
		if len(batch) == 0 {
			continue
		}
		if err := t.buildBatch(ctx, g.flags, batch, g.pkgs, specs, progress); err != nil {
			t.log.InfoContext(ctx, "batch build failed; building one by one for each service's own error", "packages", len(batch), "err", err)
			for _, pkg := range batch {
				alone = append(alone, g.pkgs[pkg]...)
			}
		}
	}
	for _, i := range alone {
		errs[i] = t.Build(ctx, specs[i])
	}
	return errs
}

// buildBatch builds pkgs in one go command and puts each binary where the
// specs built from it keep their artifact; progress (when not nil) hears
// of every package compiled.
func (t *Target) buildBatch(ctx context.Context, flags, pkgs []string, users map[string][]int, specs []deploy.Spec, progress func(deploy.BuildProgress)) error {
	if err := os.MkdirAll(t.cfg.ArtifactDir, 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(t.cfg.ArtifactDir, ".batch-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	args := append([]string{"build"}, flags...)
	if progress != nil {
		args = append(args, "-v")
	}
	args = append(args, "-o", dir+string(filepath.Separator))
	args = append(args, pkgs...)
	cmd := exec.CommandContext(ctx, t.cfg.Go, args...)
	cmd.Dir = t.cfg.Root
	if progress == nil {
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
		}
	} else if err := t.runCounting(ctx, cmd, flags, pkgs, progress); err != nil {
		return err
	}
	for _, pkg := range pkgs {
		built := filepath.Join(dir, path.Base(filepath.ToSlash(pkg)))
		for _, i := range users[pkg] {
			if err := t.place(built, specs[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// runCounting runs a `go build -v` command, telling progress of every
// package it names, with the number of packages the build takes in
// (counted by `go list -deps` meanwhile; 0 until known).
func (t *Target) runCounting(ctx context.Context, cmd *exec.Cmd, flags, pkgs []string, progress func(deploy.BuildProgress)) error {
	var mu sync.Mutex
	var p deploy.BuildProgress
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	var listed sync.WaitGroup
	listed.Go(func() {
		n, err := t.countDeps(lctx, flags, pkgs)
		if err != nil {
			return // progress without a total
		}
		mu.Lock()
		p.Packages = n
		mu.Unlock()
	})
	defer listed.Wait() // on the early returns
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return err
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		for sc.Scan() {
			line := sc.Text()
			out.WriteString(line + "\n")
			if !isPackageLine(line) {
				continue
			}
			mu.Lock()
			p.Compiled++
			p.Package = line
			if p.Packages > 0 && p.Compiled > p.Packages {
				p.Packages = p.Compiled // never more than all
			}
			cur := p
			mu.Unlock()
			progress(cur)
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	err := cmd.Wait()
	_ = pw.Close()
	<-scanned
	if err != nil {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out.Bytes()))
	}
	// The total, when the listing ends after the build: a last report.
	listed.Wait()
	mu.Lock()
	cur := p
	mu.Unlock()
	if cur.Packages > 0 {
		progress(cur)
	}
	return nil
}

// isPackageLine reports whether a line of `go build -v` output names a
// package (rather than being a compiler's message about one).
func isPackageLine(line string) bool {
	return line != "" && !strings.ContainsAny(line, " \t:") && !strings.HasPrefix(line, "#")
}

// countDeps counts the packages a build of pkgs with flags takes in.
func (t *Target) countDeps(ctx context.Context, flags, pkgs []string) (int, error) {
	args := append([]string{"list", "-deps"}, flags...)
	args = append(args, pkgs...)
	cmd := exec.CommandContext(ctx, t.cfg.Go, args...)
	cmd.Dir = t.cfg.Root
	out, err := cmd.Output()
	if err != nil {
		return 0, err
	}
	return bytes.Count(out, []byte("\n")), nil
}

// place copies a freshly built binary to spec's artifact path, unless a
// concurrent Build put one there first.
func (t *Target) place(built string, spec deploy.Spec) error {
	bin := t.artifact(spec)
	defer t.lockArtifact(bin)()
	if _, err := os.Stat(bin); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	tmp := bin + ".tmp" + strconv.Itoa(os.Getpid())
	if err := copyFile(built, tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, bin); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	t.log.Info("artifact built", "service", spec.Service, "version", spec.Version, "artifact", bin, "batch", true)
	return nil
}

// copyFile copies an executable (a hard link when the file system allows).
func copyFile(from, to string) error {
	if err := os.Link(from, to); err == nil {
		return nil
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
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
