// Package cachetest is the conformance suite every cache.Cache passes:
// the in-process LRU always, Redis when FLOTILLA_TEST_REDIS is set.
package cachetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/shop/kit/cache"
)

// Run runs the suite; newCache returns an empty cache for each subtest.
func Run(t *testing.T, newCache func(t *testing.T) cache.Cache) {
	ctx := context.Background()
	miss := func(t *testing.T, c cache.Cache, key string) {
		t.Helper()
		if v, err := c.Get(ctx, key); !errors.Is(err, cache.ErrMiss) {
			t.Fatalf("Get(%q) = %q, %v; want ErrMiss", key, v, err)
		}
	}
	has := func(t *testing.T, c cache.Cache, key, want string) {
		t.Helper()
		v, err := c.Get(ctx, key)
		if err != nil {
			t.Fatalf("Get(%q): %v", key, err)
		}
		if diff := cmp.Diff(want, string(v)); diff != "" {
			t.Fatalf("Get(%q) (-want +got):\n%s", key, diff)
		}
	}
	tests := []struct {
		name string
		run  func(t *testing.T, c cache.Cache)
	}{
		{"absent key misses", func(t *testing.T, c cache.Cache) { miss(t, c, "nothing") }},
		{"set then get", func(t *testing.T, c cache.Cache) {
			if err := c.Set(ctx, "k", []byte("v1"), time.Minute); err != nil {
				t.Fatal(err)
			}
			has(t, c, "k", "v1")
		}},
		{"set overwrites", func(t *testing.T, c cache.Cache) {
			_ = c.Set(ctx, "k", []byte("v1"), time.Minute)
			_ = c.Set(ctx, "k", []byte("v2"), time.Minute)
			has(t, c, "k", "v2")
		}},
		{"empty and binary values", func(t *testing.T, c cache.Cache) {
			_ = c.Set(ctx, "empty", []byte{}, time.Minute)
			_ = c.Set(ctx, "bin", []byte{0, 255, 10, 0}, time.Minute)
			has(t, c, "empty", "")
			has(t, c, "bin", "\x00\xff\n\x00")
		}},
		{"delete removes, absent keys are fine", func(t *testing.T, c cache.Cache) {
			_ = c.Set(ctx, "a", []byte("1"), time.Minute)
			_ = c.Set(ctx, "b", []byte("2"), time.Minute)
			_ = c.Set(ctx, "c", []byte("3"), time.Minute)
			if err := c.Delete(ctx, "a", "b", "never-set"); err != nil {
				t.Fatal(err)
			}
			miss(t, c, "a")
			miss(t, c, "b")
			has(t, c, "c", "3")
			if err := c.Delete(ctx); err != nil {
				t.Fatalf("Delete of no keys: %v", err)
			}
		}},
		{"entries expire", func(t *testing.T, c cache.Cache) {
			_ = c.Set(ctx, "short", []byte("x"), 50*time.Millisecond)
			_ = c.Set(ctx, "long", []byte("y"), time.Minute)
			time.Sleep(120 * time.Millisecond)
			miss(t, c, "short")
			has(t, c, "long", "y")
		}},
		{"zero ttl is an error", func(t *testing.T, c cache.Cache) {
			if err := c.Set(ctx, "k", []byte("v"), 0); err == nil {
				t.Fatal("Set with ttl 0: want an error")
			}
		}},
		{"values are copies", func(t *testing.T, c cache.Cache) {
			v := []byte("abc")
			_ = c.Set(ctx, "k", v, time.Minute)
			v[0] = 'X'
			got, _ := c.Get(ctx, "k")
			got[1] = 'Y'
			has(t, c, "k", "abc")
		}},
		{"concurrent use", func(t *testing.T, c cache.Cache) {
			var wg sync.WaitGroup
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					for i := 0; i < 50; i++ {
						k := fmt.Sprintf("k%d", i%10)
						_ = c.Set(ctx, k, []byte(fmt.Sprint(g)), time.Minute)
						if _, err := c.Get(ctx, k); err != nil && !errors.Is(err, cache.ErrMiss) {
							t.Error(err)
						}
						if i%7 == 0 {
							_ = c.Delete(ctx, k)
						}
					}
				}(g)
			}
			wg.Wait()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCache(t)
			t.Cleanup(func() { _ = c.Close() })
			tt.run(t, c)
		})
	}
}
