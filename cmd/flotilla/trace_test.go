package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/tracing/store"
)

var traceT0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func tsp(id, parent int, service, name, kind string, start, end int) store.Span {
	s := store.Span{TraceID: fmt.Sprintf("%032x", 0xc0ffee), SpanID: fmt.Sprintf("%016x", id), Service: service, Name: name, Kind: kind,
		Start: traceT0.Add(time.Duration(start) * time.Millisecond), End: traceT0.Add(time.Duration(end) * time.Millisecond), Status: store.StatusUnset}
	if parent != 0 {
		s.ParentSpanID = fmt.Sprintf("%016x", parent)
	}
	return s
}

// checkoutTrace is a checkout whose payment failed and was compensated,
// its events consumed after the response.
func checkoutTrace() *store.Trace {
	spans := []store.Span{
		tsp(1, 0, "gateway", "POST /api/order/orders", store.KindServer, 0, 412),
		tsp(2, 1, "order-service", "POST /orders", store.KindServer, 3, 405),
		tsp(3, 2, "cart-service", "GET /cart", store.KindServer, 6, 18),
		tsp(4, 2, "user-service", "GET /users/me", store.KindServer, 7, 12),
		tsp(5, 2, "order-service", "check_inventory", store.KindInternal, 20, 45),
		tsp(6, 5, "inventory-service", "POST /reservations", store.KindServer, 22, 43),
		tsp(7, 2, "order-service", "process_payment", store.KindInternal, 46, 380),
		tsp(8, 7, "payment-service", "POST /payments", store.KindServer, 48, 378),
		tsp(9, 2, "order-service", "compensate.release_stock", store.KindInternal, 381, 398),
		tsp(10, 9, "inventory-service", "DELETE /reservations/r-1", store.KindServer, 383, 396),
		tsp(11, 2, "order-service", "order.cancelled publish", store.KindProducer, 399, 401),
		tsp(12, 0, "notification-service", "order.cancelled process", store.KindConsumer, 420, 431),
		tsp(13, 0, "analytics-service", "order.cancelled process", store.KindConsumer, 425, 427),
	}
	spans[7].Status, spans[7].StatusMessage = store.StatusError, "card declined"
	spans[6].Status, spans[6].StatusMessage = store.StatusError, "payment failed: card declined"
	for _, i := range []int{11, 12} {
		spans[i].TraceID = fmt.Sprintf("%032x", 0xbeef+i)
		spans[i].Links = []store.Link{{TraceID: spans[0].TraceID, SpanID: spans[10].SpanID}}
	}
	return &store.Trace{TraceID: spans[0].TraceID, Spans: spans}
}

func TestTraceRenderGolden(t *testing.T) {
	var b bytes.Buffer
	if err := renderTrace(&b, store.Analyze(checkoutTrace()), time.UTC); err != nil {
		t.Fatal(err)
	}
	golden(t, "trace/show.txt", b.String())
	b.Reset()
	tr := checkoutTrace()
	sum, _ := store.Summarize(tr.TraceID, tr.Spans[:11], store.Query{})
	other := store.Summary{TraceID: fmt.Sprintf("%032x", 0xfeed), Service: "gateway", Name: "GET /api/product/products",
		Start: traceT0.Add(-time.Minute), Duration: 3200 * time.Microsecond, Extent: 3200 * time.Microsecond, Spans: 2,
		Services: []string{"gateway", "product-service"}, Versions: []string{"product-service@3f2a"}}
	if err := renderTraceList(&b, []store.Summary{sum, other}, time.UTC); err != nil {
		t.Fatal(err)
	}
	golden(t, "trace/list.txt", b.String())
	b.Reset()
	_ = renderTraceList(&b, nil, time.UTC)
	if !strings.Contains(b.String(), "no traces match") {
		t.Errorf("empty list: %q", b.String())
	}
}

// TestTraceCommands: spans exported by the OpenTelemetry SDK over OTLP to
// the control plane's routes, read back by the commands.
func TestTraceCommands(t *testing.T) {
	t.Setenv("FLOTILLA_TOKEN", "")
	t.Setenv("FLOTILLA_DATA", t.TempDir())
	st, err := store.New(store.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	controlplane.Traces{Store: st}.Routes(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()
	tracer := func(service string) trace.Tracer {
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(srv.URL+store.TracesPath))
		if err != nil {
			t.Fatal(err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
			sdktrace.WithResource(sdkresource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service), semconv.ServiceVersion("v7"))))
		t.Cleanup(func() { _ = tp.Shutdown(ctx) })
		return tp.Tracer("test")
	}
	gw, pay := tracer("gateway"), tracer("payment-service")
	rctx, root := gw.Start(ctx, "POST /api/order/orders", trace.WithSpanKind(trace.SpanKindServer))
	_, p := pay.Start(rctx, "POST /payments", trace.WithSpanKind(trace.SpanKindServer))
	p.SetStatus(codes.Error, "card declined")
	p.End()
	root.End()
	id := root.SpanContext().TraceID().String()

	code, out, errOut := runCLI(t, "trace", "list", "--api", srv.URL, "--errors", "--version", "v7", "--since", "5m")
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "gateway,payment-service") {
		t.Fatalf("trace list: %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "trace", "show", id, "--api", srv.URL)
	if code != 0 || !strings.Contains(out, "  payment-service") || !strings.Contains(out, "error: card declined") || !strings.Contains(out, "slowest hop:") {
		t.Fatalf("trace show: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "trace", "show", id, "--api", srv.URL, "-o", "json")
	var resp controlplane.TraceResponse
	if err := json.Unmarshal([]byte(out), &resp); code != 0 || err != nil || len(resp.Trace.Spans) != 2 || resp.Analysis.Errors != 1 {
		t.Fatalf("trace show -o json: %d %v\n%s", code, err, out)
	}
	code, out, _ = runCLI(t, "trace", "list", "--api", srv.URL, "-o", "json", "--service", "nobody")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("an empty list in JSON: %d %q", code, out)
	}
	// An unknown id is a clear "not found" (1); an id that is not one, or
	// a bad flag, is usage (2).
	code, _, errOut = runCLI(t, "trace", "show", strings.Repeat("0a", 16), "--api", srv.URL)
	if code != 1 || !strings.Contains(errOut, "trace not found") {
		t.Errorf("unknown trace: %d %s", code, errOut)
	}
	for _, args := range [][]string{
		{"trace", "show", "nope", "--api", srv.URL},
		{"trace", "list", "--api", srv.URL, "--since", "yesterday"},
		{"trace", "list", "--api", srv.URL, "--from", "zipkin"},
		{"trace", "list", "--api", srv.URL, "-o", "yaml"},
	} {
		if code, _, errOut := runCLI(t, args...); code != 2 || errOut == "" {
			t.Errorf("%v: %d %s", args, code, errOut)
		}
	}
	if code, _, errOut := runCLI(t, "trace", "list", "--api", "127.0.0.1:1"); code != 3 {
		t.Errorf("no control plane: %d %s", code, errOut)
	}
}

const driftManifest = `services:
  order-service:
    path: shop/order
    depends_on: [payment-service, user-service]
    publishes: [OrderCreated]
  payment-service:
    path: shop/payment
  user-service:
    path: shop/user
  cart-service:
    path: shop/cart
  shipping-service:
    path: shop/shipping
    subscribes: [OrderCreated]
`

// TestGraphDrift: a call cart-service makes to payment-service that the
// manifest does not declare shows up; order-service's declared call to
// payment-service (through a mesh hop) and its event to shipping-service
// do not; its dependency on user-service is declared but never used.
func TestGraphDrift(t *testing.T) {
	t.Setenv("FLOTILLA_TOKEN", "")
	t.Setenv("FLOTILLA_DATA", t.TempDir())
	dir := t.TempDir()
	manifest := dir + "/flotilla.yaml"
	if err := os.WriteFile(manifest, []byte(driftManifest), 0o644); err != nil {
		t.Fatal(err)
	}
	st, _ := store.New(store.DefaultConfig())
	mux := http.NewServeMux()
	controlplane.Traces{Store: st}.Routes(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()
	tracer := func(service string) trace.Tracer {
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(srv.URL+store.TracesPath))
		if err != nil {
			t.Fatal(err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
			sdktrace.WithResource(sdkresource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service))))
		t.Cleanup(func() { _ = tp.Shutdown(ctx) })
		return tp.Tracer("test")
	}
	gw, order, pay, cart, ship := tracer("gateway"), tracer("order-service"), tracer("payment-service"), tracer("cart-service"), tracer("shipping-service")
	server, client := trace.WithSpanKind(trace.SpanKindServer), trace.WithSpanKind(trace.SpanKindClient)

	c1, r := gw.Start(ctx, "POST /api/order/orders", server)
	c2, o := order.Start(c1, "POST /orders", server)
	c3, oc := order.Start(c2, "POST payment-service", client)
	c4, hop := gw.Start(c3, "mesh payment-service", client) // the mesh's hop
	_, p := pay.Start(c4, "POST /payments", server)
	p.End()
	hop.End()
	oc.End()
	c5, pub := order.Start(c2, "publish OrderCreated", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.destination.name", "OrderCreated")))
	pub.End()
	_, con := ship.Start(c5, "process OrderCreated", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(trace.LinkFromContext(c5)), trace.WithAttributes(attribute.String("messaging.destination.name", "OrderCreated")))
	con.End()
	o.End()
	r.End()
	// The undeclared call.
	c6, cs := cart.Start(ctx, "GET /carts/me", server)
	_, p2 := pay.Start(c6, "GET /payments/quote", server)
	p2.End()
	cs.End()

	code, out, errOut := runCLI(t, "graph", "drift", "-f", manifest, "--api", srv.URL)
	if code != 1 {
		t.Fatalf("graph drift: exit %d, want 1 (undeclared call seen)\n%s%s", code, out, errOut)
	}
	undeclared, unused, _ := strings.Cut(out, "declared, never seen")
	if !strings.Contains(undeclared, "call cart-service -> payment-service  seen 1 times") ||
		strings.Contains(undeclared, "order-service -> payment-service") || strings.Contains(undeclared, "shipping") || strings.Contains(out, "gateway") {
		t.Errorf("undeclared:\n%s", out)
	}
	if !strings.Contains(unused, "call  order-service -> user-service") || strings.Contains(unused, "payment") || strings.Contains(unused, "OrderCreated") {
		t.Errorf("unused:\n%s", out)
	}
	code, out, _ = runCLI(t, "graph", "drift", "-f", manifest, "--api", srv.URL, "-o", "json")
	var d store.Drift
	if err := json.Unmarshal([]byte(out), &d); code != 1 || err != nil || d.Traces != 2 || len(d.Observed) != 3 || len(d.Undeclared) != 1 {
		t.Errorf("-o json: %d %v\n%s", code, err, out)
	}
}
