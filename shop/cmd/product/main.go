// Command product runs product-service. Configuration: see kit.Load, plus
// USER_URL and SEED_PRODUCTS (create that many demo products when the
// catalog is empty).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/product"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kc, err := kit.Load(product.Service, product.Deps, os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "product-service:", err)
		os.Exit(2)
	}
	cfg := product.Config{Kit: kc}
	if v := os.Getenv("SEED_PRODUCTS"); v != "" {
		if cfg.Seed, err = strconv.Atoi(v); err != nil || cfg.Seed < 0 {
			fmt.Fprintf(os.Stderr, "product-service: SEED_PRODUCTS %q: want a count such as 100\n", v)
			os.Exit(2)
		}
	}
	m := &product.Main{Config: cfg}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "product-service:", err)
		os.Exit(1)
	}
}
