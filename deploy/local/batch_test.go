package local

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-ci/flotilla/deploy"
)

// writeModule writes a module of small main packages, each printing its
// name, and returns its root.
func writeModule(t *testing.T, mains map[string]string) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{"go.mod": "module example.com/batch\n\ngo 1.22\n"}
	for pkg, body := range mains {
		files[filepath.Join(pkg, "main.go")] = body
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func printer(name string) string {
	return "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Print(\"" + name + "\") }\n"
}

// A batch builds every artifact in one go command, each spec's binary
// where Build would have put it; a package that does not compile gets its
// own BuildError and the others are built; packages whose binaries would
// share a name are built alone; cached artifacts are not rebuilt.
func TestBuildMany(t *testing.T) {
	ctx := context.Background()
	root := writeModule(t, map[string]string{
		"cmd/one":  printer("one"),
		"cmd/two":  printer("two"),
		"p/tool":   printer("p-tool"),
		"q/tool":   printer("q-tool"),
		"cmd/bad":  "package main\n\nfunc main() { undefinedFunction() }\n",
		"cmd/four": printer("four"),
	})
	tg := newTarget(t, t.TempDir(), func(c *Config) { c.Root, c.ArtifactDir = root, t.TempDir() })
	mk := func(service, pkg, digest string) deploy.Spec {
		return deploy.Spec{Service: service, Version: digest, Build: deploy.Build{Package: pkg, Digest: digest, Flags: []string{"-ldflags=-s -w"}}, Health: "/ready"}
	}
	run := func(s deploy.Spec) string {
		t.Helper()
		out, err := exec.Command(tg.artifact(s)).Output()
		if err != nil {
			t.Fatalf("run %s's artifact: %v", s.Service, err)
		}
		return string(out)
	}

	specs := []deploy.Spec{
		mk("a-service", "./cmd/one", "a1"),
		mk("b-service", "./cmd/two", "b1"),
		mk("c-service", "./cmd/two", "c1"), // the same package as b
		mk("p-service", "./p/tool", "p1"),  // p/tool and q/tool are both "tool"
		mk("q-service", "./q/tool", "q1"),
	}
	errs := tg.BuildMany(ctx, specs)
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s: %v", specs[i].Service, err)
		}
	}
	for s, want := range map[int]string{0: "one", 1: "two", 2: "two", 3: "p-tool", 4: "q-tool"} {
		if got := run(specs[s]); got != want {
			t.Errorf("%s's artifact prints %q, want %q", specs[s].Service, got, want)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(tg.cfg.ArtifactDir, ".batch-*")); len(left) > 0 {
		t.Errorf("batch directories left behind: %v", left)
	}

	// Cached: not rebuilt.
	st1, _ := os.Stat(tg.artifact(specs[0]))
	if errs := tg.BuildMany(ctx, specs[:2]); errors.Join(errs...) != nil {
		t.Fatal(errs)
	}
	if st2, _ := os.Stat(tg.artifact(specs[0])); !st2.ModTime().Equal(st1.ModTime()) {
		t.Error("a cached artifact was rebuilt")
	}

	// One that does not compile fails alone, with the compiler's words.
	specs = []deploy.Spec{mk("bad-service", "./cmd/bad", "x1"), mk("d-service", "./cmd/four", "d1"), mk("e-service", "./cmd/one", "e1")}
	errs = tg.BuildMany(ctx, specs)
	var be *deploy.BuildError
	if !errors.As(errs[0], &be) || !errors.Is(errs[0], deploy.ErrBuild) || !strings.Contains(errs[0].Error(), "undefined: undefinedFunction") {
		t.Errorf("the broken package: %v, want its BuildError", errs[0])
	}
	if errs[1] != nil || errs[2] != nil {
		t.Errorf("the good packages beside a broken one: %v, %v", errs[1], errs[2])
	}
	if got := run(specs[1]); got != "four" {
		t.Errorf("d-service's artifact prints %q", got)
	}
	if tg.Built(specs[0]) {
		t.Error("the broken package has an artifact")
	}
}

// A batch with progress names every package it compiles as it goes, and
// how many packages the build takes in: what `flotilla up` shows while a
// first build runs for minutes.
func TestBuildManyProgress(t *testing.T) {
	ctx := context.Background()
	root := writeModule(t, map[string]string{
		"cmd/one":  printer("one"),
		"cmd/two":  printer("two"),
		"lib/util": "package util\n\n// N is a number.\nconst N = 1\n",
		"cmd/three": "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/batch/lib/util\"\n)\n\n" +
			"func main() { fmt.Print(util.N) }\n",
	})
	tg := newTarget(t, t.TempDir(), func(c *Config) { c.Root, c.ArtifactDir = root, t.TempDir() })
	var specs []deploy.Spec
	for _, name := range []string{"one", "two", "three"} {
		specs = append(specs, deploy.Spec{Service: name, Version: "v-" + name, Build: deploy.Build{Package: "./cmd/" + name, Digest: "d-" + name}})
	}
	var reports []deploy.BuildProgress
	errs := tg.BuildManyProgress(ctx, specs, func(p deploy.BuildProgress) { reports = append(reports, p) })
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	compiled := map[string]bool{}
	for i, p := range reports {
		compiled[p.Package] = true
		if i > 0 && p.Compiled < reports[i-1].Compiled {
			t.Errorf("report %d: %d compiled after %d", i, p.Compiled, reports[i-1].Compiled)
		}
		if p.Packages != 0 && p.Compiled > p.Packages {
			t.Errorf("report %d: %d of %d compiled", i, p.Compiled, p.Packages)
		}
	}
	for _, pkg := range []string{"example.com/batch/cmd/one", "example.com/batch/cmd/two", "example.com/batch/cmd/three", "example.com/batch/lib/util"} {
		if !compiled[pkg] {
			t.Errorf("no progress named %s; reports %+v", pkg, reports)
		}
	}
	if len(reports) == 0 || reports[len(reports)-1].Packages < 4 {
		t.Errorf("the last report does not count the build's packages (fmt and its dependencies, the module's four): %+v", reports)
	}
	for _, s := range specs {
		if !tg.Built(s) {
			t.Errorf("%s not built", s.Service)
		}
	}
}
