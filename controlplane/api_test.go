package controlplane_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// setup runs the deploy tests' shop on a local target behind the mesh,
// with the API in front, and a gate the test can hold bravo-service in.
func setup(t *testing.T, manifest string) (*controlplane.Client, *mesh.Mesh, chan struct{}, chan struct{}) {
	t.Helper()
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS("../deploy/testdata/shop")); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(filepath.Join(root, graph.FileName), 0o644)
	if manifest != "" {
		if err := os.WriteFile(filepath.Join(root, graph.FileName), []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, _, err := graph.Load(filepath.Join(root, graph.FileName))
	if err != nil {
		t.Fatal(err)
	}
	c := local.DefaultConfig(filepath.Join(root, ".flotilla"), root)
	c.Logger, c.ProbeInterval, c.StopTimeout = quiet, 20*time.Millisecond, 5*time.Second
	tg, err := local.Open(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := mesh.New(mesh.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	store, err := sqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}, 10), make(chan struct{})
	var once sync.Once
	hold := deploy.GateFunc{GateName: "hold", Fn: func(ctx context.Context, req deploy.GateRequest) (deploy.GateResult, error) {
		if req.Service == "bravo-service" && req.Environment == "local" {
			entered <- struct{}{}
			<-release
		}
		return deploy.GateResult{Pass: true}, nil
	}}
	orch, err := deploy.New(deploy.Config{Graph: graph.New(m), Target: tg, Router: &local.MeshRouter{Mesh: ms}, Store: store, Gates: []deploy.Gate{hold}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	api := controlplane.NewAPI(orch, quiet)
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(func() {
		once.Do(func() {
			select {
			case <-release:
			default:
				close(release)
			}
		})
		srv.Close()
		api.Wait()
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
	return controlplane.NewClient(srv.URL), ms, entered, release
}

func TestDeployStatusHistoryRollbackOverHTTP(t *testing.T) {
	cl, _, entered, release := setup(t, "")
	ctx := context.Background()

	plan, err := cl.Plan(ctx, deploy.Request{Services: []string{"charlie-service", "delta-service"}})
	if err != nil {
		t.Fatal(err)
	}
	var got [][]string
	for _, w := range plan.Waves {
		var names []string
		for _, it := range w {
			names = append(names, it.Service+" "+string(it.Action))
		}
		got = append(got, names)
	}
	if d := cmp.Diff([][]string{{"charlie-service deploy", "delta-service deploy"}}, got); d != "" {
		t.Errorf("plan (-want +got):\n%s", d)
	}

	var steps []string
	rep, err := cl.Deploy(ctx, deploy.Request{Services: []string{"alpha-service", "delta-service"}, Who: "alice"}, func(e deploy.Event) {
		if e.Service == "delta-service" {
			steps = append(steps, string(e.Step))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"gate", "build", "start", "ready", "shift", "done"}, steps); d != "" {
		t.Errorf("delta's events (-want +got):\n%s", d)
	}
	if len(rep.Outcomes) != 2 || rep.Outcomes[0].Result != deploy.Succeeded || rep.Outcomes[1].Result != deploy.Succeeded {
		t.Errorf("report = %+v", rep.Outcomes)
	}

	st, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	health := map[string]string{}
	for _, s := range st.Services {
		health[s.Service] = s.Health
	}
	want := map[string]string{"alpha-service": "ready", "bravo-service": "not deployed", "charlie-service": "not deployed", "delta-service": "ready"}
	if d := cmp.Diff(want, health); d != "" {
		t.Errorf("status (-want +got):\n%s", d)
	}

	// A deploy while another runs is refused, naming the running one.
	type res struct {
		rep *deploy.Report
		err error
	}
	done := make(chan res, 1)
	go func() {
		rep, err := cl.Deploy(ctx, deploy.Request{Services: []string{"bravo-service"}, Environment: "local", Who: "bob"}, nil)
		done <- res{rep, err}
	}()
	select {
	case <-entered:
	case r := <-done:
		t.Fatalf("the held deploy finished early: %+v, %v", r.rep, r.err)
	}
	_, err = cl.Deploy(ctx, deploy.Request{All: true, Who: "carol"}, nil)
	if !errors.Is(err, deploy.ErrBusy) || !strings.Contains(err.Error(), "started by bob") {
		t.Errorf("a deploy during another = %v, want busy naming bob's release", err)
	}
	close(release)
	if r := <-done; r.err != nil || r.rep.Outcomes[0].Result != deploy.Succeeded {
		t.Errorf("the held deploy = %+v, %v; want bravo deployed", r.rep, r.err)
	}

	hist, err := cl.History(ctx, "alpha-service", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 || hist[0].Who != "alice" || hist[0].Result != deploy.Succeeded {
		t.Errorf("alpha's history = %+v", hist)
	}
	_, err = cl.Rollback(ctx, deploy.RollbackRequest{Service: "alpha-service"}, nil)
	if err == nil || !strings.Contains(err.Error(), "no earlier version") {
		t.Errorf("rollback with one version = %v, want no earlier version", err)
	}

	for _, tt := range []struct {
		name string
		call func() error
		want string
	}{
		{"unknown service", func() error {
			_, err := cl.Deploy(ctx, deploy.Request{Services: []string{"zulu-service"}}, nil)
			return err
		}, `unknown service "zulu-service"`},
		{"history of an unknown service", func() error { _, err := cl.History(ctx, "zulu-service", 0); return err }, `unknown service "zulu-service"`},
		{"nothing named", func() error { _, err := cl.Plan(ctx, deploy.Request{}); return err }, "nothing to deploy"},
		{"unreachable", func() error {
			_, err := controlplane.NewClient("127.0.0.1:1").Status(ctx)
			if !errors.Is(err, controlplane.ErrUnreachable) {
				return errors.New("not ErrUnreachable: " + err.Error())
			}
			return err
		}, "flotilla up"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestBadRequestBodies(t *testing.T) {
	cl, _, _, _ := setup(t, "")
	for _, tt := range []struct {
		name, path, body, want string
	}{
		{"unknown field", "/api/deploys", `{"services":["alpha-service"],"servces":[]}`, "unknown field"},
		{"not JSON", "/api/rollback", `nope`, "request body"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(cl.BaseURL+tt.path, "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resp.Body.Close() }()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), tt.want) {
				t.Errorf("POST %s = %d %s, want 400 with %q", tt.path, resp.StatusCode, b, tt.want)
			}
		})
	}
}
