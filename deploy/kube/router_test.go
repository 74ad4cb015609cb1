package kube_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/kube"
	"github.com/flotilla-ci/flotilla/deploy/sqlstore"
	"github.com/flotilla-ci/flotilla/internal/kubetest"
)

// routes renders a VirtualService's HTTP routes as lines:
// "name match -> subset:weight ...".
func routes(vs []*networkingv1alpha3.HTTPRoute) []string {
	var out []string
	for _, h := range vs {
		line := h.GetName()
		for _, m := range h.GetMatch() {
			for k, v := range m.GetHeaders() {
				line += " " + k + "=" + v.GetExact()
			}
		}
		line += " ->"
		for _, d := range h.GetRoute() {
			line += " " + d.GetDestination().GetSubset()
			if d.GetWeight() != 0 {
				line += ":" + strconv.Itoa(int(d.GetWeight()))
			}
		}
		out = append(out, line)
	}
	return out
}

func (e *env) routes(t *testing.T, service string) []string {
	t.Helper()
	vs, err := e.ic.NetworkingV1().VirtualServices(e.ns).Get(context.Background(), service, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return routes(vs.Spec.GetHttp())
}

func TestRouterLanesAndWeights(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.router
	const svc = "payment-service"
	if _, err := r.Weights(ctx, svc); !errors.Is(err, canary.ErrUnknownService) {
		t.Errorf("Weights of an unrouted service = %v, want ErrUnknownService", err)
	}
	addr, err := r.Declare(ctx, svc)
	if err != nil || addr != svc+"."+e.ns+".svc.cluster.local:80" {
		t.Fatalf("Declare = %q, %v", addr, err)
	}
	if err := r.SetSubset(ctx, svc, deploy.Subset{Name: "v1"}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"version-v1 x-flotilla-version=v1 -> v1", "default -> v1"}, e.routes(t, svc)); diff != "" {
		t.Errorf("first version's routes (-want +got):\n%s", diff)
	}
	if err := r.SetSubset(ctx, svc, deploy.Subset{Name: "v2", Canary: true}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"canary x-canary=true -> v2",
		"version-v1 x-flotilla-version=v1 -> v1",
		"version-v2 x-flotilla-version=v2 -> v2",
		"default -> v1",
	}
	if diff := cmp.Diff(want, e.routes(t, svc)); diff != "" {
		t.Errorf("with a canary (-want +got):\n%s", diff)
	}
	w, err := r.Weights(ctx, svc)
	if err != nil || !cmp.Equal(w, map[string]int{"v1": 100, "v2": 0}) {
		t.Errorf("Weights = %v, %v; want v1 100, v2 0", w, err)
	}
	if err := r.SetWeights(ctx, svc, map[string]int{"v1": 95, "v2": 5}); err != nil {
		t.Fatal(err)
	}
	if got := e.routes(t, svc)[3]; got != "default -> v1:95 v2:5" {
		t.Errorf("default route = %q, want v1:95 v2:5", got)
	}
	dr, err := e.ic.NetworkingV1().DestinationRules(e.ns).Get(ctx, svc, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var subsets []string
	for _, s := range dr.Spec.GetSubsets() {
		subsets = append(subsets, s.GetName()+" version="+s.GetLabels()["version"])
	}
	if diff := cmp.Diff([]string{"v1 version=v1", "v2 version=v2"}, subsets); diff != "" {
		t.Errorf("DestinationRule subsets (-want +got):\n%s", diff)
	}

	// Weights that do not sum to 100 are written as percentages.
	if err := r.SetWeights(ctx, svc, map[string]int{"v1": 1, "v2": 2}); err != nil {
		t.Fatal(err)
	}
	if w, _ := r.Weights(ctx, svc); !cmp.Equal(w, map[string]int{"v1": 33, "v2": 67}) {
		t.Errorf("1:2 became %v, want 33/67", w)
	}
	for _, bad := range []map[string]int{{"v3": 100}, {"v1": -1, "v2": 101}, {"v1": 0}} {
		if err := r.SetWeights(ctx, svc, bad); err == nil {
			t.Errorf("SetWeights(%v) accepted", bad)
		}
	}

	// A restarted flotilla reads the routing back from the objects.
	again := kube.NewRouter(e.ic, e.target)
	if w, _ := again.Weights(ctx, svc); !cmp.Equal(w, map[string]int{"v1": 33, "v2": 67}) {
		t.Errorf("a new router reads %v", w)
	}
	// Promotion: all to v2, v1 removed; the canary mark goes with the
	// subset marked anew without it.
	if err := again.SetWeights(ctx, svc, map[string]int{"v2": 100}); err != nil {
		t.Fatal(err)
	}
	if err := again.SetSubset(ctx, svc, deploy.Subset{Name: "v2"}); err != nil {
		t.Fatal(err)
	}
	if err := again.RemoveSubset(ctx, svc, "v1"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"version-v2 x-flotilla-version=v2 -> v2", "default -> v2"}, e.routes(t, svc)); diff != "" {
		t.Errorf("after promotion (-want +got):\n%s", diff)
	}
}

func TestPoliciesMatchTheGraph(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	m := shopManifest(t)
	if err := kube.ApplySecurity(ctx, e.ic, m, e.ns, []string{"product-service"}); err != nil {
		t.Fatal(err)
	}
	pa, err := e.ic.SecurityV1().PeerAuthentications(e.ns).Get(ctx, "default", metav1.GetOptions{})
	if err != nil || pa.Spec.GetMtls().GetMode().String() != "STRICT" {
		t.Fatalf("PeerAuthentication: %v, %v", pa, err)
	}
	// Every edge of the graph is a principal of its callee's policy, and
	// nothing else is.
	want := map[string][]string{}
	for _, s := range m.Services {
		want[s.Name] = []string{}
	}
	for _, s := range m.Services {
		for _, d := range s.DependsOn {
			want[d] = append(want[d], kube.Principal(s.Name, e.ns))
		}
	}
	// Listed as the admin: flotilla's Role needs no list on policies.
	admin, err := istioclient.NewForConfig(e.p.Config())
	if err != nil {
		t.Fatal(err)
	}
	l, err := admin.SecurityV1().AuthorizationPolicies(e.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != len(m.Services) {
		t.Errorf("%d AuthorizationPolicies for %d services", len(l.Items), len(m.Services))
	}
	for _, ap := range l.Items {
		svc := ap.Spec.GetSelector().GetMatchLabels()["app"]
		got := []string{}
		for _, r := range ap.Spec.GetRules() {
			for _, f := range r.GetFrom() {
				for _, p := range f.GetSource().GetPrincipals() {
					if p != kube.GatewayPrincipal {
						got = append(got, p)
					}
				}
			}
		}
		w := want[svc]
		slices.Sort(w)
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("%s's callers (-graph +policy):\n%s", svc, diff)
		}
		if ap.Spec.GetAction().String() != "ALLOW" {
			t.Errorf("%s: action %s", svc, ap.Spec.GetAction())
		}
	}
	if !strings.Contains(kube.Principal("order-service", "shop"), "/ns/shop/sa/order-service") {
		t.Error(kube.Principal("order-service", "shop"))
	}
}

// In a cluster without Istio the router's first call says what to
// install, and a release there leaves nothing of the new version behind.
func TestWithoutIstio(t *testing.T) {
	p := kubetest.Extra(t, kubetest.Options{NoIstio: true})
	ns := p.Namespace(t)
	rc := bindRole(t, p, ns, role(t))
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ic, err := istioclient.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := kube.DefaultConfig(ns)
	cfg.Image = fakeImage
	cfg.DrainTimeout = 5 * time.Second
	tg, err := kube.New(context.Background(), cs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{p: p, ns: ns, target: tg, router: kube.NewRouter(ic, tg), cs: cs, ic: ic}
	ctx := context.Background()
	err = e.router.SetSubset(ctx, "user-service", deploy.Subset{Name: "v1"})
	if err == nil || !strings.Contains(err.Error(), "Istio is not installed") {
		t.Fatalf("SetSubset without Istio = %v, want it to say Istio is not installed", err)
	}
	m := shopManifest(t)
	store, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "history.db"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.orchestrator(t, m, store).Deploy(ctx, deploy.Request{Services: []string{"user-service"}, Environment: "production", Who: "test"}, nil)
	if err == nil {
		t.Fatal("a release on a cluster without Istio succeeded")
	}
	t.Logf("release: %v", err)
	if l, err := p.Clientset.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
		t.Errorf("after the failed release: %d Deployments (%v), want none", len(l.Items), err)
	}
}
