package store

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	collector "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// TracesPath is OTLP/HTTP's path for traces.
const TracesPath = "/v1/traces"

// MaxBodyBytes bounds an export request's body, decompressed.
const MaxBodyBytes = 16 << 20

// Receiver is an OTLP/HTTP trace receiver (POST /v1/traces) storing what
// it receives in a Store: protobuf (application/x-protobuf) or OTLP's JSON
// (application/json), optionally gzip-compressed (Content-Encoding: gzip).
// A payload that does not decode is answered 400 with a google.rpc.Status
// in the request's encoding, and nothing of it is stored.
type Receiver struct{ Store *Store }

// ServeHTTP handles one export request.
func (rc Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ct := mediaType(r.Header.Get("Content-Type"))
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		rpcError(w, ct, http.StatusMethodNotAllowed, fmt.Errorf("%s %s: OTLP exports are POSTed", r.Method, r.URL.Path))
		return
	}
	if ct != ContentProtobuf && ct != ContentJSON {
		rpcError(w, ContentJSON, http.StatusUnsupportedMediaType, fmt.Errorf("content type %q: want %s or %s", r.Header.Get("Content-Type"), ContentProtobuf, ContentJSON))
		return
	}
	var body io.Reader = r.Body
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			rpcError(w, ct, http.StatusBadRequest, fmt.Errorf("gzip body: %w", err))
			return
		}
		defer func() { _ = zr.Close() }()
		body = zr
	default:
		rpcError(w, ct, http.StatusUnsupportedMediaType, fmt.Errorf("content encoding %q: want gzip or none", enc))
		return
	}
	b, err := io.ReadAll(io.LimitReader(body, MaxBodyBytes+1))
	if err != nil {
		rpcError(w, ct, http.StatusBadRequest, fmt.Errorf("read body: %w", err))
		return
	}
	if len(b) > MaxBodyBytes {
		rpcError(w, ct, http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes: export smaller batches", MaxBodyBytes))
		return
	}
	spans, err := Decode(b, ct, rc.Store.Limits())
	if err != nil {
		code := http.StatusInternalServerError
		var de *DecodeError
		if errors.As(err, &de) {
			code = http.StatusBadRequest
		}
		rpcError(w, ct, code, err)
		return
	}
	rc.Store.Add(spans)
	writeMessage(w, ct, http.StatusOK, &collector.ExportTraceServiceResponse{})
}

func writeMessage(w http.ResponseWriter, ct string, code int, m proto.Message) {
	var b []byte
	if ct == ContentProtobuf {
		b, _ = proto.Marshal(m)
	} else {
		ct = ContentJSON
		b, _ = protojson.Marshal(m)
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// rpcError answers as OTLP/HTTP says: a google.rpc.Status with the message.
func rpcError(w http.ResponseWriter, ct string, code int, err error) {
	grpcCode := int32(3) // INVALID_ARGUMENT
	if code >= 500 {
		grpcCode = 13 // INTERNAL
	}
	writeMessage(w, ct, code, &status.Status{Code: grpcCode, Message: err.Error()})
}
