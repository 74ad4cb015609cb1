package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The platform's processes run from a copy of this program named by its
// content: the same build gets the same path (so the next up adopts what
// runs from it), and copies of other builds are removed.
func TestPlatformBinary(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "flotilla-0123456789abcdef")
	if err := os.WriteFile(stale, []byte("an older build"), 0o755); err != nil {
		t.Fatal(err)
	}
	first, err := platformBinary(dir)
	if err != nil {
		t.Fatal(err)
	}
	st1, err := os.Stat(first)
	if err != nil || st1.Mode().Perm()&0o100 == 0 || !strings.HasPrefix(filepath.Base(first), "flotilla-") {
		t.Fatalf("copy %s: %v, %v; want an executable flotilla-<digest>", first, st1, err)
	}
	exe, _ := os.Executable()
	if want, err := os.Stat(exe); err != nil || want.Size() != st1.Size() {
		t.Fatalf("copy of %d bytes, this program has %v (%v)", st1.Size(), want, err)
	}
	second, err := platformBinary(dir)
	if err != nil || second != first {
		t.Fatalf("second call: %s, %v; want the same path %s", second, err, first)
	}
	if st2, err := os.Stat(second); err != nil || !st2.ModTime().Equal(st1.ModTime()) {
		t.Errorf("the second call copied again")
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the older build's copy is left: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d files in %s, want the one copy", len(entries), dir)
	}
}
