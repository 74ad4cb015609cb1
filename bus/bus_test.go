package bus_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/bus"
)

func TestBackoffFor(t *testing.T) {
	b := []time.Duration{time.Second, 2 * time.Second}
	for _, tc := range []struct {
		delivery int
		want     time.Duration
	}{{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {9, 2 * time.Second}} {
		t.Run(fmt.Sprint(tc.delivery), func(t *testing.T) {
			if got := bus.BackoffFor(b, tc.delivery); got != tc.want {
				t.Errorf("BackoffFor(%d) = %s, want %s", tc.delivery, got, tc.want)
			}
		})
	}
	if got := bus.BackoffFor(nil, 1); got != bus.DefaultBackoff[0] {
		t.Errorf("default backoff = %s", got)
	}
}

func TestPermanent(t *testing.T) {
	base := errors.New("bad magic byte")
	err := fmt.Errorf("decode: %w", bus.Permanent(base))
	if !bus.IsPermanent(err) || !errors.Is(err, base) {
		t.Errorf("IsPermanent/Is lost through wrapping: %v", err)
	}
	if bus.IsPermanent(base) || bus.Permanent(nil) != nil {
		t.Error("plain error reported permanent, or Permanent(nil) != nil")
	}
}

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{"OrderCreated": true, "order-service_1": true, "": false, "a.b": false, "a b": false, "a>": false, "*": false} {
		if got := bus.ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, want)
		}
	}
}
