package cache

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Through reads through a Cache: a hit is served from it, a miss loads
// and stores the value for TTL. When the cache fails (Redis unreachable,
// timing out) the read loads from the source instead, and the cache is
// bypassed for Cooldown so requests do not each wait for a dead server;
// invalidations that fail meanwhile are kept and replayed before the cache
// is used again, so it never serves what was invalidated while it was
// away. A value loaded while an invalidation ran is returned but not
// stored: it may predate the change (in this process; other processes
// sharing Redis are bounded by the TTL).
type Through struct {
	Cache    Cache
	TTL      time.Duration
	Cooldown time.Duration // default 1s
	Log      *slog.Logger

	hits, misses, errs, bypassed atomic.Int64
	gen                          atomic.Int64 // invalidations so far

	mu        sync.Mutex
	downUntil time.Time
	pending   map[string]struct{} // keys whose invalidation failed
}

// Stats are a Through's counters.
type Stats struct {
	Hits     int64 `json:"hits"`
	Misses   int64 `json:"misses"`
	Errors   int64 `json:"errors"`   // cache operations that failed
	Bypassed int64 `json:"bypassed"` // reads that skipped a failed cache
}

// Stats returns the counters.
func (t *Through) Stats() Stats {
	return Stats{Hits: t.hits.Load(), Misses: t.misses.Load(), Errors: t.errs.Load(), Bypassed: t.bypassed.Load()}
}

// HitRate is hits over hits plus misses (0 with no reads).
func (s Stats) HitRate() float64 {
	if n := s.Hits + s.Misses; n > 0 {
		return float64(s.Hits) / float64(n)
	}
	return 0
}

func (t *Through) log() *slog.Logger {
	if t.Log != nil {
		return t.Log
	}
	return slog.Default()
}

// usable reports whether the cache may be used now, replaying pending
// invalidations first when it comes back.
func (t *Through) usable(ctx context.Context) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if time.Now().Before(t.downUntil) {
		return false
	}
	if len(t.pending) > 0 {
		keys := make([]string, 0, len(t.pending))
		for k := range t.pending {
			keys = append(keys, k)
		}
		if err := t.Cache.Delete(ctx, keys...); err != nil {
			t.failLocked(ctx, "replay invalidations", err)
			return false
		}
		t.pending = nil
		t.log().InfoContext(ctx, "cache back; replayed invalidations", "keys", len(keys))
	}
	return true
}

func (t *Through) fail(ctx context.Context, op string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failLocked(ctx, op, err)
}

func (t *Through) failLocked(ctx context.Context, op string, err error) {
	t.errs.Add(1)
	cd := t.Cooldown
	if cd <= 0 {
		cd = time.Second
	}
	if time.Now().After(t.downUntil) {
		t.log().WarnContext(ctx, "cache unavailable; reading from the source", "op", op, "cooldown_ms", cd.Milliseconds(), "err", err)
	}
	t.downUntil = time.Now().Add(cd)
}

// Get returns key's value from the cache, or from load (storing it).
// Errors come only from load.
func (t *Through) Get(ctx context.Context, key string, load func(context.Context) ([]byte, error)) ([]byte, error) {
	if !t.usable(ctx) {
		t.bypassed.Add(1)
		return load(ctx)
	}
	v, err := t.Cache.Get(ctx, key)
	if err == nil {
		t.hits.Add(1)
		return v, nil
	}
	if !errors.Is(err, ErrMiss) {
		t.fail(ctx, "get", err)
		t.bypassed.Add(1)
		return load(ctx)
	}
	t.misses.Add(1)
	g := t.gen.Load()
	v, err = load(ctx)
	if err != nil {
		return nil, err
	}
	if t.gen.Load() != g {
		return v, nil // an invalidation ran meanwhile: v may be older than it
	}
	if err := t.Cache.Set(ctx, key, v, t.TTL); err != nil {
		t.fail(ctx, "set", err)
	}
	return v, nil
}

// Invalidate deletes keys; when the cache fails they are remembered and
// deleted before it is next read.
func (t *Through) Invalidate(ctx context.Context, keys ...string) {
	if len(keys) == 0 {
		return
	}
	t.gen.Add(1)
	if t.usable(ctx) {
		err := t.Cache.Delete(ctx, keys...)
		if err == nil {
			return
		}
		t.fail(ctx, "delete", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending == nil {
		t.pending = map[string]struct{}{}
	}
	for _, k := range keys {
		t.pending[k] = struct{}{}
	}
}
