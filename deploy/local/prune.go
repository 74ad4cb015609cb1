package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/flotilla-ci/flotilla/deploy"
)

var _ deploy.Pruner = (*Target)(nil)

// Prune implements deploy.Pruner: it removes bin/<service>/<key>/ of every
// artifact no kept or running version is built from, and the logs
// (logs/<service>/<version>.log and its rotated files) and working
// directories (run/<service>/<version>/) of every version neither kept nor
// running. Files being written by a build (names with ".tmp", folders
// with a leading dot) are left alone. An ArtifactDir shared by several
// data directories is pruned by each of them from its own history: give
// such a cache to one control plane, or prune it with care.
func (t *Target) Prune(ctx context.Context, keep map[string][]deploy.Spec) (deploy.Pruned, error) {
	bins := map[string]bool{}
	versions := map[key]bool{}
	for svc, specs := range keep {
		for _, s := range specs {
			s.Service = svc
			bins[t.artifact(s)] = true
			versions[key{svc, s.Version}] = true
		}
	}
	t.mu.Lock()
	for k, v := range t.versions {
		bins[v.bin] = true
		versions[k] = true
	}
	for k := range t.starting {
		versions[k] = true
	}
	t.mu.Unlock()

	var out deploy.Pruned
	var errs []error
	// Artifacts: bin/<service>/<key>/<service>.
	services, err := os.ReadDir(t.cfg.ArtifactDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return out, fmt.Errorf("prune: %w", err)
	}
	for _, se := range services {
		if !se.IsDir() || strings.HasPrefix(se.Name(), ".") {
			continue
		}
		keys, err := os.ReadDir(filepath.Join(t.cfg.ArtifactDir, se.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, ke := range keys {
			if !ke.IsDir() || strings.HasPrefix(ke.Name(), ".") {
				continue
			}
			dir := filepath.Join(t.cfg.ArtifactDir, se.Name(), ke.Name())
			bin := filepath.Join(dir, se.Name())
			if bins[bin] {
				continue
			}
			unlock := t.lockArtifact(bin)
			n, busy, err := removeAll(dir, func(name string) bool { return !strings.Contains(name, ".tmp") })
			unlock()
			out.Bytes += n
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if busy {
				continue // a build is writing there
			}
			out.Artifacts = append(out.Artifacts, se.Name()+"@"+ke.Name())
		}
		_ = os.Remove(filepath.Join(t.cfg.ArtifactDir, se.Name())) // when empty
	}
	// Logs and working directories, by version.
	logs := filepath.Join(t.cfg.Dir, "logs")
	services, err = os.ReadDir(logs)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, se := range services {
		if !se.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(logs, se.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pruned := map[string]bool{}
		for _, fe := range files {
			name := fe.Name()
			i := strings.Index(name, ".log")
			if fe.IsDir() || i <= 0 || (name[i:] != ".log" && !strings.HasPrefix(name[i:], ".log.")) {
				continue
			}
			v := name[:i]
			if versions[key{se.Name(), v}] {
				continue
			}
			n, _, err := removeAll(filepath.Join(logs, se.Name(), name), nil)
			out.Bytes += n
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if !pruned[v] {
				pruned[v] = true
				out.Logs = append(out.Logs, se.Name()+"@"+v)
			}
			n, _, _ = removeAll(filepath.Join(t.cfg.Dir, "run", se.Name(), v), nil)
			out.Bytes += n
		}
	}
	sort.Strings(out.Artifacts)
	sort.Strings(out.Logs)
	if len(out.Artifacts)+len(out.Logs) > 0 {
		t.log.InfoContext(ctx, "pruned", "artifacts", len(out.Artifacts), "logs", len(out.Logs), "bytes", out.Bytes)
	}
	return out, errors.Join(errs...)
}

// removeAll removes path (a file, or a folder with what it holds, except
// the files ok refuses when ok is not nil) and returns the bytes freed and
// whether files ok refused are left.
func removeAll(path string, ok func(name string) bool) (freed int64, kept bool, err error) {
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if ok != nil && !ok(d.Name()) {
			kept = true
			return nil
		}
		if info, err := d.Info(); err == nil {
			freed += info.Size()
		}
		return os.Remove(p)
	})
	if errors.Is(err, fs.ErrNotExist) {
		return freed, kept, nil
	}
	if err != nil {
		return freed, kept, fmt.Errorf("prune %s: %w", path, err)
	}
	if !kept {
		if err := os.RemoveAll(path); err != nil {
			return freed, kept, fmt.Errorf("prune %s: %w", path, err)
		}
	}
	return freed, kept, nil
}
