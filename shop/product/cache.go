package product

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/flotilla-ci/flotilla/shop/kit/cache"
)

// DefaultCacheTTL is how long a product read stays cached when
// Config.CacheTTL is zero. Every change made through this service
// invalidates its product at once; the TTL bounds what a change made
// while the cache was unreachable by another replica can leave behind.
const DefaultCacheTTL = 5 * time.Minute

// cacheKey is the cache key of a product's JSON.
func cacheKey(sku string) string { return "product/v1/" + sku }

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

// CacheStats are the product-read cache's counters.
func (m *Main) CacheStats() cache.Stats { return m.cache.Stats() }

// getCached answers GET /products/{sku} through the cache (read-through:
// a miss reads the database and stores the product's JSON).
func (m *Main) getCached(w http.ResponseWriter, r *http.Request) error {
	sku := r.PathValue("sku")
	body, err := m.cache.Get(r.Context(), cacheKey(sku), func(ctx context.Context) ([]byte, error) {
		p, err := load(ctx, m.app.DB, sku, false)
		if err != nil {
			return nil, err
		}
		return json.Marshal(p)
	})
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(body, '\n'))
	return nil
}

// invalidate drops a product from the cache after a change to it (and its
// event) committed.
func (m *Main) invalidate(ctx context.Context, sku string) {
	m.cache.Invalidate(ctx, cacheKey(sku))
}
