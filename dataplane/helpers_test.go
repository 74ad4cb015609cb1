package dataplane

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/mesh"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// upstream is a real HTTP server answering with its name.
func upstream(t *testing.T, name string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// get sends a GET to addr (host:port) with headers, and returns the
// status and body ("" and the error text when it failed).
func get(t *testing.T, addr, path string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// newServer runs a Server over a new mesh, keeping state in dir ("" for
// a new one).
func newServer(t *testing.T, dir string) (*Server, *mesh.Mesh) {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	m, err := mesh.New(mesh.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(ServerConfig{Mesh: m, State: dir, Logger: quiet, DrainTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Close(ctx)
		_ = m.Close(ctx)
	})
	return s, m
}

// startMain runs a data plane in process on state dir.
func startMain(t *testing.T, dir string) *Main {
	t.Helper()
	m := &Main{Config: Config{State: dir, Logger: quiet, DrainTimeout: 10 * time.Second, Version: "test"}}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// shortDir is a state directory with a path short enough for a unix
// socket.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func removeAll(dir string) error { return os.RemoveAll(dir) }
