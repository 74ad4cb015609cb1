package testenv

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fuzzList runs scripts/fuzz-all.sh --list in the tree at root.
func fuzzList(t *testing.T, root string) []string {
	t.Helper()
	out, err := exec.Command("bash", filepath.Join(root, "scripts", "fuzz-all.sh"), "--list").CombinedOutput()
	if err != nil {
		t.Fatalf("fuzz-all.sh --list: %v\n%s", err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	return lines
}

// fuzzTargets finds every fuzz target under root with the Go parser, as
// "./dir FuzzXxx" lines, fuzzList's format, sorted.
func fuzzTargets(t *testing.T, root string) []string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			if d.Name() == ".git" || d.Name() == "testdata" || d.Name() == "node_modules" || rel == "tools" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Fuzz") || len(fn.Type.Params.List) != 1 {
				continue
			}
			star, ok := fn.Type.Params.List[0].Type.(*ast.StarExpr)
			if sel, ok2 := star.X.(*ast.SelectorExpr); ok && ok2 && sel.Sel.Name == "F" {
				lines = append(lines, "./"+filepath.ToSlash(filepath.Dir(rel))+" "+fn.Name.Name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lines)
	return lines
}

// scripts/fuzz-all.sh runs every fuzz target the module has, found in the
// source: what it lists is what the Go parser finds.
func TestFuzzAllFindsEveryTarget(t *testing.T) {
	root, err := ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	got, want := fuzzList(t, root), fuzzTargets(t, root)
	if len(want) == 0 {
		t.Fatal("the parser found no fuzz target in the module")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("fuzz-all.sh --list (-found in the source +listed):\n%s", diff)
	}
}

// A target added anywhere (a new package, a nested module) is listed; a
// helper that is not a fuzz target, testdata/ and tools/ are not.
func TestFuzzAllFindsANewTarget(t *testing.T) {
	root, err := ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	files := map[string]string{
		"go.mod":               "module example.com/m\n",
		"a/a_test.go":          "package a\nimport \"testing\"\nfunc FuzzNew(f *testing.F) {}\nfunc FuzzHelper(t *testing.T) {}\n",
		"a/b/c/deep_test.go":   "package c\nimport \"testing\"\nfunc FuzzDeep(fz *testing.F) {\n}\n",
		"plane/go.mod":         "module example.com/plane\n",
		"plane/x/x_test.go":    "package x\nimport \"testing\"\nfunc FuzzNested(f *testing.F) {}\n",
		"a/testdata/t_test.go": "package t\nimport \"testing\"\nfunc FuzzData(f *testing.F) {}\n",
		"tools/tool_test.go":   "package tools\nimport \"testing\"\nfunc FuzzTool(f *testing.F) {}\n",
		"a/helper.go":          "package a\nimport \"testing\"\nfunc FuzzNotInATest(f *testing.F) {}\n",
	}
	script, err := os.ReadFile(filepath.Join(root, "scripts", "fuzz-all.sh"))
	if err != nil {
		t.Fatal(err)
	}
	files["scripts/fuzz-all.sh"] = string(script)
	for name, src := range files {
		p := filepath.Join(tmp, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"./a FuzzNew", "./a/b/c FuzzDeep", "./plane/x FuzzNested"}
	if diff := cmp.Diff(want, fuzzList(t, tmp)); diff != "" {
		t.Errorf("fuzz-all.sh --list (-want +got):\n%s", diff)
	}
}
