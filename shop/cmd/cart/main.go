// Command cart runs cart-service. Configuration: see kit.Load, plus
// USER_URL and PRODUCT_URL; REDIS_URL puts carts in Redis (default: an
// in-process cache), CART_CACHE_TTL bounds how long (default 1m).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/flotilla-ci/flotilla/shop/cart"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/cache"
	"github.com/flotilla-ci/flotilla/shop/kit/cache/rediscache"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kc, err := kit.Load(cart.Service, cart.Deps, os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cart-service:", err)
		os.Exit(2)
	}
	cfg := cart.Config{Kit: kc}
	if cfg.Cache, cfg.CacheTTL, err = cacheFromEnv(cart.Service, "CART_CACHE_TTL"); err != nil {
		fmt.Fprintln(os.Stderr, "cart-service:", err)
		os.Exit(2)
	}
	defer func() { _ = cfg.Cache.Close() }()
	m := &cart.Main{Config: cfg}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "cart-service:", err)
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
