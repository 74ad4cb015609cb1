// Package cache is the shop's read-through cache: a small Cache interface
// with an in-process LRU (the default) and Redis (package rediscache, when
// REDIS_URL is set), one conformance suite for both (cachetest), and
// Through, which puts a cache in front of a loader so that a cache that
// fails (Redis gone mid-request) makes reads slower, never failed.
package cache

import (
	"context"
	"errors"
	"time"
)

// Cache stores byte values by key with a time to live.
type Cache interface {
	// Get returns the value of key, or an error wrapping ErrMiss when it
	// is absent or expired. Any other error means the cache itself failed.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores value under key for ttl (> 0).
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete removes keys; absent keys are not an error.
	Delete(ctx context.Context, keys ...string) error
	// Close releases the cache's resources.
	Close() error
}

// ErrMiss is a key the cache does not hold.
var ErrMiss = errors.New("cache miss")
