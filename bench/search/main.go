// Command search benchmarks search-service: a text query over 100,000
// products at 500 queries/s (target: p99 under 10 ms), open loop through
// the service's HTTP API on loopback, and the index's own cost for the
// same queries in-process. The index is built once with Bleve in -dir and
// reused by later runs (building 100,000 documents takes a while).
//
// Each runs twice: the text query alone (facets=false), and with the
// category and price facets counted over every match (at -facet-rate).
//
//	go run ./bench/search [-docs 100000] [-rate 500] [-facet-rate 100] [-duration 10s] [-dir $TMPDIR/flotilla-bench-search]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	busnats "github.com/flotilla-ci/flotilla/bus/nats"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/search"
	"github.com/flotilla-ci/flotilla/shop/search/bleveindex"
)

var (
	adjectives = []string{"red", "blue", "green", "black", "white", "small", "large", "light", "heavy", "soft", "classic", "modern", "vintage", "organic", "wooden", "steel", "cotton", "leather", "silver", "golden"}
	nouns      = []string{"hose", "knife", "kettle", "lamp", "chair", "table", "shirt", "jacket", "boots", "novel", "guitar", "drum", "puzzle", "robot", "teapot", "blanket", "pillow", "mug", "spade", "rake", "clock", "radio", "camera", "backpack", "wallet", "scarf", "glove", "candle", "vase", "mirror"}
	extras     = []string{"for the garden", "for the kitchen", "for children", "with a warranty", "handmade", "in a gift box", "easy to clean", "weatherproof", "for travel", "limited edition"}
	categories = []string{"books", "garden", "kitchen", "music", "toys", "fashion", "home", "electronics"}
)

func doc(i int, r *rand.Rand) search.Doc {
	a, n := adjectives[r.IntN(len(adjectives))], nouns[r.IntN(len(nouns))]
	return search.Doc{
		SKU:         fmt.Sprintf("SKU-%06d", i),
		Name:        fmt.Sprintf("%s %s %d", a, n, i),
		Description: fmt.Sprintf("A %s %s %s, %s.", a, n, extras[r.IntN(len(extras))], extras[r.IntN(len(extras))]),
		Category:    categories[r.IntN(len(categories))],
		Price:       int64(199 + r.IntN(20000)),
		Currency:    "EUR",
		Popularity:  int64(r.IntN(1000)),
	}
}

func build(dir string, docs int) (*bleveindex.Index, error) {
	idx, err := bleveindex.Open(dir)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	if n, _ := idx.Count(ctx); n == docs {
		log.Printf("reusing the index of %d documents in %s", n, dir)
		return idx, compact(ctx, idx)
	}
	_ = idx.Close()
	_ = bleveindex.Reset(dir)
	if idx, err = bleveindex.Open(dir); err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	batch := make([]search.Doc, 0, 1000)
	for i := 1; i <= docs; i++ {
		batch = append(batch, doc(i, r))
		if len(batch) == cap(batch) || i == docs {
			if err := idx.Put(ctx, batch...); err != nil {
				return nil, err
			}
			batch = batch[:0]
		}
	}
	log.Printf("indexed %d documents in %s (%.0f docs/s)", docs, time.Since(start).Round(time.Millisecond), float64(docs)/time.Since(start).Seconds())
	return idx, compact(ctx, idx)
}

// queries are one- and two-word text queries, as a shop's search box sends.
func queries(r *rand.Rand, n int) []string {
	out := make([]string, n)
	for i := range out {
		switch i % 3 {
		case 0:
			out[i] = nouns[r.IntN(len(nouns))]
		case 1:
			out[i] = adjectives[r.IntN(len(adjectives))] + " " + nouns[r.IntN(len(nouns))]
		default:
			out[i] = nouns[r.IntN(len(nouns))] + " " + extras[r.IntN(len(extras))][4:]
		}
	}
	return out
}

func main() {
	docs := flag.Int("docs", 100_000, "products in the index")
	rate := flag.Int("rate", 500, "queries per second without facets")
	facetRate := flag.Int("facet-rate", 100, "queries per second with facets")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	dir := flag.String("dir", filepath.Join(os.TempDir(), "flotilla-bench-search"), "where the index is built and kept")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the in-process queries to this file, and stop after them")
	flag.Parse()
	ctx := context.Background()

	idx, err := build(filepath.Join(*dir, "index"), *docs)
	if err != nil {
		log.Fatal(err)
	}
	qs := queries(rand.New(rand.NewPCG(3, 4)), 1000)

	// The index's own cost, one query at a time.
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
	}
	for _, facets := range facetRuns() {
		var own []time.Duration
		total := 0
		for i := 0; i < 2000; i++ {
			q, _ := search.ParseQuery(url.Values{"q": {qs[i%len(qs)]}, "facets": {facets}})
			t := time.Now()
			res, err := idx.Search(ctx, q)
			if err != nil {
				log.Fatal(err)
			}
			own = append(own, time.Since(t))
			total += res.Total
		}
		slices.Sort(own)
		fmt.Printf("index in-process, facets=%s: 2000 text queries (limit 20, by relevance), mean %d matches: p50 %s, p99 %s, max %s\n",
			facets, total/2000, pct(own, 50), pct(own, 99), own[len(own)-1].Round(10*time.Microsecond))
	}
	_ = idx.Close()
	if *cpuprofile != "" {
		pprof.StopCPUProfile()
		return
	}

	// The service, over HTTP.
	nats, err := busnats.Embedded(busnats.ServerConfig{Dir: filepath.Join(*dir, "nats")})
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = nats.Close() }()
	kc := kit.DefaultConfig(search.Service)
	kc.DatabaseURL = filepath.Join(*dir, "search.db")
	kc.BusURL = nats.URL()
	kc.BusStream = fmt.Sprintf("BENCH_SEARCH_%d", time.Now().UnixNano())
	kc.Deps["product"] = "http://127.0.0.1:9" // not called: the index is not empty
	kc.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ixDir := filepath.Join(*dir, "index")
	m := &search.Main{Config: search.Config{Kit: kc,
		Open:  func() (search.Index, error) { return bleveindex.Open(ixDir) },
		Reset: func() error { return bleveindex.Reset(ixDir) }}}
	if err := m.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer func() { _ = m.Close() }()
	for _, run := range []struct {
		facets string
		rate   int
	}{{"false", *rate}, {"true", *facetRate}} {
		targets := make([]vegeta.Target, len(qs))
		for i, q := range qs {
			targets[i] = vegeta.Target{Method: http.MethodGet, URL: m.URL() + "/search?" + url.Values{"q": {q}, "facets": {run.facets}}.Encode()}
		}
		atk := vegeta.NewAttacker(vegeta.Workers(64), vegeta.KeepAlive(true), vegeta.Timeout(5*time.Second))
		var met vegeta.Metrics
		for res := range atk.Attack(vegeta.NewStaticTargeter(targets...), vegeta.Rate{Freq: run.rate, Per: time.Second}, *duration, "search") {
			met.Add(res)
		}
		met.Close()
		fmt.Printf("search-service over HTTP, facets=%s: %d text queries at %d/s for %s (open loop, keep-alive): success %.2f%%, codes %v\n",
			run.facets, met.Requests, run.rate, *duration, met.Success*100, met.StatusCodes)
		fmt.Printf("  latency p50 %s, p90 %s, p99 %s, max %s (target p99 < 10ms)\n",
			met.Latencies.P50.Round(10*time.Microsecond), met.Latencies.P90.Round(10*time.Microsecond), met.Latencies.P99.Round(10*time.Microsecond), met.Latencies.Max.Round(10*time.Microsecond))
	}
}

func pct(d []time.Duration, p int) time.Duration {
	return d[(len(d)-1)*p/100].Round(10 * time.Microsecond)
}

// facetRuns is which in-process runs to make: both, or one when
// BENCH_SEARCH_FACETS names it (to profile one alone).
func facetRuns() []string {
	if f := os.Getenv("BENCH_SEARCH_FACETS"); f != "" {
		return []string{f}
	}
	return []string{"false", "true"}
}

// compact merges the index into one segment, as search-service does
// after a rebuild.
func compact(ctx context.Context, idx *bleveindex.Index) error {
	start := time.Now()
	if err := idx.Compact(ctx); err != nil {
		return err
	}
	log.Printf("compacted the index in %s", time.Since(start).Round(time.Millisecond))
	return nil
}
