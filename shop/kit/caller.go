package kit

import "context"

// CallerHeader names the calling service on every call one shop service
// makes to another. The mesh authorises calls by it against the graph's
// depends_on (mesh.CallerHeader is the same header), and a service's logs
// can say who called.
const CallerHeader = "X-Flotilla-Caller"

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
