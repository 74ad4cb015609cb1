package tracing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestParseEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want Config
	}{
		{"nothing set: no exporter, every trace sampled", nil,
			Config{ServiceName: "svc", Sampler: "parentbased_always_on", Ratio: 1}},
		{"what the control plane sets", map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:7300/", "OTEL_SERVICE_NAME": "order-service",
			"OTEL_RESOURCE_ATTRIBUTES": "service.version=v1.2.3,deployment.environment=local%20dev"},
			Config{ServiceName: "order-service", ServiceVersion: "v1.2.3", Attributes: [][2]string{{"deployment.environment", "local dev"}},
				Endpoint: "http://127.0.0.1:7300/v1/traces", Sampler: "parentbased_always_on", Ratio: 1}},
		{"traces endpoint used as is, ratio sampling", map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://b:2/custom",
			"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25",
			"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20x", "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
			"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
			Config{ServiceName: "svc", Endpoint: "https://b:2/custom", Sampler: "parentbased_traceidratio", Ratio: 0.25,
				Headers: map[string]string{"authorization": "Bearer x"}, Timeout: 2500 * time.Millisecond}},
		{"service.name from the attributes when no OTEL_SERVICE_NAME", map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=x"},
			Config{ServiceName: "x", Sampler: "parentbased_always_on", Ratio: 1}},
		{"disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1"},
			Config{ServiceName: "svc", Endpoint: "http://a:1/v1/traces", Disabled: true, Sampler: "parentbased_always_on", Ratio: 1}},
		{"exporter none", map[string]string{"OTEL_TRACES_EXPORTER": "none"},
			Config{ServiceName: "svc", Disabled: true, Sampler: "parentbased_always_on", Ratio: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseEnv(tc.env, "svc")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseEnv (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseEnvRefusesWhatCannotTakeEffect(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"}, `OTEL_TRACES_SAMPLER="jaeger_remote": want one of`},
		{map[string]string{"OTEL_TRACES_SAMPLER_ARG": "1.5"}, `OTEL_TRACES_SAMPLER_ARG="1.5": want a ratio between 0 and 1`},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, `OTEL_EXPORTER_OTLP_PROTOCOL="grpc": only http/protobuf`},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4318"}, `OTEL_EXPORTER_OTLP_ENDPOINT="127.0.0.1:4318": want http://host:port`},
		{map[string]string{"OTEL_SDK_DISABLED": "maybe"}, `OTEL_SDK_DISABLED="maybe": want true or false`},
		{map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, `OTEL_TRACES_EXPORTER="zipkin": want otlp or none`},
		{map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.version"}, `OTEL_RESOURCE_ATTRIBUTES="service.version": item 1 ("service.version"): want key=value`},
		{map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"}, `OTEL_EXPORTER_OTLP_TIMEOUT="10s": want a positive number of milliseconds`},
	}
	for _, tc := range tests {
		_, err := ParseEnv(tc.env, "svc")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseEnv(%v) = %v, want an error containing %q", tc.env, err, tc.want)
		}
	}
}

func FuzzParseEnv(f *testing.F) {
	f.Add("service.version=v1,a=b%20c", "0.5", "http://127.0.0.1:4318")
	f.Add("=,,k=%zz", "x", "ftp://x")
	f.Fuzz(func(t *testing.T, attrs, ratio, endpoint string) {
		c, err := ParseEnv(map[string]string{"OTEL_RESOURCE_ATTRIBUTES": attrs, "OTEL_TRACES_SAMPLER_ARG": ratio,
			"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, "svc")
		if err == nil && (c.Ratio < 0 || c.Ratio > 1) {
			t.Fatalf("ratio %v accepted", c.Ratio)
		}
	})
}

func TestNoEndpointIsNoop(t *testing.T) {
	p, err := Setup(t.Context(), Config{ServiceName: "svc"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Enabled() {
		t.Fatal("enabled without an endpoint")
	}
	// A caller's trace context still flows through.
	ctx, ok := ContextWithTraceparent(t.Context(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if !ok {
		t.Fatal("valid traceparent refused")
	}
	ctx, span := p.Tracer("t").Start(ctx, "op")
	defer span.End()
	if got := Traceparent(ctx); got != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Errorf("traceparent through the no-op provider = %q", got)
	}
	if _, ok := ContextWithTraceparent(t.Context(), "00-00000000000000000000000000000000-00f067aa0ba902b7-01"); ok {
		t.Error("all-zero trace id accepted")
	}
}

// collector is an OTLP/HTTP receiver that keeps the spans it is sent.
type collector struct {
	mu    sync.Mutex
	names []string
	attrs map[string]string // resource attributes of the last request
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	b, _ := io.ReadAll(r.Body)
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		c.attrs = map[string]string{}
		for _, kv := range rs.Resource.Attributes {
			c.attrs[kv.Key] = kv.Value.GetStringValue()
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				c.names = append(c.names, s.Name)
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(nil)
}

func TestExportsToCollectorAndFlushesOnShutdown(t *testing.T) {
	col := &collector{}
	srv := httptest.NewServer(col)
	defer srv.Close()
	cfg, err := ParseEnv(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL, "OTEL_SERVICE_NAME": "order-service",
		"OTEL_RESOURCE_ATTRIBUTES": "service.version=v2"}, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Interval = time.Hour // only the shutdown's flush sends
	p, err := Setup(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		_, s := p.Tracer("t").Start(t.Context(), name)
		s.End()
	}
	if err := p.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	if diff := cmp.Diff([]string{"a", "b", "c"}, col.names); diff != "" {
		t.Errorf("exported spans (-want +got):\n%s", diff)
	}
	if col.attrs["service.name"] != "order-service" || col.attrs["service.version"] != "v2" {
		t.Errorf("resource = %v, want service.name order-service and service.version v2", col.attrs)
	}
	if s := p.Stats(); s.Exported != 3 || s.Dropped != 0 {
		t.Errorf("stats = %+v, want 3 exported, 0 dropped", s)
	}
}

// A collector that refuses connections costs dropped spans, counted; the
// requests it would trace keep being served without waiting for it.
func TestCollectorDownDropsAndCountsWithoutBlocking(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + ln.Addr().String()
	_ = ln.Close() // nothing listens: connections are refused
	var logs bytes.Buffer
	p, err := Setup(t.Context(), Config{ServiceName: "svc", Endpoint: endpoint + "/v1/traces", Timeout: time.Second,
		QueueSize: 64, BatchSize: 16, Interval: 10 * time.Millisecond}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Shutdown(context.Background()) }()
	app := httptest.NewServer(otelhttp.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, s := Tracer(r.Context(), "t").Start(r.Context(), "work")
		s.End()
		_, _ = io.WriteString(w, "ok")
	}), "server", otelhttp.WithTracerProvider(p), otelhttp.WithPropagators(Propagator)))
	defer app.Close()
	deadline := time.Now().Add(20 * time.Second)
	var slowest time.Duration
	n := 0
	for p.Stats().Dropped == 0 || n < 300 {
		if time.Now().After(deadline) {
			t.Fatalf("after %d requests, stats %+v: nothing dropped", n, p.Stats())
		}
		start := time.Now()
		resp, err := http.Get(app.URL)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %s", n, resp.Status)
		}
		slowest = max(slowest, time.Since(start))
		n++
	}
	if slowest > 500*time.Millisecond {
		t.Errorf("slowest request took %v with the collector down; exporting must not block requests", slowest)
	}
	var m strings.Builder
	p.WritePrometheus(&m, `service="svc"`)
	if !strings.Contains(m.String(), `flotilla_tracing_spans_dropped_total{service="svc"} `) || strings.Contains(m.String(), `flotilla_tracing_spans_dropped_total{service="svc"} 0`) {
		t.Errorf("metrics do not show the drops:\n%s", m.String())
	}
	if !strings.Contains(logs.String(), "trace export failed") && p.Stats().Failures > 0 {
		t.Errorf("a failing export was not logged: %s", logs.String())
	}
}

func TestLogHandlerAddsTraceAndSpanIDs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewJSONHandler(&buf, nil))).With("service", "svc")
	rec := tracetest.NewSpanRecorder()
	p := NewProvider(Config{ServiceName: "svc"}, rec)
	ctx, span := p.Tracer("t").Start(t.Context(), "op")
	log.InfoContext(ctx, "inside")
	span.End()
	log.InfoContext(t.Context(), "outside")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var in, out map[string]any
	if err := errors.Join(json.Unmarshal([]byte(lines[0]), &in), json.Unmarshal([]byte(lines[1]), &out)); err != nil {
		t.Fatal(err)
	}
	sc := trace.SpanContextFromContext(ctx)
	if in["trace_id"] != sc.TraceID().String() || in["span_id"] != sc.SpanID().String() || in["service"] != "svc" {
		t.Errorf("record inside a span = %v, want trace_id %s span_id %s", in, sc.TraceID(), sc.SpanID())
	}
	if _, ok := out["trace_id"]; ok {
		t.Errorf("record outside a span has a trace_id: %v", out)
	}
}

func TestSamplerRatio(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	p := NewProvider(Config{ServiceName: "svc", Sampler: "parentbased_traceidratio", Ratio: 0}, rec)
	_, s := p.Tracer("t").Start(t.Context(), "root")
	s.End()
	if len(rec.Ended()) != 0 || s.SpanContext().IsSampled() {
		t.Error("ratio 0 sampled a root span")
	}
	ctx, _ := ContextWithTraceparent(t.Context(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	_, s = p.Tracer("t").Start(ctx, "child")
	s.End()
	if len(rec.Ended()) != 1 {
		t.Error("a sampled parent's child was not sampled")
	}
}
