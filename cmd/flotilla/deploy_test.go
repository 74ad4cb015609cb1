package main

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/local"
	"github.com/flotilla-ci/flotilla/deploy/sqlstore"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/mesh"
)

const testShop = "../../deploy/testdata/shop"

// planLines reduces a printed plan to "wave N" and "service action" lines.
func planLines(out string) []string {
	row := regexp.MustCompile(`^\s+(\S+)\s+[0-9a-f]{12}(-[0-9a-f]{6})?\s+(\S+)\s+now`)
	var got []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "wave ") {
			got = append(got, l)
		} else if m := row.FindStringSubmatch(l); m != nil {
			got = append(got, m[1]+" "+m[3])
		}
	}
	return got
}

func TestDeployDryRunWithoutControlPlane(t *testing.T) {
	manifest := filepath.Join(testShop, graph.FileName)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"all", []string{"--all"}, []string{"wave 1", "alpha-service deploy", "delta-service deploy", "wave 2", "bravo-service deploy", "wave 3", "charlie-service deploy"}},
		{"named", []string{"charlie-service", "delta-service,alpha-service"}, []string{"wave 1", "alpha-service deploy", "delta-service deploy", "wave 2", "charlie-service deploy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append([]string{"-f", manifest, "deploy", "--dry-run", "--api", "127.0.0.1:1"}, tt.args...)...)
			if code != 0 {
				t.Fatalf("exit %d, stderr %s", code, errOut)
			}
			if d := cmp.Diff(tt.want, planLines(out)); d != "" {
				t.Errorf("plan (-want +got):\n%s\n%s", d, out)
			}
			if !strings.Contains(errOut, "no control plane at http://127.0.0.1:1") {
				t.Errorf("stderr %q: want the note that nothing says what serves", errOut)
			}
		})
	}
}

func TestDeployBadInput(t *testing.T) {
	manifest := filepath.Join(testShop, graph.FileName)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown service", []string{"deploy", "alpah-service", "--dry-run"}, `unknown service "alpah-service" (did you mean alpha-service?)`},
		{"nothing named", []string{"deploy", "--dry-run"}, "nothing to deploy"},
		{"changed without base", []string{"deploy", "--changed", "--dry-run"}, "--changed needs --base"},
		{"unknown environment", []string{"deploy", "--all", "--env", "moon", "--dry-run"}, `unknown environment "moon" (known: local)`},
		{"bad on-failure", []string{"deploy", "--all", "--on-failure", "pray"}, `on-failure "pray"`},
		{"unknown service logs", []string{"logs", "zulu-service"}, `unknown service "zulu-service"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, append([]string{"-f", manifest}, tt.args...)...)
			if code != 2 || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errOut, tt.want)
			}
		})
	}
	code, _, errOut := runCLI(t, "-f", manifest, "deploy", "--all", "--api", "127.0.0.1:1")
	if code != 3 || !strings.Contains(errOut, "no control plane answers at http://127.0.0.1:1 (start one with 'flotilla up')") {
		t.Errorf("deploy without a control plane: exit %d, stderr %q", code, errOut)
	}
}

// TestDeployCommandsAgainstControlPlane runs deploy, status, history,
// rollback and logs as clients of a real control plane deploying the test
// shop as local processes.
func TestDeployCommandsAgainstControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs services")
	}
	cp := newTestControlPlane(t, nil)
	file, load, cli := cp.file, cp.load, cp.cli

	code, out, errOut := cli("deploy", "alpha-service", "delta-service")
	if code != 0 {
		t.Fatalf("deploy: exit %d\n%s%s", code, out, errOut)
	}
	// Not a terminal: the build phase, one line per service, then the
	// summary. (The services of a wave finish in any order.)
	if !regexp.MustCompile(`^build  2 artifact\(s\) to build\n(build  .*\n)*build  2 artifact\(s\) ready in \S+\n`).MatchString(out) {
		t.Errorf("deploy output without its build phase:\n%s", out)
	}
	out = regexp.MustCompile(`(?m)^build  .*\n`).ReplaceAllString(out, "")
	if !strings.HasPrefix(out, "wave 1\n") || !regexp.MustCompile(`\n  alpha-service +[0-9a-f]{12}-[0-9a-f]{6} +done +serving [0-9a-f]{12}-[0-9a-f]{6} \(was not deployed\)`).MatchString(out) ||
		!strings.Contains(out, "\n  delta-service ") || !regexp.MustCompile(`\nrelease 1: 2 succeeded in \S+ \(\S+ of it building\)\n$`).MatchString(out) {
		t.Errorf("deploy output:\n%s", out)
	}
	if strings.Contains(out, " build ") {
		t.Errorf("progress steps printed when not a terminal:\n%s", out)
	}

	code, out, _ = cli("deploy", "--all", "--dry-run")
	if code != 0 || !strings.Contains(out, "alpha-service") || !regexp.MustCompile(`alpha-service +[0-9a-f]{12}-[0-9a-f]{6} +unchanged +now [0-9a-f]{12}-[0-9a-f]{6}`).MatchString(out) {
		t.Errorf("dry run against the control plane: exit %d\n%s", code, out)
	}

	// A bad version of bravo: exit 1 with the reason; alpha is untouched.
	if err := os.WriteFile(file, []byte(strings.Replace(mustRead(t, file), "  bravo-service:\n    paths: [bravo]\n    health: /ready\n    depends_on: [alpha-service]\n    deploy: {package: ./cmd/svc}",
		"  bravo-service:\n    paths: [bravo]\n    health: /ready\n    depends_on: [alpha-service]\n    deploy: {package: ./cmd/svc, env: {MODE: smoke-fail}}", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	load()
	code, out, _ = cli("deploy", "bravo-service", "charlie-service")
	if code != 1 || !strings.Contains(out, `failed: bravo-service@`) || !strings.Contains(out, `smoke "status": GET /smoke answered 500, want 200`) ||
		!regexp.MustCompile(`charlie-service +[0-9a-f]{12}-[0-9a-f]{6} +skipped +its dependency bravo-service failed`).MatchString(out) {
		t.Errorf("bad deploy: exit %d\n%s", code, out)
	}

	code, out, _ = cli("status")
	if code != 0 || !regexp.MustCompile(`alpha-service +[0-9a-f]{12}-[0-9a-f]{6} +- +[0-9a-f]{12}-[0-9a-f]{6}=100 +ready +1 +0 +\d{4}-`).MatchString(out) ||
		!regexp.MustCompile(`bravo-service +- +- +- +not deployed +0 +0 +-`).MatchString(out) {
		t.Errorf("status: exit %d\n%s", code, out)
	}

	code, out, _ = cli("history", "bravo-service")
	if code != 0 || !regexp.MustCompile(`2 +\d{4}-\d\d-\d\d [\d:]+ +bravo-service +[0-9a-f]{12}-[0-9a-f]{6} +- +deploy +failed +\S+ +\S+ +smoke "status"`).MatchString(out) {
		t.Errorf("history: exit %d\n%s", code, out)
	}

	code, _, errOut = cli("rollback", "alpha-service")
	if code != 2 || !strings.Contains(errOut, "alpha-service has no earlier version in the history") {
		t.Errorf("rollback: exit %d, stderr %q", code, errOut)
	}

	code, out, errOut = runCLI(t, "-f", file, "logs", "delta-service")
	if code != 0 || !strings.Contains(out, "listening on 127.0.0.1:") {
		t.Errorf("logs: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "-f", file, "logs", "delta-service", "--version", "ffff")
	if code != 1 || !strings.Contains(errOut, "no log of delta-service version ffff (it has: ") {
		t.Errorf("logs of an unknown version: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "-f", file, "logs", "charlie-service")
	if code != 1 || !strings.Contains(errOut, "no logs of charlie-service") {
		t.Errorf("logs of a service never run: exit %d, stderr %q", code, errOut)
	}
}

// testControlPlane is a control plane (local target, mesh, history, API
// over HTTP) on a copy of the deploy tests' shop in a temporary root.
type testControlPlane struct {
	t    *testing.T
	file string // the copy's manifest: edit it, then load
	srv  *httptest.Server
	// load reads the manifest again into a new orchestrator and API.
	load func()
}

// newTestControlPlane starts one; edit, when not nil, rewrites the
// manifest first.
func newTestControlPlane(t *testing.T, edit func(manifest string) string) *testControlPlane {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS(testShop)); err != nil {
		t.Fatal(err)
	}
	cp := &testControlPlane{t: t, file: filepath.Join(root, graph.FileName)}
	_ = os.Chmod(cp.file, 0o644)
	if edit != nil {
		if err := os.WriteFile(cp.file, []byte(edit(mustRead(t, cp.file))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(root, ".flotilla")
	ctx := context.Background()
	c := local.DefaultConfig(local.DirIn(data), root)
	c.Logger, c.ProbeInterval, c.StopTimeout = quiet, 20*time.Millisecond, 5*time.Second
	tg, err := local.Open(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := mesh.New(mesh.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	store, err := sqlstore.Open(ctx, filepath.Join(data, "flotilla.db"))
	if err != nil {
		t.Fatal(err)
	}
	var (
		api *controlplane.API
		cur atomic.Pointer[graph.Graph] // the manifest as last loaded
	)
	router := &local.MeshRouter{Mesh: ms}
	cnry, err := controlplane.NewCanary(controlplane.CanaryConfig{Metrics: ms, Graph: cur.Load, Router: router, Dir: filepath.Join(data, "canary"), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	cp.load = func() {
		m, _, err := graph.Load(cp.file)
		if err != nil {
			t.Fatal(err)
		}
		cur.Store(graph.New(m))
		orch, err := deploy.New(deploy.Config{Graph: cur.Load(), Target: tg, Router: router, Store: store, Shifter: cnry, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if cp.srv != nil {
			cp.srv.Close()
		}
		api = controlplane.NewAPI(orch, quiet).WithCanary(cnry)
		cp.srv = httptest.NewServer(api.Handler())
	}
	cp.load()
	t.Cleanup(func() {
		cp.srv.Close()
		api.Wait()
		_ = cnry.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		insts, _ := tg.Status(ctx, "")
		_ = tg.Shutdown(ctx)
		_ = ms.Close(ctx)
		_ = store.Close()
		for _, in := range insts {
			if syscall.Kill(in.PID, 0) == nil {
				t.Errorf("%s pid %d still runs", in.Service, in.PID)
			}
		}
	})
	return cp
}

// cli runs flotilla with the copy's manifest against the control plane.
func (cp *testControlPlane) cli(args ...string) (int, string, string) {
	cp.t.Helper()
	return runCLI(cp.t, append([]string{"-f", cp.file}, append(args, "--api", cp.srv.URL)...)...)
}

func mustRead(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
