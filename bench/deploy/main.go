// Command deploy measures a full deploy of ten services through the
// orchestrator, the local target and the built-in mesh, with the artifacts
// already built and no canary analysis: the issue's "full deploy of all ten
// services under 20 s" against the scenario's 15-minute manual deploy.
//
// The ten services have the shop's names and dependency graph (five waves)
// and each runs deploy/testdata/shop's test service, so what is measured
// is flotilla's part: the plan and versions, the start of every new
// version beside the old one, readiness, a smoke check through the header
// lane, the traffic shift, the drain and stop of the old version, and the
// history records, wave by wave.
//
//	go run ./bench/deploy                 # 5 redeploys
//	go run ./bench/deploy -runs 10
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/local"
	"github.com/flotilla-ci/flotilla/deploy/sqlstore"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/mesh"
)

// shop is the reference system's graph: service → dependencies.
var shop = map[string][]string{
	"user-service":         nil,
	"product-service":      {"user-service"},
	"inventory-service":    {"product-service"},
	"cart-service":         {"user-service", "product-service"},
	"order-service":        {"user-service", "cart-service", "inventory-service", "payment-service"},
	"payment-service":      {"user-service"},
	"shipping-service":     {"order-service", "user-service"},
	"notification-service": nil,
	"search-service":       {"product-service"},
	"analytics-service":    nil,
}

func main() {
	runs := flag.Int("runs", 5, "redeploys of all ten services to time")
	src := flag.String("shop", "deploy/testdata/shop", "the test shop (run from the repository root)")
	flag.Parse()
	if err := run(*runs, *src); err != nil {
		fmt.Fprintln(os.Stderr, "bench/deploy:", err)
		os.Exit(1)
	}
}

func manifest(rev int) string {
	names := make([]string, 0, len(shop))
	for n := range shop {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("services:\n")
	for _, n := range names {
		short := strings.TrimSuffix(n, "-service")
		fmt.Fprintf(&b, "  %s:\n    paths: [%s]\n    health: /ready\n", n, short)
		if len(shop[n]) > 0 {
			fmt.Fprintf(&b, "    depends_on: [%s]\n", strings.Join(shop[n], ", "))
		}
		fmt.Fprintf(&b, "    deploy: {package: ./cmd/svc, env: {REV: '%d'}}\n", rev)
		b.WriteString("    smoke:\n      - {path: /smoke, json_field: status, json_value: ok}\n")
	}
	return b.String()
}

func run(runs int, src string) error {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	root, err := os.MkdirTemp("", "flotilla-bench-deploy-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(root) }()
	if err := os.CopyFS(root, os.DirFS(src)); err != nil {
		return err
	}
	for n := range shop {
		dir := filepath.Join(root, strings.TrimSuffix(n, "-service"))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "README"), []byte(n+"\n"), 0o644); err != nil {
			return err
		}
	}
	file := filepath.Join(root, graph.FileName)
	_ = os.Chmod(file, 0o644)
	cfg := local.DefaultConfig(filepath.Join(root, ".flotilla"), root)
	cfg.Logger = quiet
	tg, err := local.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = tg.Shutdown(sctx)
	}()
	ms, err := mesh.New(mesh.Config{Logger: quiet})
	if err != nil {
		return err
	}
	defer func() { _ = ms.Close(ctx) }()
	store, err := sqlstore.Open(ctx, filepath.Join(root, "history.db"))
	if err != nil {
		return err
	}
	defer func() { _ = store.Close() }()
	router := &local.MeshRouter{Mesh: ms}
	orch := func(rev int) (*deploy.Orchestrator, error) {
		if err := os.WriteFile(file, []byte(manifest(rev)), 0o644); err != nil {
			return nil, err
		}
		m, _, err := graph.Load(file)
		if err != nil {
			return nil, err
		}
		return deploy.New(deploy.Config{Graph: graph.New(m), Target: tg, Router: router, Store: store, Logger: quiet, MaxParallel: 4})
	}

	// The artifacts are built first (what "flotilla up" from a warm cache
	// has); the first deploy then starts every service from nothing.
	o, err := orch(0)
	if err != nil {
		return err
	}
	plan, err := o.Plan(ctx, deploy.Request{All: true})
	if err != nil {
		return err
	}
	t0 := time.Now()
	for _, w := range plan.Waves {
		for _, it := range w {
			if err := tg.Build(ctx, it.Spec); err != nil {
				return err
			}
		}
	}
	build := time.Since(t0)
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	t0 = time.Now()
	if _, err := o.Execute(ctx, plan, deploy.Request{All: true, Who: "bench"}, nil); err != nil {
		return fmt.Errorf("first deploy: %w", err)
	}
	first := time.Since(t0)
	fmt.Printf("artifacts: %d services built in %v (one binary, ten digests)\n", len(shop), build.Round(time.Millisecond))
	fmt.Printf("first deploy of %d services in %d waves (nothing running before): %v\n", len(shop), len(plan.Waves), first.Round(time.Millisecond))

	var times []time.Duration
	for i := 1; i <= runs; i++ {
		o, err := orch(i)
		if err != nil {
			return err
		}
		t := time.Now()
		rep, err := o.Deploy(ctx, deploy.Request{All: true, Who: "bench"}, nil)
		if err != nil {
			return fmt.Errorf("redeploy %d: %w", i, err)
		}
		d := time.Since(t)
		for _, oc := range rep.Outcomes {
			if oc.Result != deploy.Succeeded {
				return fmt.Errorf("redeploy %d: %s %s", i, oc.Service, oc.Result)
			}
		}
		times = append(times, d)
		fmt.Printf("redeploy %d: all %d services to a new version in %v\n", i, len(shop), d.Round(time.Millisecond))
	}
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	med := times[len(times)/2]
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) / time.Duration(runs+1)
	fmt.Printf("full redeploy of ten services: median %v, min %v, max %v over %d runs; orchestrator CPU %v per deploy\n",
		med.Round(time.Millisecond), times[0].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond), runs, cpu.Round(time.Millisecond))
	fmt.Printf("target 20 s: %.1fx under it; the scenario's 15-minute manual deploy: %.0fx faster\n",
		(20*time.Second).Seconds()/med.Seconds(), (15*time.Minute).Seconds()/med.Seconds())
	return nil
}
