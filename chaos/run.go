package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/shop/audit"
	"github.com/flotilla-ci/flotilla/shop/load"
)

// ControlPlane is what a run needs of the control plane's chaos API
// (controlplane.Client implements it).
type ControlPlane interface {
	BeginExperiment(ctx context.Context, req controlplane.ExperimentRequest) (*controlplane.Experiment, error)
	RenewExperiment(ctx context.Context, id string) (*controlplane.Experiment, error)
	EndExperiment(ctx context.Context, id string) ([]*controlplane.ActiveFault, error)
	InjectFault(ctx context.Context, req controlplane.FaultRequest) (*controlplane.ActiveFault, error)
}

// Runner runs experiments.
type Runner struct {
	API ControlPlane
	// Gateway is the shop's gateway, http://host:port.
	Gateway string
	// Audit audits the shop (nil: no audit; the report says so).
	Audit func(ctx context.Context, timeout time.Duration) (*audit.Report, error)
	// Progress receives a line per step (may be nil).
	Progress io.Writer
	// Lease is the experiment's lease (default 10s), renewed every third.
	Lease time.Duration
	// HTTP sends the probes (default: a client with a 5s timeout).
	HTTP *http.Client
}

// Report is what an experiment did.
type Report struct {
	Experiment   string        `json:"experiment"`
	Started      time.Time     `json:"started"`
	Ended        time.Time     `json:"ended"`
	SteadyBefore bool          `json:"steady_before"`
	Faults       []FaultReport `json:"faults"`
	// Held is true when the hypothesis held again after every fault and
	// the audit found nothing.
	Held     bool          `json:"held"`
	Load     *load.Summary `json:"load,omitempty"`
	Audit    *audit.Report `json:"audit,omitempty"`
	Problems []string      `json:"problems,omitempty"`
}

// FaultReport is one fault's part.
type FaultReport struct {
	Name    string    `json:"name"`
	Kind    string    `json:"kind"`
	ID      string    `json:"id"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
	// FailedDuring and FailedAfter count the load's and the probes'
	// failed requests during the fault and from its end until the
	// hypothesis held again.
	FailedDuring int `json:"failed_during"`
	FailedAfter  int `json:"failed_after"`
	// MTTR is from the fault's end (a kill: its injection) until the
	// hypothesis held again; Recovered false when it did not within
	// recover_within.
	MTTR      time.Duration `json:"mttr"`
	Recovered bool          `json:"recovered"`
	Killed    []int         `json:"killed_pids,omitempty"`
}

type sample struct {
	at      time.Time
	latency time.Duration
	failed  bool
	probe   bool
}

// recorder keeps every probe and load request, by time.
type recorder struct {
	mu      sync.Mutex
	samples []sample
}

func (r *recorder) add(s sample) {
	r.mu.Lock()
	r.samples = append(r.samples, s)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]sample(nil), r.samples...)
	sort.Slice(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

// holds evaluates the hypothesis over the probes in [from, from+window):
// enough probes, the error rate and the p99 in bounds.
func holds(h Hypothesis, ss []sample, from time.Time) bool {
	to := from.Add(h.Window.D())
	var lat []time.Duration
	failed := 0
	for _, s := range ss {
		if !s.probe || s.at.Before(from) || !s.at.Before(to) {
			continue
		}
		lat = append(lat, s.latency)
		if s.failed {
			failed++
		}
	}
	want := int(h.Window.D()/h.Interval.D()) / 2
	if len(lat) == 0 || len(lat) < want {
		return false
	}
	if float64(failed)*100/float64(len(lat)) > h.MaxErrorRate {
		return false
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p99 := lat[(len(lat)*99+99)/100-1]
	return p99 <= h.MaxP99.D()
}

// recoveredAt is the first probe at or after ref from which the
// hypothesis held for a whole window, if the probes show one.
func recoveredAt(h Hypothesis, ss []sample, ref, last time.Time) (time.Time, bool) {
	for _, s := range ss {
		if !s.probe || s.at.Before(ref) || s.at.Add(h.Window.D()).After(last) {
			continue
		}
		if holds(h, ss, s.at) {
			return s.at, true
		}
	}
	return time.Time{}, false
}

func (r *Runner) say(format string, a ...any) {
	if r.Progress != nil {
		fmt.Fprintf(r.Progress, "chaos  "+format+"\n", a...)
	}
}

// probe sends the hypothesis's probes every interval until ctx ends.
func (r *Runner) probe(ctx context.Context, h Hypothesis, rec *recorder) {
	client := r.HTTP
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	t := time.NewTicker(h.Interval.D())
	defer t.Stop()
	i := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		path := h.Probes[i%len(h.Probes)]
		i++
		go func() {
			start := time.Now()
			failed := true
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(r.Gateway, "/")+path, nil)
			if err == nil {
				if resp, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					failed = resp.StatusCode >= 400
				}
			}
			if ctx.Err() == nil {
				rec.add(sample{at: start, latency: time.Since(start), failed: failed, probe: true})
			}
		}()
	}
}

// Run runs the experiment: the load and the probes start, the
// hypothesis must hold (steady state), the faults are injected on their
// schedule under the experiment's lease, then each fault's recovery is
// measured and the shop audited. Every fault is removed when Run returns,
// also when ctx ends (Ctrl-C, a timeout). The error is for a run that
// could not be made (the control plane refused, another experiment
// runs); a hypothesis that did not hold again is Report.Held false.
func (r *Runner) Run(ctx context.Context, e *Experiment) (*Report, error) {
	h := e.Hypothesis
	rep := &Report{Experiment: e.Name, Started: time.Now().UTC()}
	rec := &recorder{}
	runCtx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.probe(runCtx, h, rec) }()
	var loadSum *load.Summary
	var loadErr error
	if e.Load != nil {
		lc := e.LoadConfig(r.Gateway)
		lc.Observe = func(o load.Observation) {
			rec.add(sample{at: o.At, latency: o.Latency, failed: o.Failed})
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			loadSum, loadErr = load.Run(runCtx, lc, nil)
		}()
		r.say("load: %v requests/s through %s", e.Load.Rate, r.Gateway)
	}
	finish := func() {
		stopAll()
		wg.Wait()
		rep.Load = loadSum
		if loadErr != nil {
			rep.Problems = append(rep.Problems, "load: "+loadErr.Error())
		}
		rep.Ended = time.Now().UTC()
	}

	// Steady state first: the hypothesis must hold before any fault.
	r.say("steady state: waiting for the hypothesis to hold over %v", h.Window.D())
	begin := time.Now()
	steady := false
	for time.Since(begin) < h.RecoverWithin.D()+h.Window.D() {
		if err := sleep(ctx, h.Window.D()/2); err != nil {
			finish()
			return rep, err
		}
		ss := rec.snapshot()
		if e.Load != nil && !loadRuns(ss) {
			continue // the load registers its accounts first: the steady state is the shop under load
		}
		if last := time.Now().Add(-h.Window.D()); last.After(begin) && holds(h, ss, last) {
			steady = true
			break
		}
	}
	rep.SteadyBefore = steady
	if !steady {
		finish()
		rep.Problems = append(rep.Problems, fmt.Sprintf("the hypothesis did not hold before any fault (within %v): nothing was injected; fix the system or the hypothesis first", h.RecoverWithin.D()+h.Window.D()))
		return rep, nil
	}

	// The experiment's lease, renewed until it ends.
	lease := r.Lease
	if lease <= 0 {
		lease = controlplane.DefaultLease
	}
	deadline := time.Now().Add(e.Duration.D() + 5*time.Second)
	exp, err := r.API.BeginExperiment(ctx, controlplane.ExperimentRequest{Name: e.Name, Lease: controlplane.Duration(lease), Deadline: deadline})
	if err != nil {
		finish()
		return rep, fmt.Errorf("begin the experiment: %w", err)
	}
	r.say("experiment %s began (lease %v, renewed every %v)", exp.ID, lease, lease/3)
	renewCtx, stopRenew := context.WithCancel(ctx)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(lease / 3)
		defer t.Stop()
		for {
			select {
			case <-renewCtx.Done():
				return
			case <-t.C:
			}
			if _, err := r.API.RenewExperiment(renewCtx, exp.ID); err != nil && renewCtx.Err() == nil {
				r.say("renewing the lease failed: %v", err)
			}
		}
	}()
	end := func() {
		stopRenew()
		<-renewed
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, err := r.API.EndExperiment(ectx, exp.ID); err != nil {
			rep.Problems = append(rep.Problems, "ending the experiment: "+err.Error()+" (its lease removes its faults)")
		}
	}

	// The faults, on their schedule.
	t0 := time.Now()
	order := make([]int, len(e.Faults))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return e.Faults[order[a]].Start < e.Faults[order[b]].Start })
	rep.Faults = make([]FaultReport, len(e.Faults))
	var lastEnd time.Time
	for _, i := range order {
		f := e.Faults[i]
		if err := sleep(ctx, time.Until(t0.Add(f.Start.D()))); err != nil {
			end()
			finish()
			return rep, err
		}
		af, err := r.API.InjectFault(ctx, e.FaultRequest(exp.ID, i))
		if err != nil {
			end()
			finish()
			return rep, fmt.Errorf("%s: line %d: inject faults[%d]: %w", e.file, e.line("faults", i), i, err)
		}
		fr := FaultReport{Name: af.Name, Kind: af.Kind, ID: af.ID, Started: af.Started, Ended: af.Ends}
		for _, k := range af.Killed {
			fr.Killed = append(fr.Killed, k.PID)
		}
		rep.Faults[i] = fr
		if af.Ends.After(lastEnd) {
			lastEnd = af.Ends
		}
		r.say("injected %s (%s) until %s", af.Name, af.ID, af.Ends.Local().Format("15:04:05.000"))
	}
	if err := sleep(ctx, time.Until(lastEnd)); err != nil {
		end()
		finish()
		return rep, err
	}
	end()
	r.say("every fault ended; waiting for the hypothesis to hold again (at most %v)", h.RecoverWithin.D())

	// Recovery: from each fault's end, the first window that holds.
	giveUp := lastEnd.Add(h.RecoverWithin.D() + h.Window.D())
	for {
		ss := rec.snapshot()
		now := time.Now()
		all := true
		for i := range rep.Faults {
			if _, ok := recoveredAt(h, ss, rep.Faults[i].Ended, now); !ok {
				all = false
			}
		}
		if all || now.After(giveUp) {
			break
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			finish()
			return rep, err
		}
	}
	finish()
	ss := rec.snapshot()
	rep.Held = true
	for i := range rep.Faults {
		fr := &rep.Faults[i]
		at, ok := recoveredAt(h, ss, fr.Ended, rep.Ended)
		fr.Recovered = ok
		upTo := rep.Ended
		if ok {
			fr.MTTR = at.Sub(fr.Ended)
			upTo = at
		} else {
			rep.Held = false
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: the hypothesis did not hold again within %v of its end", fr.Name, h.RecoverWithin.D()))
		}
		for _, s := range ss {
			switch {
			case !s.failed:
			case !s.at.Before(fr.Started) && s.at.Before(fr.Ended):
				fr.FailedDuring++
			case !s.at.Before(fr.Ended) && s.at.Before(upTo):
				fr.FailedAfter++
			}
		}
	}

	// The business check: every order final, stock and money balanced.
	if r.Audit != nil && h.OrdersFinalWithin > 0 {
		r.say("auditing the shop (orders final within %v)", h.OrdersFinalWithin.D())
		var ar *audit.Report
		var err error
		deadline := time.Now().Add(h.OrdersFinalWithin.D())
		for {
			ar, err = r.Audit(ctx, h.OrdersFinalWithin.D())
			if err != nil || ar.OK() && ar.InFlight == 0 || time.Now().After(deadline) {
				break
			}
			if serr := sleep(ctx, time.Second); serr != nil {
				return rep, serr
			}
		}
		switch {
		case err != nil:
			rep.Held = false
			rep.Problems = append(rep.Problems, "audit: "+err.Error())
		default:
			rep.Audit = ar
			if !ar.OK() {
				rep.Held = false
				rep.Problems = append(rep.Problems, ar.Problems...)
			}
		}
	}
	return rep, nil
}

// loadRuns reports whether the load's requests have begun.
func loadRuns(ss []sample) bool {
	for _, s := range ss {
		if !s.probe {
			return true
		}
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ErrNotHeld is returned by the CLI when the hypothesis did not hold again.
var ErrNotHeld = errors.New("the hypothesis did not hold again")

// Write prints the report as text.
func (rep *Report) Write(w io.Writer) {
	fmt.Fprintf(w, "experiment %q: %s to %s\n", rep.Experiment, rep.Started.Local().Format("15:04:05"), rep.Ended.Local().Format("15:04:05"))
	fmt.Fprintf(w, "%-28s %-12s %-12s %-12s %8s %8s %s\n", "FAULT", "STARTED", "ENDED", "RECOVERED", "FAILED", "AFTER", "MTTR")
	for _, f := range rep.Faults {
		mttr := "not recovered"
		rec := "-"
		if f.Recovered {
			mttr = f.MTTR.Round(time.Millisecond).String()
			rec = f.Ended.Add(f.MTTR).Local().Format("15:04:05.0")
		}
		fmt.Fprintf(w, "%-28s %-12s %-12s %-12s %8d %8d %s\n", f.Name, f.Started.Local().Format("15:04:05.0"), f.Ended.Local().Format("15:04:05.0"), rec, f.FailedDuring, f.FailedAfter, mttr)
	}
	if l := rep.Load; l != nil {
		fmt.Fprintf(w, "load: %d requests, %d errors, p99 %v; orders placed %d (confirmed %d, cancelled %d)\n", l.Requests, l.Errors, l.P99.Round(time.Millisecond), l.OrdersPlaced, l.Confirmed, l.Cancelled)
	}
	if a := rep.Audit; a != nil {
		fmt.Fprintf(w, "audit: %s\n", a)
	} else {
		fmt.Fprintln(w, "audit: not run")
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "  problem: %s\n", p)
	}
	if rep.Held {
		fmt.Fprintln(w, "hypothesis held again after every fault")
	} else {
		fmt.Fprintln(w, "HYPOTHESIS DID NOT HOLD")
	}
}
