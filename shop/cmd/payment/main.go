// Command payment runs payment-service, the simulated payment processor.
// Configuration: see kit.Load (FAULTS=payment.failure_rate=0.2,
// payment.latency=300ms make it misbehave), plus USER_URL and PAYMENT_SEED.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/payment"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kc, err := kit.Load(payment.Service, payment.Deps, os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "payment-service:", err)
		os.Exit(2)
	}
	cfg := payment.Config{Kit: kc}
	if v := os.Getenv("PAYMENT_SEED"); v != "" {
		if cfg.Seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			fmt.Fprintf(os.Stderr, "payment-service: PAYMENT_SEED %q: want a non-negative integer\n", v)
			os.Exit(2)
		}
	}
	m := &payment.Main{Config: cfg}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "payment-service:", err)
		os.Exit(1)
	}
}
