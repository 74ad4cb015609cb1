package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/flotilla-ci/flotilla/graph"
)

// Versioner derives every service's version from the repository's content:
// a content hash, so the same sources and config are the same version on
// every machine and in every command, and nothing unchanged is rebuilt or
// redeployed.
//
// The build digest hashes, by repo-relative path and content, the files of
// the service's paths, the files matching the manifest's shared globs,
// go.mod and go.sum (tests and testdata left out: they are not in the
// binary), plus the main package and the build flags. The
// version hashes the build digest with the service's deploy-time config
// from the manifest (deploy env, port, replicas): a config change is a new
// version that reuses the artifact. Addresses the platform injects at
// start (ports, the bus and registry URLs) are not part of it. Both are the
// first 12 hex digits of a SHA-256.
type Versioner struct {
	m      *graph.Manifest
	flags  []string
	shared string // digest of the shared files, computed once
}

// Fingerprint is a service's version and build digest.
type Fingerprint struct {
	Version string
	Digest  string
}

// NewVersioner hashes the shared files of m once; flags are the build flags
// every service is built with.
func NewVersioner(m *graph.Manifest, flags []string) (*Versioner, error) {
	v := &Versioner{m: m, flags: flags}
	h := sha256.New()
	var files []string
	err := filepath.WalkDir(m.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(m.Root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && skipDir(d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		if _, ok := m.IsShared(rel); ok || rel == "go.mod" || rel == "go.sum" {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("version: hash shared files: %w", err)
	}
	if err := hashFiles(h, m.Root, files); err != nil {
		return nil, err
	}
	v.shared = hex.EncodeToString(h.Sum(nil))
	return v, nil
}

// Package returns the Go package of a service's main: deploy.package, or
// the first of its paths under a cmd/ folder.
func Package(s *graph.Service) string {
	if s.Deploy.Package != "" {
		return s.Deploy.Package
	}
	for _, p := range s.Paths {
		if strings.HasPrefix(p, "cmd/") || strings.Contains(p, "/cmd/") {
			return "./" + p
		}
	}
	if len(s.Paths) > 0 {
		return "./" + s.Paths[0]
	}
	return ""
}

// Of returns the fingerprint of a service of the manifest.
func (v *Versioner) Of(name string) (Fingerprint, error) {
	s := v.m.Service(name)
	if s == nil {
		return Fingerprint{}, fmt.Errorf("version: unknown service %q", name)
	}
	var files []string
	for _, sp := range s.Paths {
		root := filepath.Join(v.m.Root, filepath.FromSlash(sp))
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) && p == root {
					return nil // a declared path with nothing in it yet
				}
				return err
			}
			if d.IsDir() {
				if p != root && skipDir(d.Name()) {
					return filepath.SkipDir
				}
				return nil
			}
			if strings.HasSuffix(d.Name(), "_test.go") {
				return nil
			}
			rel, _ := filepath.Rel(v.m.Root, p)
			files = append(files, filepath.ToSlash(rel))
			return nil
		})
		if err != nil {
			return Fingerprint{}, fmt.Errorf("version of %s: %w", name, err)
		}
	}
	h := sha256.New()
	fmt.Fprintf(h, "flotilla build v1\nshared %s\npackage %s\n", v.shared, Package(s))
	for _, f := range v.flags {
		fmt.Fprintf(h, "flag %q\n", f)
	}
	if err := hashFiles(h, v.m.Root, files); err != nil {
		return Fingerprint{}, fmt.Errorf("version of %s: %w", name, err)
	}
	digest := hex.EncodeToString(h.Sum(nil))[:12]
	c := sha256.New()
	fmt.Fprintf(c, "flotilla version v1\nbuild %s\nport %d\nreplicas %d\n", digest, s.Deploy.Port, s.Deploy.Replicas)
	keys := make([]string, 0, len(s.Deploy.Env))
	for k := range s.Deploy.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(c, "env %q=%q\n", k, s.Deploy.Env[k])
	}
	return Fingerprint{Version: hex.EncodeToString(c.Sum(nil))[:12], Digest: digest}, nil
}

// skipDir: hidden folders (.git, the data directory) and testdata hold
// nothing that goes into a binary; neither do _test.go files.
func skipDir(name string) bool { return strings.HasPrefix(name, ".") || name == "testdata" }

// hashFiles writes each file's path and content hash into h, sorted by
// path.
func hashFiles(h io.Writer, root string, files []string) error {
	sort.Strings(files)
	for i, f := range files {
		if i > 0 && files[i-1] == f {
			continue
		}
		fh := sha256.New()
		r, err := os.Open(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			return err
		}
		_, err = io.Copy(fh, r)
		_ = r.Close()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "file %s %x\n", path.Clean(f), fh.Sum(nil))
	}
	return nil
}
