package workflows

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
)

// repoRoot is where .github lives, two folders up from this package.
const repoRoot = "../.."

// lint runs actionlint over files the way its CLI does, with shellcheck on
// the run: scripts when it is installed.
func lint(t *testing.T, files []string) []*actionlint.Error {
	t.Helper()
	opts := &actionlint.LinterOptions{LogWriter: io.Discard, WorkingDir: repoRoot}
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		opts.Shellcheck = sc
	} else if os.Getenv("CI") == "true" {
		t.Fatal("shellcheck is not installed, and CI must check run: scripts (.ci/run installs it)")
	} else {
		t.Log("shellcheck is not installed: run: scripts are not checked (apt-get install shellcheck)")
	}
	l, err := actionlint.NewLinter(io.Discard, opts)
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.LintFiles(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	return errs
}

func TestWorkflowsLint(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot, ".github", "workflows", "*.y*ml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no workflow files under .github/workflows")
	}
	for _, e := range lint(t, files) {
		t.Errorf("%s:%d:%d: %s [%s]", e.Filepath, e.Line, e.Column, e.Message, e.Kind)
	}
}

// TestLintCatchesMistakes makes sure the lint is real: a workflow with an
// undefined job output, a bad expression and an unknown key must fail.
func TestLintCatchesMistakes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, ".github", "workflows", "bad.yml")
	if err := os.MkdirAll(filepath.Dir(bad), 0o755); err != nil {
		t.Fatal(err)
	}
	body := `on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: echo ${{ needs.nope.outputs.x }}
  b:
    needs: a
    runs-on: ubuntu-latest
    strategy:
      max-parallel: "many"
    step:
      - run: echo hi
`
	if err := os.WriteFile(bad, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	errs := lint(t, []string{bad})
	var kinds []string
	for _, e := range errs {
		kinds = append(kinds, e.Kind)
	}
	got := strings.Join(kinds, " ")
	for _, want := range []string{"expression", "syntax-check"} {
		if !strings.Contains(got, want) {
			t.Errorf("actionlint did not report a %s error; got %v", want, kinds)
		}
	}
}
