// Command order runs order-service. Configuration: see kit.Load, plus
// USER_URL, CART_URL, INVENTORY_URL, PAYMENT_URL, SAGA_LEASE, CALL_TIMEOUT
// and RESERVATION_TTL (how long inventory holds an order's stock).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/order"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kc, err := kit.Load(order.Service, order.Deps, os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "order-service:", err)
		os.Exit(2)
	}
	cfg := order.Config{Kit: kc}
	for name, d := range map[string]*time.Duration{"SAGA_LEASE": &cfg.Lease, "CALL_TIMEOUT": &cfg.CallTimeout, "RESERVATION_TTL": &cfg.ReservationTTL} {
		if v := os.Getenv(name); v != "" {
			if *d, err = time.ParseDuration(v); err != nil || *d <= 0 {
				fmt.Fprintf(os.Stderr, "order-service: %s %q: want a duration such as 5s\n", name, v)
				os.Exit(2)
			}
		}
	}
	m := &order.Main{Config: cfg}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "order-service:", err)
		os.Exit(1)
	}
}
