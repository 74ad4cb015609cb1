package cache

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"
)

// Memory is an in-process LRU cache with per-entry TTLs: at most Max
// entries, the least recently used evicted first. It is safe for
// concurrent use.
type Memory struct {
	max int
	now func() time.Time

	mu    sync.Mutex
	ll    *list.List
	items map[string]*list.Element
}

type entry struct {
	key     string
	value   []byte
	expires time.Time
}

var _ Cache = (*Memory)(nil)

// NewMemory returns an LRU holding at most max entries (max ≥ 1).
func NewMemory(max int) *Memory {
	if max < 1 {
		max = 1
	}
	return &Memory{max: max, now: time.Now, ll: list.New(), items: map[string]*list.Element{}}
}

// Get implements Cache.
func (c *Memory) Get(ctx context.Context, key string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, ErrMiss
	}
	e := el.Value.(*entry)
	if !c.now().Before(e.expires) {
		c.ll.Remove(el)
		delete(c.items, key)
		return nil, ErrMiss
	}
	c.ll.MoveToFront(el)
	return append([]byte(nil), e.value...), nil
}

// Set implements Cache.
func (c *Memory) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("cache set: ttl must be positive")
	}
	v := append([]byte(nil), value...)
	c.mu.Lock()
	defer c.mu.Unlock()
	exp := c.now().Add(ttl)
	if el, ok := c.items[key]; ok {
		e := el.Value.(*entry)
		e.value, e.expires = v, exp
		c.ll.MoveToFront(el)
		return nil
	}
	c.items[key] = c.ll.PushFront(&entry{key: key, value: v, expires: exp})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*entry).key)
	}
	return nil
}

// Delete implements Cache.
func (c *Memory) Delete(ctx context.Context, keys ...string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		if el, ok := c.items[k]; ok {
			c.ll.Remove(el)
			delete(c.items, k)
		}
	}
	return nil
}

// Len is how many entries are held (expired ones included until touched).
func (c *Memory) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// Close implements Cache.
func (c *Memory) Close() error { return nil }
