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
)

// MaxBody is the largest request body any shop endpoint accepts.
const MaxBody = 1 << 20

// Error is an HTTP error with the shop's stable JSON shape:
//
//	{"error": {"code": "out_of_stock", "message": "sku SKU-1: 2 available, 5 requested"}}
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
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
	WriteJSON(w, e.Status, map[string]*Error{"error": e})
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
