package kit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/tracing"
)

// tracerName is the instrumentation scope of the kit's spans.
const tracerName = "github.com/flotilla-ci/flotilla/shop/kit"

// noMeters keeps otelhttp from recording metrics the services do not
// export.
var noMeters = metricnoop.NewMeterProvider()

// traceRequests makes every request (but the probes and metrics) a server
// span of the App's provider, a child of the caller's traceparent. The
// span is named after the route pattern that matched (problemMux names
// it): "POST /orders", never the path with its ids.
func (a *App) traceRequests(next http.Handler) http.Handler {
	return otelhttp.NewHandler(next, a.Config.Service,
		otelhttp.WithTracerProvider(a.Tracing),
		otelhttp.WithPropagators(tracing.Propagator),
		otelhttp.WithMeterProvider(noMeters),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			if r.Pattern != "" {
				return r.Method + " " + route(r.Pattern)
			}
			return r.Method
		}),
		otelhttp.WithFilter(func(r *http.Request) bool {
			return r.URL.Path != "/health" && r.URL.Path != "/ready" && !strings.HasPrefix(r.URL.Path, "/metrics/")
		}),
	)
}

// nameSpan names the request's span after the mux pattern that matched,
// and sets http.route.
func nameSpan(r *http.Request, pattern string) {
	span := trace.SpanFromContext(r.Context())
	if !span.IsRecording() || pattern == "" {
		return
	}
	rt := route(pattern)
	span.SetName(r.Method + " " + rt)
	span.SetAttributes(attribute.String("http.route", rt))
}

// route is the path of a mux pattern ("POST /orders/{id}" → "/orders/{id}").
func route(pattern string) string {
	if m, p, ok := strings.Cut(pattern, " "); ok && !strings.Contains(m, "/") {
		pattern = p
	}
	if i := strings.IndexByte(pattern, '/'); i > 0 { // a host pattern
		pattern = pattern[i:]
	}
	return pattern
}

// traceContext makes sure every request has a trace context, even with
// tracing off and no caller's traceparent (a trace id of its own, so its
// logs and events still correlate), and echoes it in the response's
// traceparent header.
func traceContext(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc := trace.SpanContextFromContext(r.Context())
		if !sc.IsValid() {
			ctx, _ := tracing.ContextWithTraceparent(r.Context(), newTraceparent())
			r = r.WithContext(ctx)
			sc = trace.SpanContextFromContext(ctx)
		}
		w.Header().Set("traceparent", tracing.FormatTraceparent(sc))
		next.ServeHTTP(w, r)
	})
}

func newTraceparent() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "00-" + hex.EncodeToString(b[:16]) + "-" + hex.EncodeToString(b[16:]) + "-01"
}

// failSpan records err on span. A refusal the caller caused (an *Error
// below 500: out of stock, not found) is recorded as an event with its
// code, the span not failed; anything else fails the span.
func failSpan(span trace.Span, err error) {
	if err == nil || !span.IsRecording() {
		return
	}
	var e *Error
	if errors.As(err, &e) {
		span.SetAttributes(attribute.String("error.type", e.Code))
		if e.Status < 500 {
			span.AddEvent("refused", trace.WithAttributes(attribute.String("code", e.Code), attribute.String("message", e.Message)))
			return
		}
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// tracingMetrics serves GET /metrics/tracing: the trace exporter's
// counters (spans exported, dropped, failed exports).
func (a *App) tracingMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	a.Tracing.WritePrometheus(w, `service="`+a.Config.Service+`"`)
}

// InTx runs fn in a transaction of db (sqldb.DB.InTx); under a traced
// request or delivery the transaction is a span, "db.transaction",
// failed when fn (other than with a refusal, see failSpan) or the commit
// fails.
func InTx(ctx context.Context, db *sqldb.DB, fn func(tx *sqldb.Tx) error) error {
	ctx, span := tracing.Tracer(ctx, tracerName).Start(ctx, "db.transaction", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system.name", dbSystem(db.Dialect))))
	err := db.InTx(ctx, fn)
	if !errors.Is(err, errDuplicate) {
		failSpan(span, err)
	}
	span.End()
	return err
}

func dbSystem(d sqldb.Dialect) string {
	if d == sqldb.Postgres {
		return "postgresql"
	}
	return string(d)
}

// clientTransport traces a Client's calls: a client span per call, named
// "<METHOD> <service>", whose context goes to the callee in traceparent.
// The span is the caller's provider's (the span in the call's context).
func clientTransport(service string, base http.RoundTripper) http.RoundTripper {
	return otelhttp.NewTransport(base,
		otelhttp.WithPropagators(tracing.Propagator),
		otelhttp.WithMeterProvider(noMeters),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + service }),
		otelhttp.WithSpanOptions(trace.WithAttributes(attribute.String("peer.service", service))),
	)
}
