// Command ui measures the dashboard (controlplane/ui) where the issue sets
// its goals:
//
//   - overview: the server time of GET /ui/ (the graph laid out in waves,
//     every service's state, figures and the last release) with 1,000
//     releases in the history (a real SQLite history store) and the shop's
//     ten services; the goal is under 50 ms;
//   - releases: GET /ui/releases and GET /ui/releases/N on the same
//     history, for reference;
//   - live: what a release's steps cost the release when 0 and when -pages
//     (50) pages have the event stream open over real HTTP connections:
//     the time of each Publish (the observer the API calls with every
//     step, on the release's own goroutine), and that every page received
//     every step. A deploy is slowed only by what Publish takes: it never
//     waits for a page (a page that lags is dropped and reconnects).
//
// Run it with:
//
//	go run ./bench/ui
//	go run ./bench/ui -releases 5000 -pages 100
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flotilla-ci/flotilla/controlplane/ui"
	"github.com/flotilla-ci/flotilla/controlplane/ui/uitest"
	"github.com/flotilla-ci/flotilla/deploy"
)

func main() {
	releases := flag.Int("releases", 1000, "releases in the history")
	repeats := flag.Int("repeats", 200, "requests of each page measured")
	pages := flag.Int("pages", 50, "pages with the event stream open")
	steps := flag.Int("steps", 2000, "release steps published in the live measurement")
	manifest := flag.String("manifest", "flotilla.yaml", "the manifest (the shop's)")
	flag.Parse()
	if err := run(*manifest, *releases, *repeats, *pages, *steps); err != nil {
		fmt.Fprintln(os.Stderr, "bench/ui:", err)
		os.Exit(1)
	}
}

func run(manifest string, releases, repeats, pages, steps int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "flotilla-bench-ui-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	fill := time.Now()
	dep, err := uitest.Open(ctx, manifest, filepath.Join(dir), releases)
	if err != nil {
		return err
	}
	defer func() { _ = dep.Close() }()
	fmt.Printf("history: %d releases of %d services written in %v (SQLite, %s)\n", releases, len(dep.G.Manifest().Names()), time.Since(fill).Round(time.Millisecond), runtime.Version())
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no API here", http.StatusNotFound) })
	dash, err := ui.New(ui.Config{Deployer: dep, API: api, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	dash.Start(ctx)
	h := dash.Handler()
	for _, p := range []string{"/ui/", "/ui/releases", fmt.Sprintf("/ui/releases/%d", releases/2)} {
		d, size, err := measure(h, p, repeats)
		if err != nil {
			return err
		}
		goal := ""
		if p == "/ui/" {
			goal = fmt.Sprintf("  (goal < 50 ms, median: %s)", verdict(d[len(d)/2] < 50*time.Millisecond))
		}
		fmt.Printf("GET %-16s %6d bytes  median %8v  p99 %8v  max %8v%s\n", p, size, d[len(d)/2].Round(time.Microsecond), d[len(d)*99/100].Round(time.Microsecond), d[len(d)-1].Round(time.Microsecond), goal)
	}
	// Live: Publish with no page, then with pages open over HTTP.
	srv := httptest.NewServer(h)
	defer srv.Close()
	base, err := publish(dash, steps, int64(releases+1))
	if err != nil {
		return err
	}
	fmt.Printf("publish, 0 pages:  %d steps  median %8v  p99 %8v  max %8v\n", steps, base[len(base)/2], base[len(base)*99/100], base[len(base)-1])
	var received atomic.Int64
	var wg sync.WaitGroup
	pctx, stop := context.WithCancel(ctx)
	for range pages {
		if err := openPage(pctx, srv.URL+"/ui/events", &wg, &received); err != nil {
			stop()
			return err
		}
	}
	for dash.Pages() < pages {
		time.Sleep(5 * time.Millisecond)
	}
	// Steps arrive as a release makes them: a few a millisecond at most.
	with, err := publish(dash, steps, int64(releases+2))
	if err != nil {
		stop()
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for received.Load() < int64(pages*steps) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := received.Load()
	stop()
	wg.Wait()
	fmt.Printf("publish, %d pages: %d steps  median %8v  p99 %8v  max %8v; pages received %d of %d steps (%s)\n",
		pages, steps, with[len(with)/2], with[len(with)*99/100], with[len(with)-1], got, pages*steps, verdict(got == int64(pages*steps)))
	return nil
}

// openPage opens the event stream as a page does and counts the release
// steps it receives until ctx ends.
func openPage(ctx context.Context, url string, wg *sync.WaitGroup, received *atomic.Int64) error {
	opened := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		readPage(ctx, url, opened, received)
	}()
	return <-opened
}

func readPage(ctx context.Context, url string, opened chan<- error, received *atomic.Int64) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		opened <- err
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		opened <- err
		return
	}
	defer func() { _ = resp.Body.Close() }()
	opened <- nil
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "event: release") {
			received.Add(1)
		}
	}
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// measure serves path repeats times and returns the sorted durations.
func measure(h http.Handler, path string, repeats int) ([]time.Duration, int, error) {
	var d []time.Duration
	size := 0
	for i := range repeats + 5 {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.RemoteAddr = "127.0.0.1:1"
		rec := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(rec, req)
		took := time.Since(start)
		if rec.Code != http.StatusOK {
			return nil, 0, fmt.Errorf("GET %s: %d: %s", path, rec.Code, rec.Body.String())
		}
		size = rec.Body.Len()
		if i >= 5 { // warm-up
			d = append(d, took)
		}
	}
	slices.Sort(d)
	return d, size, nil
}

// publish sends steps release steps, paced about as fast as the
// orchestrator makes them at its fastest (one every 200 µs), and returns
// each Publish's sorted duration.
func publish(dash *ui.Server, steps int, release int64) ([]time.Duration, error) {
	names := []string{"user-service", "cart-service", "order-service", "product-service", "payment-service"}
	kinds := []deploy.Step{deploy.StepBuild, deploy.StepStart, deploy.StepReady, deploy.StepSmoke, deploy.StepShift, deploy.StepDone}
	var d []time.Duration
	for i := range steps {
		e := deploy.Event{Release: release, Time: time.Now(), Wave: 1 + i%5, Service: names[i%len(names)], Version: "v2", Step: kinds[i%len(kinds)], Msg: "step"}
		start := time.Now()
		dash.Publish(e)
		d = append(d, time.Since(start))
		time.Sleep(200 * time.Microsecond)
	}
	slices.Sort(d)
	return d, nil
}
