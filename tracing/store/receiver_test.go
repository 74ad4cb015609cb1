package store_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/flotilla-ci/flotilla/tracing/store"
)

func newStore(t *testing.T, cfg store.Config) (*store.Store, *httptest.Server) {
	t.Helper()
	st, err := store.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(store.TracesPath, store.Receiver{Store: st})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return st, srv
}

// provider is one service's tracer provider, exporting over real OTLP/HTTP.
func provider(t *testing.T, url, service, version string, opts ...otlptracehttp.Option) *sdktrace.TracerProvider {
	t.Helper()
	exp, err := otlptracehttp.New(context.Background(), append([]otlptracehttp.Option{otlptracehttp.WithEndpointURL(url + store.TracesPath)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	res := sdkresource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service), semconv.ServiceVersion(version))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(res))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp
}

// checkout sends a small checkout's spans from three services (one over
// gzip), the consumer linked to the producer, and returns its trace id.
func checkout(t *testing.T, url string) string {
	t.Helper()
	ctx := context.Background()
	gw := provider(t, url, "gateway", "v1").Tracer("test")
	order := provider(t, url, "order-service", "abc123", otlptracehttp.WithCompression(otlptracehttp.GzipCompression)).Tracer("test")
	ship := provider(t, url, "shipping-service", "s1").Tracer("test")
	prop := propagation.TraceContext{}

	ctx, root := gw.Start(ctx, "POST /api/order/orders", trace.WithSpanKind(trace.SpanKindServer))
	cctx, call := gw.Start(ctx, "POST order-service", trace.WithSpanKind(trace.SpanKindClient))
	hdr := http.Header{}
	prop.Inject(cctx, propagation.HeaderCarrier(hdr))
	sctx, srv := order.Start(prop.Extract(context.Background(), propagation.HeaderCarrier(hdr)), "POST /orders",
		trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attribute.String("order.id", "o-1")))
	_, step := order.Start(sctx, "process_payment")
	step.RecordError(errors.New("card declined"))
	step.SetStatus(codes.Error, "card declined")
	step.End()
	pctx, pub := order.Start(sctx, "order.created publish", trace.WithSpanKind(trace.SpanKindProducer))
	msg := http.Header{}
	prop.Inject(pctx, propagation.HeaderCarrier(msg))
	pub.End()
	srv.End()
	call.End()
	root.End()
	// The consumer: a trace of its own, linked to the producer.
	link := trace.LinkFromContext(prop.Extract(context.Background(), propagation.HeaderCarrier(msg)))
	_, con := ship.Start(context.Background(), "order.created process", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithNewRoot(), trace.WithLinks(link))
	con.End()
	return root.SpanContext().TraceID().String()
}

func TestReceiverTakesTheSDKsExports(t *testing.T) {
	st, srv := newStore(t, store.DefaultConfig())
	id := checkout(t, srv.URL)
	tr, err := st.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Spans) != 6 {
		t.Fatalf("trace %s has %d spans, want 6 (5 of it, 1 linked): %+v", id, len(tr.Spans), tr.Spans)
	}
	by := map[string]store.Span{}
	for _, s := range tr.Spans {
		by[s.Name] = s
	}
	rootSp, srvSp, pay, con := by["POST /api/order/orders"], by["POST /orders"], by["process_payment"], by["order.created process"]
	if rootSp.Service != "gateway" || rootSp.Version != "v1" || rootSp.Kind != store.KindServer || rootSp.ParentSpanID != "" {
		t.Errorf("root span: %+v", rootSp)
	}
	if srvSp.Service != "order-service" || srvSp.Version != "abc123" || srvSp.ParentSpanID != by["POST order-service"].SpanID {
		t.Errorf("order's server span: %+v", srvSp)
	}
	if v, _ := srvSp.Attributes.Get("order.id"); v != "o-1" {
		t.Errorf("order.id = %q", v)
	}
	if !pay.Error() || pay.StatusMessage != "card declined" || len(pay.Events) != 1 || pay.Events[0].Name != "exception" {
		t.Errorf("payment step: %+v", pay)
	}
	if con.TraceID == id || len(con.Links) != 1 || con.Links[0].SpanID != by["order.created publish"].SpanID || con.Links[0].TraceID != id {
		t.Errorf("consumer: %+v", con)
	}
	a := store.Analyze(tr)
	if len(a.Roots) != 1 {
		t.Fatalf("roots: %d, want the consumer under its producer", len(a.Roots))
	}
	if a.Errors != 1 {
		t.Errorf("errors = %d", a.Errors)
	}
	// The consumer's own trace id finds it too.
	if _, err := st.Get(con.TraceID); err != nil {
		t.Error(err)
	}
}

const jsonExport = `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart-service"}},{"key":"service.version","value":{"stringValue":"c9"}}]},
 "scopeSpans":[{"scope":{"name":"t"},"spans":[
  {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /cart","kind":2,
   "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
   "attributes":[{"key":"http.status_code","value":{"intValue":"200"}},{"key":"retry","value":{"boolValue":true}}],
   "status":{"code":1},"unknownField":1},
  {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","parentSpanId":"eee19b7ec3c1b174","name":"SELECT","kind":"SPAN_KIND_CLIENT",
   "startTimeUnixNano":"1544712660100000000","endTimeUnixNano":"1544712660200000000","status":{"code":"STATUS_CODE_ERROR","message":"boom"}}]}]}]}`

func post(t *testing.T, url, ct, enc string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+store.TracesPath, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

func TestReceiverTakesOTLPJSON(t *testing.T) {
	for _, enc := range []string{"", "gzip"} {
		t.Run("encoding="+enc, func(t *testing.T) {
			st, srv := newStore(t, store.DefaultConfig())
			body := []byte(jsonExport)
			if enc == "gzip" {
				body = gz(body)
			}
			code, resp := post(t, srv.URL, "application/json; charset=utf-8", enc, body)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, resp)
			}
			tr, err := st.Get("5b8efff798038103d269b633813fc60c")
			if err != nil {
				t.Fatal(err)
			}
			if len(tr.Spans) != 2 {
				t.Fatalf("spans: %+v", tr.Spans)
			}
			s0, s1 := tr.Spans[0], tr.Spans[1]
			if s0.Service != "cart-service" || s0.Version != "c9" || s0.Kind != store.KindServer || s0.Status != store.StatusOK || s0.Duration().Seconds() != 1 {
				t.Errorf("span 0: %+v", s0)
			}
			if v, _ := s0.Attributes.Get("http.status_code"); v != "200" {
				t.Errorf("http.status_code = %q", v)
			}
			if s1.ParentSpanID != "eee19b7ec3c1b174" || s1.Kind != store.KindClient || !s1.Error() || s1.StatusMessage != "boom" {
				t.Errorf("span 1: %+v", s1)
			}
		})
	}
}

func TestReceiverRefusesMalformedPayloads(t *testing.T) {
	noService := strings.Replace(jsonExport, `"service.name"`, `"service.namespace"`, 1)
	badHex := strings.Replace(jsonExport, `"eee19b7ec3c1b175"`, `"zzz19b7ec3c1b175"`, 1)
	shortID := strings.Replace(jsonExport, `"eee19b7ec3c1b175"`, `"eee19b7e"`, 1)
	for _, tc := range []struct {
		name, ct, enc string
		body          []byte
		code          int
		want          string
	}{
		{"protobuf garbage", store.ContentProtobuf, "", []byte("\xff\xff\xff\xff not protobuf"), 400, "protobuf"},
		{"json garbage", store.ContentJSON, "", []byte(`{"resourceSpans": [`), 400, "json"},
		{"json of another shape", store.ContentJSON, "", []byte(`{"resourceSpans": {"a": 1}}`), 400, "json"},
		{"an id that is not hex", store.ContentJSON, "", []byte(badHex), 400, "not hex"},
		{"a short span id", store.ContentJSON, "", []byte(shortID), 400, "spanId: want 8 bytes"},
		{"no service.name (one bad span refuses the batch)", store.ContentJSON, "", []byte(noService), 400, "service.name"},
		{"bad gzip", store.ContentJSON, "gzip", []byte(jsonExport), 400, "gzip"},
		{"unknown encoding", store.ContentJSON, "br", []byte(jsonExport), 415, "content encoding"},
		{"unknown content type", "text/plain", "", []byte(jsonExport), 415, "content type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, srv := newStore(t, store.DefaultConfig())
			code, body := post(t, srv.URL, tc.ct, tc.enc, tc.body)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Errorf("status %d body %s; want %d mentioning %q", code, body, tc.code, tc.want)
			}
			if s := st.Stats(); s.Spans != 0 || s.Traces != 0 {
				t.Errorf("stored after a refused payload: %+v", s)
			}
		})
	}
}

func TestReceiverAnswersInTheRequestsEncoding(t *testing.T) {
	_, srv := newStore(t, store.DefaultConfig())
	code, body := post(t, srv.URL, store.ContentJSON, "", []byte(`nope`))
	var st struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != 400 || st.Code != 3 || st.Message == "" {
		t.Errorf("status %d, body %s (%v)", code, body, err)
	}
	resp, err := http.Get(srv.URL + store.TracesPath)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}
}
