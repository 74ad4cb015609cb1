//go:build !race

package mesh

import "testing"

// TestHopAllocations pins the allocations of one proxied request (the race
// detector's sync.Pool drops items at random, so it runs without it).
func TestHopAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	h := newHopClient(t, newHop(t))
	if err := h.do(); err != nil {
		t.Fatal(err)
	}
	var err error
	allocs := testing.AllocsPerRun(2000, func() {
		if e := h.do(); e != nil {
			err = e
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if allocs > hopAllocCeiling {
		t.Errorf("one proxied request allocates %.1f objects, more than %d", allocs, hopAllocCeiling)
	}
	t.Logf("%.1f allocations per hop", allocs)
}
