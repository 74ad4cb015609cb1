// Command cache benchmarks product reads through product-service's cache:
// GET /products/{sku} at a fixed rate (default 1,000/s, open loop) over a
// catalog of 1,000 products with Zipf-distributed popularity, with no
// cache, the in-process LRU and Redis; it prints p50/p99/max and the hit
// rate of each. product-service runs in this process on SQLite with an
// embedded NATS JetStream server.
//
//	go run ./bench/cache [-rate 1000] [-duration 10s] [-redis redis://127.0.0.1:6379/0]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	busnats "github.com/flotilla-ci/flotilla/bus/nats"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/cache"
	"github.com/flotilla-ci/flotilla/shop/kit/cache/rediscache"
	"github.com/flotilla-ci/flotilla/shop/product"
)

func main() {
	rate := flag.Int("rate", 1000, "reads per second")
	duration := flag.Duration("duration", 10*time.Second, "how long to read")
	products := flag.Int("products", 1000, "catalog size")
	redisURL := flag.String("redis", "redis://127.0.0.1:6379/0", "Redis for the redis run")
	flag.Parse()
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "bench-cache-")
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	nats, err := busnats.Embedded(busnats.ServerConfig{Dir: filepath.Join(dir, "nats")})
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = nats.Close() }()

	// One read sequence for every run: Zipf over the catalog.
	z := rand.NewZipf(rand.New(rand.NewPCG(5, 6)), 1.1, 1, uint64(*products-1))
	seq := make([]int, 20_000)
	for i := range seq {
		seq[i] = int(z.Uint64()) + 1
	}
	for _, backend := range []string{"none", "in-process", "redis"} {
		var c cache.Cache
		switch backend {
		case "none":
			c = cache.Nop{}
		case "in-process":
			c = cache.NewMemory(10_000)
		case "redis":
			rc, err := rediscache.Open(*redisURL, fmt.Sprintf("bench:%d:", time.Now().UnixNano()))
			if err != nil {
				log.Fatal(err)
			}
			if err := rc.Ping(ctx); err != nil {
				log.Fatalf("redis at %s: %v", *redisURL, err)
			}
			defer func() { _ = rc.Clear(ctx) }()
			c = rc
		}
		kc := kit.DefaultConfig(product.Service)
		kc.DatabaseURL = filepath.Join(dir, backend+".db")
		kc.BusURL, kc.BusStream = nats.URL(), "BENCH_CACHE_"+fmt.Sprint(time.Now().UnixNano())
		kc.Deps["user"] = "http://127.0.0.1:9" // not called by reads
		kc.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		m := &product.Main{Config: product.Config{Kit: kc, Seed: *products, Cache: c}}
		if err := m.Start(ctx); err != nil {
			log.Fatal(err)
		}
		targets := make([]vegeta.Target, len(seq))
		for i, n := range seq {
			targets[i] = vegeta.Target{Method: http.MethodGet, URL: fmt.Sprintf("%s/products/SKU-%04d", m.URL(), n)}
		}
		atk := vegeta.NewAttacker(vegeta.Workers(64), vegeta.KeepAlive(true), vegeta.Timeout(5*time.Second))
		var met vegeta.Metrics
		for res := range atk.Attack(vegeta.NewStaticTargeter(targets...), vegeta.Rate{Freq: *rate, Per: time.Second}, *duration, backend) {
			met.Add(res)
		}
		met.Close()
		s := m.CacheStats()
		fmt.Printf("%-10s %d reads at %d/s: success %.2f%%, p50 %s, p99 %s, max %s, hit rate %.1f%% (%d hits, %d misses, %d cache errors)\n",
			backend, met.Requests, *rate, met.Success*100, met.Latencies.P50.Round(10*time.Microsecond), met.Latencies.P99.Round(10*time.Microsecond),
			met.Latencies.Max.Round(10*time.Microsecond), s.HitRate()*100, s.Hits, s.Misses, s.Errors)
		_ = m.Close()
	}
}
