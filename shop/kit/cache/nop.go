package cache

import (
	"context"
	"time"
)

// Nop is no cache: every Get misses and Set stores nothing (to measure
// what a cache saves, or to turn one off).
type Nop struct{}

var _ Cache = Nop{}

// Get implements Cache.
func (Nop) Get(context.Context, string) ([]byte, error) { return nil, ErrMiss }

// Set implements Cache.
func (Nop) Set(context.Context, string, []byte, time.Duration) error { return nil }

// Delete implements Cache.
func (Nop) Delete(context.Context, ...string) error { return nil }

// Close implements Cache.
func (Nop) Close() error { return nil }
