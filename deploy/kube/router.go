package kube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	networkingv1ac "istio.io/client-go/pkg/applyconfiguration/networking/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/deploy"
)

var _ deploy.Router = (*Router)(nil)

// The route names of a service's VirtualService, in their order: the
// header lane, one pin per version, the weighted default.
const (
	routeCanary  = "canary"
	routeVersion = "version-"
	routeDefault = "default"
)

// The headers the lanes match, as Istio wants them: lower case.
var (
	canaryHeader  = strings.ToLower(deploy.CanaryHeader)
	versionHeader = strings.ToLower(deploy.VersionHeader)
)

// Router is the Kubernetes target's router: per service a DestinationRule
// with one subset per version (selected by the version label) and a
// VirtualService whose first route sends X-Canary: true to the canary
// subset, whose next routes pin X-Flotilla-Version: V to subset V, and
// whose last (default) route carries the weights. Its state is those two
// objects: a restarted flotilla reads the routing back from them.
//
// Weights are written as Istio wants them, summing to 100: weights that
// do not are scaled (largest remainder), so Weights returns shares in
// percent.
type Router struct {
	ic     istioclient.Interface
	target *Target
	ns     string

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// NewRouter returns the router of a target's namespace.
func NewRouter(ic istioclient.Interface, target *Target) *Router {
	return &Router{ic: ic, target: target, ns: target.cfg.Namespace, locks: map[string]*sync.Mutex{}}
}

// lock serialises the read-modify-write of one service's routing.
func (r *Router) lock(service string) func() {
	r.mu.Lock()
	l := r.locks[service]
	if l == nil {
		l = &sync.Mutex{}
		r.locks[service] = l
	}
	r.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Routing is a service's routing, as the Istio objects hold it.
type Routing struct {
	Service string
	Subsets []string // sorted
	Canary  string   // the header lane's subset ("" when none)
	Weights map[string]int
}

// Host is the service's host name in the mesh.
func Host(service, namespace string) string {
	return service + "." + namespace + ".svc.cluster.local"
}

// DestinationRule is a routing's DestinationRule: a subset per version.
func DestinationRule(rt Routing, namespace string) *networkingv1ac.DestinationRuleApplyConfiguration {
	spec := &networkingv1alpha3.DestinationRule{Host: Host(rt.Service, namespace)}
	for _, s := range rt.Subsets {
		spec.Subsets = append(spec.Subsets, &networkingv1alpha3.Subset{Name: s, Labels: map[string]string{LabelVersion: s}})
	}
	dr := networkingv1ac.DestinationRule(rt.Service, namespace).WithLabels(labels(rt.Service))
	dr.Spec = spec
	return dr
}

// VirtualService is a routing's VirtualService.
func VirtualService(rt Routing, namespace string) *networkingv1ac.VirtualServiceApplyConfiguration {
	host := Host(rt.Service, namespace)
	dest := func(subset string, weight int32) *networkingv1alpha3.HTTPRouteDestination {
		return &networkingv1alpha3.HTTPRouteDestination{Destination: &networkingv1alpha3.Destination{Host: host, Subset: subset}, Weight: weight}
	}
	exact := func(v string) *networkingv1alpha3.StringMatch {
		return &networkingv1alpha3.StringMatch{MatchType: &networkingv1alpha3.StringMatch_Exact{Exact: v}}
	}
	spec := &networkingv1alpha3.VirtualService{Hosts: []string{host}}
	if rt.Canary != "" {
		spec.Http = append(spec.Http, &networkingv1alpha3.HTTPRoute{
			Name:  routeCanary,
			Match: []*networkingv1alpha3.HTTPMatchRequest{{Headers: map[string]*networkingv1alpha3.StringMatch{canaryHeader: exact("true")}}},
			Route: []*networkingv1alpha3.HTTPRouteDestination{dest(rt.Canary, 0)},
		})
	}
	for _, s := range rt.Subsets {
		spec.Http = append(spec.Http, &networkingv1alpha3.HTTPRoute{
			Name:  routeVersion + s,
			Match: []*networkingv1alpha3.HTTPMatchRequest{{Headers: map[string]*networkingv1alpha3.StringMatch{versionHeader: exact(s)}}},
			Route: []*networkingv1alpha3.HTTPRouteDestination{dest(s, 0)},
		})
	}
	def := &networkingv1alpha3.HTTPRoute{Name: routeDefault}
	for _, s := range rt.Subsets {
		if w := rt.Weights[s]; w > 0 {
			def.Route = append(def.Route, dest(s, int32(w)))
		}
	}
	if len(def.Route) == 1 {
		def.Route[0].Weight = 0 // one destination: Istio's default, all of it
	}
	spec.Http = append(spec.Http, def)
	vs := networkingv1ac.VirtualService(rt.Service, namespace).WithLabels(labels(rt.Service))
	vs.Spec = spec
	return vs
}

// Routing reads a service's routing back from its objects; a service with
// neither is canary.ErrUnknownService.
func (r *Router) Routing(ctx context.Context, service string) (Routing, error) {
	rt := Routing{Service: service, Weights: map[string]int{}}
	dr, err := r.ic.NetworkingV1().DestinationRules(r.ns).Get(ctx, service, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && !noCRD(err) {
		return rt, fmt.Errorf("%w: %s has no DestinationRule in %s", canary.ErrUnknownService, service, r.ns)
	}
	if err != nil {
		return rt, explainIstio(err)
	}
	for _, s := range dr.Spec.GetSubsets() {
		rt.Subsets = append(rt.Subsets, s.GetName())
	}
	sort.Strings(rt.Subsets)
	vs, err := r.ic.NetworkingV1().VirtualServices(r.ns).Get(ctx, service, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && !noCRD(err) {
		return rt, nil
	}
	if err != nil {
		return rt, explainIstio(err)
	}
	for _, h := range vs.Spec.GetHttp() {
		switch h.GetName() {
		case routeCanary:
			if len(h.GetRoute()) > 0 {
				rt.Canary = h.GetRoute()[0].GetDestination().GetSubset()
			}
		case routeDefault:
			for _, d := range h.GetRoute() {
				w := int(d.GetWeight())
				if len(h.GetRoute()) == 1 {
					w = 100
				}
				rt.Weights[d.GetDestination().GetSubset()] = w
			}
		}
	}
	return rt, nil
}

// write applies the routing: the DestinationRule first when subsets are
// added (a route never names a subset that does not exist yet), last
// when they are removed.
func (r *Router) write(ctx context.Context, rt Routing, removing bool) error {
	drs := r.ic.NetworkingV1().DestinationRules(r.ns)
	vss := r.ic.NetworkingV1().VirtualServices(r.ns)
	dr := func() error {
		_, err := drs.Apply(ctx, DestinationRule(rt, r.ns), apply)
		return err
	}
	vs := func() error {
		_, err := vss.Apply(ctx, VirtualService(rt, r.ns), apply)
		return err
	}
	order := []func() error{dr, vs}
	if removing {
		order = []func() error{vs, dr}
	}
	for _, f := range order {
		if err := f(); err != nil {
			return explainIstio(err)
		}
	}
	return nil
}

// Declare implements deploy.Router: the service's ServiceAccount and
// stable Service.
func (r *Router) Declare(ctx context.Context, service string) (string, error) {
	return r.target.Declare(ctx, service)
}

// SetSubset implements deploy.Router. Endpoints are the pods the version
// label selects; Istio finds them itself.
func (r *Router) SetSubset(ctx context.Context, service string, sub deploy.Subset) error {
	if sub.Name == "" {
		return errors.New("set subset: empty name")
	}
	defer r.lock(service)()
	rt, err := r.Routing(ctx, service)
	if err != nil && !errors.Is(err, canary.ErrUnknownService) {
		return fmt.Errorf("set subset %s of %s: %w", sub.Name, service, err)
	}
	if !slices.Contains(rt.Subsets, sub.Name) {
		rt.Subsets = append(rt.Subsets, sub.Name)
		sort.Strings(rt.Subsets)
	}
	switch {
	case sub.Canary:
		rt.Canary = sub.Name
	case rt.Canary == sub.Name:
		rt.Canary = ""
	}
	if len(rt.Subsets) == 1 {
		rt.Weights = map[string]int{sub.Name: 100}
	}
	if err := r.write(ctx, rt, false); err != nil {
		return fmt.Errorf("set subset %s of %s: %w", sub.Name, service, err)
	}
	return nil
}

// RemoveSubset implements deploy.Router. What is in flight through the
// sidecars is Envoy's to drain: the call returns once the objects no
// longer name the subset. Removing the subset that still has weight
// hands its share to the others, in proportion.
func (r *Router) RemoveSubset(ctx context.Context, service, subset string) error {
	defer r.lock(service)()
	rt, err := r.Routing(ctx, service)
	if err != nil {
		return fmt.Errorf("remove subset %s of %s: %w", subset, service, err)
	}
	if !slices.Contains(rt.Subsets, subset) {
		return nil
	}
	rt.Subsets = slices.DeleteFunc(rt.Subsets, func(s string) bool { return s == subset })
	if rt.Canary == subset {
		rt.Canary = ""
	}
	delete(rt.Weights, subset)
	if len(rt.Weights) > 0 {
		rt.Weights = normalize(rt.Weights)
	}
	if err := r.write(ctx, rt, true); err != nil {
		return fmt.Errorf("remove subset %s of %s: %w", subset, service, err)
	}
	return nil
}

// SetWeights implements canary.Router.
func (r *Router) SetWeights(ctx context.Context, service string, weights map[string]int) error {
	defer r.lock(service)()
	rt, err := r.Routing(ctx, service)
	if err != nil {
		return fmt.Errorf("set weights of %s: %w", service, err)
	}
	total := 0
	for _, name := range slices.Sorted(maps.Keys(weights)) {
		w := weights[name]
		if !slices.Contains(rt.Subsets, name) {
			return fmt.Errorf("set weights of %s: unknown subset %q (have %s)", service, name, strings.Join(rt.Subsets, ", "))
		}
		if w < 0 {
			return fmt.Errorf("set weights of %s: subset %s: negative weight %d", service, name, w)
		}
		total += w
	}
	if total == 0 {
		return fmt.Errorf("set weights of %s: no subset has a positive weight", service)
	}
	rt.Weights = normalize(weights)
	if err := r.write(ctx, rt, false); err != nil {
		return fmt.Errorf("set weights of %s: %w", service, err)
	}
	return nil
}

// Weights implements canary.Router: every subset's share in percent.
func (r *Router) Weights(ctx context.Context, service string) (map[string]int, error) {
	rt, err := r.Routing(ctx, service)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, s := range rt.Subsets {
		out[s] = rt.Weights[s]
	}
	return out, nil
}

// normalize scales positive weights to sum to 100 (largest remainder,
// ties by name), dropping zeros.
func normalize(w map[string]int) map[string]int {
	total := 0
	for _, v := range w {
		total += max(v, 0)
	}
	out := map[string]int{}
	if total == 0 {
		return out
	}
	type rem struct {
		name string
		r    int
	}
	var rems []rem
	sum := 0
	for _, name := range slices.Sorted(maps.Keys(w)) {
		v := max(w[name], 0)
		if v == 0 {
			continue
		}
		out[name] = v * 100 / total
		sum += out[name]
		rems = append(rems, rem{name, v * 100 % total})
	}
	sort.SliceStable(rems, func(i, j int) bool { return rems[i].r > rems[j].r })
	for i := 0; sum < 100; i++ {
		out[rems[i%len(rems)].name]++
		sum++
	}
	for k, v := range out {
		if v == 0 {
			delete(out, k)
		}
	}
	return out
}

// explain says what to install when Istio's CRDs are missing.
func explainIstio(err error) error {
	if noCRD(err) {
		return fmt.Errorf("%w: Istio is not installed in this cluster (no CRD for networking.istio.io/v1 or security.istio.io/v1): install Istio (istioctl install, or its base chart) first", err)
	}
	return explain(err)
}

// noCRD tells a missing resource type from a missing object: the API
// server answers 404 to both.
func noCRD(err error) bool {
	return apierrors.IsNotFound(err) && strings.Contains(err.Error(), "the server could not find the requested resource")
}
