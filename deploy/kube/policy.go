package kube

import (
	"context"
	"fmt"
	"slices"
	"sort"

	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	securityv1ac "istio.io/client-go/pkg/applyconfiguration/security/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"

	"github.com/flotilla-ci/flotilla/graph"
)

// GatewayPrincipal is the identity of Istio's default ingress gateway.
const GatewayPrincipal = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"

// Principal is the SPIFFE identity (without spiffe://) Istio gives a
// service's pods: its ServiceAccount's.
func Principal(service, namespace string) string {
	return "cluster.local/ns/" + namespace + "/sa/" + service
}

// PeerAuthentication requires mutual TLS for every workload of the
// namespace.
func PeerAuthentication(namespace string) *securityv1ac.PeerAuthenticationApplyConfiguration {
	pa := securityv1ac.PeerAuthentication("default", namespace).WithLabels(map[string]string{LabelManagedBy: ManagedBy})
	pa.Spec = &securityv1beta1.PeerAuthentication{
		Mtls: &securityv1beta1.PeerAuthentication_MutualTLS{Mode: securityv1beta1.PeerAuthentication_MutualTLS_STRICT},
	}
	return pa
}

// Callers returns who may call each service of the manifest: the services
// that declare depends_on on it, sorted, as the local mesh authorizes.
func Callers(m *graph.Manifest) map[string][]string {
	out := map[string][]string{}
	for _, s := range m.Services {
		out[s.Name] = nil
	}
	for _, s := range m.Services {
		for _, d := range s.DependsOn {
			out[d] = append(out[d], s.Name)
		}
	}
	for k := range out {
		sort.Strings(out[k])
		out[k] = slices.Compact(out[k])
	}
	return out
}

// AuthorizationPolicies returns one ALLOW policy per service of the
// manifest, sorted by service, admitting exactly the service accounts of
// its callers (Callers) and, for the services in public, the ingress
// gateway. A service nobody may call gets a policy without rules, which
// Istio reads as "allow nothing".
func AuthorizationPolicies(m *graph.Manifest, namespace string, public []string) []*securityv1ac.AuthorizationPolicyApplyConfiguration {
	callers := Callers(m)
	var out []*securityv1ac.AuthorizationPolicyApplyConfiguration
	for _, s := range m.Services {
		var principals []string
		for _, c := range callers[s.Name] {
			principals = append(principals, Principal(c, namespace))
		}
		if slices.Contains(public, s.Name) {
			principals = append(principals, GatewayPrincipal)
		}
		spec := &securityv1beta1.AuthorizationPolicy{
			Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{LabelApp: s.Name}},
			Action:   securityv1beta1.AuthorizationPolicy_ALLOW,
		}
		if len(principals) > 0 {
			spec.Rules = []*securityv1beta1.Rule{{From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{Principals: principals}}}}}
		}
		ap := securityv1ac.AuthorizationPolicy(s.Name, namespace).WithLabels(labels(s.Name))
		ap.Spec = spec
		out = append(out, ap)
	}
	return out
}

// ApplySecurity writes the namespace's PeerAuthentication and the
// manifest's AuthorizationPolicies.
func ApplySecurity(ctx context.Context, ic istioclient.Interface, m *graph.Manifest, namespace string, public []string) error {
	sec := ic.SecurityV1()
	if _, err := sec.PeerAuthentications(namespace).Apply(ctx, PeerAuthentication(namespace), apply); err != nil {
		return fmt.Errorf("peer authentication: %w", explainIstio(err))
	}
	for _, ap := range AuthorizationPolicies(m, namespace, public) {
		if _, err := sec.AuthorizationPolicies(namespace).Apply(ctx, ap, apply); err != nil {
			return fmt.Errorf("authorization policy %s: %w", *ap.Name, explainIstio(err))
		}
	}
	return nil
}
