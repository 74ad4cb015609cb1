package kube_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/kube"
	"github.com/flotilla-ci/flotilla/internal/kubetest"
)

var plane *kubetest.Plane

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m, &plane)) }

// fakeImage pins a version's image by a digest made from its version:
// the plane runs no containers, so the image is never pulled.
func fakeImage(_ context.Context, spec deploy.Spec) (string, error) {
	sum := fmt.Sprintf("%064x", []byte(spec.Version))
	return "registry.test/shop/" + spec.Service + "@sha256:" + sum[len(sum)-64:], nil
}

type env struct {
	p      *kubetest.Plane
	ns     string
	target *kube.Target
	router *kube.Router
	// cs and ic are the clients of the Role-bound ServiceAccount.
	cs kubernetes.Interface
	ic istioclient.Interface
}

// newEnv gives a test a namespace and a target and router that work as
// flotilla would in a cluster: as a ServiceAccount bound to role.yaml's
// Role and nothing else, so every test of the suite also proves the Role
// is enough. neverReady lists the versions whose pods kwok must leave
// unready.
func newEnv(t *testing.T, neverReady ...string) *env {
	t.Helper()
	p := kubetest.Need(t, plane)
	ns := p.Namespace(t)
	rc := bindRole(t, p, ns, role(t))
	cfg := kube.DefaultConfig(ns)
	cfg.Image = fakeImage
	cfg.ReadyTimeout = 30 * time.Second
	cfg.DrainTimeout = 10 * time.Second
	cfg.PodLabels = func(spec deploy.Spec) map[string]string {
		if slices.Contains(neverReady, spec.Version) {
			return map[string]string{kubetest.NeverReady: "true"}
		}
		return nil
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := kube.New(context.Background(), cs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ic, err := istioclient.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return &env{p: p, ns: ns, target: tg, router: kube.NewRouter(ic, tg), cs: cs, ic: ic}
}

// role reads the Role flotilla ships.
func role(t *testing.T) *rbacv1.Role {
	t.Helper()
	data, err := os.ReadFile("role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var r rbacv1.Role
	if err := yaml.UnmarshalStrict(data, &r); err != nil {
		t.Fatalf("role.yaml: %v", err)
	}
	if r.Kind != "Role" || len(r.Rules) == 0 {
		t.Fatalf("role.yaml: kind %q with %d rules, want a Role with rules", r.Kind, len(r.Rules))
	}
	return &r
}

// bindRole creates the Role in the namespace, binds it to a new
// ServiceAccount "flotilla" and returns a config that authenticates as
// that account.
func bindRole(t *testing.T, p *kubetest.Plane, ns string, r *rbacv1.Role) *rest.Config {
	t.Helper()
	ctx := context.Background()
	r = r.DeepCopy()
	r.Namespace = ns
	if _, err := p.Clientset.RbacV1().Roles(ns).Create(ctx, r, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: r.Name, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: r.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "flotilla", Namespace: ns}},
	}
	if _, err := p.Clientset.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return p.ServiceAccount(t, ns, "flotilla")
}

func spec(service, version string, replicas int) deploy.Spec {
	return deploy.Spec{
		Service: service, Version: version, Source: version, Replicas: replicas, Health: "/healthz",
		Build: deploy.Build{Package: "./cmd/" + service},
		Env:   map[string]string{"USER_URL": "http://user-service.shop.svc.cluster.local:80"},
	}
}

func TestApplyStatusRemove(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	insts, err := e.target.Apply(ctx, spec("order-service", "v1", 2))
	if err != nil {
		t.Fatal(err)
	}
	if len(insts) != 2 {
		t.Fatalf("Apply returned %d instances, want 2: %+v", len(insts), insts)
	}
	for i, in := range insts {
		if in.Service != "order-service" || in.Version != "v1" || in.Index != i || in.State != deploy.StateReady || !strings.HasSuffix(in.Addr, ":8080") {
			t.Errorf("instance %d = %+v, want order-service v1 ready on :8080", i, in)
		}
	}

	d, err := e.p.Clientset.AppsV1().Deployments(e.ns).Get(ctx, "order-service-v1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{"app": "order-service", "version": "v1", "app.kubernetes.io/managed-by": "flotilla"}
	if diff := cmp.Diff(wantLabels, d.Labels); diff != "" {
		t.Errorf("deployment labels (-want +got):\n%s", diff)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("readiness probe = %+v, want GET /healthz", c.ReadinessProbe)
	}
	if !strings.Contains(c.Image, "@sha256:") || d.Spec.Template.Spec.ServiceAccountName != "order-service" {
		t.Errorf("image %q, service account %q: want a digest and order-service", c.Image, d.Spec.Template.Spec.ServiceAccountName)
	}
	env := map[string]string{}
	for _, v := range c.Env {
		env[v.Name] = v.Value
	}
	if env["USER_URL"] != "http://user-service.shop.svc.cluster.local:80" || env["PORT"] != "8080" || env["FLOTILLA_VERSION"] != "v1" {
		t.Errorf("container env = %v", env)
	}
	managers := map[string]bool{}
	for _, f := range d.ManagedFields {
		if f.Operation == metav1.ManagedFieldsOperationApply {
			managers[f.Manager] = true
		}
	}
	if !managers["flotilla"] {
		t.Errorf("managed fields %v: want a server-side apply by flotilla", managers)
	}
	if _, err := e.p.Clientset.CoreV1().Services(e.ns).Get(ctx, "order-service", metav1.GetOptions{}); err != nil {
		t.Errorf("stable Service: %v", err)
	}
	if _, err := e.p.Clientset.CoreV1().ServiceAccounts(e.ns).Get(ctx, "order-service", metav1.GetOptions{}); err != nil {
		t.Errorf("ServiceAccount: %v", err)
	}

	// Applying a running version again returns its instances.
	again, err := e.target.Apply(ctx, spec("order-service", "v1", 2))
	if err != nil || len(again) != 2 {
		t.Fatalf("Apply again: %d instances, %v", len(again), err)
	}
	if _, err := e.target.Apply(ctx, spec("user-service", "u1", 1)); err != nil {
		t.Fatal(err)
	}

	// A new target (flotilla restarted) adopts what runs, from the labels.
	cfg := kube.DefaultConfig(e.ns)
	cfg.Image = fakeImage
	adopted, err := kube.New(ctx, e.cs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	all, err := adopted.Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, in := range all {
		got = append(got, fmt.Sprintf("%s@%s#%d %s", in.Service, in.Version, in.Index, in.State))
	}
	want := []string{"order-service@v1#0 ready", "order-service@v1#1 ready", "user-service@u1#0 ready"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("adopted status (-want +got):\n%s", diff)
	}

	if err := adopted.Remove(ctx, "order-service", "v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Clientset.AppsV1().Deployments(e.ns).Get(ctx, "order-service-v1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after Remove the Deployment is still there (%v)", err)
	}
	if left, _ := e.target.Status(ctx, "order-service"); len(left) != 0 {
		t.Errorf("after Remove: %+v", left)
	}
	if err := e.target.Remove(ctx, "order-service", "v1"); !errors.Is(err, deploy.ErrNotFound) {
		t.Errorf("Remove of a removed version = %v, want ErrNotFound", err)
	}
	if _, err := e.p.Clientset.CoreV1().Services(e.ns).Get(ctx, "order-service", metav1.GetOptions{}); err != nil {
		t.Errorf("the stable Service must outlive its versions: %v", err)
	}
}

// A version whose pods never become ready misses its progress deadline:
// the error says so with the pod's state, the version is deleted again,
// and the version serving before never lost a replica.
func TestNeverReadyVersionIsRemoved(t *testing.T) {
	e := newEnv(t, "v2")
	ctx := context.Background()
	if _, err := e.target.Apply(ctx, spec("cart-service", "v1", 2)); err != nil {
		t.Fatal(err)
	}
	s := spec("cart-service", "v2", 2)
	s.ReadyTimeout = 2 * time.Second
	start := time.Now()
	_, err := e.target.Apply(ctx, s)
	if !errors.Is(err, deploy.ErrNotReady) {
		t.Fatalf("Apply of a never-ready version = %v, want ErrNotReady", err)
	}
	for _, want := range []string{"cart-service@v2", "ProgressDeadlineExceeded", "pod cart-service-v2-", "not ready"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	t.Logf("failed after %s: %v", time.Since(start).Round(100*time.Millisecond), err)
	if _, err := e.p.Clientset.AppsV1().Deployments(e.ns).Get(ctx, "cart-service-v2", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the failed version's Deployment is still there (%v)", err)
	}
	d, err := e.p.Clientset.AppsV1().Deployments(e.ns).Get(ctx, "cart-service-v1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.AvailableReplicas != 2 || d.Generation != 1 {
		t.Errorf("old version: %d available, generation %d; want 2 and untouched (1)", d.Status.AvailableReplicas, d.Generation)
	}
}

func TestApplyRefusesBadInput(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cfg := kube.DefaultConfig(e.ns)
	cfg.Image = func(context.Context, deploy.Spec) (string, error) {
		return "registry.test/shop/user-service:latest", nil
	}
	tg, err := kube.New(ctx, e.p.Clientset, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Apply(ctx, spec("user-service", "v1", 1)); err == nil || !strings.Contains(err.Error(), "has no digest") {
		t.Errorf("an image without a digest: %v", err)
	}
	if _, err := e.target.Apply(ctx, spec("User_Service", "v1", 1)); err == nil || !strings.Contains(err.Error(), "cannot name") {
		t.Errorf("a service Kubernetes cannot name: %v", err)
	}
	cfg.Namespace = "no-such-namespace"
	if _, err := kube.New(ctx, e.p.Clientset, cfg); err == nil || !strings.Contains(err.Error(), `namespace "no-such-namespace" does not exist`) {
		t.Errorf("a missing namespace: %v", err)
	}
	if l, _ := e.p.Clientset.AppsV1().Deployments(e.ns).List(ctx, metav1.ListOptions{}); len(l.Items) != 0 {
		t.Errorf("refused applies left %d Deployments", len(l.Items))
	}
}

// With a Role missing one verb flotilla needs (patch on VirtualServices),
// the call that needs it fails with an error that names the verb and the
// resource, and says where the Role is.
func TestRoleWithoutPatchOnVirtualServices(t *testing.T) {
	p := kubetest.Need(t, plane)
	ns := p.Namespace(t)
	r := role(t)
	found := false
	for i, rule := range r.Rules {
		if slices.Contains(rule.Resources, "virtualservices") {
			r.Rules[i].Resources = slices.DeleteFunc(slices.Clone(rule.Resources), func(s string) bool { return s == "virtualservices" })
			r.Rules = append(r.Rules, rbacv1.PolicyRule{APIGroups: rule.APIGroups, Resources: []string{"virtualservices"},
				Verbs: slices.DeleteFunc(slices.Clone(rule.Verbs), func(v string) bool { return v == "patch" })})
			found = true
		}
	}
	if !found {
		t.Fatal("role.yaml grants nothing on virtualservices")
	}
	rc := bindRole(t, p, ns, r)
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
	tg, err := kube.New(context.Background(), cs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = kube.NewRouter(ic, tg).SetSubset(context.Background(), "user-service", deploy.Subset{Name: "v1"})
	if err == nil {
		t.Fatal("SetSubset without patch on virtualservices succeeded")
	}
	for _, want := range []string{"cannot patch", `"virtualservices"`, "networking.istio.io", "deploy/kube/role.yaml"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
