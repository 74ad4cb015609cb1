// Package kittest gives shop component tests the real parts to run on: a
// database and a bus, in two environments: SQLite with an embedded NATS
// JetStream server always, and PostgreSQL with the NATS server named by
// FLOTILLA_TEST_POSTGRES / FLOTILLA_TEST_NATS when they are set.
package kittest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	busnats "github.com/flotilla-ci/flotilla/bus/nats"
	"github.com/flotilla-ci/flotilla/internal/sqldb/sqldbtest"
	"github.com/flotilla-ci/flotilla/internal/testenv"
	"github.com/flotilla-ci/flotilla/shop/kit"
)

// Env is where one run of a component test stores and publishes.
type Env struct {
	Name      string // "sqlite+embedded-nats" or "postgres+nats"
	NewDSN    func(t testing.TB) string
	BusURL    string
	BusStream string // fresh per Env: tests never see each other's events
}

// Config returns a kit.Config for service in this environment with a fresh
// database, listening on a free loopback port, logging only warnings.
func (e Env) Config(t testing.TB, service string) kit.Config {
	c := kit.DefaultConfig(service)
	c.DatabaseURL = e.NewDSN(t)
	c.BusURL = e.BusURL
	c.BusStream = e.BusStream
	c.Drain = 5 * time.Second
	c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return c
}

var (
	embOnce sync.Once
	embURL  string
	embErr  error
	seq     atomic.Int64
)

// EmbeddedNATS returns the URL of a JetStream server shared by the tests
// of this binary (file storage in a temp dir, sync always).
func EmbeddedNATS(t testing.TB) string {
	t.Helper()
	embOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kittest-nats-")
		if err != nil {
			embErr = err
			return
		}
		srv, err := busnats.Embedded(busnats.ServerConfig{Dir: dir})
		if err != nil {
			embErr = err
			return
		}
		embURL = srv.URL()
	})
	if embErr != nil {
		t.Fatalf("embedded nats: %v", embErr)
	}
	return embURL
}

// Stream returns a fresh stream name and deletes the stream when t ends.
func Stream(t testing.TB, url string) string {
	name := fmt.Sprintf("T%d_%d", time.Now().UnixNano(), seq.Add(1))
	t.Cleanup(func() {
		cfg := busnats.DefaultConfig(url)
		cfg.Stream, cfg.Prefix = name, "flotilla."+lower(name)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if b, err := busnats.New(ctx, cfg); err == nil {
			_ = b.DeleteStream(ctx)
			_ = b.Close()
		}
	})
	return name
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

// Each runs fn as subtests "sqlite" (SQLite + embedded NATS) and
// "postgres" (PostgreSQL + the NATS server; skipped unless both
// FLOTILLA_TEST_POSTGRES and FLOTILLA_TEST_NATS are set, failing under CI).
func Each(t *testing.T, fn func(t *testing.T, env Env)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, SQLiteEnv(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, PostgresEnv(t)) })
}

// SQLiteEnv is SQLite files with the embedded NATS server.
func SQLiteEnv(t testing.TB) Env {
	url := EmbeddedNATS(t)
	return Env{Name: "sqlite+embedded-nats", NewDSN: func(t testing.TB) string { return sqldbtest.SQLite(t) }, BusURL: url, BusStream: Stream(t, url)}
}

// PostgresEnv is fresh PostgreSQL schemas with the NATS server; it skips
// (or fails under CI) unless FLOTILLA_TEST_POSTGRES and FLOTILLA_TEST_NATS
// are set.
func PostgresEnv(t testing.TB) Env {
	sqldbtest.Postgres(t) // skip early when unset
	url := testenv.Server(t, testenv.NATS)
	return Env{Name: "postgres+nats", NewDSN: func(t testing.TB) string { return sqldbtest.Postgres(t) }, BusURL: url, BusStream: Stream(t, url)}
}

// Response is an HTTP answer as tests look at it.
type Response struct {
	Status int
	Body   []byte
	Header http.Header
}

// JSON decodes the body into v, failing the test on error.
func (r Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// ErrorCode returns the code of a problem (RFC 9457) body, or "".
func (r Response) ErrorCode() string {
	var e struct{ Code string }
	_ = json.Unmarshal(r.Body, &e)
	return e.Code
}

// Call sends body (a string is sent raw, anything else as JSON) with an
// optional bearer token and returns the answer.
func Call(t testing.TB, method, url, token string, body any, headers ...string) Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Body: data, Header: resp.Header}
}

// AsService are the headers of a call that service makes through the mesh
// to an internal endpoint on behalf of the user a token names (its sub),
// as a service without identities receives them: the caller in
// kit.CallerHeader and the user in kit.OnBehalfOfHeader. extra headers
// (name, value pairs) follow. The token's signature is not checked here.
func AsService(t testing.TB, service, token string, extra ...string) []string {
	t.Helper()
	h := []string{kit.CallerHeader, service}
	if token != "" {
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			t.Fatalf("AsService: %q is not a JWT", token)
		}
		raw, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatalf("AsService: token payload: %v", err)
		}
		var c struct{ Sub string }
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatalf("AsService: token claims: %v", err)
		}
		h = append(h, kit.OnBehalfOfHeader, c.Sub)
	}
	return append(h, extra...)
}
