package store_test

import (
	"encoding/hex"
	"testing"

	collector "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	common "go.opentelemetry.io/proto/otlp/common/v1"
	resource "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-ci/flotilla/tracing/store"
)

func protoSeed() []byte {
	tid, _ := hex.DecodeString("5b8efff798038103d269b633813fc60c")
	sid, _ := hex.DecodeString("eee19b7ec3c1b174")
	req := &collector.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resource.Resource{Attributes: []*common.KeyValue{{Key: "service.name", Value: &common.AnyValue{Value: &common.AnyValue_StringValue{StringValue: "gateway"}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{
			TraceId: tid, SpanId: sid, Name: "GET /", Kind: tracepb.Span_SPAN_KIND_SERVER,
			StartTimeUnixNano: 1, EndTimeUnixNano: 2,
			Links: []*tracepb.Span_Link{{TraceId: tid, SpanId: sid}},
		}}}},
	}}}
	b, _ := proto.Marshal(req)
	return b
}

// FuzzDecode: any payload either decodes into valid spans or is refused
// whole with a DecodeError; it never panics and never half-succeeds.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(jsonExport), true)
	f.Add(protoSeed(), false)
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"00","spanId":"01"}]}]}]}`), true)
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00}, false)
	f.Fuzz(func(t *testing.T, body []byte, asJSON bool) {
		ct := store.ContentProtobuf
		if asJSON {
			ct = store.ContentJSON
		}
		spans, err := store.Decode(body, ct, store.DefaultLimits())
		if err != nil {
			if spans != nil {
				t.Fatalf("error %v with %d spans", err, len(spans))
			}
			return
		}
		st, _ := store.New(store.DefaultConfig())
		st.Add(spans)
		for _, s := range spans {
			if len(s.TraceID) != 32 || len(s.SpanID) != 16 || s.Service == "" {
				t.Fatalf("invalid span accepted: %+v", s)
			}
			if len(s.Attributes) > store.DefaultLimits().MaxAttributes {
				t.Fatalf("%d attributes kept", len(s.Attributes))
			}
			tr, err := st.Get(s.TraceID)
			if err != nil {
				t.Fatal(err)
			}
			_ = store.Analyze(tr)
		}
	})
}
