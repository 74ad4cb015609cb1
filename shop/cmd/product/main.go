// Command product runs product-service. Configuration: see kit.Load, plus
// USER_URL and SEED_PRODUCTS (create that many demo products when the
// catalog is empty); REDIS_URL puts product reads in Redis (default: an
// in-process cache), PRODUCT_CACHE_TTL bounds how long (default 5m).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/cache"
	"github.com/flotilla-ci/flotilla/shop/kit/cache/rediscache"
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
	if cfg.Cache, cfg.CacheTTL, err = cacheFromEnv(product.Service, "PRODUCT_CACHE_TTL"); err != nil {
		fmt.Fprintln(os.Stderr, "product-service:", err)
		os.Exit(2)
	}
	defer func() { _ = cfg.Cache.Close() }()
	m := &product.Main{Config: cfg}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "product-service:", err)
		os.Exit(1)
	}
}

// cacheFromEnv reads REDIS_URL and the TTL variable ttlVar.
func cacheFromEnv(service, ttlVar string) (cache.Cache, time.Duration, error) {
	c, err := rediscache.OrMemory(os.Getenv("REDIS_URL"), "flotilla:"+service+":", 10_000)
	if err != nil {
		return nil, 0, err
	}
	var ttl time.Duration
	if v := os.Getenv(ttlVar); v != "" {
		if ttl, err = time.ParseDuration(v); err != nil || ttl <= 0 {
			return nil, 0, fmt.Errorf("%s %q: want a positive duration such as 5m", ttlVar, v)
		}
	}
	return c, ttl, nil
}
