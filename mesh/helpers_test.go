package mesh

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable clock for ejection and stats windows.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestMesh(t *testing.T, cfg Config) *Mesh {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	return m
}

// upstream is a real HTTP server that answers with its name and counts
// the requests it got.
type upstream struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
}

func newUpstream(t *testing.T, name string, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{name: name}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		w.Header().Set("X-Upstream", name)
		if h != nil {
			h(w, r)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, name)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) addr() string { return strings.TrimPrefix(u.srv.URL, "http://") }

// deadAddr returns an address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	_ = ln.Close()
	return a
}

func addService(t *testing.T, m *Mesh, sc ServiceConfig, subs ...Subset) string {
	t.Helper()
	ctx := context.Background()
	addr, err := m.AddService(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		if err := m.SetSubset(ctx, sc.Name, s); err != nil {
			t.Fatal(err)
		}
	}
	return "http://" + addr
}

var testClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}

type result struct {
	status  int
	version string
	body    string
}

func do(t *testing.T, method, url string, hdr map[string]string, body string) result {
	t.Helper()
	r, err := doErr(method, url, hdr, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func doErr(method, url string, hdr map[string]string, body string) (result, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return result{}, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		return result{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, err
	}
	return result{status: resp.StatusCode, version: resp.Header.Get(UpstreamVersionHeader), body: string(b)}, nil
}
