package kit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// MaxBody is the largest request body any shop endpoint accepts.
const MaxBody = 1 << 20

// Error is an HTTP error, written as an RFC 9457 problem
// (application/problem+json) with a stable code, the same shape the
// gateway answers in:
//
//	{"type": "https://flotilla.dev/problems/out_of_stock", "title": "Conflict", "status": 409,
//	 "code": "out_of_stock", "detail": "sku SKU-1: 2 available, 5 requested"}
type Error struct {
	Status  int
	Code    string
	Message string
}

// ProblemContentType is the media type of every error answer (RFC 9457).
const ProblemContentType = "application/problem+json"

// ProblemTypeBase prefixes a problem's code to make its type URI.
const ProblemTypeBase = "https://flotilla.dev/problems/"

// Problem is the RFC 9457 body of an error: the standard members and the
// shop's stable code (what a client branches on).
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// Problem renders e as its RFC 9457 body.
func (e *Error) Problem() Problem {
	title := http.StatusText(e.Status)
	if title == "" {
		title = e.Code
	}
	return Problem{Type: ProblemTypeBase + e.Code, Title: title, Status: e.Status, Code: e.Code, Detail: e.Message}
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an *Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Upstream is the error a handler returns when its call to another service
// failed: 504 upstream_timeout when the call timed out (the caller's
// deadline, or the client's timeout: the other service is slow, not
// wrong), else 502 upstream. The message says what was being done.
func Upstream(err error, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...) + ": " + err.Error()
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &Error{Status: http.StatusGatewayTimeout, Code: "upstream_timeout", Message: msg}
	}
	return &Error{Status: http.StatusBadGateway, Code: "upstream", Message: msg}
}

// Common errors.
func BadRequest(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, "bad_request", format, args...)
}

// NotFound is a 404 with code not_found.
func NotFound(format string, args ...any) *Error {
	return Errorf(http.StatusNotFound, "not_found", format, args...)
}

// Unauthorized is a 401 with code unauthorized.
func Unauthorized(format string, args ...any) *Error {
	return Errorf(http.StatusUnauthorized, "unauthorized", format, args...)
}

// Forbidden is a 403 with code forbidden.
func Forbidden(format string, args ...any) *Error {
	return Errorf(http.StatusForbidden, "forbidden", format, args...)
}

// Conflict is a 409 with the given code.
func Conflict(code, format string, args ...any) *Error {
	return Errorf(http.StatusConflict, code, format, args...)
}

// WriteJSON writes v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// StatusClientClosedRequest is the status of a request whose client went
// away before the answer (nginx's 499): not a server error, nobody reads it.
const StatusClientClosedRequest = 499

// WriteError writes err in the stable shape: an *Error as itself, anything
// else as a 500 whose message hides internals (the log has them). A
// request whose client went away (its context cancelled) failed because of
// that, not because of the service: it is a 499 "cancelled", logged at
// info, whatever error the cancellation surfaced as (a database driver's
// own, a context error).
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		if errors.Is(r.Context().Err(), context.Canceled) {
			slog.InfoContext(r.Context(), "request cancelled by the client", "method", r.Method, "path", r.URL.Path, "err", err)
			e = Errorf(StatusClientClosedRequest, "cancelled", "the client closed the request")
		} else {
			slog.ErrorContext(r.Context(), "internal error", "method", r.Method, "path", r.URL.Path, "err", err)
			e = Errorf(http.StatusInternalServerError, "internal", "internal error; see the service log")
		}
	}
	failSpan(trace.SpanFromContext(r.Context()), err)
	WriteProblem(w, e)
}

// WriteProblem writes e as application/problem+json.
func WriteProblem(w http.ResponseWriter, e *Error) {
	w.Header().Set("Content-Type", ProblemContentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(e.Problem())
}

// ParseProblem reads an error answer's body: an RFC 9457 problem with a
// code, or the {"error": {"code", "message"}} shape older versions of the
// shop's services answered in (a service not yet redeployed). ok is false
// when the body is neither.
func ParseProblem(status int, body []byte) (e Error, ok bool) {
	var p struct {
		Code   string `json:"code"`
		Detail string `json:"detail"`
		Title  string `json:"title"`
		Error  *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &p) != nil {
		return Error{Status: status}, false
	}
	switch {
	case p.Code != "":
		msg := p.Detail
		if msg == "" {
			msg = p.Title
		}
		return Error{Status: status, Code: p.Code, Message: msg}, true
	case p.Error != nil && p.Error.Code != "":
		return Error{Status: status, Code: p.Error.Code, Message: p.Error.Message}, true
	}
	return Error{Status: status}, false
}

// HandlerFunc is an http handler that returns its error.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Handle adapts h, writing a returned error with WriteError.
func Handle(h HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			WriteError(w, r, err)
		}
	})
}

// Decode reads a JSON body into v strictly: at most MaxBody bytes, one
// value, no unknown fields. Its errors are 4xx *Errors naming the problem.
func Decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "content type %q: send application/json", ct)
	}
	body := http.MaxBytesReader(nil, r.Body, MaxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return Errorf(http.StatusRequestEntityTooLarge, "too_large", "request body over %d bytes", MaxBody)
		case errors.Is(err, io.EOF):
			return BadRequest("empty body: send a JSON object")
		case errors.As(err, &se):
			return BadRequest("malformed JSON at byte %d: %v", se.Offset, err)
		case errors.As(err, &te):
			return BadRequest("field %q: want %s, got %s", te.Field, te.Type, te.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return BadRequest("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		default:
			return BadRequest("malformed JSON: %v", err)
		}
	}
	if dec.More() {
		return BadRequest("trailing data after the JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return Errorf(http.StatusRequestEntityTooLarge, "too_large", "request body over %d bytes", MaxBody)
		}
		return BadRequest("trailing data after the JSON value")
	}
	return nil
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

// logRequests logs one line per request, and turns a handler panic into a
// 500 in the stable shape.
func logRequests(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if err, ok := p.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(p)
				}
				log.ErrorContext(r.Context(), "handler panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p))
				if sw.status == 0 {
					WriteError(sw, r, fmt.Errorf("panic: %v", p))
				}
			}
			level := slog.LevelInfo
			if sw.status >= 500 {
				level = slog.LevelWarn
			}
			if r.URL.Path == "/health" || r.URL.Path == "/ready" {
				level = slog.LevelDebug - 4
			}
			log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path,
				"status", sw.status, "bytes", sw.bytes, "duration_ms", float64(time.Since(start).Microseconds())/1000,
				"traceparent", r.Header.Get("traceparent"))
		}()
		next.ServeHTTP(sw, r)
	})
}

// problemMux answers the mux's own 404 and 405 (no route, or a route
// without the method) as problems like every other error, keeping the
// Allow header the mux sets.
func problemMux(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			nameSpan(r, pattern)
			mux.ServeHTTP(w, r)
			return
		}
		c := &captureWriter{header: w.Header()}
		mux.ServeHTTP(c, r)
		switch c.status {
		case http.StatusNotFound:
			WriteProblem(w, NotFound("no route for %s %s", r.Method, r.URL.Path))
		case http.StatusMethodNotAllowed:
			WriteProblem(w, Errorf(http.StatusMethodNotAllowed, "method_not_allowed", "method %s not allowed on %s: use %s", r.Method, r.URL.Path, w.Header().Get("Allow")))
		default: // a redirect to the clean path
			if c.status == 0 {
				c.status = http.StatusOK
			}
			w.WriteHeader(c.status)
			_, _ = w.Write(c.body)
		}
	})
}

// captureWriter keeps what the mux answered, to answer it in the
// problem shape instead.
type captureWriter struct {
	header http.Header
	status int
	body   []byte
}

func (c *captureWriter) Header() http.Header { return c.header }
func (c *captureWriter) WriteHeader(s int) {
	if c.status == 0 {
		c.status = s
	}
}
func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if len(c.body) < 4096 {
		c.body = append(c.body, b...)
	}
	return len(b), nil
}
