package store

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unique"

	collector "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	common "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// The OTLP/HTTP encodings a receiver accepts.
const (
	ContentProtobuf = "application/x-protobuf"
	ContentJSON     = "application/json"
)

// Limits bound what one span keeps: attributes beyond MaxAttributes and
// events beyond MaxEvents are dropped, values longer than MaxValueLen cut.
type Limits struct {
	MaxAttributes int
	MaxEvents     int
	MaxLinks      int
	MaxValueLen   int
}

// DefaultLimits are the limits of DefaultConfig.
func DefaultLimits() Limits {
	return Limits{MaxAttributes: 64, MaxEvents: 16, MaxLinks: 16, MaxValueLen: 1024}
}

// DecodeError is a payload that is not OTLP: the receiver answers 400.
type DecodeError struct{ Err error }

func (e *DecodeError) Error() string { return "otlp payload: " + e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

// Decode reads an ExportTraceServiceRequest in the given encoding
// (ContentProtobuf or ContentJSON, OTLP's JSON: hex trace and span ids)
// into spans. A payload that does not decode, or a span without a valid
// trace id, span id or service, is a *DecodeError and yields no span at all.
func Decode(body []byte, contentType string, lim Limits) ([]Span, error) {
	req := &collector.ExportTraceServiceRequest{}
	switch mediaType(contentType) {
	case ContentProtobuf:
		if err := proto.Unmarshal(body, req); err != nil {
			return nil, &DecodeError{fmt.Errorf("protobuf: %w", err)}
		}
	case ContentJSON:
		fixed, err := hexIDsToBase64(body)
		if err != nil {
			return nil, &DecodeError{fmt.Errorf("json: %w", err)}
		}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(fixed, req); err != nil {
			return nil, &DecodeError{fmt.Errorf("json: %w", err)}
		}
	default:
		return nil, &DecodeError{fmt.Errorf("content type %q: want %s or %s", contentType, ContentProtobuf, ContentJSON)}
	}
	return Convert(req.GetResourceSpans(), lim)
}

func mediaType(ct string) string {
	ct, _, _ = strings.Cut(ct, ";")
	return strings.ToLower(strings.TrimSpace(ct))
}

// Convert turns OTLP resource spans into the store's spans.
func Convert(rss []*tracepb.ResourceSpans, lim Limits) ([]Span, error) {
	var out []Span
	var errs []error
	for ri, rs := range rss {
		var service, version string
		for _, kv := range rs.GetResource().GetAttributes() {
			switch kv.GetKey() {
			case "service.name":
				service = anyString(kv.GetValue())
			case "service.version":
				version = anyString(kv.GetValue())
			}
		}
		for si, ss := range rs.GetScopeSpans() {
			for pi, sp := range ss.GetSpans() {
				where := fmt.Sprintf("resourceSpans[%d].scopeSpans[%d].spans[%d]", ri, si, pi)
				s, err := convertSpan(sp, service, version, lim)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", where, err))
					if len(errs) >= 5 {
						return nil, &DecodeError{errors.Join(errs...)}
					}
					continue
				}
				out = append(out, s)
			}
		}
	}
	if len(errs) > 0 {
		return nil, &DecodeError{errors.Join(errs...)}
	}
	return out, nil
}

var zero8, zero16 = make([]byte, 8), make([]byte, 16)

func convertSpan(sp *tracepb.Span, service, version string, lim Limits) (Span, error) {
	if len(sp.GetTraceId()) != 16 || bytes.Equal(sp.GetTraceId(), zero16) {
		return Span{}, fmt.Errorf("traceId: want 16 bytes, not all zero (got %d bytes)", len(sp.GetTraceId()))
	}
	if len(sp.GetSpanId()) != 8 || bytes.Equal(sp.GetSpanId(), zero8) {
		return Span{}, fmt.Errorf("spanId: want 8 bytes, not all zero (got %d bytes)", len(sp.GetSpanId()))
	}
	if p := sp.GetParentSpanId(); len(p) != 0 && len(p) != 8 {
		return Span{}, fmt.Errorf("parentSpanId: want 8 bytes or none (got %d)", len(p))
	}
	s := Span{
		TraceID: hex.EncodeToString(sp.GetTraceId()), SpanID: hex.EncodeToString(sp.GetSpanId()),
		Name:  intern(cut(sp.GetName(), lim.MaxValueLen)),
		Kind:  kindName(sp.GetKind()),
		Start: unixNano(sp.GetStartTimeUnixNano()), End: unixNano(sp.GetEndTimeUnixNano()),
		Status: StatusUnset,
	}
	if p := sp.GetParentSpanId(); len(p) == 8 && !bytes.Equal(p, zero8) {
		s.ParentSpanID = hex.EncodeToString(p)
	}
	switch sp.GetStatus().GetCode() {
	case tracepb.Status_STATUS_CODE_OK:
		s.Status = StatusOK
	case tracepb.Status_STATUS_CODE_ERROR:
		s.Status = StatusError
		s.StatusMessage = cut(sp.GetStatus().GetMessage(), lim.MaxValueLen)
	}
	s.Attributes = attrs(sp.GetAttributes(), lim)
	if v, ok := s.Attributes.Get("service.version"); ok && version == "" {
		version = v
	}
	if service == "" {
		return Span{}, errors.New(`no service: its resource has no "service.name" attribute`)
	}
	s.Service, s.Version = intern(cut(service, lim.MaxValueLen)), intern(cut(version, lim.MaxValueLen))
	for i, ev := range sp.GetEvents() {
		if i >= lim.MaxEvents {
			break
		}
		s.Events = append(s.Events, Event{Name: intern(cut(ev.GetName(), lim.MaxValueLen)), Time: unixNano(ev.GetTimeUnixNano()), Attributes: attrs(ev.GetAttributes(), lim)})
	}
	for i, l := range sp.GetLinks() {
		if i >= lim.MaxLinks {
			break
		}
		if len(l.GetTraceId()) != 16 || len(l.GetSpanId()) != 8 {
			return Span{}, fmt.Errorf("links[%d]: want a 16-byte traceId and an 8-byte spanId", i)
		}
		s.Links = append(s.Links, Link{TraceID: hex.EncodeToString(l.GetTraceId()), SpanID: hex.EncodeToString(l.GetSpanId()), Attributes: attrs(l.GetAttributes(), lim)})
	}
	return s, nil
}

func unixNano(ns uint64) time.Time {
	if ns > math.MaxInt64 {
		ns = math.MaxInt64
	}
	return time.Unix(0, int64(ns)).UTC()
}

func kindName(k tracepb.Span_SpanKind) string {
	switch k {
	case tracepb.Span_SPAN_KIND_SERVER:
		return KindServer
	case tracepb.Span_SPAN_KIND_CLIENT:
		return KindClient
	case tracepb.Span_SPAN_KIND_PRODUCER:
		return KindProducer
	case tracepb.Span_SPAN_KIND_CONSUMER:
		return KindConsumer
	}
	return KindInternal
}

// intern keeps one copy of the strings that repeat across spans
// (services, versions, operation names, attribute keys).
func intern(s string) string { return unique.Make(s).Value() }

func cut(s string, n int) string {
	if n > 0 && len(s) > n {
		return s[:n]
	}
	return strings.Clone(s)
}

func attrs(kvs []*common.KeyValue, lim Limits) Attrs {
	if len(kvs) == 0 {
		return nil
	}
	n := min(len(kvs), lim.MaxAttributes)
	out := make(Attrs, 0, n)
	for _, kv := range kvs[:n] {
		out = append(out, Attr{Key: intern(cut(kv.GetKey(), lim.MaxValueLen)), Value: cut(anyString(kv.GetValue()), lim.MaxValueLen)})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	// A key given twice keeps its last value.
	dedup := out[:0]
	for i, kv := range out {
		if i+1 < len(out) && out[i+1].Key == kv.Key {
			continue
		}
		dedup = append(dedup, kv)
	}
	return dedup
}

// anyString renders an attribute value as text (arrays and maps as JSON).
func anyString(v *common.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *common.AnyValue_StringValue:
		return x.StringValue
	case *common.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *common.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *common.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *common.AnyValue_BytesValue:
		return base64.StdEncoding.EncodeToString(x.BytesValue)
	case *common.AnyValue_ArrayValue:
		vals := make([]any, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			vals = append(vals, anyString(e))
		}
		b, _ := json.Marshal(vals)
		return string(b)
	case *common.AnyValue_KvlistValue:
		m := map[string]string{}
		for _, kv := range x.KvlistValue.GetValues() {
			m[kv.GetKey()] = anyString(kv.GetValue())
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	return ""
}

// hexIDsToBase64 rewrites OTLP JSON's hex traceId, spanId and
// parentSpanId (in spans and links) as the base64 protojson reads.
func hexIDsToBase64(body []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("more than one JSON value")
	}
	if err := fixIDs(v, ""); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func fixIDs(v any, path string) error {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			switch k {
			case "traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id":
				s, ok := e.(string)
				if !ok {
					if e == nil {
						continue
					}
					return fmt.Errorf("%s.%s: want a hex string", path, k)
				}
				if len(s) != 32 && len(s) != 16 {
					continue // not an id's hex length: protojson reads it as base64, or refuses it
				}
				b, err := hex.DecodeString(s)
				if err != nil {
					return fmt.Errorf("%s.%s: %q is not hex", path, k, s)
				}
				x[k] = base64.StdEncoding.EncodeToString(b)
			default:
				if err := fixIDs(e, path+"."+k); err != nil {
					return err
				}
			}
		}
	case []any:
		for i, e := range x {
			if err := fixIDs(e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}
