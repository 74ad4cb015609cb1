// Command inventory runs inventory-service. Configuration: see kit.Load,
// plus PRODUCT_URL, USER_URL (the JWKS of user-service), RESERVATION_TTL
// and SWEEP_INTERVAL.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/flotilla-ci/flotilla/shop/inventory"
	"github.com/flotilla-ci/flotilla/shop/kit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kc, err := kit.Load(inventory.Service, append(inventory.Deps, "user"), os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "inventory-service:", err)
		os.Exit(2)
	}
	cfg := inventory.Config{Kit: kc, Users: kc.Deps["user"]}
	for name, d := range map[string]*time.Duration{"RESERVATION_TTL": &cfg.DefaultTTL, "SWEEP_INTERVAL": &cfg.SweepInterval} {
		if v := os.Getenv(name); v != "" {
			if *d, err = time.ParseDuration(v); err != nil || *d <= 0 {
				fmt.Fprintf(os.Stderr, "inventory-service: %s %q: want a duration such as 15m\n", name, v)
				os.Exit(2)
			}
		}
	}
	m := &inventory.Main{Config: cfg}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "inventory-service:", err)
		os.Exit(1)
	}
}
