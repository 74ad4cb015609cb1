package mesh

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/flotilla-ci/flotilla/tracing"
)

func spanAttr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// tracedService is order-service with v1 (stable) and v2 (canary)
// behind a traced mesh; the upstreams answer with the traceparent they
// received.
func tracedService(t *testing.T) (*Mesh, *tracetest.SpanRecorder, string) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	m := newTestMesh(t, Config{Tracing: tracing.NewProvider(tracing.Config{ServiceName: "flotilla-dataplane"}, rec)})
	echo := func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/fail") {
			w.WriteHeader(http.StatusInternalServerError)
		}
		_, _ = w.Write([]byte(r.Header.Get("Traceparent")))
	}
	v1, v2 := newUpstream(t, "v1", echo), newUpstream(t, "v2", echo)
	url := addService(t, m, ServiceConfig{Name: "order-service"},
		Subset{Name: "v1", Endpoints: []string{v1.addr()}},
		Subset{Name: "v2", Canary: true, Endpoints: []string{v2.addr()}})
	if err := m.SetWeights(context.Background(), "order-service", map[string]int{"v1": 100, "v2": 0}); err != nil {
		t.Fatal(err)
	}
	return m, rec, url
}

// Each hop is a span naming the subset (version) that served the request
// and the lane that chose it, a child of the caller's span, and the
// parent of what the instance receives.
func TestHopSpanNamesSubsetAndLane(t *testing.T) {
	_, rec, url := tracedService(t)
	caller := tracing.NewProvider(tracing.Config{ServiceName: "cart-service"}, tracetest.NewSpanRecorder())
	for _, tc := range []struct {
		name, path string
		hdr        map[string]string
		subset     string
		lane       string
		canary     string
	}{
		{"weights", "/orders", nil, "v1", "weighted", "false"},
		{"canary lane", "/orders", map[string]string{CanaryHeader: "true"}, "v2", "canary", "true"},
		{"pinned", "/orders", map[string]string{VersionHeader: "v2"}, "v2", "pinned", "true"},
		{"failing", "/fail", nil, "v1", "weighted", "false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, root := caller.Tracer("t").Start(context.Background(), "call")
			hdr := map[string]string{"traceparent": tracing.Traceparent(ctx), CallerHeader: "cart-service"}
			for k, v := range tc.hdr {
				hdr[k] = v
			}
			res := do(t, "GET", url+tc.path, hdr, "")
			root.End()
			var hop sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.SpanContext().TraceID() == root.SpanContext().TraceID() {
					hop = s
				}
			}
			if hop == nil {
				t.Fatal("no hop span in the caller's trace")
			}
			if hop.Name() != "mesh order-service" || hop.Parent().SpanID() != root.SpanContext().SpanID() || hop.SpanKind() != trace.SpanKindClient {
				t.Errorf("hop %q kind %v parent %s, want mesh order-service under %s", hop.Name(), hop.SpanKind(), hop.Parent().SpanID(), root.SpanContext().SpanID())
			}
			for k, want := range map[string]string{"flotilla.subset": tc.subset, "service.version": tc.subset, "flotilla.lane": tc.lane,
				"flotilla.canary": tc.canary, "peer.service": "order-service", "flotilla.caller": "cart-service"} {
				if got := spanAttr(hop, k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if !strings.Contains(res.body, hop.SpanContext().SpanID().String()) {
				t.Errorf("the instance received traceparent %q, want the hop's span %s as parent", res.body, hop.SpanContext().SpanID())
			}
			if failed := hop.Status().Code == codes.Error; failed != (res.status >= 500) || spanAttr(hop, "http.response.status_code") != strconv.Itoa(res.status) {
				t.Errorf("status %d, span status %v", res.status, hop.Status())
			}
		})
	}
}

// The gateway's request is the root span of its trace (or the client's
// child), its hop a child of it, and the answer carries the trace id.
func TestGatewayAnswersTraceID(t *testing.T) {
	m, rec, _ := tracedService(t)
	cfg := DefaultGatewayConfig()
	cfg.Routes = []RouteEntry{{Path: "/api/orders/**", Service: "order-service", Rewrite: "/orders", Public: true}}
	gw, err := NewGateway(cfg, m, GatewayOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	gw.ServeHTTP(w, httptest.NewRequest("GET", "/api/orders/42", nil))
	if w.Code != 200 {
		t.Fatalf("answer %d %s", w.Code, w.Body)
	}
	id := w.Header().Get(TraceIDHeader)
	if len(id) != 32 || !strings.Contains(w.Header().Get("Traceparent"), id) {
		t.Fatalf("X-Trace-Id %q, traceparent %q", id, w.Header().Get("Traceparent"))
	}
	var edge, hop sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID().String() != id {
			continue
		}
		switch s.Name() {
		case "gateway /api/orders/**":
			edge = s
		case "mesh order-service":
			hop = s
		}
	}
	if edge == nil || hop == nil {
		t.Fatalf("gateway span %v, hop span %v in trace %s", edge, hop, id)
	}
	if edge.Parent().IsValid() || edge.SpanKind() != trace.SpanKindServer || hop.Parent().SpanID() != edge.SpanContext().SpanID() {
		t.Errorf("gateway span parent %v kind %v; hop parent %s, want the gateway's %s", edge.Parent(), edge.SpanKind(), hop.Parent().SpanID(), edge.SpanContext().SpanID())
	}
	if spanAttr(hop, "flotilla.caller") != GatewayCaller || spanAttr(hop, "flotilla.subset") != "v1" {
		t.Errorf("hop attributes %v", hop.Attributes())
	}
	if !strings.Contains(w.Body.String(), hop.SpanContext().SpanID().String()) {
		t.Errorf("instance received %q, want the hop's span as parent", w.Body)
	}
}
