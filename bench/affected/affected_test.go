// Package affected_test benchmarks `flotilla affected` on a repository
// where 10,000 files changed: the git diff, and the attribution of every
// file to its service (longest path prefix, shared globs, schemas).
//
//	go test -run '^$' -bench . -benchtime 10x ./bench/affected
package affected_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/flotilla-ci/flotilla/affected"
	"github.com/flotilla-ci/flotilla/graph"
)

const changedFiles = 10000

var shorts = []string{"user", "product", "inventory", "cart", "order", "payment", "shipping", "notification", "search", "analytics"}

// setup makes a repository with the shop's manifest and 10,000 files (in
// the services' folders, a few shared and unowned ones), commits them,
// then changes every one: committed on a second commit, and again in the
// working tree.
func setup(b *testing.B) (*graph.Graph, string) {
	b.Helper()
	dir := b.TempDir()
	git := func(args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=b", "GIT_AUTHOR_EMAIL=b@example.com", "GIT_COMMITTER_NAME=b", "GIT_COMMITTER_EMAIL=b@example.com")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	manifest, err := os.ReadFile("../../flotilla.yaml")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "flotilla.yaml"), manifest, 0o644); err != nil {
		b.Fatal(err)
	}
	files := make([]string, 0, changedFiles)
	for i := range changedFiles {
		var p string
		switch {
		case i%500 == 0:
			p = fmt.Sprintf("docs/note%05d.md", i) // unowned
		case i%499 == 0:
			p = fmt.Sprintf("shop/kit/part%05d.go", i) // shared
		case i%97 == 0:
			p = fmt.Sprintf("shop/%s/schemas/Event%05d.avsc", shorts[i%10], i)
		case i%2 == 0:
			p = fmt.Sprintf("shop/cmd/%s/f%05d.go", shorts[i%10], i)
		default:
			p = fmt.Sprintf("shop/%s/pkg%02d/f%05d.go", shorts[i%10], i%37, i)
		}
		files = append(files, p)
	}
	write := func(version string) {
		for _, p := range files {
			full := filepath.Join(dir, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(version+" "+p+"\n"), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	git("init", "-q", "-b", "main")
	write("v1")
	git("add", "-A")
	git("commit", "-q", "-m", "v1")
	git("tag", "v1")
	write("v2")
	git("add", "-A")
	git("commit", "-q", "-m", "v2")
	write("v3") // and uncommitted changes on top
	m, _, err := graph.Load(filepath.Join(dir, "flotilla.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	return graph.New(m), dir
}

func BenchmarkAffected10kFiles(b *testing.B) {
	g, _ := setup(b)
	for _, bc := range []struct {
		name string
		opts affected.Options
	}{
		{"commits", affected.Options{Base: "v1", Head: "HEAD"}},
		{"working-tree", affected.Options{Base: "v1"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var res *affected.Result
			for b.Loop() {
				var err error
				res, err = affected.Run(context.Background(), g, bc.opts)
				if err != nil {
					b.Fatal(err)
				}
			}
			if len(res.Files) != changedFiles || len(res.Changed) != 10 {
				b.Fatalf("%d files, %d services changed", len(res.Files), len(res.Changed))
			}
			b.ReportMetric(float64(len(res.Files)), "files")
		})
	}
}

// BenchmarkAttribute10kFiles is the part after git: 10,000 changes to
// services, waves and edges.
func BenchmarkAttribute10kFiles(b *testing.B) {
	g, dir := setup(b)
	changes, err := affected.Diff(context.Background(), dir, affected.Options{Base: "v1", Head: "HEAD"})
	if err != nil {
		b.Fatal(err)
	}
	read := func(p string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, p)) }
	for b.Loop() {
		if _, err := affected.Compute(g, changes, read); err != nil {
			b.Fatal(err)
		}
	}
}
