package kube_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/sqlstore"
	"github.com/flotilla-ci/flotilla/graph"
)

// shopManifest is the shop's flotilla.yaml without its smoke checks: the
// plane runs no containers, so nothing would answer them.
func shopManifest(t *testing.T) *graph.Manifest {
	t.Helper()
	m, _, err := graph.Load(filepath.Join("..", "..", "flotilla.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range m.Services {
		s.Smoke = nil
	}
	return m
}

func (e *env) orchestrator(t *testing.T, m *graph.Manifest, store deploy.Store) *deploy.Orchestrator {
	t.Helper()
	o, err := deploy.New(deploy.Config{
		Graph: graph.New(m), Target: e.target, Router: e.router, Store: store,
		Environment: "production", DrainTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// objects lists the flotilla objects of the namespace, as kind/name.
func (e *env) objects(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=flotilla"}
	var out []string
	ds, err := e.p.Clientset.AppsV1().Deployments(e.ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds.Items {
		out = append(out, "Deployment/"+d.Name)
	}
	drs, err := e.ic.NetworkingV1().DestinationRules(e.ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range drs.Items {
		var subs []string
		for _, s := range d.Spec.GetSubsets() {
			subs = append(subs, s.GetName())
		}
		out = append(out, "DestinationRule/"+d.Name+"["+strings.Join(subs, ",")+"]")
	}
	sort.Strings(out)
	return out
}

// The ten services of the shop deploy in their waves on the plane; a
// config change of one service is a new version that replaces the old one
// (promotion leaves one Deployment and one subset); a rollback puts the old
// one back the same way.
func TestShopReleaseOnThePlane(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	m := shopManifest(t)
	store, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "history.db"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	done := map[string]time.Time{}
	rep, err := e.orchestrator(t, m, store).Deploy(ctx, deploy.Request{All: true, Environment: "production", Who: "test"}, func(ev deploy.Event) {
		if ev.Step == deploy.StepDone && ev.Service != "" { // the release's own done event names no service
			mu.Lock()
			done[ev.Service] = ev.Time
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("release: %v", err)
	}
	t.Logf("ten services in %s, %d waves", rep.Duration.Round(time.Millisecond), len(rep.Plan.Waves))
	if len(done) != 10 {
		t.Fatalf("%d services done, want 10: %v", len(done), done)
	}
	// Every service became ready after the services it depends on.
	for _, s := range m.Services {
		for _, d := range s.DependsOn {
			if !done[s.Name].After(done[d]) {
				t.Errorf("%s was done at %s, before its dependency %s (%s)", s.Name, done[s.Name], d, done[d])
			}
		}
	}
	versions := map[string]string{}
	for _, o := range rep.Outcomes {
		versions[o.Service] = o.Version
	}
	var want []string
	for _, s := range m.Services {
		want = append(want, "Deployment/"+kubeName(s.Name, versions[s.Name]), "DestinationRule/"+s.Name+"["+versions[s.Name]+"]")
	}
	sort.Strings(want)
	if diff := cmp.Diff(want, e.objects(t)); diff != "" {
		t.Errorf("objects after the release (-want +got):\n%s", diff)
	}
	// The dependencies' addresses are their Kubernetes Services.
	d, err := e.p.Clientset.AppsV1().Deployments(e.ns).Get(ctx, kubeName("order-service", versions["order-service"]), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, v := range d.Spec.Template.Spec.Containers[0].Env {
		env[v.Name] = v.Value
	}
	if got := env["INVENTORY_URL"]; got != "http://inventory-service."+e.ns+".svc.cluster.local:80" {
		t.Errorf("order-service's INVENTORY_URL = %q", got)
	}

	// A config change of cart-service: a new version, promoted.
	m.Service("cart-service").Deploy.Env = map[string]string{"CART_TTL": "2h"}
	o2 := e.orchestrator(t, m, store)
	rep2, err := o2.Deploy(ctx, deploy.Request{Services: []string{"cart-service"}, Environment: "production", Who: "test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v1, v2 := versions["cart-service"], rep2.Outcomes[0].Version
	if v1 == v2 {
		t.Fatalf("the config change kept version %s", v1)
	}
	cart := func() []string {
		var out []string
		for _, o := range e.objects(t) {
			if strings.Contains(o, "cart-service") {
				out = append(out, o)
			}
		}
		return out
	}
	if diff := cmp.Diff([]string{"Deployment/" + kubeName("cart-service", v2), "DestinationRule/cart-service[" + v2 + "]"}, cart()); diff != "" {
		t.Errorf("after the promotion (-want +got):\n%s", diff)
	}
	if w, _ := e.router.Weights(ctx, "cart-service"); !cmp.Equal(w, map[string]int{v2: 100}) {
		t.Errorf("weights after the promotion: %v", w)
	}
	// And rolled back: the old version's Deployment and subset, alone.
	if _, err := o2.Rollback(ctx, deploy.RollbackRequest{Service: "cart-service", Who: "test"}, nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"Deployment/" + kubeName("cart-service", v1), "DestinationRule/cart-service[" + v1 + "]"}, cart()); diff != "" {
		t.Errorf("after the rollback (-want +got):\n%s", diff)
	}
	if w, _ := e.router.Weights(ctx, "cart-service"); !cmp.Equal(w, map[string]int{v1: 100}) {
		t.Errorf("weights after the rollback: %v", w)
	}
}

func kubeName(service, version string) string { return service + "-" + version }

// metrics is a fake canary.Metrics: every version serves 100 requests
// per window, with the error rate set per version.
type metrics struct{ errorRate map[string]float64 }

func (m metrics) Stats(_ context.Context, _, version string, window time.Duration) (canary.Stats, error) {
	r := m.errorRate[version]
	return canary.Stats{Requests: 100, Errors: int64(r * 100), ErrorRate: r, P50: 5 * time.Millisecond, P90: 9 * time.Millisecond, P99: 12 * time.Millisecond, Window: window}, nil
}

// weightLog records the default route's weights each time the
// VirtualService changes, from a watch.
func (e *env) weightLog(t *testing.T, service string) func() []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := e.ic.NetworkingV1().VirtualServices(e.ns).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", service).String()})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var log []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			lines := routes(vsOf(ev.Object))
			if len(lines) == 0 {
				continue
			}
			mu.Lock()
			if last := lines[len(lines)-1]; len(log) == 0 || log[len(log)-1] != last {
				log = append(log, last)
			}
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); w.Stop(); <-done })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(log)
	}
}

// A canary's steps show up as the VirtualService's weights over time: a
// healthy one walks 10% and 50% to 100%; a failing one goes back to the
// old version.
func TestCanaryStepsAsVirtualServiceWeights(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const svc = "search-service"
	for _, v := range []string{"v1", "v2", "v3"} {
		if _, err := e.target.Apply(ctx, spec(svc, v, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.router.SetSubset(ctx, svc, deploy.Subset{Name: "v1"}); err != nil {
		t.Fatal(err)
	}
	log := e.weightLog(t, svc)
	policy := canary.DefaultPolicy()
	policy.Strategy = canary.StrategyCanary
	policy.Steps = []int{10, 50}
	policy.Interval = canary.MinInterval
	policy.MinRequests = 1
	policy.LaneFirst = false
	policy.Bake = 0
	a, err := canary.New(canary.Config{
		Metrics: metrics{errorRate: map[string]float64{"v3": 0.5}},
		Policy:  func(string) (canary.Policy, error) { return policy, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.Close() }()

	if err := e.router.SetSubset(ctx, svc, deploy.Subset{Name: "v2", Canary: true}); err != nil {
		t.Fatal(err)
	}
	if err := a.Shift(ctx, canary.ShiftRequest{Service: svc, Version: "v2", Old: []string{"v1"}, Router: e.router}); err != nil {
		t.Fatalf("a healthy canary: %v", err)
	}
	waitFor(t, func() bool { return len(log()) >= 4 }, "the promotion in the watch")
	want := []string{"default -> v1", "default -> v1:90 v2:10", "default -> v1:50 v2:50", "default -> v2"}
	if diff := cmp.Diff(want, log()); diff != "" {
		t.Errorf("weights over time (-want +got):\n%s", diff)
	}

	if err := e.router.SetSubset(ctx, svc, deploy.Subset{Name: "v3", Canary: true}); err != nil {
		t.Fatal(err)
	}
	err = a.Shift(ctx, canary.ShiftRequest{Service: svc, Version: "v3", Old: []string{"v2"}, Router: e.router})
	if !errors.Is(err, canary.ErrRolledBack) {
		t.Fatalf("a failing canary: %v, want a rollback", err)
	}
	waitFor(t, func() bool { return len(log()) >= 6 }, "the rollback in the watch")
	want = append(want, "default -> v2:90 v3:10", "default -> v2")
	if diff := cmp.Diff(want, log()); diff != "" {
		t.Errorf("weights over time (-want +got):\n%s", diff)
	}
	if w, _ := e.router.Weights(ctx, svc); w["v2"] != 100 || w["v3"] != 0 {
		t.Errorf("after the rollback: %v", w)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func vsOf(o runtime.Object) []*networkingv1alpha3.HTTPRoute {
	vs, ok := o.(*networkingv1.VirtualService)
	if !ok {
		return nil
	}
	return vs.Spec.GetHttp()
}
