package ui_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/controlplane/ui"
	"github.com/flotilla-ci/flotilla/controlplane/ui/uitest"
	"github.com/flotilla-ci/flotilla/deploy"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fixture is a dashboard over the shop's graph and a history of 30
// releases, behind the control plane's real token check; the API behind
// it answers a rollback with one NDJSON line and counts what reached it.
type fixture struct {
	srv     *httptest.Server
	dash    *ui.Server
	dep     *uitest.Deployer
	admin   string
	read    string
	reached atomic.Int32
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir := t.TempDir()
	dep, err := uitest.Open(ctx, "../../flotilla.yaml", dir, 30)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dep.Close() })
	tokens, err := controlplane.EnsureTokens(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dep: dep}
	f.admin, _ = controlplane.ReadToken(controlplane.TokenFile(dir, controlplane.RoleAdmin))
	f.read, _ = controlplane.ReadToken(controlplane.TokenFile(dir, controlplane.RoleRead))
	api := http.NewServeMux()
	api.HandleFunc("POST /api/rollback", func(w http.ResponseWriter, r *http.Request) {
		f.reached.Add(1)
		var req deploy.RollbackRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		_ = json.NewEncoder(w).Encode(controlplane.Line{Report: &deploy.Report{Release: 99, Outcomes: []deploy.Outcome{{Service: req.Service, Version: "v0", Result: deploy.Succeeded}}}})
	})
	f.dash, err = ui.New(ui.Config{Deployer: dep, API: tokens.Middleware(api), Logger: quiet, StatusEvery: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.dash.Start(ctx)
	f.srv = httptest.NewServer(f.dash.Handler())
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) get(t testing.TB, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(f.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestPagesRender(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/ui/", []string{`class="node"`, "Wave 1", "Wave 5", "order-service", "shipping-service", `class="edge edge-event"`, `class="edge edge-sync"`}},
		{"/ui/releases", []string{`data-release="30"`, `data-release="1"`, "alice via admin token"}},
		{"/ui/releases?service=cart-service&result=failed", []string{"cart-service"}},
		{"/ui/releases/7", []string{"Wave", "smoke GET /health: 500"}},
		{"/ui/services/order-service", []string{"Roll back order-service", "payment-service"}},
		{"/ui/canaries", []string{"not wired"}},
		{"/ui/contracts", []string{"No contract broker"}},
		{"/ui/schemas", []string{"No schema registry"}},
		{"/ui/traces", []string{"Tracing is not enabled"}},
	} {
		code, body := f.get(t, tc.path)
		if code != http.StatusOK {
			t.Errorf("GET %s: %d, want 200:\n%s", tc.path, code, body)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s: the page lacks %q", tc.path, w)
			}
		}
	}
	// Ten nodes, each in the column of its wave.
	_, body := f.get(t, "/ui/")
	nodes := regexp.MustCompile(`class="node" data-service="([a-z-]+)" data-wave="(\d)"`).FindAllStringSubmatch(body, -1)
	if len(nodes) != 10 {
		t.Fatalf("the overview draws %d nodes, want 10", len(nodes))
	}
	waves, _ := f.dep.G.Waves(nil)
	for _, n := range nodes {
		found := false
		for i, w := range waves {
			for _, s := range w {
				if s == n[1] && n[2] == string(rune('1'+i)) {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("%s drawn in wave %s, not in its wave", n[1], n[2])
		}
	}
}

// Unknown ids answer 404 with a page that says what exists.
func TestUnknownIDs(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct{ path, want string }{
		{"/ui/services/nope-service", "order-service"},
		{"/ui/releases/4242", `href="/ui/releases/30"`},
		{"/ui/releases/abc", `href="/ui/releases/30"`},
		{"/ui/releases?service=nope", "cart-service"},
		{"/ui/nowhere", "/ui/releases"},
	} {
		code, body := f.get(t, tc.path)
		if code != http.StatusNotFound || !strings.Contains(body, `id="notfound"`) || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s: %d, want 404 naming what exists (%q):\n%s", tc.path, code, tc.want, body)
		}
	}
}

// An action needs the page's Origin, the confirmation and the admin
// token; a refused one never reaches the API's handler.
func TestActionsRefused(t *testing.T) {
	f := newFixture(t)
	post := func(origin string, form url.Values) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/ui/actions/rollback", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		var body struct {
			OK      bool   `json:"ok"`
			Message string `json:"message"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Message
	}
	self := f.srv.URL
	good := url.Values{"service": {"cart-service"}, "confirm": {"", "yes"}, "token": {f.admin}}
	with := func(k, v string) url.Values {
		out := url.Values{}
		for kk, vv := range good {
			out[kk] = vv
		}
		out.Set(k, v)
		return out
	}
	for _, tc := range []struct {
		name   string
		origin string
		form   url.Values
		code   int
		want   string
	}{
		{"another site", "http://evil.example", good, http.StatusForbidden, "another site"},
		{"no origin", "", good, http.StatusForbidden, "Origin"},
		{"not confirmed", self, with("confirm", ""), http.StatusBadRequest, "not confirmed"},
		{"no token", self, with("token", ""), http.StatusUnauthorized, "admin token"},
		{"stale token", self, with("token", "flt_admin_stale"), http.StatusUnauthorized, "not one of this control plane's"},
		{"read-only token", self, with("token", f.read), http.StatusForbidden, "needs the admin token"},
		{"unknown service", self, with("service", "nope"), http.StatusNotFound, "unknown service"},
	} {
		code, msg := post(tc.origin, tc.form)
		if code != tc.code || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %d %q, want %d with %q", tc.name, code, msg, tc.code, tc.want)
		}
	}
	if n := f.reached.Load(); n != 0 {
		t.Fatalf("refused actions reached the API %d time(s)", n)
	}
	code, msg := post(self, good)
	if code != http.StatusOK || !strings.Contains(msg, "rolled back cart-service to v0") || f.reached.Load() != 1 {
		t.Fatalf("the admin's confirmed rollback: %d %q (reached %d), want it done", code, msg, f.reached.Load())
	}
}

// A release event reaches an open page's stream at once.
func TestEventStream(t *testing.T) {
	f := newFixture(t)
	resp, err := http.Get(f.srv.URL + "/ui/events")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.dash.Pages() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	f.dep.SetRunning(&deploy.Running{Release: 31, Services: []string{"cart-service"}, Who: "test"})
	f.dash.Publish(deploy.Event{Release: 31, Wave: 3, Service: "cart-service", Version: "v9", Step: deploy.StepSmoke, Time: time.Now()})
	sc := bufio.NewScanner(resp.Body)
	got := map[string]string{}
	for sc.Scan() && (got["release"] == "" || got["status"] == "") {
		line := sc.Text()
		if ev, ok := strings.CutPrefix(line, "event: "); ok {
			sc.Scan()
			got[ev] = strings.TrimPrefix(sc.Text(), "data: ")
		}
	}
	if !strings.Contains(got["release"], `"state":"smoke"`) || !strings.Contains(got["release"], `"service":"cart-service"`) {
		t.Errorf("release event %s, want cart-service at smoke", got["release"])
	}
	if !strings.Contains(got["status"], `"release":31`) {
		t.Errorf("status event %s, want the running release 31", got["status"])
	}
	// The overview opened now shows the step.
	_, body := f.get(t, "/ui/")
	if !regexp.MustCompile(`data-service="cart-service"[^>]*data-state="smoke"`).MatchString(body) {
		t.Errorf("the overview does not show cart-service at smoke")
	}
}
