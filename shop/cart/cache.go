package cart

import (
	"context"
	"encoding/json"
	"time"

	"github.com/flotilla-ci/flotilla/shop/kit/cache"
)

// DefaultCacheTTL is how long a cart stays cached when Config.CacheTTL is
// zero. Every change to a cart invalidates it at once.
const DefaultCacheTTL = time.Minute

func cacheKey(user string) string { return "cart/v1/" + user }

func (m *Main) initCache() {
	c := m.Config.Cache
	if c == nil {
		c = cache.NewMemory(10_000)
	}
	ttl := m.Config.CacheTTL
	if ttl <= 0 {
		ttl = DefaultCacheTTL
	}
	m.cache = &cache.Through{Cache: c, TTL: ttl, Log: m.app.Log}
}

// CacheStats are the cart cache's counters.
func (m *Main) CacheStats() cache.Stats { return m.cache.Stats() }

// loadCached reads a cart through the cache.
func (m *Main) loadCached(ctx context.Context, user string) (Cart, error) {
	body, err := m.cache.Get(ctx, cacheKey(user), func(ctx context.Context) ([]byte, error) {
		c, err := m.load(ctx, user)
		if err != nil {
			return nil, err
		}
		return json.Marshal(c)
	})
	if err != nil {
		return Cart{}, err
	}
	var c Cart
	if err := json.Unmarshal(body, &c); err != nil {
		m.cache.Invalidate(ctx, cacheKey(user))
		return m.load(ctx, user)
	}
	return c, nil
}

// invalidate drops a user's cart from the cache after it changed.
func (m *Main) invalidate(ctx context.Context, user string) {
	m.cache.Invalidate(ctx, cacheKey(user))
}
