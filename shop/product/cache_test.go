package product_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/internal/testenv"
	"github.com/flotilla-ci/flotilla/shop/kit/cache"
	"github.com/flotilla-ci/flotilla/shop/kit/cache/rediscache"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/product"
	"github.com/flotilla-ci/flotilla/shop/user/usertest"
)

// proxy forwards TCP connections to a server until it is closed, which
// also cuts every connection it carries: a Redis that goes away.
type proxy struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, addr: "127.0.0.1:0", target: target}
	p.open()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) open() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy listen: %v", err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); _ = s.Close() }()
			go func() { _, _ = io.Copy(c, s); _ = c.Close() }()
		}
	}()
}

func (p *proxy) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// Product reads go through Redis; when Redis goes away mid-run reads and
// writes keep working from the database, and a change made meanwhile is
// not hidden by Redis's stale copy when it comes back.
func TestCacheSurvivesRedisGoingAway(t *testing.T) {
	redisURL := testenv.Server(t, testenv.Redis)
	env := kittest.SQLiteEnv(t)
	users, _, admin := usertest.StartForTest(t, env)
	u, err := url.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	px := newProxy(t, target)
	rc, err := rediscache.Open("redis://"+px.addr+"/0", fmt.Sprintf("test:%d:", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Clear(context.Background()); _ = rc.Close() })
	cfg := env.Config(t, product.Service)
	cfg.Deps["user"] = users.URL()
	m := &product.Main{Config: product.Config{Kit: cfg, Seed: 3, Cache: rc}}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })

	price := func() int64 {
		t.Helper()
		r := kittest.Call(t, "GET", m.URL()+"/products/SKU-0001", "", nil)
		if r.Status != 200 {
			t.Fatalf("get product: %d %s", r.Status, r.Body)
		}
		var p product.Product
		r.JSON(t, &p)
		return p.Price
	}
	reprice := func(v int64) {
		t.Helper()
		if r := kittest.Call(t, "PUT", m.URL()+"/products/SKU-0001/price", admin, map[string]any{"price": v, "currency": "EUR"}); r.Status != 200 {
			t.Fatalf("reprice: %d %s", r.Status, r.Body)
		}
	}
	first := price()
	if price() != first {
		t.Fatal("second read differs")
	}
	if s := m.CacheStats(); s.Hits != 1 || s.Misses != 1 {
		t.Fatalf("stats after a miss and a hit: %+v", s)
	}
	reprice(first + 1)
	if got := price(); got != first+1 {
		t.Fatalf("price after a change = %d, want %d (invalidated)", got, first+1)
	}

	px.close() // Redis goes away, connections and all
	start := time.Now()
	if got := price(); got != first+1 {
		t.Fatalf("price with Redis gone = %d, want %d", got, first+1)
	}
	reprice(first + 2) // its invalidation cannot reach Redis, which holds first+1
	if got := price(); got != first+2 {
		t.Fatalf("price with Redis gone after a change = %d, want %d", got, first+2)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("three requests with Redis gone took %s", d)
	}
	if s := m.CacheStats(); s.Errors == 0 || s.Bypassed < 2 {
		t.Errorf("stats with Redis gone: %+v; want errors and bypassed reads", s)
	}

	px.open() // back, on the same address
	time.Sleep(1100 * time.Millisecond)
	for i := 0; i < 2; i++ {
		if got := price(); got != first+2 {
			t.Fatalf("price after Redis came back = %d, want %d: the invalidation made while it was away was lost", got, first+2)
		}
	}
	// miss, hit, (change) miss, [gone: bypassed, bypassed], (back) miss, hit
	if got, want := m.CacheStats(), (cache.Stats{Hits: 2, Misses: 3, Errors: 1, Bypassed: 2}); got != want {
		t.Errorf("stats after Redis came back = %+v, want %+v", got, want)
	}
}

// The in-process cache is the default.
func TestCacheDefaultsToInProcess(t *testing.T) {
	env := kittest.SQLiteEnv(t)
	users, _, _ := usertest.StartForTest(t, env)
	cfg := env.Config(t, product.Service)
	cfg.Deps["user"] = users.URL()
	m := &product.Main{Config: product.Config{Kit: cfg, Seed: 2}}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	for i := 0; i < 3; i++ {
		if r := kittest.Call(t, "GET", m.URL()+"/products/SKU-0002", "", nil); r.Status != 200 {
			t.Fatal(r.Status)
		}
	}
	if r := kittest.Call(t, "GET", m.URL()+"/products/NOPE-1", "", nil); r.Status != 404 {
		t.Fatalf("unknown sku: %d", r.Status)
	}
	if got, want := m.CacheStats(), (cache.Stats{Hits: 2, Misses: 2}); got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
}
