// Package version derives the version of a service in a monorepo, the one
// way every part of flotilla names it: contracts are published and
// verified under it, deployments are recorded under it, and the deploy
// history shows it.
//
// The scheme: a service's version is the first 12 hex digits of a SHA-256
// over its source, i.e. over the files under the service's paths and the
// shared paths it builds from (for the shop, shop/<service> and shop/kit,
// plus go.mod and go.sum). For each file, in path order, the hash takes
// its slash-separated path relative to the repository root, whether it is
// executable, and the SHA-256 of its content. Files are those git tracks
// plus untracked files git does not ignore, read from the working tree,
// so an uncommitted change gets its own version and ignored build output
// never counts; outside a git repository every regular file counts.
//
// Content addressing, rather than the commit, is what makes versions mean
// something in a monorepo: a commit that touches only the payment service
// leaves the order service's version, and with it its verification
// results and can-i-deploy answers, unchanged; reverting a change returns
// the old version. Two services built from the same paths share a
// version. The branch recorded with a version is the git branch.
package version

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Length is the number of hex digits in a version.
const Length = 12

// Of returns the version of the source under paths (relative to the
// repository root repo; files, directories, or git globs such as
// "shop/kit/**" or "*.proto"). A plain path that matches no file is an
// error, naming it: a misspelt path must not silently give every service
// the same version.
func Of(ctx context.Context, repo string, paths ...string) (string, error) {
	if len(paths) == 0 {
		return "", errors.New("version: no paths to hash")
	}
	clean := make([]string, 0, len(paths))
	var globs []string
	for _, p := range paths {
		// The manifest's shared entries are globs; "dir/**" is the folder,
		// and, being a glob, may match nothing yet.
		glob := strings.HasSuffix(p, "/**") || strings.ContainsAny(p, "*?[")
		p = strings.TrimSuffix(p, "/**")
		c := filepath.ToSlash(filepath.Clean(p))
		if glob {
			globs = append(globs, c)
		}
		if filepath.IsAbs(p) || c == ".." || strings.HasPrefix(c, "../") {
			return "", fmt.Errorf("version: path %q must be relative to the repository root", p)
		}
		clean = append(clean, c)
	}
	files, err := gitFiles(ctx, repo, clean)
	if err != nil {
		if files, err = walkFiles(repo, clean); err != nil {
			return "", err
		}
	}
	for _, p := range clean {
		if !contains(globs, p) && !covers(files, p) {
			return "", fmt.Errorf("version: path %q has no files in %s", p, repo)
		}
	}
	sort.Strings(files)
	h := sha256.New()
	last := ""
	for _, f := range files {
		if f == last {
			continue
		}
		last = f
		full := filepath.Join(repo, filepath.FromSlash(f))
		st, err := os.Lstat(full)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the working tree, still in the index
		}
		if err != nil {
			return "", fmt.Errorf("version: %w", err)
		}
		var sum [32]byte
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(full)
			if err != nil {
				return "", fmt.Errorf("version: %w", err)
			}
			sum = sha256.Sum256([]byte("symlink:" + target))
		case st.Mode().IsRegular():
			fh, err := os.Open(full)
			if err != nil {
				return "", fmt.Errorf("version: %w", err)
			}
			fsum := sha256.New()
			_, err = io.Copy(fsum, fh)
			_ = fh.Close()
			if err != nil {
				return "", fmt.Errorf("version: %s: %w", f, err)
			}
			copy(sum[:], fsum.Sum(nil))
		default:
			continue
		}
		mode := "-"
		if st.Mode()&0o111 != 0 {
			mode = "x"
		}
		fmt.Fprintf(h, "%s\x00%s\x00%x\n", f, mode, sum)
	}
	return hex.EncodeToString(h.Sum(nil))[:Length], nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func covers(files []string, p string) bool {
	if p == "." {
		return len(files) > 0
	}
	for _, f := range files {
		if f == p || strings.HasPrefix(f, p+"/") {
			return true
		}
	}
	return false
}

// gitFiles lists tracked and untracked-but-not-ignored files under paths.
func gitFiles(ctx context.Context, repo string, paths []string) ([]string, error) {
	args := append([]string{"-C", repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--full-name", "--"}, paths...)
	cmd := exec.CommandContext(ctx, "git", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	// --full-name gives paths from the top of the repository; make them
	// relative to repo when repo is a subdirectory of it.
	top, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "--show-prefix").Output()
	if err != nil {
		return nil, err
	}
	prefix := strings.TrimSpace(string(top))
	var files []string
	for _, f := range strings.Split(string(out), "\x00") {
		if f == "" {
			continue
		}
		files = append(files, strings.TrimPrefix(f, prefix))
	}
	return files, nil
}

// walkFiles lists the regular files under paths outside a git repository.
func walkFiles(repo string, paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		root := filepath.Join(repo, filepath.FromSlash(p))
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if d.IsDir() && d.Name() == ".git" {
				return filepath.SkipDir
			}
			if d.IsDir() {
				return nil
			}
			rel, err := filepath.Rel(repo, path)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("version: %w", err)
		}
	}
	return files, nil
}
