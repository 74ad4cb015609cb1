// Package tracing sets up OpenTelemetry tracing for flotilla's processes
// and the shop's services: a tracer provider configured by the standard
// OTEL_* variables (ParseEnv, Setup), the W3C trace context and baggage
// propagators (Propagator), an exporter that never blocks the work it
// traces (a collector that is down costs dropped spans, counted, not
// slower requests), and a slog handler that stamps records with the
// trace_id and span_id of their context (LogHandler).
//
// Instrumented code takes its tracer from the span in its context
// (trace.SpanFromContext(ctx).TracerProvider()), so work done for a
// request is traced by the provider of the service serving it, and costs
// nothing where no provider traces.
package tracing

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Propagator carries trace context and baggage in W3C form (traceparent,
// tracestate, baggage) over HTTP headers and bus message headers.
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Provider is a process's tracing: its tracer provider and the counters of
// its exporter.
type Provider struct {
	trace.TracerProvider
	sdk  *sdktrace.TracerProvider // nil when tracing is off
	proc *processor
	cfg  Config
}

// Enabled reports whether spans are recorded and exported.
func (p *Provider) Enabled() bool { return p.sdk != nil }

// Config is the configuration the provider was set up with.
func (p *Provider) Config() Config { return p.cfg }

// Stats are the exporter's counters.
type Stats struct {
	Exported int64 // spans the collector accepted
	Dropped  int64 // spans lost: queue full, export failed, or after shutdown
	Failures int64 // exports that failed
}

// Stats returns the exporter's counters (zero when tracing is off).
func (p *Provider) Stats() Stats {
	if p.proc == nil {
		return Stats{}
	}
	return Stats{Exported: p.proc.exported.Load(), Dropped: p.proc.dropped.Load(), Failures: p.proc.failures.Load()}
}

// WritePrometheus writes the exporter's counters in the Prometheus text
// format, labelled with labels (`service="order-service"`).
func (p *Provider) WritePrometheus(w io.Writer, labels string) {
	s := p.Stats()
	fmt.Fprintf(w, "# HELP flotilla_tracing_spans_exported_total Spans the trace collector accepted.\n# TYPE flotilla_tracing_spans_exported_total counter\nflotilla_tracing_spans_exported_total{%s} %d\n", labels, s.Exported)
	fmt.Fprintf(w, "# HELP flotilla_tracing_spans_dropped_total Spans dropped: export queue full, collector unreachable, or ended after shutdown.\n# TYPE flotilla_tracing_spans_dropped_total counter\nflotilla_tracing_spans_dropped_total{%s} %d\n", labels, s.Dropped)
	fmt.Fprintf(w, "# HELP flotilla_tracing_export_failures_total Exports the trace collector did not accept.\n# TYPE flotilla_tracing_export_failures_total counter\nflotilla_tracing_export_failures_total{%s} %d\n", labels, s.Failures)
}

// ForceFlush exports every span ended so far.
func (p *Provider) ForceFlush(ctx context.Context) error {
	if p.sdk == nil {
		return nil
	}
	return p.sdk.ForceFlush(ctx)
}

// Shutdown flushes the spans still queued (within ctx) and stops the
// exporter. Spans ended afterwards are dropped.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p.sdk == nil {
		return nil
	}
	return p.sdk.Shutdown(ctx)
}

// Setup builds the provider cfg describes. With no endpoint, or tracing
// disabled, it is a no-op provider: spans are not recorded, but trace
// context received from a caller still flows to the calls made under it.
// log receives the exporter's warnings (a collector that stops or starts
// answering); nil is slog.Default.
//
// Setup does not touch the OpenTelemetry globals; SetGlobal does.
func Setup(ctx context.Context, cfg Config, log *slog.Logger) (*Provider, error) {
	if cfg.Disabled || cfg.Endpoint == "" {
		return &Provider{TracerProvider: noop.NewTracerProvider(), cfg: cfg}, nil
	}
	if log == nil {
		log = slog.Default()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	opts := []otlptracehttp.Option{
		otlptracehttp.WithEndpointURL(cfg.Endpoint),
		otlptracehttp.WithTimeout(cfg.Timeout),
		// Short retries: spans queued behind a collector that is down
		// are dropped (and counted) rather than held for a minute.
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: true, InitialInterval: 200 * time.Millisecond,
			MaxInterval: time.Second, MaxElapsedTime: 3 * time.Second}),
	}
	if len(cfg.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(cfg.Headers))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: otlp exporter for %s: %w", cfg.Endpoint, err)
	}
	proc := newProcessor(exp, cfg, log)
	sdk := sdktrace.NewTracerProvider(
		sdktrace.WithResource(Resource(cfg)),
		sdktrace.WithSampler(Sampler(cfg)),
		sdktrace.WithSpanProcessor(proc),
	)
	return &Provider{TracerProvider: sdk, sdk: sdk, proc: proc, cfg: cfg}, nil
}

// NewProvider is a provider that hands its spans to the given processors
// (tests record spans with tracetest.NewSpanRecorder), with cfg's resource
// and sampler.
func NewProvider(cfg Config, procs ...sdktrace.SpanProcessor) *Provider {
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(Resource(cfg)), sdktrace.WithSampler(Sampler(cfg))}
	for _, p := range procs {
		opts = append(opts, sdktrace.WithSpanProcessor(p))
	}
	sdk := sdktrace.NewTracerProvider(opts...)
	return &Provider{TracerProvider: sdk, sdk: sdk, cfg: cfg}
}

// SetGlobal makes p the process's global tracer provider and Propagator
// its global propagator, for libraries that use the globals.
func SetGlobal(p *Provider) {
	otel.SetTracerProvider(p)
	otel.SetTextMapPropagator(Propagator)
}

// Resource is the resource of cfg's spans: service.name, service.version
// and the other attributes.
func Resource(cfg Config) *resource.Resource {
	attrs := []attribute.KeyValue{attribute.String("service.name", cfg.ServiceName),
		attribute.String("telemetry.sdk.language", "go"), attribute.String("telemetry.sdk.name", "opentelemetry")}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, attribute.String("service.version", cfg.ServiceVersion))
	}
	for _, kv := range cfg.Attributes {
		attrs = append(attrs, attribute.String(kv[0], kv[1]))
	}
	return resource.NewSchemaless(attrs...)
}

// Sampler is cfg's sampler. The zero Config samples every trace (a
// sampled parent's children always are; a new root always is).
func Sampler(cfg Config) sdktrace.Sampler {
	switch cfg.Sampler {
	case "always_on":
		return sdktrace.AlwaysSample()
	case "always_off":
		return sdktrace.NeverSample()
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(cfg.Ratio)
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample())
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.Ratio))
	default:
		return sdktrace.ParentBased(sdktrace.AlwaysSample())
	}
}

// Tracer is the tracer for instrumentation scope name under ctx: the
// provider of ctx's span, or a no-op one when ctx has no valid span.
// Instrumented code that only ever works for a request uses it, so it
// costs nothing where nothing traces.
func Tracer(ctx context.Context, name string) trace.Tracer {
	return trace.SpanFromContext(ctx).TracerProvider().Tracer(name)
}

// Traceparent is the W3C traceparent of ctx's span, or "" when it has none.
func Traceparent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return FormatTraceparent(sc)
}

// FormatTraceparent renders sc as a W3C traceparent header value.
func FormatTraceparent(sc trace.SpanContext) string {
	var b strings.Builder
	b.Grow(55)
	tid, sid := sc.TraceID(), sc.SpanID()
	b.WriteString("00-")
	b.WriteString(hex.EncodeToString(tid[:]))
	b.WriteByte('-')
	b.WriteString(hex.EncodeToString(sid[:]))
	if sc.IsSampled() {
		b.WriteString("-01")
	} else {
		b.WriteString("-00")
	}
	return b.String()
}

// ContextWithTraceparent returns ctx with the remote span context of the
// W3C traceparent tp as its parent; ok is false (and ctx unchanged) when
// tp is not a valid traceparent.
func ContextWithTraceparent(ctx context.Context, tp string) (context.Context, bool) {
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp}))
	if !sc.IsValid() {
		return ctx, false
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc), true
}

// Fail records err on span and marks the span failed; a nil err does
// nothing. It returns err.
func Fail(span trace.Span, err error) error {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}
