package jaeger_test

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/flotilla-ci/flotilla/internal/testenv"
	"github.com/flotilla-ci/flotilla/tracing/store"
	"github.com/flotilla-ci/flotilla/tracing/store/jaeger"
)

// freeAddr is a loopback address no one listens on (for now).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// A real Jaeger v2 (the binary built from tools/jaeger) receives a trace
// across three services from the OpenTelemetry SDK's OTLP/HTTP exporter,
// as the shop's services send theirs; the Client finds it through
// Jaeger's query API with all its services, its parent/child structure
// and the consumer's link to its producer.
func TestJaegerFindsATraceSentOverOTLP(t *testing.T) {
	bin := testenv.Binary(t, testenv.Jaeger)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := jaeger.Addrs{OTLPHTTP: freeAddr(t), QueryHTTP: freeAddr(t), QueryGRPC: freeAddr(t), Health: freeAddr(t)}
	p, err := jaeger.Start(ctx, bin, t.TempDir(), a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		if err := p.Stop(sctx); err != nil {
			t.Errorf("stop jaeger: %v", err)
		}
	})

	// Three services, each its own provider and exporter, as three
	// processes would be.
	provider := func(service string) *sdktrace.TracerProvider {
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(a.OTLPHTTP), otlptracehttp.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		res := resource.NewSchemaless(attribute.String("service.name", service), attribute.String("service.version", "v1"))
		return sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(res))
	}
	gw, order, shipping := provider("gateway"), provider("order-service"), provider("shipping-service")
	root, rootSpan := gw.Tracer("t").Start(ctx, "gateway POST /api/order/orders", trace.WithSpanKind(trace.SpanKindServer))
	octx, orderSpan := order.Tracer("t").Start(root, "POST /orders", trace.WithSpanKind(trace.SpanKindServer))
	_, prod := order.Tracer("t").Start(octx, "publish order.confirmed", trace.WithSpanKind(trace.SpanKindProducer))
	prod.End()
	_, cons := shipping.Tracer("t").Start(context.Background(), "consume order.confirmed", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(trace.Link{SpanContext: prod.SpanContext()}))
	cons.End()
	orderSpan.End()
	rootSpan.End()
	for _, tp := range []*sdktrace.TracerProvider{gw, order, shipping} {
		if err := tp.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	id := rootSpan.SpanContext().TraceID().String()

	c := jaeger.NewClient(p.QueryURL())
	var tr *store.Trace
	deadline := time.Now().Add(30 * time.Second)
	for {
		tr, err = c.Get(ctx, id)
		if err == nil && len(tr.Spans) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s from Jaeger: %+v, %v; want its spans", id, tr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	by := map[string]store.Span{}
	for _, s := range tr.Spans {
		by[s.Name] = s
	}
	if s := by["POST /orders"]; s.Service != "order-service" || s.ParentSpanID != rootSpan.SpanContext().SpanID().String() || s.Kind != store.KindServer {
		t.Errorf("order's span from Jaeger: %+v; want order-service's server span, child of the gateway's", s)
	}
	if s := by["gateway POST /api/order/orders"]; s.Service != "gateway" || s.ParentSpanID != "" || s.Version != "v1" {
		t.Errorf("the gateway's span from Jaeger: %+v; want the root, version v1", s)
	}

	// The consumer's own trace, linked to the producer.
	cid := cons.SpanContext().TraceID().String()
	var ct *store.Trace
	for {
		ct, err = c.Get(ctx, cid)
		if err == nil && len(ct.Spans) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the consumer's trace %s from Jaeger: %v", cid, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if s := ct.Spans[0]; s.Service != "shipping-service" || len(s.Links) != 1 || s.Links[0].SpanID != prod.SpanContext().SpanID().String() {
		t.Errorf("the consumer's span from Jaeger: %+v; want shipping-service's, linked to the producer", s)
	}

	services, err := c.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"gateway", "order-service", "shipping-service"} {
		if !slices.Contains(services, want) {
			t.Errorf("Jaeger's services %v, want %s among them", services, want)
		}
	}
	if slices.Contains(services, "jaeger") {
		t.Errorf("Jaeger's services %v include its own: OTEL_TRACES_EXPORTER=none should keep it out", services)
	}
	list, err := c.List(ctx, store.Query{Service: "order-service"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range list {
		found = found || s.TraceID == id
	}
	if !found {
		t.Errorf("the list of order-service's traces from Jaeger %+v does not hold %s", list, id)
	}
}
