package deploy_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/internal/version"
)

func TestVersions(t *testing.T) {
	const base = `shared: [kit/**, go.mod]
services:
  a-service:
    paths: [a]
    deploy: {package: ./cmd/a, env: {LEVEL: info}}
  b-service:
    paths: [b]
`
	write := func(t *testing.T, root, rel, body string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setup := func(t *testing.T) string {
		root := t.TempDir()
		write(t, root, "flotilla.yaml", base)
		write(t, root, "go.mod", "module x\n")
		write(t, root, "a/a.go", "package a\n")
		write(t, root, "b/b.go", "package b\n")
		write(t, root, "kit/kit.go", "package kit\n")
		write(t, root, "docs/readme.md", "docs\n")
		return root
	}
	var flags []string
	fingerprints := func(t *testing.T, root string) map[string]deploy.Fingerprint {
		t.Helper()
		m, _, err := graph.Load(filepath.Join(root, "flotilla.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		vs := deploy.NewVersioner(m, flags)
		out := map[string]deploy.Fingerprint{}
		for _, n := range m.Names() {
			if out[n], err = vs.Of(context.Background(), n); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	refRoot := setup(t)
	ref := fingerprints(t, refRoot)
	// The source version is the contracts' (internal/version); a service
	// without deploy config deploys under it, one with config under it
	// plus a config hash.
	for name, paths := range map[string][]string{"a-service": {"a", "kit/**", "go.mod"}, "b-service": {"b", "kit/**", "go.mod"}} {
		src, err := version.Of(context.Background(), refRoot, paths...)
		if err != nil {
			t.Fatal(err)
		}
		if ref[name].Source != src || ref[name].Digest == src || len(ref[name].Digest) != 12 {
			t.Errorf("%s: source %s, digest %s; want internal/version's %s and a digest of its own", name, ref[name].Source, ref[name].Digest, src)
		}
	}
	if ref["b-service"].Version != ref["b-service"].Source {
		t.Errorf("b-service (no deploy config) version %s, want its source version %s", ref["b-service"].Version, ref["b-service"].Source)
	}
	if a := ref["a-service"]; !regexp.MustCompile(`^` + a.Source + `-[0-9a-f]{6}$`).MatchString(a.Version) {
		t.Errorf("a-service (deploy env set) version %s, want %s-<config hash>", a.Version, a.Source)
	}
	flags = []string{"-trimpath"}
	withFlags := fingerprints(t, refRoot)
	flags = nil
	if b := withFlags["b-service"]; b.Source != ref["b-service"].Source || b.Digest == ref["b-service"].Digest || b.Version == b.Source {
		t.Errorf("b-service built with flags: %+v; want the same source, and a new digest and version", b)
	}
	tests := []struct {
		name         string
		change       func(t *testing.T, root string)
		newA, newB   bool // which versions change
		newDigestOfA bool
	}{
		{"nothing", func(*testing.T, string) {}, false, false, false},
		{"a file of a", func(t *testing.T, r string) { write(t, r, "a/a.go", "package a // changed\n") }, true, false, true},
		{"a new file of b", func(t *testing.T, r string) { write(t, r, "b/new.go", "package b\n") }, false, true, false},
		{"a shared file", func(t *testing.T, r string) { write(t, r, "kit/kit.go", "package kit // changed\n") }, true, true, true},
		{"go.mod", func(t *testing.T, r string) { write(t, r, "go.mod", "module x\n\ngo 1.26\n") }, true, true, true},
		{"a test file of a", func(t *testing.T, r string) { write(t, r, "a/a_test.go", "package a\n") }, true, false, true},
		{"a file nobody owns", func(t *testing.T, r string) { write(t, r, "docs/readme.md", "more docs\n") }, false, false, false},
		{"a's deploy config", func(t *testing.T, r string) {
			write(t, r, "flotilla.yaml", `shared: [kit/**, go.mod]
services:
  a-service:
    paths: [a]
    deploy: {package: ./cmd/a, env: {LEVEL: debug}}
  b-service:
    paths: [b]
`)
		}, true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := setup(t)
			tt.change(t, root)
			got := fingerprints(t, root)
			if (got["a-service"].Version != ref["a-service"].Version) != tt.newA {
				t.Errorf("a-service version %s (was %s): changed = %v, want %v", got["a-service"].Version, ref["a-service"].Version, !tt.newA, tt.newA)
			}
			if (got["b-service"].Version != ref["b-service"].Version) != tt.newB {
				t.Errorf("b-service version %s (was %s): want changed = %v", got["b-service"].Version, ref["b-service"].Version, tt.newB)
			}
			if (got["a-service"].Digest != ref["a-service"].Digest) != tt.newDigestOfA {
				t.Errorf("a-service build digest changed = %v, want %v", !tt.newDigestOfA, tt.newDigestOfA)
			}
		})
	}
}
