package version_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-ci/flotilla/internal/version"
)

func write(t *testing.T, root, path, content string) {
	t.Helper()
	full := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

func repo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	write(t, dir, "shop/order/main.go", "package order")
	write(t, dir, "shop/payment/main.go", "package payment")
	write(t, dir, "shop/kit/kit.go", "package kit")
	write(t, dir, ".gitignore", "*.out\n")
	git(t, dir, "init", "-q")
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-qm", "init")
	return dir
}

func of(t *testing.T, dir string, paths ...string) string {
	t.Helper()
	v, err := version.Of(context.Background(), dir, paths...)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != version.Length {
		t.Fatalf("version %q has %d digits", v, len(v))
	}
	return v
}

func TestVersionFollowsTheServiceContent(t *testing.T) {
	dir := repo(t)
	order := of(t, dir, "shop/order", "shop/kit")
	if got := of(t, dir, "shop/kit", "shop/order"); got != order {
		t.Errorf("path order changed the version: %s vs %s", got, order)
	}
	payment := of(t, dir, "shop/payment", "shop/kit")
	if payment == order {
		t.Fatalf("two services with different sources share version %s", order)
	}

	steps := []struct {
		name        string
		change      func()
		orderChange bool
	}{
		{"another service changes", func() { write(t, dir, "shop/payment/main.go", "package payment // v2") }, false},
		{"an ignored file appears", func() { write(t, dir, "shop/order/build.out", "binary") }, false},
		{"a commit without content change", func() { git(t, dir, "commit", "-qam", "payment v2") }, false},
		{"the service changes, uncommitted", func() { write(t, dir, "shop/order/main.go", "package order // v2") }, true},
		{"an untracked source file appears", func() { write(t, dir, "shop/order/new.go", "package order") }, true},
		{"shared code changes", func() { write(t, dir, "shop/kit/kit.go", "package kit // v2") }, true},
		{"a file becomes executable", func() { _ = os.Chmod(filepath.Join(dir, "shop/order/new.go"), 0o755) }, true},
	}
	for _, s := range steps {
		s.change()
		got := of(t, dir, "shop/order", "shop/kit")
		if (got != order) != s.orderChange {
			t.Errorf("%s: order's version %s -> %s, want changed=%v", s.name, order, got, s.orderChange)
		}
		order = got
	}
	// Reverting returns the earlier version.
	before := of(t, dir, "shop/order", "shop/kit")
	write(t, dir, "shop/kit/kit.go", "package kit // v3")
	write(t, dir, "shop/kit/kit.go", "package kit // v2")
	if got := of(t, dir, "shop/order", "shop/kit"); got != before {
		t.Errorf("reverted content has version %s, want %s", got, before)
	}
}

func TestVersionGlobs(t *testing.T) {
	dir := repo(t)
	if a, b := of(t, dir, "shop/order", "shop/kit/**"), of(t, dir, "shop/order", "shop/kit"); a != b {
		t.Errorf("shop/kit/** and shop/kit differ: %s vs %s", a, b)
	}
	before := of(t, dir, "shop/order", "*.mod")
	write(t, dir, "go.mod", "module x")
	if after := of(t, dir, "shop/order", "*.mod"); after == before {
		t.Errorf("a file matching the glob *.mod appeared and the version stayed %s", before)
	}
}

func TestVersionOutsideGit(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "svc/a.go", "package a")
	v1 := of(t, dir, "svc")
	write(t, dir, "svc/a.go", "package a // changed")
	if v2 := of(t, dir, "svc"); v1 == v2 {
		t.Errorf("a content change kept version %s", v1)
	}
}

func TestVersionBadPaths(t *testing.T) {
	dir := repo(t)
	for _, paths := range [][]string{{"shop/ordr"}, {"../elsewhere"}, {"/abs"}, nil} {
		_, err := version.Of(context.Background(), dir, paths...)
		if err == nil {
			t.Errorf("Of(%v) succeeded", paths)
			continue
		}
		if len(paths) > 0 && !strings.Contains(err.Error(), paths[0]) {
			t.Errorf("Of(%v) = %v, want the path named", paths, err)
		}
	}
}
