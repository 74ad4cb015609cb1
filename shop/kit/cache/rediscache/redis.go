// Package rediscache is the shop's cache on Redis (go-redis), for several
// replicas of a service to share: cache.Cache with fail-fast timeouts, so
// a Redis that goes away costs a request milliseconds, not seconds.
package rediscache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flotilla-ci/flotilla/shop/kit/cache"
)

// Cache is a cache.Cache on one Redis server; every key is prefixed.
type Cache struct {
	c      *redis.Client
	prefix string
}

var _ cache.Cache = (*Cache)(nil)

// Timeout bounds every Redis operation, dial included.
const Timeout = 250 * time.Millisecond

// Open connects to the Redis at url (redis://[:password@]host:port/db or
// rediss://...) and prefixes every key with prefix (e.g. "product:").
// It does not wait for the server: a cache that is down at start is a
// cache that is down.
func Open(url, prefix string) (*Cache, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = Timeout, Timeout, Timeout, Timeout
	opt.MaxRetries = -1 // fail fast: the caller falls back to the source
	opt.ContextTimeoutEnabled = true
	quietOnce.Do(func() { redis.SetLogger(debugLog{}) })
	return &Cache{c: redis.NewClient(opt), prefix: prefix}, nil
}

// debugLog sends go-redis's own log lines (a dial failure per pooled
// connection while Redis is away) to slog at debug level: the caller
// reports an unavailable cache once, as a warning.
type debugLog struct{}

func (debugLog) Printf(ctx context.Context, format string, v ...any) {
	slog.DebugContext(ctx, "redis client", "msg", fmt.Sprintf(format, v...))
}

var quietOnce sync.Once

// Get implements cache.Cache.
func (c *Cache) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := c.c.Get(ctx, c.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, cache.ErrMiss
	}
	if err != nil {
		return nil, fmt.Errorf("redis get: %w", err)
	}
	return v, nil
}

// Set implements cache.Cache.
func (c *Cache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("cache set: ttl must be positive")
	}
	if err := c.c.Set(ctx, c.prefix+key, value, ttl).Err(); err != nil {
		return fmt.Errorf("redis set: %w", err)
	}
	return nil
}

// Delete implements cache.Cache.
func (c *Cache) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = c.prefix + k
	}
	if err := c.c.Del(ctx, full...).Err(); err != nil {
		return fmt.Errorf("redis del: %w", err)
	}
	return nil
}

// Ping checks the server answers.
func (c *Cache) Ping(ctx context.Context) error { return c.c.Ping(ctx).Err() }

// Clear deletes every key under the prefix (tests, benchmarks).
func (c *Cache) Clear(ctx context.Context) error {
	iter := c.c.Scan(ctx, 0, c.prefix+"*", 500).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := c.c.Del(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return c.c.Del(ctx, batch...).Err()
	}
	return nil
}

// Close implements cache.Cache.
func (c *Cache) Close() error { return c.c.Close() }

// OrMemory is the one switch the shop's mains use: the Redis cache at url
// (REDIS_URL) when it is set, an in-process LRU of size entries when it is
// empty; any other scheme is an error naming the ones supported.
func OrMemory(url, prefix string, size int) (cache.Cache, error) {
	scheme, _, _ := strings.Cut(url, "://")
	switch {
	case url == "":
		return cache.NewMemory(size), nil
	case scheme == "redis" || scheme == "rediss":
		return Open(url, prefix)
	default:
		return nil, fmt.Errorf("REDIS_URL %q: unsupported scheme %q; want redis://host:port/db or rediss://", url, scheme)
	}
}
