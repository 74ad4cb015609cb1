package kit

import (
	"context"
	"net/http"
	"slices"

	"github.com/flotilla-ci/flotilla/identity"
)

// CallerHeader names the calling service on every call one shop service
// makes to another (shop/kit's Client sets it): the mesh authorises calls
// against the graph's depends_on, and a service's logs can say who called.
const CallerHeader = "X-Flotilla-Caller"

// VerifiedCallerHeader is the header Caller reads: the identity of the
// service that made a call, as the mesh passes it on. The edge gateway
// removes a client's own value and sets its own name (mesh.GatewayCaller),
// so a request from outside never names a shop service; the mesh, with
// mutual TLS, sets it from the peer certificate after stripping the
// incoming one. Re-point it here (one place) if the mesh passes the
// verified identity under another name.
const VerifiedCallerHeader = CallerHeader

// OnBehalfOfHeader names the user a service acts for when it calls an
// internal endpoint (order-service's saga reserving stock for the order's
// user). It is read only on calls from a service the endpoint allows: a
// client cannot set it, since the gateway never forwards to an internal
// endpoint and Caller never names a shop service for a public request.
const OnBehalfOfHeader = "X-Shop-User"

// RoleService is the role of the claims an internal endpoint sees: a
// service identity, acting for the user named by OnBehalfOfHeader (if any).
const RoleService = "service"

// Caller is the service identity that made r, as the mesh verified it
// ("" when none: a process that did not come through the mesh). On a
// mutual TLS connection it is the service account of Peer (the caller's
// certificate, or the mesh's X-Flotilla-Peer when the mesh forwarded the
// call), never a header a client chose: the platform's own identities
// (gateway, probes, smoke checks) are no shop service. Only a service
// without identities, or a plaintext connection that permissive mode let
// in, falls back to VerifiedCallerHeader, which the gateway overwrites
// for every public request.
func Caller(r *http.Request) string {
	if ci, _ := r.Context().Value(connKey{}).(*connInfo); ci != nil && !identity.PeerOf(ci.c).IsZero() {
		name, ns := PeerService(r)
		if ns == "" || ns == identity.SystemNamespace {
			return ""
		}
		return name
	}
	return r.Header.Get(VerifiedCallerHeader)
}

// Internal lets h run only for calls from one of services (their names in
// flotilla.yaml): an internal endpoint, which the gateway does not expose
// and which no user's token opens. Any other caller gets 403
// internal_endpoint. h sees claims with RoleService, the calling service,
// and the user named by OnBehalfOfHeader as subject.
func Internal(h HandlerFunc, services ...string) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		c := Caller(r)
		if c == "" || !slices.Contains(services, c) {
			who := c
			if who == "" {
				who = "a caller without a service identity"
			}
			return Errorf(http.StatusForbidden, "internal_endpoint", "%s %s is internal: only %v may call it, not %s", r.Method, r.URL.Path, services, who)
		}
		return h(w, r.WithContext(serviceClaims(r, c)))
	}
}

// AuthOrService is Auth for a user's token, except that a call from one of
// services (an endpoint both public and used internally, such as an order
// that shipping-service reads) runs as Internal would run it.
func (v *Verifier) AuthOrService(h HandlerFunc, services ...string) HandlerFunc {
	auth := v.Auth(h)
	return func(w http.ResponseWriter, r *http.Request) error {
		if c := Caller(r); c != "" && slices.Contains(services, c) {
			return h(w, r.WithContext(serviceClaims(r, c)))
		}
		return auth(w, r)
	}
}

func serviceClaims(r *http.Request, service string) context.Context {
	c := &Claims{Role: RoleService, Service: service}
	c.Subject = r.Header.Get(OnBehalfOfHeader)
	return context.WithValue(r.Context(), claimsKey{}, c)
}

type serviceKey struct{}

// WithService returns ctx carrying the name of the service doing the work,
// so calls made under it (Client.Do, the JWKS fetch) name their caller.
// The App puts it on every request, consumer and background context.
func WithService(ctx context.Context, service string) context.Context {
	return context.WithValue(ctx, serviceKey{}, service)
}

// ServiceFrom is the service named by WithService, or "".
func ServiceFrom(ctx context.Context) string {
	s, _ := ctx.Value(serviceKey{}).(string)
	return s
}
