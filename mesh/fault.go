package mesh

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// The kinds of fault the mesh injects on a call (what Istio's
// VirtualService fault does, plus a partition).
const (
	// FaultDelay holds the call for Delay (plus up to Jitter) before it
	// is forwarded.
	FaultDelay = "delay"
	// FaultAbort answers Status to Percent of the calls without
	// forwarding them.
	FaultAbort = "abort"
	// FaultPartition refuses every call between Source and Destination,
	// both ways, with 503.
	FaultPartition = "partition"
)

// FaultHeader is set on a response the mesh made up for a fault, naming
// the fault's ID.
const FaultHeader = "X-Flotilla-Fault"

// Fault is a fault the mesh injects into calls to Destination (from
// Source, or from any caller when Source is empty). A fault past Until
// is ignored, so one the control plane did not live to remove ends on its
// own.
type Fault struct {
	ID          string `json:"id"`
	Kind        string `json:"kind"`
	Source      string `json:"source,omitempty"`
	Destination string `json:"destination"`
	// Delay and Jitter are a delay fault's: each call waits Delay plus a
	// uniformly random part of Jitter.
	Delay  time.Duration `json:"delay,omitempty"`
	Jitter time.Duration `json:"jitter,omitempty"`
	// Percent is the share of calls the fault hits, 0 < Percent <= 100
	// (0 means 100).
	Percent float64 `json:"percent,omitempty"`
	// Status is an abort's answer (default 503).
	Status int       `json:"status,omitempty"`
	Until  time.Time `json:"until"`
}

// Validate reports every invalid field of the fault at once.
func (f Fault) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if f.ID == "" {
		bad("id: empty")
	}
	if err := checkName("destination", f.Destination); err != nil {
		bad("%v", err)
	}
	if f.Source != "" {
		if err := checkName("source", f.Source); err != nil {
			bad("%v", err)
		}
	}
	switch f.Kind {
	case FaultDelay:
		if f.Delay <= 0 {
			bad("delay: want more than 0")
		}
		if f.Jitter < 0 {
			bad("jitter: must not be negative")
		}
	case FaultAbort:
		if f.Status != 0 && (f.Status < 200 || f.Status > 599) {
			bad("status %d: want an HTTP status from 200 to 599", f.Status)
		}
	case FaultPartition:
		if f.Source == "" {
			bad("source: a partition is between two services")
		}
	default:
		bad("kind %q: want delay, abort or partition", f.Kind)
	}
	if f.Percent < 0 || f.Percent > 100 {
		bad("percent %v: want more than 0 and at most 100", f.Percent)
	}
	if f.Until.IsZero() {
		bad("until: every fault ends")
	}
	if len(errs) > 0 {
		return fmt.Errorf("fault %s: %w", f.ID, errors.Join(errs...))
	}
	return nil
}

// faultSet is the faults in force, read on every call.
type faultSet struct {
	faults []Fault
	hits   []*atomic.Int64 // per fault: the calls it hit
}

// SetFaults replaces the faults the mesh injects (nil: none). An invalid
// fault refuses the whole set and the previous one stays.
func (m *Mesh) SetFaults(faults []Fault) error {
	var errs []error
	for _, f := range faults {
		errs = append(errs, f.Validate())
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(faults) == 0 {
		m.faults.Store(nil)
		return nil
	}
	fs := &faultSet{faults: append([]Fault(nil), faults...)}
	for range faults {
		fs.hits = append(fs.hits, new(atomic.Int64))
	}
	m.faults.Store(fs)
	return nil
}

// Faults returns the faults set, with the calls each hit so far.
func (m *Mesh) Faults() ([]Fault, []int64) {
	fs := m.faults.Load()
	if fs == nil {
		return nil, nil
	}
	hits := make([]int64, len(fs.hits))
	for i, h := range fs.hits {
		hits[i] = h.Load()
	}
	return append([]Fault(nil), fs.faults...), hits
}

// injectFault applies the faults that match a call from src to dst: it
// waits out the delays and answers for an abort or a partition, reporting
// whether it answered (the call then goes no further). The caller holds
// no lock; the hot path without faults is one atomic load.
func (m *Mesh) injectFault(w http.ResponseWriter, r *http.Request, src, dst string) bool {
	fs := m.faults.Load()
	if fs == nil {
		return false
	}
	now := m.cfg.Now()
	for i := range fs.faults {
		f := &fs.faults[i]
		if !now.Before(f.Until) || !f.matches(src, dst) {
			continue
		}
		if f.Percent > 0 && f.Percent < 100 && rand.Float64()*100 >= f.Percent {
			continue
		}
		fs.hits[i].Add(1)
		switch f.Kind {
		case FaultDelay:
			d := f.Delay
			if f.Jitter > 0 {
				d += rand.N(f.Jitter)
			}
			if !sleepCtx(r.Context(), d) {
				return false // the caller went away; the proxy notes it
			}
		case FaultAbort:
			code := f.Status
			if code == 0 {
				code = http.StatusServiceUnavailable
			}
			w.Header().Set(FaultHeader, f.ID)
			http.Error(w, strconv.Itoa(code)+" fault injected: "+f.ID+" aborts calls to "+dst, code)
			return true
		case FaultPartition:
			w.Header().Set(FaultHeader, f.ID)
			http.Error(w, "503 fault injected: "+f.ID+" partitions "+f.Source+" and "+f.Destination, http.StatusServiceUnavailable)
			return true
		}
	}
	return false
}

// matches reports whether the fault concerns a call from src to dst; a
// partition cuts both ways.
func (f *Fault) matches(src, dst string) bool {
	if f.Kind == FaultPartition {
		return src == f.Source && dst == f.Destination || src == f.Destination && dst == f.Source
	}
	return dst == f.Destination && (f.Source == "" || f.Source == src)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
