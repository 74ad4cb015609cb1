package mesh

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/flotilla-ci/flotilla/tracing"
)

// TraceIDHeader is set on every answer of a traced gateway to the
// request's trace id (beside traceparent), so a user can go from a failed
// request to its trace.
const TraceIDHeader = "X-Trace-Id"

const tracerName = "github.com/flotilla-ci/flotilla/mesh"

// hopTracer is the tracer of the mesh's spans: nil when p is nil or
// disabled, and the hot path then does nothing for tracing beyond one
// nil check.
func hopTracer(p *tracing.Provider) trace.Tracer {
	if p == nil || !p.Enabled() {
		return nil
	}
	return p.Tracer(tracerName)
}

// startHop starts the span of one mesh hop, "mesh <service>": a child of
// the caller's trace context (or of the gateway's span), naming the
// subset (version) the request was routed to and the lane that chose it
// (pinned by X-Flotilla-Version, the canary header, or the weights). The
// span's context replaces the request's traceparent, so the instance's
// server span is the hop's child.
func (s *service) startHop(r *http.Request, sub *subset, caller string) (*http.Request, trace.Span) {
	ctx := r.Context()
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = tracing.Propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	lane := "weighted"
	switch {
	case len(r.Header[VersionHeader]) > 0:
		lane = "pinned"
	case sub.canary && len(r.Header[CanaryHeader]) > 0 && strings.EqualFold(r.Header[CanaryHeader][0], "true"):
		lane = "canary"
	}
	ctx, span := s.m.tracer.Start(ctx, "mesh "+s.name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("peer.service", s.name),
		attribute.String("flotilla.caller", caller),
		attribute.String("flotilla.subset", sub.name),
		attribute.String("service.version", sub.name),
		attribute.Bool("flotilla.canary", sub.canary),
		attribute.String("flotilla.lane", lane),
		attribute.String("http.request.method", r.Method),
		attribute.String("url.path", r.URL.Path),
	))
	tracing.Propagator.Inject(ctx, propagation.HeaderCarrier(r.Header))
	return r.WithContext(ctx), span
}

// endHop ends a hop's span with where the request went (the subset may
// have changed when its first choice was removed meanwhile) and its
// status.
func endHop(span trace.Span, st *reqState, status int) {
	attrs := []attribute.KeyValue{attribute.Int("http.response.status_code", status)}
	if st.sub != nil {
		attrs = append(attrs, attribute.String("flotilla.subset", st.sub.name), attribute.String("service.version", st.sub.name))
	}
	if st.ep != nil {
		attrs = append(attrs, attribute.String("server.address", st.ep.addr))
	}
	span.SetAttributes(attrs...)
	if status >= 500 && status != StatusClientClosed {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}

// startEdge starts the gateway's server span for r, a child of the
// client's traceparent when it sent one, and answers its trace id in the
// traceparent and X-Trace-Id response headers.
func (g *Gateway) startEdge(w http.ResponseWriter, r *http.Request) (*http.Request, trace.Span) {
	ctx := tracing.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := g.mesh.tracer.Start(ctx, "gateway "+r.Method, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		attribute.String("http.request.method", r.Method),
		attribute.String("url.path", r.URL.Path),
	))
	sc := span.SpanContext()
	w.Header().Set("Traceparent", tracing.FormatTraceparent(sc))
	w.Header().Set(TraceIDHeader, sc.TraceID().String())
	tracing.Propagator.Inject(ctx, propagation.HeaderCarrier(r.Header))
	return r.WithContext(ctx), span
}

// endEdge names the gateway's span after the route that matched and
// records the answer.
func endEdge(span trace.Span, route *gwRoute, status int, reason string) {
	if route != nil {
		span.SetName("gateway " + route.index)
		span.SetAttributes(attribute.String("http.route", route.index), attribute.String("peer.service", route.entry.Service))
	}
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if reason != "" {
		span.SetAttributes(attribute.String("flotilla.refusal", reason))
	}
	if status >= 500 && status != StatusClientClosed {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}
