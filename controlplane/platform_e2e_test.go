package controlplane_test

import (
	"context"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/shop/load"
)

var e2eRate = flag.Float64("e2e.rate", 50, "flows per second of the end-to-end test's constant load (50 flows/s of its mix is about 100 requests/s)")

// withDeployEnv returns the manifest src with key=value added to every
// service's deploy.env: a deploy-time config change, which the version
// scheme turns into a new version of every service (the same binary,
// started with a new environment).
func withDeployEnv(t *testing.T, src []byte, key, value string) []byte {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	child := func(m *yaml.Node, key string) *yaml.Node {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return m.Content[i+1]
			}
		}
		v := &yaml.Node{Kind: yaml.MappingNode}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
		return v
	}
	services := child(doc.Content[0], "services")
	for i := 1; i < len(services.Content); i += 2 {
		env := child(child(services.Content[i], "deploy"), "env")
		v := child(env, key)
		v.Kind, v.Tag, v.Value = yaml.ScalarNode, "!!str", value
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// withCanary returns the manifest src with the canary block of service
// (of the project's defaults when service is "") replaced by block, a
// YAML mapping ("{}" for none of its own), and with the other services'
// blocks removed when others is true (they then get the defaults).
func withCanary(t *testing.T, src []byte, service, block string, others bool) []byte {
	t.Helper()
	var doc, b yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(block), &b); err != nil {
		t.Fatal(err)
	}
	child := func(m *yaml.Node, key string) *yaml.Node {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return m.Content[i+1]
			}
		}
		v := &yaml.Node{Kind: yaml.MappingNode}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
		return v
	}
	set := func(m *yaml.Node) { *child(m, "canary") = *b.Content[0] }
	if service == "" {
		set(child(doc.Content[0], "defaults"))
	}
	services := child(doc.Content[0], "services")
	for i := 0; i+1 < len(services.Content); i += 2 {
		svc := services.Content[i+1]
		switch {
		case services.Content[i].Value == service:
			set(svc)
		case others:
			for j := 0; j+1 < len(svc.Content); j += 2 {
				if svc.Content[j].Value == "canary" {
					svc.Content = append(svc.Content[:j], svc.Content[j+2:]...)
					break
				}
			}
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// shopManifest reads the shop's flotilla.yaml and returns it with the path
// of a copy beside it (so its paths resolve the same) holding edit(src),
// removed when the test ends; tests rewrite the copy to change versions.
func shopManifest(t *testing.T, edit func([]byte) []byte) (manifest string, src []byte) {
	t.Helper()
	real, err := filepath.Abs("../flotilla.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if src, err = os.ReadFile(real); err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(filepath.Dir(real), "flotilla.e2e-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	manifest = f.Name()
	t.Cleanup(func() { _ = os.Remove(manifest) })
	first := src
	if edit != nil {
		first = edit(src)
	}
	_, err = f.Write(first)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return manifest, src
}

// The end-to-end test: the platform up from a clean data
// directory with all ten services of the shop's real manifest, orders
// placed through the gateway, then every service redeployed with a new
// version, in waves, while a constant load of reads and checkouts goes
// through the gateway: not one request fails, every service serves its
// new version, and the history has the release's ten deployments from
// old to new. No process is left behind. All along the gateway checks
// tokens (checkEdge) and the mesh enforces the graph: it refuses no call
// of the shop's, and refuses an undeclared one (checkAuthz).
//
// The new versions come from a real change: LOG_LEVEL added to every
// service's deploy env in the manifest, which the version scheme makes a
// new version (the source version with a config-hash suffix) that reuses
// the built binary. The platform runs on a copy of flotilla.yaml beside
// it (the services' paths are relative to the manifest's directory), and
// the copy is edited as a user edits flotilla.yaml before `flotilla
// deploy --all`.
//
// It builds the ten services: about a minute with a warm Go build cache,
// a few minutes on two cores with a cold one.
func TestPlatformRedeployAllUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the shop's ten services")
	}
	// The services' calls to each other get the budget the load's
	// requests get (30s): a request held up by the redeploy shows at the
	// edge, and a busy machine's slow answer is not an upstream timeout
	// (order-service's default is 3s, its saga's step). Every service
	// switches at once after its smoke checks, unwatched: this test
	// measures the redeploy itself (the canaries have their own).
	var src []byte
	manifest, _ := shopManifest(t, func(orig []byte) []byte {
		src = withCanary(t, withDeployEnv(t, orig, "CALL_TIMEOUT", "30s"), "", "{bake: 0s}", true)
		return src
	})
	m, _, err := graph.Load(manifest)
	if err != nil {
		t.Fatal(err)
	}
	all := m.Names()
	if len(all) != 10 {
		t.Fatalf("the manifest has %d services (%v), want the shop's ten", len(all), all)
	}

	data := t.TempDir()
	cfg := platformConfig(manifest, data)
	started := time.Now()
	info, stop := runPlatform(t, cfg)
	t.Logf("up: %d services in %v", len(info.Services), time.Since(started).Round(time.Millisecond))
	if len(info.Services) != 10 {
		t.Fatalf("the platform runs %d services, want 10", len(info.Services))
	}
	old := map[string]string{}
	for _, s := range info.Services {
		if s.Version == "" {
			t.Fatalf("%s has no version after up", s.Name)
		}
		old[s.Name] = s.Version
	}
	if info.Demo == nil || info.Demo.Stocked == 0 {
		t.Fatalf("demo data %+v, want stocked products to order", info.Demo)
	}

	// The edge: tokens checked where a signed-in user is needed.
	checkEdge(t, info.Gateway)

	// Orders through the gateway.
	ctx := context.Background()
	orders := load.DefaultConfig()
	orders.Targets = load.Targets{Gateway: info.Gateway}
	orders.Mode, orders.Users, orders.Requests = load.Closed, 4, 60
	orders.Flows = map[string]int{load.Checkout: 1}
	sum, err := load.Run(ctx, orders, nil)
	if err != nil {
		t.Fatalf("orders through the gateway: %v", err)
	}
	if sum.Errors > 0 || sum.OrdersPlaced == 0 || sum.Confirmed == 0 {
		t.Fatalf("orders through the gateway: %d placed, %d confirmed, %d errors %v %v; want orders placed and confirmed, no errors",
			sum.OrdersPlaced, sum.Confirmed, sum.Errors, sum.ErrorsByStatus, sum.Samples)
	}
	t.Logf("orders through the gateway: %d placed, %d confirmed", sum.OrdersPlaced, sum.Confirmed)

	// The constant load, open loop: flows start at the rate whatever the
	// answers take, so a request held up by the redeploy shows.
	lc := load.DefaultConfig()
	lc.Targets = load.Targets{Gateway: info.Gateway}
	lc.Mode, lc.Rate, lc.Users = load.Open, *e2eRate, 40
	lc.Flows = map[string]int{load.Browse: 3, load.Search: 1, load.Checkout: 1, load.Track: 1}
	lc.Timeout = load.Duration(30 * time.Second)
	lc.Duration = load.Duration(30 * time.Minute) // stopped once the redeploy is done
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var (
		wg      sync.WaitGroup
		under   *load.Summary
		loadErr error
	)
	ticks, loadDone := make(chan struct{}, 1), make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(loadDone)
		under, loadErr = load.Run(loadCtx, lc, ticker(ticks))
	}()
	// The run registers its accounts first; its progress ticks once a
	// second once flows run. Deploy after two of them.
	for range 2 {
		select {
		case <-ticks:
		case <-loadDone:
			t.Fatalf("the load ended before the redeploy: %v", loadErr)
		}
	}

	// The change: LOG_LEVEL in every service's deploy env.
	if err := os.WriteFile(manifest, withDeployEnv(t, src, "LOG_LEVEL", "warn"), 0o644); err != nil {
		t.Fatal(err)
	}
	client := apiClient(t, info)
	var waves [][]string
	before := meshRequests(t, info.API)
	deployStarted := time.Now()
	rep, err := client.Deploy(ctx, deploy.Request{All: true, Who: "e2e"}, func(e deploy.Event) {
		if e.Step == deploy.StepDone && e.Service != "" {
			for len(waves) < e.Wave {
				waves = append(waves, nil)
			}
			waves[e.Wave-1] = append(waves[e.Wave-1], e.Service)
		}
	})
	deployTook := time.Since(deployStarted)
	during := meshRequests(t, info.API)
	for range 2 { // the load goes on after the last drain
		select {
		case <-ticks:
		case <-loadDone:
		}
	}
	stopLoad()
	wg.Wait()
	if err != nil {
		t.Fatalf("redeploy: %v\n%v", err, upOutcomes(rep))
	}
	if loadErr != nil {
		t.Fatalf("load: %v", loadErr)
	}
	t.Logf("redeploy of %d services in %d waves %v: %v", len(rep.Outcomes), len(waves), waves, deployTook.Round(time.Millisecond))
	t.Logf("load during the redeploy: %d requests in %v (%.0f/s), %d flows %v, %d orders placed, %d skipped, p99 %v",
		under.Requests, under.Elapsed.Round(time.Millisecond), under.Rate, len(under.Flows), under.Flows, under.OrdersPlaced, under.Skipped, under.P99)

	// Not one request failed, and the load really ran through it all.
	if under.Errors > 0 {
		t.Errorf("%d of %d requests failed during the redeploy, by status %v: %v", under.Errors, under.Requests, under.ErrorsByStatus, under.Samples)
	}
	if under.Flows[load.Checkout] == 0 || under.OrdersPlaced == 0 || under.Flows[load.Browse] == 0 {
		t.Errorf("the load ran flows %v and placed %d orders; want reads and checkouts throughout", under.Flows, under.OrdersPlaced)
	}
	// Traffic kept flowing through the redeploy (counted by the mesh,
	// not derived from the clock): more requests were proxied by its end
	// than at its start, and product-service, which every browse reads,
	// served requests on its old version and on its new one.
	if during.total() <= before.total() {
		t.Errorf("the mesh proxied %.0f requests before the redeploy and %.0f after it; want traffic during it", before.total(), during.total())
	}

	// Every service deployed in dependency order, from its old version to a new one.
	if len(rep.Outcomes) != 10 {
		t.Fatalf("the release has %d outcomes, want 10: %v", len(rep.Outcomes), upOutcomes(rep))
	}
	wave := map[string]int{}
	next := map[string]string{}
	for _, oc := range rep.Outcomes {
		wave[oc.Service] = oc.Wave
		next[oc.Service] = oc.Version
		if oc.Result != deploy.Succeeded || oc.Previous != old[oc.Service] || oc.Version == old[oc.Service] {
			t.Errorf("%s: %s %s → %s (%s), want succeeded from %s to a new version", oc.Service, oc.Result, oc.Previous, oc.Version, oc.Reason, old[oc.Service])
		}
		if !strings.Contains(oc.Version, "-") {
			t.Errorf("%s's new version %s has no config suffix", oc.Service, oc.Version)
		}
	}
	g := graph.New(m)
	for _, s := range all {
		for _, d := range g.DependsOn(s) {
			if wave[d] >= wave[s] {
				t.Errorf("%s (wave %d) was deployed no earlier than %s (wave %d), which depends on it", d, wave[d], s, wave[s])
			}
		}
	}
	if len(waves) < 2 {
		t.Errorf("the release ran in %d wave(s), want the graph's waves", len(waves))
	}

	if n := before.of("product-service", old["product-service"]); n == 0 {
		t.Errorf("product-service's old version %s served no request before the redeploy", old["product-service"])
	}
	if n := meshRequests(t, info.API).of("product-service", next["product-service"]); n == 0 {
		t.Errorf("product-service's new version %s served no request under the load", next["product-service"])
	}

	// The status API: every service on its new version alone.
	st, err := client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Services) != 10 {
		t.Fatalf("status has %d services, want 10", len(st.Services))
	}
	for _, s := range st.Services {
		if s.Stable != next[s.Service] || len(s.Canary) > 0 || s.Health != "ready" || s.Weights[next[s.Service]] != 100 {
			t.Errorf("status of %s: stable %s, canary %v, weights %v, %s; want %s alone, ready, with all the traffic", s.Service, s.Stable, s.Canary, s.Weights, s.Health, next[s.Service])
		}
		for _, in := range s.Instances {
			if in.Version != next[s.Service] {
				t.Errorf("%s still runs an instance of %s (pid %d)", s.Service, in.Version, in.PID)
			}
		}
	}

	// The history: the release's ten records, old → new.
	hist, err := client.History(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]deploy.Record{}
	for _, r := range hist {
		if r.Release == rep.Release {
			got[r.Service] = r
		}
	}
	if len(got) != 10 {
		t.Errorf("the history has %d records of release %d, want 10", len(got), rep.Release)
	}
	for _, s := range all {
		r := got[s]
		if r.Action != deploy.RecordDeploy || r.Result != deploy.Succeeded || r.Previous != old[s] || r.Version != next[s] || r.Who != "e2e via admin token" {
			t.Errorf("history of %s in release %d: %+v; want a succeeded deploy by e2e via the admin token from %s to %s", s, rep.Release, r, old[s], next[s])
		}
	}

	// The mesh enforced the graph all along and refused nothing: an
	// undeclared call in the shop would be a bug in the graph. Then an
	// undeclared call is refused.
	if d := deniedCalls(t, info.API); d != 0 {
		t.Errorf("the mesh refused %v call(s) the graph does not declare (flotilla_mesh_authz_denied_total); want none", d)
	}
	checkAuthz(t, info)

	// A clean stop leaves nothing running.
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if left := processesUnder(t, data); len(left) > 0 {
		t.Fatalf("processes left running after the platform stopped: %v", left)
	}
}

// ticker is a progress writer for load.Run that signals each line on c
// (dropping a signal nobody waits for).
type ticker chan<- struct{}

func (t ticker) Write(p []byte) (int, error) {
	select {
	case t <- struct{}{}:
	default:
	}
	return len(p), nil
}

// upOutcomes lists a report's outcomes, one a line.
func upOutcomes(rep *deploy.Report) string {
	if rep == nil {
		return "(no report)"
	}
	var b strings.Builder
	for _, oc := range rep.Outcomes {
		b.WriteString(oc.Service + " " + string(oc.Result) + " " + oc.Previous + " → " + oc.Version + " " + oc.Reason + "\n")
	}
	return b.String()
}

// requestCounts are the mesh's proxied requests by destination service and
// version (flotilla_mesh_requests_total, summed over sources and status
// classes).
type requestCounts map[[2]string]float64

func (r requestCounts) total() float64 {
	var n float64
	for _, v := range r {
		n += v
	}
	return n
}

func (r requestCounts) of(service, version string) float64 { return r[[2]string{service, version}] }

// meshRequests reads the mesh's request counters from the API's /metrics.
func meshRequests(t *testing.T, api string) requestCounts {
	t.Helper()
	st, _, body := call(t, "GET", api+"/metrics", "", nil)
	if st != http.StatusOK {
		t.Fatalf("GET /metrics: %d", st)
	}
	out := requestCounts{}
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, "flotilla_mesh_requests_total{")
		if !ok {
			continue
		}
		labels, value, _ := strings.Cut(rest, "} ")
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		var dst, ver string
		for _, kv := range strings.Split(labels, ",") {
			k, val, _ := strings.Cut(kv, "=")
			switch k {
			case "destination":
				dst = strings.Trim(val, `"`)
			case "version":
				ver = strings.Trim(val, `"`)
			}
		}
		out[[2]string{dst, ver}] += v
	}
	return out
}
