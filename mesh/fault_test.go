package mesh

import (
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestFaultsInjectWhatTheySay measures each fault kind at the client: the
// delay, the abort rate within a tolerance, the partition both ways, and
// nothing once the faults are gone or past their end.
func TestFaultsInjectWhatTheySay(t *testing.T) {
	m := newTestMesh(t, Config{Retry: RetryConfig{Attempts: -1}})
	inv := newUpstream(t, "inventory", nil)
	ord := newUpstream(t, "order", nil)
	invURL := addService(t, m, ServiceConfig{Name: "inventory-service"}, Subset{Name: "v1", Endpoints: []string{inv.addr()}})
	ordURL := addService(t, m, ServiceConfig{Name: "order-service"}, Subset{Name: "v1", Endpoints: []string{ord.addr()}})
	from := func(caller string) map[string]string { return map[string]string{CallerHeader: caller} }
	until := time.Now().Add(time.Minute)

	t.Run("delay on one edge", func(t *testing.T) {
		if err := m.SetFaults([]Fault{{ID: "d", Kind: FaultDelay, Source: "order-service", Destination: "inventory-service", Delay: 200 * time.Millisecond, Jitter: 50 * time.Millisecond, Until: until}}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if r := do(t, "GET", invURL+"/x", from("order-service"), ""); r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
		if took := time.Since(start); took < 200*time.Millisecond || took > 2*time.Second {
			t.Errorf("the delayed call took %v, want 200-250ms", took)
		}
		start = time.Now()
		do(t, "GET", invURL+"/x", from("cart-service"), "")
		if took := time.Since(start); took > 150*time.Millisecond {
			t.Errorf("a call on another edge took %v: the fault leaked", took)
		}
	})

	t.Run("abort a percentage", func(t *testing.T) {
		if err := m.SetFaults([]Fault{{ID: "a", Kind: FaultAbort, Destination: "inventory-service", Percent: 30, Status: 500, Until: until}}); err != nil {
			t.Fatal(err)
		}
		const n = 1000
		aborted := 0
		for range n {
			r := do(t, "GET", invURL+"/x", from("order-service"), "")
			switch r.status {
			case 500:
				if !strings.Contains(r.body, "fault injected") {
					t.Fatalf("500 not from the fault: %q", r.body)
				}
				aborted++
			case 200:
			default:
				t.Fatalf("status %d", r.status)
			}
		}
		if got := float64(aborted) / n * 100; math.Abs(got-30) > 5 {
			t.Errorf("aborted %.1f%% of calls, want 30%% ± 5", got)
		}
		_, hits := m.Faults()
		if hits[0] != int64(aborted) {
			t.Errorf("the fault counts %d hits, the client saw %d", hits[0], aborted)
		}
	})

	t.Run("partition both ways", func(t *testing.T) {
		if err := m.SetFaults([]Fault{{ID: "p", Kind: FaultPartition, Source: "order-service", Destination: "inventory-service", Until: until}}); err != nil {
			t.Fatal(err)
		}
		if r := do(t, "GET", invURL+"/x", from("order-service"), ""); r.status != http.StatusServiceUnavailable {
			t.Errorf("order → inventory: %d, want 503", r.status)
		}
		if r := do(t, "GET", ordURL+"/x", from("inventory-service"), ""); r.status != http.StatusServiceUnavailable {
			t.Errorf("inventory → order: %d, want 503", r.status)
		}
		if r := do(t, "GET", ordURL+"/x", from("cart-service"), ""); r.status != 200 {
			t.Errorf("cart → order: %d, want 200", r.status)
		}
	})

	t.Run("gone after its end or removal", func(t *testing.T) {
		if err := m.SetFaults([]Fault{{ID: "old", Kind: FaultAbort, Destination: "inventory-service", Until: time.Now().Add(-time.Second)}}); err != nil {
			t.Fatal(err)
		}
		if r := do(t, "GET", invURL+"/x", nil, ""); r.status != 200 {
			t.Errorf("a fault past its end still aborts: %d", r.status)
		}
		if err := m.SetFaults([]Fault{{ID: "x", Kind: FaultAbort, Destination: "inventory-service", Until: until}}); err != nil {
			t.Fatal(err)
		}
		if err := m.SetFaults(nil); err != nil {
			t.Fatal(err)
		}
		if r := do(t, "GET", invURL+"/x", nil, ""); r.status != 200 {
			t.Errorf("after removal: %d", r.status)
		}
	})
}

func TestFaultValidate(t *testing.T) {
	until := time.Now().Add(time.Minute)
	for _, tc := range []struct {
		f    Fault
		want string
	}{
		{Fault{ID: "a", Kind: FaultAbort, Destination: "x", Percent: 120, Until: until}, "percent 120"},
		{Fault{ID: "a", Kind: FaultDelay, Destination: "x", Until: until}, "delay: want more than 0"},
		{Fault{ID: "a", Kind: FaultPartition, Destination: "x", Until: until}, "a partition is between two services"},
		{Fault{ID: "a", Kind: "boom", Destination: "x", Until: until}, `kind "boom"`},
		{Fault{ID: "a", Kind: FaultAbort, Destination: "x"}, "every fault ends"},
		{Fault{ID: "a", Kind: FaultAbort, Destination: "x", Status: 99, Until: until}, "status 99"},
	} {
		err := tc.f.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.f, err, tc.want)
		}
	}
	m := newTestMesh(t, Config{})
	if err := m.SetFaults([]Fault{{ID: "ok", Kind: FaultAbort, Destination: "x", Until: until}, {ID: "bad", Kind: FaultAbort, Destination: "x", Percent: 101, Until: until}}); err == nil {
		t.Fatal("an invalid fault was accepted")
	}
	if fs, _ := m.Faults(); len(fs) != 0 {
		t.Errorf("a refused set left faults in force: %v", fs)
	}
}
