package kit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDecode(t *testing.T) {
	type req struct {
		SKU string `json:"sku"`
		Qty int    `json:"qty"`
	}
	tests := []struct {
		name, body, ctype string
		status            int
		msg               string
	}{
		{"ok", `{"sku":"A","qty":2}`, "application/json", 0, ""},
		{"empty", ``, "", 400, "empty body"},
		{"malformed", `{"sku":`, "", 400, "malformed JSON"},
		{"unknown field", `{"sku":"A","qtty":2}`, "", 400, `unknown field "qtty"`},
		{"wrong type", `{"sku":"A","qty":"two"}`, "", 400, `field "qty": want int`},
		{"trailing", `{"sku":"A"} {"sku":"B"}`, "", 400, "trailing data"},
		{"oversized", `{"sku":"` + strings.Repeat("x", MaxBody) + `"}`, "", 413, "request body over"},
		{"content type", `{}`, "text/plain", 415, "send application/json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
			if tc.ctype != "" {
				r.Header.Set("Content-Type", tc.ctype)
			}
			var v req
			err := Decode(r, &v)
			if tc.status == 0 {
				if err != nil || v.SKU != "A" || v.Qty != 2 {
					t.Fatalf("Decode = %v, %+v", err, v)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Status != tc.status || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("Decode error = %#v, want %d %q", err, tc.status, tc.msg)
			}
		})
	}
}

func TestWriteErrorShape(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{Conflict("out_of_stock", "sku A: 1 available"), 409, "out_of_stock"},
		{http.ErrBodyNotAllowed, 500, "internal"},
	} {
		w := httptest.NewRecorder()
		WriteError(w, httptest.NewRequest("GET", "/", nil), tc.err)
		var body Problem
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != tc.status || body.Code != tc.code || body.Detail == "" ||
			body.Status != tc.status || body.Type != ProblemTypeBase+tc.code || body.Title != http.StatusText(tc.status) ||
			w.Header().Get("Content-Type") != ProblemContentType {
			t.Errorf("%v → %d %s", tc.err, w.Code, w.Body)
		}
		if tc.status == 500 && strings.Contains(w.Body.String(), "body not allowed") {
			t.Errorf("500 leaks internals: %s", w.Body)
		}
	}
}

func TestTraceparent(t *testing.T) {
	valid := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if got := Traceparent(WithTraceparent(t.Context(), valid)); got != valid {
		t.Errorf("kept %q as %q", valid, got)
	}
	for _, bad := range []string{"", "00-xyz", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"} {
		got := Traceparent(WithTraceparent(t.Context(), bad))
		if got == bad || !validTraceparent(got) {
			t.Errorf("Traceparent over %q = %q, want a new valid one", bad, got)
		}
	}
}

// TestClientCancelledRequest: a request whose client went away before the
// answer fails with whatever its cancellation surfaced as; that is logged
// as cancelled with status 499, never as a 500 internal error.
func TestClientCancelledRequest(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	prev := slog.Default()
	slog.SetDefault(log)
	t.Cleanup(func() { slog.SetDefault(prev) })

	entered, served := make(chan struct{}), make(chan struct{})
	h := logRequests(log, Handle(func(w http.ResponseWriter, r *http.Request) error {
		close(entered)
		<-r.Context().Done()
		// As a database driver reports a cancelled query: wrapped, or not
		// a context error at all.
		return fmt.Errorf("select user: %w", errors.New("query interrupted"))
	}))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(served)
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/users/me", nil)
	go func() {
		<-entered
		cancel()
	}()
	if resp, err := srv.Client().Do(req); err == nil {
		_ = resp.Body.Close()
		t.Fatal("the cancelled request got an answer")
	}
	<-served
	mu.Lock()
	got := logs.String()
	mu.Unlock()
	if strings.Contains(got, "internal error") || strings.Contains(got, "level=ERROR") || strings.Contains(got, "level=WARN") {
		t.Errorf("a client's cancel logged as a server error:\n%s", got)
	}
	if !strings.Contains(got, "request cancelled by the client") || !strings.Contains(got, "status=499") {
		t.Errorf("log lacks the cancelled request with status 499:\n%s", got)
	}

	// The same error while the client still waits is a 500.
	w := httptest.NewRecorder()
	WriteError(w, httptest.NewRequest("GET", "/", nil), errors.New("query interrupted"))
	if w.Code != 500 {
		t.Errorf("an error with the client still there: %d, want 500", w.Code)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A call to another service that timed out is 504 upstream_timeout (the
// other service is slow); any other failure is 502 upstream.
func TestUpstream(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer slow.Close()
	c := NewClient("slow-service", slow.URL)
	c.HTTP.Timeout = 50 * time.Millisecond
	timeout := c.Do(context.Background(), "GET", "/x", "", nil, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	deadline := NewClient("slow-service", slow.URL).Do(ctx, "GET", "/x", "", nil, nil, nil)
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	refused := NewClient("gone-service", gone.URL).Do(context.Background(), "GET", "/x", "", nil, nil, nil)
	// A mesh in front of a dead instance answers in plain text naming it.
	meshText := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream 127.0.0.1:41234: dial tcp 127.0.0.1:41234: connect: connection refused", http.StatusBadGateway)
	}))
	defer meshText.Close()
	plain := NewClient("mesh-service", meshText.URL).Do(context.Background(), "GET", "/x", "", nil, nil, nil)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, Errorf(http.StatusServiceUnavailable, "not_ready", "starting"))
	}))
	defer failing.Close()
	problem := NewClient("busy-service", failing.URL).Do(context.Background(), "GET", "/x", "", nil, nil, nil)
	for _, c := range []struct {
		name   string
		err    error
		status int
		code   string
		says   string
	}{
		{"the client's timeout", timeout, 504, "upstream_timeout", "slow-service did not answer in time"},
		{"the caller's deadline", deadline, 504, "upstream_timeout", "slow-service did not answer in time"},
		{"a refused connection", refused, 502, "upstream", "gone-service could not be reached"},
		{"a plain-text answer", plain, 502, "upstream", "mesh-service answered 502"},
		{"a problem answer", problem, 502, "upstream", "busy-service answered 503 not_ready"},
	} {
		if c.err == nil {
			t.Fatalf("%s: the call did not fail", c.name)
		}
		e := Upstream(c.err, "read %s", "cart")
		if e.Status != c.status || e.Code != c.code || e.Message != "read cart: "+c.says {
			t.Errorf("%s: %d %s %q, want %d %s %q", c.name, e.Status, e.Code, e.Message, c.status, c.code, "read cart: "+c.says)
		}
		// What the caller reads names no address, port or Go error; the
		// log has the cause.
		var log bytes.Buffer
		prev := slog.Default()
		slog.SetDefault(slog.New(slog.NewTextHandler(&log, nil)))
		w := httptest.NewRecorder()
		WriteError(w, httptest.NewRequest("GET", "/carts/me", nil), e)
		slog.SetDefault(prev)
		if leak := leaked(w.Body.String()); leak != "" {
			t.Errorf("%s: the answer shows %q: %s", c.name, leak, w.Body)
		}
		if leak := leaked(PublicReason(fmt.Errorf("reserve: %w", c.err))); leak != "" {
			t.Errorf("%s: PublicReason shows %q", c.name, leak)
		}
		if c.name == "a refused connection" && !strings.Contains(log.String(), "127.0.0.1") {
			t.Errorf("%s: the log lost the cause: %s", c.name, log.String())
		}
	}
}

// leaked is the first sign of an internal address or a Go error in s.
func leaked(s string) string {
	s = strings.ReplaceAll(s, ProblemTypeBase, "")
	for _, sign := range []string{"127.0.0.1", "localhost", "[::1]", "http://", "https://", "dial ", "connect:", "context deadline", "Client.Timeout", "EOF"} {
		if strings.Contains(s, sign) {
			return sign
		}
	}
	return ""
}

// A service whose JWKS cannot be fetched answers 503 auth_unavailable
// without user-service's address.
func TestAuthUnavailableNamesNoAddress(t *testing.T) {
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	v := NewVerifier(gone.URL)
	h := Handle(v.Auth(func(w http.ResponseWriter, r *http.Request) error { return nil }))
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/x", nil)
	r.Header.Set("Authorization", "Bearer eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.e30.c2ln")
	h.ServeHTTP(w, r)
	if w.Code != 503 || parseCode(w.Body.Bytes()) != "auth_unavailable" {
		t.Fatalf("%d %s, want 503 auth_unavailable", w.Code, w.Body)
	}
	if leak := leaked(w.Body.String()); leak != "" {
		t.Errorf("the answer shows %q: %s", leak, w.Body)
	}
}
