package cache_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/internal/testenv"
	"github.com/flotilla-ci/flotilla/shop/kit/cache"
	"github.com/flotilla-ci/flotilla/shop/kit/cache/cachetest"
	"github.com/flotilla-ci/flotilla/shop/kit/cache/rediscache"
)

func TestMemory(t *testing.T) {
	cachetest.Run(t, func(t *testing.T) cache.Cache { return cache.NewMemory(1000) })
}

func TestRedis(t *testing.T) {
	url := testenv.Server(t, testenv.Redis)
	cachetest.Run(t, func(t *testing.T) cache.Cache {
		c, err := rediscache.Open(url, fmt.Sprintf("test:%s:%d:", t.Name(), time.Now().UnixNano()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Clear(context.Background()) })
		return c
	})
}

func TestMemoryEvictsLeastRecentlyUsed(t *testing.T) {
	ctx := context.Background()
	c := cache.NewMemory(3)
	for _, k := range []string{"a", "b", "c"} {
		_ = c.Set(ctx, k, []byte(k), time.Minute)
	}
	_, _ = c.Get(ctx, "a") // a is now the most recent
	_ = c.Set(ctx, "d", []byte("d"), time.Minute)
	var held []string
	for _, k := range []string{"a", "b", "c", "d"} {
		if _, err := c.Get(ctx, k); err == nil {
			held = append(held, k)
		}
	}
	if diff := cmp.Diff([]string{"a", "c", "d"}, held); diff != "" {
		t.Errorf("held (-want +got):\n%s", diff)
	}
	if c.Len() != 3 {
		t.Errorf("Len = %d, want 3", c.Len())
	}
}

// failing is a cache that is down until up is set.
type failing struct {
	cache.Cache
	up bool
}

var errDown = errors.New("connection refused")

func (f *failing) Get(ctx context.Context, k string) ([]byte, error) {
	if !f.up {
		return nil, errDown
	}
	return f.Cache.Get(ctx, k)
}

func (f *failing) Set(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	if !f.up {
		return errDown
	}
	return f.Cache.Set(ctx, k, v, ttl)
}

func (f *failing) Delete(ctx context.Context, ks ...string) error {
	if !f.up {
		return errDown
	}
	return f.Cache.Delete(ctx, ks...)
}

func TestThrough(t *testing.T) {
	ctx := context.Background()
	f := &failing{Cache: cache.NewMemory(10), up: true}
	th := &cache.Through{Cache: f, TTL: time.Minute, Cooldown: 30 * time.Millisecond}
	source := "v1"
	loads := 0
	load := func(context.Context) ([]byte, error) { loads++; return []byte(source), nil }
	get := func() string {
		t.Helper()
		v, err := th.Get(ctx, "k", load)
		if err != nil {
			t.Fatal(err)
		}
		return string(v)
	}
	first, second := get(), get()
	if first != "v1" || second != "v1" || loads != 1 {
		t.Fatalf("loads = %d after a miss and a hit, want 1", loads)
	}
	// The cache goes away: reads come from the source; an invalidation
	// made meanwhile is replayed when it is back.
	f.up = false
	source = "v2"
	th.Invalidate(ctx, "k")
	if got := get(); got != "v2" {
		t.Fatalf("read with the cache down = %q, want v2 from the source", got)
	}
	f.up = true
	time.Sleep(40 * time.Millisecond) // past the cooldown
	if got := get(); got != "v2" {
		t.Fatalf("read after the cache came back = %q, want v2 (the stale v1 invalidated)", got)
	}
	want := cache.Stats{Hits: 1, Misses: 2, Errors: 1, Bypassed: 1}
	if diff := cmp.Diff(want, th.Stats()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	// A load error is the caller's error.
	if _, err := th.Get(ctx, "other", func(context.Context) ([]byte, error) { return nil, errDown }); !errors.Is(err, errDown) {
		t.Errorf("load error = %v, want it returned", err)
	}
}

// A read that loaded before a change committed, and finishes after the
// change invalidated the key, must not store its older value.
func TestThroughDoesNotStoreAValueOlderThanAnInvalidation(t *testing.T) {
	ctx := context.Background()
	th := &cache.Through{Cache: cache.NewMemory(10), TTL: time.Minute}
	loaded, release := make(chan struct{}), make(chan struct{})
	done := make(chan []byte)
	go func() {
		v, _ := th.Get(ctx, "k", func(context.Context) ([]byte, error) {
			close(loaded)
			<-release
			return []byte("old"), nil
		})
		done <- v
	}()
	<-loaded
	th.Invalidate(ctx, "k") // the change commits and invalidates
	close(release)
	if v := <-done; string(v) != "old" {
		t.Fatalf("the racing read got %q", v)
	}
	v, err := th.Get(ctx, "k", func(context.Context) ([]byte, error) { return []byte("new"), nil })
	if err != nil || string(v) != "new" {
		t.Fatalf("read after the change = %q, %v; want new (the racing read's old value must not be cached)", v, err)
	}
}
