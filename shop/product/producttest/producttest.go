// Package producttest runs a real product-service for other services' tests.
package producttest

import (
	"context"
	"testing"

	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/product"
)

// Start runs product-service against the user-service at users, seeded
// with seed demo products SKU-0001... (prices 500 + (i*737) mod 9500 cents).
func Start(t testing.TB, env kittest.Env, users string, seed int) *product.Main {
	t.Helper()
	cfg := env.Config(t, product.Service)
	cfg.Deps["user"] = users
	m := &product.Main{Config: product.Config{Kit: cfg, Seed: seed}}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}
