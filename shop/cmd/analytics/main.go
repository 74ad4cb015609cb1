// Command analytics runs analytics-service. Configuration: see kit.Load,
// plus BATCH_SIZE (most events stored per transaction; default 500).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/flotilla-ci/flotilla/shop/analytics"
	"github.com/flotilla-ci/flotilla/shop/kit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kc, err := kit.Load(analytics.Service, nil, os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "analytics-service:", err)
		os.Exit(2)
	}
	cfg := analytics.Config{Kit: kc}
	if v := os.Getenv("BATCH_SIZE"); v != "" {
		if cfg.Batch, err = strconv.Atoi(v); err != nil || cfg.Batch < 1 || cfg.Batch > 2000 {
			fmt.Fprintf(os.Stderr, "analytics-service: BATCH_SIZE %q: want a count from 1 to 2000\n", v)
			os.Exit(2)
		}
	}
	m := &analytics.Main{Config: cfg}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "analytics-service:", err)
		os.Exit(1)
	}
}
