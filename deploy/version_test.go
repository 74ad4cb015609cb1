package deploy_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/graph"
)

func TestVersions(t *testing.T) {
	const base = `shared: [kit/**]
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
	fingerprints := func(t *testing.T, root string) map[string]deploy.Fingerprint {
		t.Helper()
		m, _, err := graph.Load(filepath.Join(root, "flotilla.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		vs, err := deploy.NewVersioner(m, []string{"-trimpath"})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]deploy.Fingerprint{}
		for _, n := range m.Names() {
			if out[n], err = vs.Of(n); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	ref := fingerprints(t, setup(t))
	if ref["a-service"].Version == ref["b-service"].Version || len(ref["a-service"].Version) != 12 {
		t.Fatalf("versions %v: want distinct 12-digit hashes", ref)
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
		{"a test file only", func(t *testing.T, r string) { write(t, r, "a/a_test.go", "package a\n") }, false, false, false},
		{"a file nobody owns", func(t *testing.T, r string) { write(t, r, "docs/readme.md", "more docs\n") }, false, false, false},
		{"a's deploy config", func(t *testing.T, r string) {
			write(t, r, "flotilla.yaml", `shared: [kit/**]
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
