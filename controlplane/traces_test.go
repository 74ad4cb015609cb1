package controlplane

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/flotilla-ci/flotilla/tracing/store"
)

// TestTracesAPI: a service exports with the environment the platform
// gives it (the ingest token in OTEL_EXPORTER_OTLP_HEADERS), the CLI
// reads with the read-only token; the ingest token reads nothing.
func TestTracesAPI(t *testing.T) {
	data := t.TempDir()
	toks, err := EnsureTokens(data)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New(store.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	Traces{Store: st}.Routes(mux)
	srv := httptest.NewServer(toks.Middleware(mux))
	defer srv.Close()
	itok, err := ingestToken(data)
	if err != nil {
		t.Fatal(err)
	}
	env := otelEnv(TracingConfig{}, srv.URL, itok)
	for k, v := range env {
		t.Setenv(k, v)
	}
	t.Setenv(EnvServiceName, "cart-service")
	t.Setenv(EnvResourceAttr, "service.version=c1")
	ctx := context.Background()
	exp, err := otlptracehttp.New(ctx) // configured by the environment alone
	if err != nil {
		t.Fatal(err)
	}
	res, err := sdkresource.New(ctx, sdkresource.WithFromEnv())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(res))
	_, span := tp.Tracer("t").Start(ctx, "GET /cart", trace.WithSpanKind(trace.SpanKindServer))
	span.End()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatalf("export with the ingest token: %v", err)
	}
	id := span.SpanContext().TraceID().String()

	read, _ := ReadToken(TokenFile(data, RoleRead))
	c := NewClient(srv.URL).WithToken(read)
	list, err := c.Traces(ctx, store.Query{Service: "cart-service", Version: "c1", Since: time.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].TraceID != id || list[0].Name != "GET /cart" {
		t.Fatalf("list: %+v", list)
	}
	got, err := c.Trace(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Trace.TraceID != id || len(got.Trace.Spans) != 1 || got.Analysis.Spans != 1 || len(got.Analysis.Roots) != 1 {
		t.Errorf("trace: %+v", got)
	}
	// An unknown id: 404 and a clear message.
	_, err = c.Trace(ctx, strings.Repeat("ab", 16))
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound || !strings.Contains(err.Error(), "trace not found") {
		t.Errorf("unknown trace: %v", err)
	}
	// A bad query names its parameter.
	if _, err := c.Traces(ctx, store.Query{}); err != nil {
		t.Error(err)
	}
	var out map[string]any
	if err := c.getJSON(ctx, http.MethodGet, "/api/traces?min_duration=soon", nil, &out); err == nil || !strings.Contains(err.Error(), "min_duration") {
		t.Errorf("bad min_duration: %v %v", out, err)
	}
	// The ingest token exports only; the read-only one cannot export;
	// no token is refused.
	if _, err := NewClient(srv.URL).WithToken(itok).Traces(ctx, store.Query{}); err == nil || !strings.Contains(err.Error(), "only exports spans") {
		t.Errorf("reading with the ingest token: %v", err)
	}
	for tok, want := range map[string]int{read: http.StatusForbidden, "": http.StatusUnauthorized} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+TracesPath, strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("export with token %q: %d, want %d", tok, resp.StatusCode, want)
		}
	}
}

func TestTracingEnv(t *testing.T) {
	cfg := TracingFromEnv([]string{"PATH=/bin", "OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=0.5", "OTEL_SERVICE_NAME=flotilla"})
	got := otelEnv(cfg, "http://127.0.0.1:7480", "tok")
	want := map[string]string{
		"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5",
		EnvOTLPEndpoint: "http://127.0.0.1:7480", EnvOTLPProtocol: "http/protobuf", EnvOTLPHeaders: "Authorization=Bearer%20tok",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("to the control plane (-want +got):\n%s", diff)
	}
	// The user's endpoint wins, and gets no token of ours.
	cfg = TracingFromEnv([]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://collector:4318/v1/traces", "OTEL_EXPORTER_OTLP_HEADERS=x-key=1"})
	got = otelEnv(cfg, "http://127.0.0.1:7480", "tok")
	want = map[string]string{EnvOTLPEndpoint: "http://collector:4318", EnvOTLPHeaders: "x-key=1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("to the user's collector (-want +got):\n%s", diff)
	}
	env := withEnv([]string{"A=1", "OTEL_EXPORTER_OTLP_ENDPOINT=http://old"}, map[string]string{EnvOTLPEndpoint: "http://new"})
	if diff := cmp.Diff([]string{"A=1", "OTEL_EXPORTER_OTLP_ENDPOINT=http://new"}, env); diff != "" {
		t.Errorf("withEnv (-want +got):\n%s", diff)
	}
}
