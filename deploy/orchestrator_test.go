package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/local"
	"github.com/flotilla-ci/flotilla/deploy/sqlstore"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/mesh"
)

// artifacts is shared by every test of the run, so each test service is
// linked once.
var artifacts string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flotilla-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	artifacts = filepath.Join(dir, "bin")
	code := m.Run()
	// No process started from a test artifact may outlive the tests.
	if left := processesUnder(dir); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "orphaned processes after the tests: %v\n", left)
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		code = 1
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func processesUnder(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.HasPrefix(exe, dir+string(filepath.Separator)) {
			out = append(out, pid)
		}
	}
	return out
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// cfg is one service's line-up in a test manifest: its deploy env and
// timeout.
type cfg struct {
	env     string // YAML flow mapping body, e.g. "MODE: crash"
	timeout string // deploy timeout (default 20s)
}

// manifest writes the test shop's flotilla.yaml: alpha ← bravo ← charlie,
// and delta on its own, all running testdata/shop/cmd/svc.
func manifest(over map[string]cfg) string {
	deps := map[string]string{"alpha-service": "", "bravo-service": "[alpha-service]", "charlie-service": "[bravo-service]", "delta-service": ""}
	var b strings.Builder
	b.WriteString("services:\n")
	for _, name := range []string{"alpha-service", "bravo-service", "charlie-service", "delta-service"} {
		c := over[name]
		if c.timeout == "" {
			c.timeout = "20s"
		}
		short := strings.TrimSuffix(name, "-service")
		fmt.Fprintf(&b, "  %s:\n    paths: [%s]\n    health: /ready\n", name, short)
		if deps[name] != "" {
			fmt.Fprintf(&b, "    depends_on: %s\n", deps[name])
		}
		fmt.Fprintf(&b, "    deploy: {package: ./cmd/svc, timeout: %s, env: {%s}}\n", c.timeout, c.env)
		b.WriteString("    smoke:\n      - {name: status, path: /smoke, json_field: status, json_value: ok}\n")
	}
	return b.String()
}

type fixture struct {
	t      *testing.T
	root   string
	target *local.Target
	mesh   *mesh.Mesh
	router *local.MeshRouter
	store  *sqlstore.Store
	orch   *deploy.Orchestrator
	events []deploy.Event
	evMu   sync.Mutex
	// recorded is what the orchestrator told its recorder.
	recorded []deploy.Record
	// wrap, when set, wraps the target the orchestrator deploys to.
	wrap func(deploy.Target) deploy.Target
}

// newFixture copies the test shop into a temp dir and runs a local target,
// the mesh and a SQLite history for it.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS("testdata/shop")); err != nil {
		t.Fatal(err)
	}
	// The copied tree is read-only like its source; make it writable.
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			_ = os.Chmod(p, map[bool]os.FileMode{true: 0o755, false: 0o644}[d.IsDir()])
		}
		return nil
	})
	f := &fixture{t: t, root: root}
	f.openTarget()
	m, err := mesh.New(mesh.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	f.mesh = m
	f.router = &local.MeshRouter{Mesh: m}
	f.store, err = sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "history.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		insts, _ := f.target.Status(ctx, "")
		_ = f.target.Shutdown(ctx)
		_ = f.mesh.Close(ctx)
		_ = f.store.Close()
		for _, in := range insts {
			if in.PID != 0 && syscall.Kill(in.PID, 0) == nil {
				t.Errorf("%s@%s pid %d still runs after Shutdown", in.Service, in.Version, in.PID)
			}
		}
	})
	return f
}

func (f *fixture) openTarget() {
	c := local.DefaultConfig(filepath.Join(f.root, ".flotilla"), f.root)
	c.ArtifactDir = artifacts
	c.StopTimeout = 5 * time.Second
	c.Backoff = 20 * time.Millisecond
	c.MaxRestarts = 2
	c.ProbeInterval = 20 * time.Millisecond
	c.Logger = quiet
	tg, err := local.Open(context.Background(), c)
	if err != nil {
		f.t.Fatal(err)
	}
	f.target = tg
}

// load writes the manifest and builds an orchestrator over it.
func (f *fixture) load(over map[string]cfg, gates ...deploy.Gate) *deploy.Orchestrator {
	f.t.Helper()
	file := filepath.Join(f.root, graph.FileName)
	if err := os.WriteFile(file, []byte(manifest(over)), 0o644); err != nil {
		f.t.Fatal(err)
	}
	m, _, err := graph.Load(file)
	if err != nil {
		f.t.Fatal(err)
	}
	var tg deploy.Target = f.target
	if f.wrap != nil {
		tg = f.wrap(tg)
	}
	o, err := deploy.New(deploy.Config{
		Graph: graph.New(m), Target: tg, Router: f.router, Store: f.store, Gates: gates,
		Recorders: []deploy.Recorder{deploy.RecorderFunc(func(ctx context.Context, r deploy.Record) error {
			f.evMu.Lock()
			defer f.evMu.Unlock()
			f.recorded = append(f.recorded, r)
			return errors.New("the broker is down") // visible, never fails the release
		})},
		Env: func(service string) map[string]string {
			return map[string]string{"DATABASE_URL": "test-" + service + ".db"}
		},
		Logger: quiet, DrainTimeout: 10 * time.Second,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	f.orch = o
	return o
}

func (f *fixture) record(e deploy.Event) {
	f.evMu.Lock()
	f.events = append(f.events, e)
	f.evMu.Unlock()
}

func (f *fixture) deploy(req deploy.Request) (*deploy.Report, error) {
	f.t.Helper()
	if req.Who == "" {
		req.Who = "tester"
	}
	return f.orch.Deploy(context.Background(), req, f.record)
}

// serving asks a service through its mesh address which version answers.
func (f *fixture) serving(service string) string {
	f.t.Helper()
	addr, err := f.mesh.Addr(service)
	if err != nil {
		f.t.Fatalf("mesh address of %s: %v", service, err)
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		f.t.Fatalf("GET %s: %v", service, err)
	}
	defer func() { _ = resp.Body.Close() }()
	var body map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
		f.t.Fatalf("GET %s = %d, %v", service, resp.StatusCode, err)
	}
	return body["version"]
}

func results(rep *deploy.Report) map[string]string {
	out := map[string]string{}
	for _, oc := range rep.Outcomes {
		out[oc.Service] = string(oc.Result)
	}
	return out
}

func outcome(rep *deploy.Report, service string) deploy.Outcome {
	for _, oc := range rep.Outcomes {
		if oc.Service == service {
			return oc
		}
	}
	return deploy.Outcome{}
}

func versions(rep *deploy.Report) map[string]string {
	out := map[string]string{}
	for _, w := range rep.Plan.Waves {
		for _, it := range w {
			out[it.Service] = it.Version
		}
	}
	return out
}

func pids(t *testing.T, tg *local.Target) map[string]int {
	t.Helper()
	insts, err := tg.Status(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, in := range insts {
		out[in.Service+"@"+in.Version] = in.PID
	}
	return out
}

// hammer calls a service through the mesh until stop is closed and counts
// the requests that did not get a 200.
func hammer(addr string, stop <-chan struct{}, failed, total *atomic.Int64) {
	client := &http.Client{Timeout: 5 * time.Second}
	for {
		select {
		case <-stop:
			return
		default:
		}
		resp, err := client.Get("http://" + addr + "/")
		total.Add(1)
		if err != nil {
			failed.Add(1)
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			failed.Add(1)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBadVersionsRollBackAutomatically(t *testing.T) {
	f := newFixture(t)
	f.load(nil)
	rep, err := f.deploy(deploy.Request{All: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"alpha-service": "succeeded", "bravo-service": "succeeded", "charlie-service": "succeeded", "delta-service": "succeeded"}
	if d := cmp.Diff(want, results(rep)); d != "" {
		t.Fatalf("first deploy (-want +got):\n%s", d)
	}
	var waves [][]string
	for _, w := range rep.Plan.Waves {
		var names []string
		for _, it := range w {
			names = append(names, it.Service)
		}
		waves = append(waves, names)
	}
	if d := cmp.Diff([][]string{{"alpha-service", "delta-service"}, {"bravo-service"}, {"charlie-service"}}, waves); d != "" {
		t.Errorf("waves (-want +got):\n%s", d)
	}
	v1 := versions(rep)
	for svc, v := range v1 {
		if got := f.serving(svc); got != v {
			t.Errorf("%s serves %s, want %s", svc, got, v)
		}
	}
	// bravo reaches alpha through the mesh.
	alphaAddr, _ := f.mesh.Addr("alpha-service")
	if spec, ok := f.target.Spec("bravo-service", v1["bravo-service"]); !ok || spec.Env["ALPHA_URL"] != "http://"+alphaAddr {
		t.Errorf("bravo's ALPHA_URL = %q, want the mesh address http://%s", spec.Env["ALPHA_URL"], alphaAddr)
	}

	tests := []struct {
		name string
		cfg  cfg
		want []string // in the error
	}{
		{"readiness never succeeds", cfg{env: "MODE: never-ready", timeout: "1s"}, []string{"not ready in time", "/ready", "503"}},
		{"crash loop", cfg{env: "MODE: crash"}, []string{"crash loop", "exit status 3", "cannot open the database"}},
		{"smoke test fails", cfg{env: "MODE: smoke-fail"}, []string{`smoke "status"`, "answered 500, want 200", "broken"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := pids(t, f.target)
			// bravo gets the bad version; charlie, which depends on it,
			// changes too and must be skipped; alpha and delta are
			// unchanged.
			f.load(map[string]cfg{"bravo-service": tt.cfg, "charlie-service": {env: "REV: '2'"}})
			bravoAddr, _ := f.mesh.Addr("bravo-service")
			stop := make(chan struct{})
			var failed, total atomic.Int64
			done := make(chan struct{})
			go func() { hammer(bravoAddr, stop, &failed, &total); close(done) }()
			rep, err := f.deploy(deploy.Request{All: true})
			close(stop)
			<-done
			if !errors.Is(err, deploy.ErrReleaseFailed) {
				t.Fatalf("Deploy = %v, want ErrReleaseFailed", err)
			}
			for _, w := range append([]string{"bravo-service@"}, tt.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			want := map[string]string{"alpha-service": "unchanged", "bravo-service": "failed", "charlie-service": "skipped", "delta-service": "unchanged"}
			if d := cmp.Diff(want, results(rep)); d != "" {
				t.Errorf("outcomes (-want +got):\n%s", d)
			}
			if oc := outcome(rep, "charlie-service"); oc.Reason != "its dependency bravo-service failed" {
				t.Errorf("charlie's outcome = %+v, want skipped because bravo failed", oc)
			}
			// The old versions kept serving, untouched.
			for svc, v := range v1 {
				if got := f.serving(svc); got != v {
					t.Errorf("%s serves %s after the failed deploy, want the old %s", svc, got, v)
				}
			}
			if d := cmp.Diff(before, pids(t, f.target)); d != "" {
				t.Errorf("processes changed (-before +after):\n%s", d)
			}
			if failed.Load() > 0 {
				t.Errorf("%d of %d requests to bravo failed during the deploy", failed.Load(), total.Load())
			}
			if w, _ := f.router.Weights(context.Background(), "bravo-service"); !cmp.Equal(w, map[string]int{v1["bravo-service"]: 100}) {
				t.Errorf("bravo's weights = %v, want only the old version", w)
			}
			hist, err := f.store.List(context.Background(), "bravo-service", 1)
			if err != nil || len(hist) != 1 || hist[0].Result != deploy.Failed || !strings.Contains(hist[0].Reason, tt.want[0]) || hist[0].Who != "tester" {
				t.Errorf("history of bravo = %+v, %v; want the failure with its reason", hist, err)
			}
		})
	}
}

func TestPlansDeployOnlyWhatIsAsked(t *testing.T) {
	f := newFixture(t)
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.email=t@example.com", "-c", "user.name=t"}, args...)...)
		cmd.Dir = f.root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	o := f.load(nil)
	git("init", "-q", "-b", "main")
	git("add", ".")
	git("commit", "-q", "-m", "shop")
	ctx := context.Background()

	// A dependent's dependency that is not deployed is refused.
	rep, err := f.deploy(deploy.Request{Services: []string{"bravo-service"}})
	if !errors.Is(err, deploy.ErrReleaseFailed) || !strings.Contains(err.Error(), "its dependency alpha-service is not deployed; deploy it first") {
		t.Errorf("deploying bravo alone = %v, want its missing dependency named", err)
	}
	if rep == nil || results(rep)["bravo-service"] != "failed" {
		t.Errorf("report = %+v", rep)
	}

	if _, err := f.deploy(deploy.Request{All: true}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.root, "charlie", "README"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.root, "alpha", "main_extra.go.txt"), []byte("new file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  deploy.Request
		want [][]string
	}{
		{"changed since HEAD", deploy.Request{Changed: true, Base: "HEAD"}, [][]string{{"alpha-service"}, {"charlie-service"}}},
		{"named, in any order", deploy.Request{Services: []string{"charlie-service", "alpha-service"}}, [][]string{{"alpha-service"}, {"charlie-service"}}},
		{"a dependent waits for its dependency's wave", deploy.Request{Services: []string{"charlie-service", "bravo-service", "delta-service"}}, [][]string{{"bravo-service", "delta-service"}, {"charlie-service"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := o.Plan(ctx, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			var got [][]string
			for _, w := range plan.Waves {
				var names []string
				for _, it := range w {
					names = append(names, it.Service)
				}
				got = append(got, names)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("plan (-want +got):\n%s", d)
			}
		})
	}

	f.events = nil
	before := pids(t, f.target)
	rep, err = f.deploy(deploy.Request{Changed: true, Base: "HEAD"})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]string{"alpha-service": "succeeded", "charlie-service": "succeeded"}, results(rep)); d != "" {
		t.Errorf("changed deploy (-want +got):\n%s", d)
	}
	after := pids(t, f.target)
	for _, svc := range []string{"bravo-service", "delta-service"} {
		for k, pid := range before {
			if strings.HasPrefix(k, svc+"@") && after[k] != pid {
				t.Errorf("%s was disturbed: %s pid %d → %d", svc, k, pid, after[k])
			}
		}
	}
	// charlie starts only after alpha is done.
	alphaDone, charlieStart := -1, -1
	for i, e := range f.events {
		if e.Service == "alpha-service" && e.Step == deploy.StepDone {
			alphaDone = i
		}
		if e.Service == "charlie-service" && e.Step == deploy.StepStart {
			charlieStart = i
		}
	}
	if alphaDone < 0 || charlieStart < alphaDone {
		t.Errorf("events: alpha done at %d, charlie started at %d; want charlie after alpha", alphaDone, charlieStart)
	}
	// Nothing changed since the working tree: no release at all.
	if err := exec.Command("git", "-C", f.root, "add", ".").Run(); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("git", "-C", f.root, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "changes").Run(); err != nil {
		t.Fatal(err)
	}
	rep, err = f.deploy(deploy.Request{Changed: true, Base: "HEAD"})
	if err != nil || rep.Release != 0 || len(rep.Outcomes) != 0 || rep.Plan.Why != "changed since HEAD: nothing" {
		t.Errorf("deploying an unchanged tree = %+v, %v; want an empty report and no release", rep, err)
	}
	// Deploying again changes nothing: nothing is rebuilt or restarted.
	rep, err = f.deploy(deploy.Request{All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, oc := range rep.Outcomes {
		if oc.Result != deploy.Unchanged {
			t.Errorf("redeploying the same tree: %s %s, want unchanged", oc.Service, oc.Result)
		}
	}
	if d := cmp.Diff(after, pids(t, f.target)); d != "" {
		t.Errorf("an unchanged deploy touched processes (-before +after):\n%s", d)
	}
	hist, err := f.orch.History(ctx, "alpha-service", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].Version != versions(rep)["alpha-service"] || hist[0].Previous != hist[1].Version || hist[0].Result != deploy.Succeeded {
		t.Errorf("alpha's history = %+v, want two successes, the newest replacing the first", hist)
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t)
	o := f.load(nil)
	ctx := context.Background()
	tests := []struct {
		name string
		req  deploy.Request
		want string
	}{
		{"unknown service", deploy.Request{Services: []string{"alpah-service"}}, `unknown service "alpah-service" (did you mean alpha-service?)`},
		{"nothing named", deploy.Request{}, "nothing to deploy"},
		{"two ways", deploy.Request{All: true, Services: []string{"alpha-service"}}, "not more than one"},
		{"changed without base", deploy.Request{Changed: true}, "--changed needs --base"},
		{"bad on-failure", deploy.Request{All: true, OnFailure: "pray"}, `on-failure "pray"`},
		{"another environment", deploy.Request{All: true, Environment: "production"}, "environment production: this control plane deploys to local"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := o.Deploy(ctx, tt.req, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Deploy = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	t.Run("a service that does not build", func(t *testing.T) {
		file := filepath.Join(f.root, graph.FileName)
		body := strings.Replace(manifest(nil), "package: ./cmd/svc, timeout: 20s, env: {}}\n    smoke:\n      - {name: status, path: /smoke, json_field: status, json_value: ok}\n  bravo", "package: ./cmd/broken, timeout: 20s, env: {}}\n  bravo", 1)
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		m, _, err := graph.Load(file)
		if err != nil {
			t.Fatal(err)
		}
		o, err := deploy.New(deploy.Config{Graph: graph.New(m), Target: f.target, Router: f.router, Store: f.store, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := o.Deploy(ctx, deploy.Request{Services: []string{"alpha-service"}}, nil)
		if !errors.Is(err, deploy.ErrReleaseFailed) || !strings.Contains(err.Error(), "undefined: undefinedFunction") {
			t.Errorf("Deploy = %v, want the compiler's error", err)
		}
		if rep == nil || results(rep)["alpha-service"] != "failed" {
			t.Errorf("report = %+v", rep)
		}
	})
}

func TestGatesAndBusy(t *testing.T) {
	f := newFixture(t)
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	hold := deploy.GateFunc{GateName: "hold", Fn: func(ctx context.Context, req deploy.GateRequest) (deploy.GateResult, error) {
		if req.Service == "delta-service" {
			once.Do(func() { close(entered) })
			<-release
		}
		return deploy.GateResult{Pass: true}, nil
	}}
	closed := deploy.GateFunc{GateName: "can-i-deploy", Fn: func(ctx context.Context, req deploy.GateRequest) (deploy.GateResult, error) {
		if req.Service == "alpha-service" {
			return deploy.GateResult{Pass: false, Reason: "no verified pact between bravo-service and alpha-service " + req.Version + " in " + req.Environment}, nil
		}
		return deploy.GateResult{Pass: true}, nil
	}}
	o := f.load(nil, hold, closed)
	ctx := context.Background()
	type res struct {
		rep *deploy.Report
		err error
	}
	first := make(chan res, 1)
	go func() {
		rep, err := o.Deploy(ctx, deploy.Request{Services: []string{"alpha-service", "delta-service"}, Environment: "local", Who: "alice"}, nil)
		first <- res{rep, err}
	}()
	<-entered
	_, err := o.Deploy(ctx, deploy.Request{All: true, Who: "bob"}, nil)
	var busy *deploy.BusyError
	if !errors.As(err, &busy) || !errors.Is(err, deploy.ErrBusy) || !strings.Contains(err.Error(), "(alpha-service, delta-service), started by alice") {
		t.Errorf("a second deploy = %v, want a BusyError naming the running release", err)
	}
	if run := o.Running(); run == nil || run.Who != "alice" {
		t.Errorf("Running = %+v, want alice's release", run)
	}
	close(release)
	r := <-first
	if !errors.Is(r.err, deploy.ErrReleaseFailed) || !strings.Contains(r.err.Error(), "gate can-i-deploy is closed: no verified pact between bravo-service and alpha-service") || !strings.Contains(r.err.Error(), " in local") {
		t.Errorf("first deploy = %v, want the closed gate's reason", r.err)
	}
	if d := cmp.Diff(map[string]string{"alpha-service": "failed", "delta-service": "succeeded"}, results(r.rep)); d != "" {
		t.Errorf("outcomes (-want +got):\n%s", d)
	}
	if o.Running() != nil {
		t.Error("Running after the release ended, want nil")
	}
	var recs []string
	for _, r := range f.recorded {
		recs = append(recs, r.Service+" "+string(r.Result)+" "+r.Who)
		if r.Version == "" {
			t.Errorf("recorded %+v: want its version", r)
		}
	}
	sort.Strings(recs)
	if d := cmp.Diff([]string{"alpha-service failed alice", "delta-service succeeded alice"}, recs); d != "" {
		t.Errorf("recorder saw (-want +got):\n%s", d)
	}
	// The recorder failed (the broker is down): delta is deployed, and
	// its outcome, the history and the report say what was not recorded.
	const warn = "recording it failed: the broker is down"
	if oc := outcome(r.rep, "delta-service"); len(oc.Warnings) != 1 || oc.Warnings[0] != warn {
		t.Errorf("delta's outcome %+v, want the warning %q", oc, warn)
	}
	cur, err := f.store.Current(ctx, "delta-service")
	if err != nil || !strings.Contains(cur.Reason, warn) {
		t.Errorf("delta's history record %+v, %v; want its reason to say %q", cur, err, warn)
	}
}

// A gate that cannot answer (a broker that is down) is closed: the
// service is not deployed and the reason says why.
func TestGateErrorFailsClosed(t *testing.T) {
	f := newFixture(t)
	broken := deploy.GateFunc{GateName: "can-i-deploy", Fn: func(ctx context.Context, req deploy.GateRequest) (deploy.GateResult, error) {
		return deploy.GateResult{Pass: true, Reason: "ignored with an error"}, errors.New("dial tcp 127.0.0.1:9: connection refused")
	}}
	f.load(nil, broken)
	var events []deploy.Event
	rep, err := f.orch.Deploy(context.Background(), deploy.Request{Services: []string{"delta-service"}, Who: "tester"}, func(e deploy.Event) { events = append(events, e) })
	if !errors.Is(err, deploy.ErrReleaseFailed) || !strings.Contains(err.Error(), "gate can-i-deploy could not answer: dial tcp 127.0.0.1:9: connection refused") {
		t.Fatalf("Deploy = %v, want the release failed with the gate's error", err)
	}
	if oc := outcome(rep, "delta-service"); oc.Result != deploy.Failed {
		t.Errorf("delta's outcome %+v, want failed", oc)
	}
	for _, e := range events {
		if e.Service != "" && (e.Step == deploy.StepStart || e.Step == deploy.StepBuild || e.Step == deploy.StepDone) {
			t.Errorf("event %+v after a gate that could not answer; want nothing started", e)
		}
	}
	if st, _ := f.target.Status(context.Background(), "delta-service"); len(st) != 0 {
		t.Errorf("delta runs %+v behind a gate that could not answer", st)
	}
}

// failStart fails to start one version of one service (its artifact
// gone), and starts every other.
type failStart struct {
	deploy.Target
	service, version string
}

func (f failStart) Apply(ctx context.Context, spec deploy.Spec) ([]deploy.Instance, error) {
	if spec.Service == f.service && spec.Version == f.version {
		return nil, fmt.Errorf("start %s@%s: %w", spec.Service, spec.Version, deploy.ErrNoArtifact)
	}
	return f.Target.Apply(ctx, spec)
}

// A release rollback that itself fails says so: the service it could not
// put back is failed (not rolled back) in the report, the progress and
// the history, and the release's error names it.
func TestRollbackReleaseThatFails(t *testing.T) {
	f := newFixture(t)
	f.load(nil)
	ctx := context.Background()
	rep, err := f.deploy(deploy.Request{All: true})
	if err != nil {
		t.Fatal(err)
	}
	v1 := versions(rep)
	f.wrap = func(tg deploy.Target) deploy.Target {
		return failStart{Target: tg, service: "alpha-service", version: v1["alpha-service"]}
	}
	f.load(map[string]cfg{"alpha-service": {env: "REV: '2'"}, "bravo-service": {env: "MODE: smoke-fail"}})
	f.evMu.Lock()
	f.events = nil
	f.evMu.Unlock()
	rep, err = f.deploy(deploy.Request{All: true, OnFailure: deploy.RollbackRelease})
	if !errors.Is(err, deploy.ErrReleaseFailed) || !strings.Contains(err.Error(), "alpha-service@") || !strings.Contains(err.Error(), "putting "+v1["alpha-service"]+" back failed") {
		t.Fatalf("Deploy = %v, want the release failed naming alpha's failed rollback", err)
	}
	v2 := outcome(rep, "alpha-service").Version
	want := map[string]string{"alpha-service": "failed", "bravo-service": "failed", "charlie-service": "skipped", "delta-service": "unchanged"}
	if d := cmp.Diff(want, results(rep)); d != "" {
		t.Errorf("outcomes (-want +got):\n%s", d)
	}
	if got := f.serving("alpha-service"); got != v2 {
		t.Errorf("alpha serves %s, want %s (putting %s back failed)", got, v2, v1["alpha-service"])
	}
	f.evMu.Lock()
	for _, e := range f.events {
		if e.Service == "alpha-service" && e.Step == deploy.StepRolledBack {
			t.Errorf("event %+v claims alpha was rolled back", e)
		}
	}
	f.evMu.Unlock()
	recs, err := f.store.List(ctx, "alpha-service", 10)
	if err != nil {
		t.Fatal(err)
	}
	if r := recs[0]; r.Action != deploy.RecordRollback || r.Result != deploy.Failed || !strings.Contains(r.Reason, "putting "+v1["alpha-service"]+" back failed") {
		t.Errorf("alpha's last history record %+v, want a failed rollback saying why", r)
	}
	if cur, err := f.store.Current(ctx, "alpha-service"); err != nil || cur.Version != v2 {
		t.Errorf("alpha's current record %+v, %v; want %s, which still serves", cur, err, v2)
	}
}

func TestRollbackReleaseAndRollback(t *testing.T) {
	f := newFixture(t)
	f.load(nil)
	ctx := context.Background()
	rep, err := f.deploy(deploy.Request{All: true})
	if err != nil {
		t.Fatal(err)
	}
	v1 := versions(rep)
	// alpha gets a good new version (wave 1), bravo a bad one (wave 2),
	// charlie a good one (wave 3): the whole release goes back.
	f.load(map[string]cfg{"alpha-service": {env: "REV: '2'"}, "bravo-service": {env: "MODE: smoke-fail"}, "charlie-service": {env: "REV: '2'"}})
	rep, err = f.deploy(deploy.Request{All: true, OnFailure: deploy.RollbackRelease})
	if !errors.Is(err, deploy.ErrReleaseFailed) {
		t.Fatalf("Deploy = %v, want ErrReleaseFailed", err)
	}
	want := map[string]string{"alpha-service": "rolled-back", "bravo-service": "failed", "charlie-service": "skipped", "delta-service": "unchanged"}
	if d := cmp.Diff(want, results(rep)); d != "" {
		t.Errorf("outcomes (-want +got):\n%s", d)
	}
	for svc, v := range v1 {
		if got := f.serving(svc); got != v {
			t.Errorf("%s serves %s after the release rollback, want %s", svc, got, v)
		}
	}
	if st, _ := f.target.Status(ctx, "alpha-service"); len(st) != 1 || st[0].Version != v1["alpha-service"] {
		t.Errorf("alpha's instances = %+v, want only %s", st, v1["alpha-service"])
	}

	// A good alpha, then `flotilla rollback alpha-service`.
	f.load(map[string]cfg{"alpha-service": {env: "REV: '2'"}})
	rep, err = f.deploy(deploy.Request{Services: []string{"alpha-service"}})
	if err != nil {
		t.Fatal(err)
	}
	v2 := versions(rep)["alpha-service"]
	if got := f.serving("alpha-service"); got != v2 {
		t.Fatalf("alpha serves %s, want %s", got, v2)
	}
	rb, err := f.orch.Rollback(ctx, deploy.RollbackRequest{Service: "alpha-service", Who: "carol"}, f.record)
	if err != nil {
		t.Fatal(err)
	}
	if rb.Outcomes[0].Version != v1["alpha-service"] || rb.Outcomes[0].Previous != v2 {
		t.Errorf("rollback outcome = %+v, want %s replacing %s", rb.Outcomes[0], v1["alpha-service"], v2)
	}
	if got := f.serving("alpha-service"); got != v1["alpha-service"] {
		t.Errorf("alpha serves %s after rollback, want %s", got, v1["alpha-service"])
	}
	f.evMu.Lock()
	last := f.events[len(f.events)-1]
	f.evMu.Unlock()
	if want := "serving " + v1["alpha-service"] + " again (rolled back from " + v2 + ") in "; last.Step != deploy.StepDone || !strings.HasPrefix(last.Msg, want) {
		t.Errorf("the rollback's last event %+v, want done with %q", last, want)
	}
	cur, err := f.store.Current(ctx, "alpha-service")
	if err != nil || cur.Version != v1["alpha-service"] || cur.Action != deploy.RecordRollback || cur.Who != "carol" {
		t.Errorf("current record = %+v, %v; want carol's rollback to %s", cur, err, v1["alpha-service"])
	}
	// Rolling forward again by version.
	if _, err := f.orch.Rollback(ctx, deploy.RollbackRequest{Service: "alpha-service", To: v2}, nil); err != nil {
		t.Fatal(err)
	}
	if got := f.serving("alpha-service"); got != v2 {
		t.Errorf("alpha serves %s after --to %s", got, v2)
	}
	for _, tt := range []struct {
		name string
		req  deploy.RollbackRequest
		want string
	}{
		{"unknown service", deploy.RollbackRequest{Service: "zulu-service"}, `unknown service "zulu-service"`},
		{"unknown version", deploy.RollbackRequest{Service: "alpha-service", To: "feedfacecafe"}, "no successful deployment of it"},
		{"current version", deploy.RollbackRequest{Service: "alpha-service", To: v2}, "already serves"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := f.orch.Rollback(ctx, tt.req, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Rollback = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestRestoreAfterControlPlaneRestart(t *testing.T) {
	f := newFixture(t)
	f.load(nil)
	ctx := context.Background()
	rep, err := f.deploy(deploy.Request{All: true})
	if err != nil {
		t.Fatal(err)
	}
	before := pids(t, f.target)
	// The control plane goes away: the target detaches, the mesh closes.
	if err := f.target.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.mesh.Close(ctx); err != nil {
		t.Fatal(err)
	}
	f.openTarget()
	m, err := mesh.New(mesh.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	f.mesh, f.router = m, &local.MeshRouter{Mesh: m}
	o := f.load(nil)
	if err := o.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(before, pids(t, f.target)); d != "" {
		t.Errorf("the instances were not adopted as they ran (-before +after):\n%s", d)
	}
	for svc, v := range versions(rep) {
		if got := f.serving(svc); got != v {
			t.Errorf("%s serves %s after the restart, want %s", svc, got, v)
		}
	}
	st, err := o.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Health != "ready" || s.Stable != versions(rep)[s.Service] || s.Since.IsZero() {
			t.Errorf("status of %s = %+v, want ready on %s with a since", s.Service, s, versions(rep)[s.Service])
		}
	}
	// And the next deploy finds everything unchanged.
	rep, err = f.deploy(deploy.Request{All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, oc := range rep.Outcomes {
		if oc.Result != deploy.Unchanged {
			t.Errorf("after restart: %s %s, want unchanged", oc.Service, oc.Result)
		}
	}
}

func TestRedeployUnderLoadLosesNoRequest(t *testing.T) {
	f := newFixture(t)
	f.load(nil)
	if _, err := f.deploy(deploy.Request{All: true}); err != nil {
		t.Fatal(err)
	}
	// Every service gets a new version, under constant load through the
	// mesh on all four.
	f.load(map[string]cfg{"alpha-service": {env: "REV: '2'"}, "bravo-service": {env: "REV: '2'"}, "charlie-service": {env: "REV: '2'"}, "delta-service": {env: "REV: '2'"}})
	stop := make(chan struct{})
	var failed, total atomic.Int64
	var wg sync.WaitGroup
	for _, svc := range []string{"alpha-service", "bravo-service", "charlie-service", "delta-service"} {
		addr, err := f.mesh.Addr(svc)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			wg.Add(1)
			go func() { defer wg.Done(); hammer(addr, stop, &failed, &total) }()
		}
	}
	rep, err := f.deploy(deploy.Request{All: true})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, oc := range rep.Outcomes {
		if oc.Result != deploy.Succeeded {
			t.Errorf("%s: %s %s", oc.Service, oc.Result, oc.Reason)
		}
		if got := f.serving(oc.Service); got != oc.Version {
			t.Errorf("%s serves %s, want the new %s", oc.Service, got, oc.Version)
		}
	}
	if failed.Load() > 0 || total.Load() == 0 {
		t.Errorf("%d of %d requests failed during the redeploy, want none", failed.Load(), total.Load())
	}
	// Only the new versions run.
	insts, _ := f.target.Status(context.Background(), "")
	if len(insts) != 4 {
		t.Errorf("%d instances run after the redeploy, want 4: %+v", len(insts), insts)
	}
}

// stepShifter moves traffic in steps and fails at failAt (0: never), as
// the canary analysis will.
type stepShifter struct {
	steps  []int
	failAt int
	seen   [][]string // the old versions of each shift
}

func (s *stepShifter) Describe(_, version string) string {
	return fmt.Sprintf("steps %v to %s", s.steps, version)
}

func (s *stepShifter) Shift(ctx context.Context, req deploy.ShiftRequest) error {
	s.seen = append(s.seen, req.Old)
	for _, w := range s.steps {
		weights := map[string]int{req.Version: w}
		for _, o := range req.Old {
			weights[o] = 100 - w
		}
		if err := req.Router.SetWeights(ctx, req.Service, weights); err != nil {
			return err
		}
		if w == s.failAt {
			return fmt.Errorf("analysis at %d%%: error rate 12%% above 1%%", w)
		}
	}
	return nil
}

func TestShifterStepsAndRollsBack(t *testing.T) {
	f := newFixture(t)
	f.load(nil)
	ctx := context.Background()
	if _, err := f.deploy(deploy.Request{Services: []string{"delta-service"}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		shifter *stepShifter
		rev     string
		wantErr string
	}{
		{"fails half way", &stepShifter{steps: []int{10, 50, 100}, failAt: 50}, "2", "shift delta-service to"},
		{"steps to the end", &stepShifter{steps: []int{10, 50, 100}}, "3", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.serving("delta-service")
			m := filepath.Join(f.root, graph.FileName)
			f.load(map[string]cfg{"delta-service": {env: "REV: '" + tt.rev + "'"}})
			mf, _, err := graph.Load(m)
			if err != nil {
				t.Fatal(err)
			}
			o, err := deploy.New(deploy.Config{Graph: graph.New(mf), Target: f.target, Router: f.router, Store: f.store, Shifter: tt.shifter, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			addr, _ := f.mesh.Addr("delta-service")
			stop := make(chan struct{})
			var failed, total atomic.Int64
			done := make(chan struct{})
			go func() { hammer(addr, stop, &failed, &total); close(done) }()
			var steps []string
			rep, err := o.Deploy(ctx, deploy.Request{Services: []string{"delta-service"}}, func(e deploy.Event) {
				if e.Step == deploy.StepShift {
					steps = append(steps, e.Msg)
				}
			})
			close(stop)
			<-done
			v := versions(rep)["delta-service"]
			if len(steps) != 1 || steps[0] != "steps [10 50 100] to "+v {
				t.Errorf("shift events %q", steps)
			}
			if d := cmp.Diff([][]string{{before}}, tt.shifter.seen); d != "" {
				t.Errorf("the shifter was told the old versions (-want +got):\n%s", d)
			}
			w, _ := f.router.Weights(ctx, "delta-service")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "error rate 12% above 1%") {
					t.Errorf("Deploy = %v, want the shift's failure", err)
				}
				if got := f.serving("delta-service"); got != before {
					t.Errorf("delta serves %s after a failed shift, want %s", got, before)
				}
				if !cmp.Equal(w, map[string]int{before: 100}) {
					t.Errorf("weights after a failed shift = %v, want the old version's back", w)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if got := f.serving("delta-service"); got != v {
					t.Errorf("delta serves %s, want %s", got, v)
				}
				if !cmp.Equal(w, map[string]int{v: 100}) {
					t.Errorf("weights after the shift = %v, want only %s", w, v)
				}
			}
			if failed.Load() > 0 {
				t.Errorf("%d of %d requests failed", failed.Load(), total.Load())
			}
		})
	}
}

func TestMaxParallel(t *testing.T) {
	f := newFixture(t)
	var inflight, most atomic.Int64
	arrived := map[string]chan struct{}{"alpha-service": make(chan struct{}), "delta-service": make(chan struct{})}
	rendezvous := atomic.Bool{}
	gate := deploy.GateFunc{GateName: "count", Fn: func(ctx context.Context, req deploy.GateRequest) (deploy.GateResult, error) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		if rendezvous.Load() {
			// Both services of wave 1 must be in their gates at once.
			close(arrived[req.Service])
			for name, ch := range arrived {
				if name != req.Service {
					<-ch
				}
			}
		} else {
			for range 100 {
				runtime.Gosched()
			}
		}
		return deploy.GateResult{Pass: true}, nil
	}}
	f.load(nil, gate)
	if _, err := f.deploy(deploy.Request{All: true, MaxParallel: 1}); err != nil {
		t.Fatal(err)
	}
	if most.Load() != 1 {
		t.Errorf("with --max-parallel 1, %d services were in their gates at once", most.Load())
	}
	rendezvous.Store(true)
	f.load(map[string]cfg{"alpha-service": {env: "REV: '2'"}, "delta-service": {env: "REV: '2'"}}, gate)
	if _, err := f.deploy(deploy.Request{Services: []string{"alpha-service", "delta-service"}, MaxParallel: 2}); err != nil {
		t.Fatal(err)
	}
	if most.Load() != 2 {
		t.Errorf("with --max-parallel 2, at most %d services were in their gates at once, want 2", most.Load())
	}
}

func TestManifestReloadedForEveryPlan(t *testing.T) {
	f := newFixture(t)
	f.load(nil)
	file := filepath.Join(f.root, graph.FileName)
	m, _, err := graph.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	o, err := deploy.New(deploy.Config{Graph: graph.New(m), Target: f.target, Router: f.router, Store: f.store, Logger: quiet,
		Load: func() (*graph.Graph, error) {
			m, _, err := graph.Load(file)
			if err != nil {
				return nil, err
			}
			return graph.New(m), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := o.Deploy(ctx, deploy.Request{All: true}, nil); err != nil {
		t.Fatal(err)
	}
	// An edit to the manifest is seen by the same orchestrator.
	if err := os.WriteFile(file, []byte(manifest(map[string]cfg{"alpha-service": {env: "REV: '2'"}})), 0o644); err != nil {
		t.Fatal(err)
	}
	plan, err := o.Plan(ctx, deploy.Request{All: true})
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]deploy.Action{}
	for _, w := range plan.Waves {
		for _, it := range w {
			actions[it.Service] = it.Action
		}
	}
	want := map[string]deploy.Action{"alpha-service": "deploy", "bravo-service": "unchanged", "charlie-service": "unchanged", "delta-service": "unchanged"}
	if d := cmp.Diff(want, actions); d != "" {
		t.Errorf("plan after the edit (-want +got):\n%s", d)
	}
	// A manifest that no longer loads is reported, naming the line.
	if err := os.WriteFile(file, []byte("services:\n  alpha-service:\n    pathz: [alpha]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Plan(ctx, deploy.Request{All: true}); err == nil || !strings.Contains(err.Error(), "flotilla.yaml:3") {
		t.Errorf("Plan with a broken manifest = %v, want the file and line", err)
	}
	if st, err := o.Status(ctx); err != nil || len(st) != 4 {
		t.Errorf("Status with a broken manifest = %d services, %v; want the last good manifest's 4", len(st), err)
	}
}

// observedBuilds is the local target with its builds watched: the first
// wave's Apply waits until the last wave's build has returned, which
// happens only when a release builds its artifacts up front, and one
// service's build can be made to fail with a compiler's output.
// targetBuilder is a Target that builds one artifact at a time (no
// BuildMany), so the release's own build queue is what is tested.
type targetBuilder interface {
	deploy.Target
	deploy.Builder
}

type observedBuilds struct {
	targetBuilder
	waitFor string        // the service whose build Apply waits for
	built   chan struct{} // closed when waitFor's build returned
	fail    string        // the service whose build fails
}

func (o *observedBuilds) Build(ctx context.Context, spec deploy.Spec) error {
	if spec.Service == o.waitFor {
		defer close(o.built)
	}
	if spec.Service == o.fail {
		return &deploy.BuildError{Service: spec.Service, Version: spec.Version, Package: spec.Build.Package,
			Output: "cmd/svc/main.go:3:1: syntax error: non-declaration statement outside function body", Err: errors.New("exit status 1")}
	}
	return o.targetBuilder.Build(ctx, spec)
}

func (o *observedBuilds) Apply(ctx context.Context, spec deploy.Spec) ([]deploy.Instance, error) {
	select {
	case <-o.built:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Minute): // a safety net, not a timing
		return nil, fmt.Errorf("%s's build did not run while %s deployed", o.waitFor, spec.Service)
	}
	return o.targetBuilder.Apply(ctx, spec)
}

func TestReleaseBuildsEveryArtifactUpFront(t *testing.T) {
	f := newFixture(t)
	f.load(nil)
	m, _, err := graph.Load(filepath.Join(f.root, graph.FileName))
	if err != nil {
		t.Fatal(err)
	}
	tg := &observedBuilds{targetBuilder: f.target, waitFor: "charlie-service", built: make(chan struct{}), fail: "charlie-service"}
	o, err := deploy.New(deploy.Config{Graph: graph.New(m), Target: tg, Router: f.router, Store: f.store,
		Env: func(service string) map[string]string {
			return map[string]string{"DATABASE_URL": "test-" + service + ".db"}
		},
		Logger: quiet, DrainTimeout: 10 * time.Second, BuildParallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := o.Deploy(context.Background(), deploy.Request{All: true, Who: "tester"}, f.record)
	if !errors.Is(err, deploy.ErrReleaseFailed) || !strings.Contains(err.Error(), "syntax error") {
		t.Fatalf("Deploy = %v, want a failed release naming charlie's compile error", err)
	}
	// Every Apply waited for charlie's build (wave 3), one build at a
	// time: the first wave could deploy only because the release built
	// ahead of its waves.
	want := map[string]string{"alpha-service": "succeeded", "bravo-service": "succeeded", "charlie-service": "failed", "delta-service": "succeeded"}
	if got := results(rep); !maps.Equal(got, want) {
		t.Errorf("results = %v, want %v", got, want)
	}
	oc := outcome(rep, "charlie-service")
	if oc.Wave != 3 || !strings.Contains(oc.Reason, "cmd/svc/main.go:3:1: syntax error") {
		t.Errorf("charlie = wave %d, %q; want wave 3 with the compiler's output", oc.Wave, oc.Reason)
	}
	vs := versions(rep)
	for _, s := range []string{"alpha-service", "bravo-service", "delta-service"} {
		if got := f.serving(s); got != vs[s] {
			t.Errorf("%s serves %q, want %q", s, got, vs[s])
		}
	}
	f.evMu.Lock()
	defer f.evMu.Unlock()
	for _, e := range f.events {
		if e.Step == deploy.StepRolledBack || (e.Step == deploy.StepFailed && e.Service != "charlie-service") {
			t.Errorf("event %+v: nothing but charlie may fail or roll back", e)
		}
	}
}
