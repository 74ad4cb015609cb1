package controlplane_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/local"
	"github.com/flotilla-ci/flotilla/deploy/sqlstore"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/mesh"
)

// countingTarget runs nothing and counts what the orchestrator asks of it:
// with every gate refusing, a release never gets to it, so any call is a
// release that went further than it should.
type countingTarget struct{ calls atomic.Int64 }

func (c *countingTarget) Apply(_ context.Context, spec deploy.Spec) ([]deploy.Instance, error) {
	c.calls.Add(1)
	return nil, errors.New("the fuzz test's target runs nothing")
}

func (c *countingTarget) Status(context.Context, string) ([]deploy.Instance, error) { return nil, nil }

func (c *countingTarget) Remove(context.Context, string, string) error {
	c.calls.Add(1)
	return deploy.ErrNotFound
}

// fuzzAPI is the deploy API over the deploy tests' shop, with a gate that
// refuses every service: a request that starts a release is seen at the
// gate, and nothing is built or run.
type fuzzAPI struct {
	api     *controlplane.API
	h       http.Handler
	orch    *deploy.Orchestrator
	target  *countingTarget
	gateRan atomic.Int64
}

func newFuzzAPI(f *testing.F) *fuzzAPI {
	f.Helper()
	root := f.TempDir()
	if err := os.CopyFS(root, os.DirFS("../deploy/testdata/shop")); err != nil {
		f.Fatal(err)
	}
	m, _, err := graph.Load(filepath.Join(root, graph.FileName))
	if err != nil {
		f.Fatal(err)
	}
	ms, err := mesh.New(mesh.Config{Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = ms.Close(context.Background()) })
	store, err := sqlstore.Open(context.Background(), filepath.Join(f.TempDir(), "h.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = store.Close() })
	a := &fuzzAPI{target: &countingTarget{}}
	refuse := deploy.GateFunc{GateName: "refuse", Fn: func(context.Context, deploy.GateRequest) (deploy.GateResult, error) {
		a.gateRan.Add(1)
		return deploy.GateResult{Pass: false, Reason: "the fuzz test refuses every release"}, nil
	}}
	a.orch, err = deploy.New(deploy.Config{Graph: graph.New(m), Target: a.target, Router: &local.MeshRouter{Mesh: ms},
		Store: store, Gates: []deploy.Gate{refuse}, Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	a.api = controlplane.NewAPI(a.orch, quiet)
	a.h = a.api.Handler()
	return a
}

// state is what a request must leave alone unless it starts a release.
type state struct {
	gate, target int64
	records      int
	running      bool
}

func (a *fuzzAPI) state(t *testing.T) state {
	t.Helper()
	recs, err := a.orch.History(context.Background(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return state{gate: a.gateRan.Load(), target: a.target.calls.Load(), records: len(recs), running: a.orch.Running() != nil}
}

// The request fields, as JSON names them and as the CLI's flags and the
// orchestrator's messages do.
var requestFields = []string{"services", "service", "all", "changed", "base", "environment", "max_parallel", "max-parallel",
	"on_failure", "on-failure", "who", "to", "dry_run", "dry-run"}

var unknownField = regexp.MustCompile(`unknown field "((?:[^"\\]|\\.)*)"`)

// FuzzAPIRequestBodies sends arbitrary bodies to the deploy API's real
// handlers (POST /api/deploys, POST /api/rollback). Whatever the body, the
// handler does not panic and answers 200 or 400; a 400 is a JSON
// {"error"} naming the field at fault (or the request body, when it is not
// one JSON object), and leaves everything as it was: no release started, no
// history written, nothing asked of the target. A body that is not exactly
// one JSON value of the request's shape is a 400.
func FuzzAPIRequestBodies(f *testing.F) {
	for _, seed := range []struct {
		rollback bool
		body     string
	}{
		{false, `{"services":["alpha-service"],"dry_run":true}`},
		{false, `{"services":["alpha-service"]}`},
		{false, `{"all":true,"max_parallel":2,"on_failure":"rollback-release","who":"alice"}`},
		{false, `{"changed":true,"base":"main"}`},
		{false, `{"services":["zulu-service"]}`},
		{false, `{"services":"alpha-service"}`},
		{false, `{"services":["alpha-service"],"servces":[]}`},
		{false, `{"all":true} {"all":false}`},
		{false, `{"all":true}x`},
		{false, `{"max_parallel":-1,"all":true}`},
		{false, `{"max_parallel":1e99,"all":true}`},
		{false, `{"on_failure":"explode","all":true}`},
		{false, `{"environment":"production","all":true}`},
		{false, `null`},
		{false, `[]`},
		{false, ``},
		{true, `{"service":"alpha-service"}`},
		{true, `{"service":"alpha-service","to":"v1","who":"bob"}`},
		{true, `{"service":["alpha-service"]}`},
		{true, `{"service":""}`},
		{true, `nope`},
	} {
		f.Add(seed.rollback, []byte(seed.body))
	}
	a := newFuzzAPI(f)
	f.Fuzz(func(t *testing.T, rollback bool, body []byte) {
		path := "/api/deploys"
		var shape any = &controlplane.DeployRequest{}
		if rollback {
			path, shape = "/api/rollback", &deploy.RollbackRequest{}
		}
		before := a.state(t)
		rec := httptest.NewRecorder()
		a.h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
		a.api.Wait()
		after := a.state(t)
		if after.running {
			t.Fatalf("a release still runs after POST %s answered", path)
		}

		// What the body is, decoded as strictly as the API promises.
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		derr := dec.Decode(shape)
		if derr == nil && !json.Valid(body) {
			derr = errors.New("more than one JSON value")
		}

		switch rec.Code {
		case http.StatusOK:
			if derr != nil {
				t.Fatalf("POST %s %q = 200, want 400: the body is not one request (%v)", path, body, derr)
			}
			if dry, _ := shape.(*controlplane.DeployRequest); dry != nil && dry.DryRun && after != before {
				t.Fatalf("a dry run changed things: %+v, then %+v", before, after)
			}
			return
		case http.StatusBadRequest:
		default:
			t.Fatalf("POST %s %q = %d %s, want 200 or 400", path, body, rec.Code, rec.Body)
		}

		if after != before {
			t.Fatalf("POST %s %q = 400 but changed things: %+v, then %+v", path, body, before, after)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("400 with Content-Type %q, want application/json", ct)
		}
		var e struct{ Error string }
		edec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
		edec.DisallowUnknownFields()
		if err := edec.Decode(&e); err != nil || e.Error == "" {
			t.Fatalf("400 body %q: want {\"error\": a message}", rec.Body)
		}

		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(derr, &typeErr) && typeErr.Field != "":
			field := typeErr.Field[strings.LastIndex(typeErr.Field, ".")+1:]
			if !strings.Contains(e.Error, field) {
				t.Errorf("error %q does not name the field %q", e.Error, field)
			}
		case derr != nil && unknownField.MatchString(derr.Error()):
			field := unknownField.FindStringSubmatch(derr.Error())[1]
			if !strings.Contains(e.Error, field) {
				t.Errorf("error %q does not name the unknown field %s", e.Error, field)
			}
		case derr != nil:
			if !strings.Contains(e.Error, "request body") {
				t.Errorf("error %q for a body that is not one request: want it to say the request body is at fault", e.Error)
			}
		default:
			// A well-formed request refused for what it asks: the error
			// names a field, or the value at fault.
			named := false
			for _, f := range requestFields {
				named = named || strings.Contains(e.Error, f)
			}
			var values map[string]any
			_ = json.Unmarshal(body, &values)
			for _, v := range values {
				if s, ok := v.(string); ok && s != "" && strings.Contains(e.Error, s) {
					named = true
				}
			}
			if !named {
				t.Errorf("error %q for %q names no field and no value", e.Error, body)
			}
		}
	})
}
