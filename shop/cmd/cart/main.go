// Command cart runs cart-service. Configuration: see kit.Load, plus
// USER_URL and PRODUCT_URL.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/flotilla-ci/flotilla/shop/cart"
	"github.com/flotilla-ci/flotilla/shop/kit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kc, err := kit.Load(cart.Service, cart.Deps, os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cart-service:", err)
		os.Exit(2)
	}
	m := &cart.Main{Config: cart.Config{Kit: kc}}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "cart-service:", err)
		os.Exit(1)
	}
}
