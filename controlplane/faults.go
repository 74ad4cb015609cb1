package controlplane

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/mesh"
)

// Faults injected on purpose into the running platform (chaos
// experiments). An experiment holds a lease the control plane expires:
// its client renews it while it runs, and when the client stops renewing
// (it was interrupted, or killed) the control plane removes every fault
// of the experiment. One experiment runs at a time.
//
//	POST   /api/experiments             {"name","lease","deadline"}: 201 {"experiment"}; 409 while another runs
//	POST   /api/experiments/{id}/renew  extends the lease: 200 {"experiment"}; 404 when it ended
//	DELETE /api/experiments/{id}        ends it, removing its faults: 200 {"removed"}
//	POST   /api/faults                  a FaultRequest: 201 {"fault"}; 400 names what is wrong
//	GET    /api/faults                  {"experiment","faults"}: what is in force
//	DELETE /api/faults/{id}             removes one fault
//	DELETE /api/faults                  removes every fault and ends the experiment ('flotilla chaos stop')

// The kinds of fault the control plane injects.
const (
	FaultDelay     = mesh.FaultDelay     // a delay on calls to a service (from one caller, or any)
	FaultAbort     = mesh.FaultAbort     // an answer with a status for a share of the calls
	FaultPartition = mesh.FaultPartition // every call between two services refused, both ways
	FaultKill      = "kill"              // SIGKILL of one instance of a service, or all ("all": true)
	FaultBusStall  = "bus-stall"         // the event bus stopped (SIGSTOP) for the duration
	FaultBusSlow   = "bus-slow"          // the event bus paused for "delay" of every second
)

// Duration is a time.Duration written as Go writes it ("500ms", "10s").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "500ms", "10s", ...
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration such as \"500ms\" or \"10s\", not %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: want a number with a unit, such as \"500ms\" or \"10s\"", s)
	}
	*d = Duration(v)
	return nil
}

// ExperimentRequest is the body of POST /api/experiments.
type ExperimentRequest struct {
	Name string `json:"name"`
	// Lease is how long the experiment holds its faults without a
	// renewal (default 10s, at most 5m).
	Lease Duration `json:"lease,omitempty"`
	// Deadline is when the experiment ends at the latest: a fault that
	// would outlive it is refused. Default: in an hour.
	Deadline time.Time `json:"deadline,omitzero"`
}

// Experiment is a running experiment's lease.
type Experiment struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Who        string    `json:"who,omitempty"`
	Started    time.Time `json:"started"`
	LeaseUntil time.Time `json:"lease_until"`
	Deadline   time.Time `json:"deadline"`
	Lease      Duration  `json:"lease"`
}

// FaultRequest is the body of POST /api/faults: one fault of the running
// experiment.
type FaultRequest struct {
	Experiment string `json:"experiment"`
	// Name labels the fault in the report (default: its kind and target).
	Name string `json:"name,omitempty"`
	Kind string `json:"kind"`
	// Source and Destination are a mesh edge: delay and abort on calls
	// from Source (empty: any caller) to Destination; a partition cuts
	// Source and Destination apart both ways.
	Source      string `json:"source,omitempty"`
	Destination string `json:"destination,omitempty"`
	// Service and All are a kill's: one instance of Service, or all.
	Service string `json:"service,omitempty"`
	All     bool   `json:"all,omitempty"`
	// Delay and Jitter: a delay's (Jitter: up to this much more, at
	// random); a bus-slow's pause per second.
	Delay  Duration `json:"delay,omitempty"`
	Jitter Duration `json:"jitter,omitempty"`
	// Percent of the calls a delay or an abort hits (default 100).
	Percent float64 `json:"percent,omitempty"`
	// Status is an abort's answer (default 503).
	Status int `json:"status,omitempty"`
	// Duration is how long the fault stays (a kill is instant: 0).
	Duration Duration `json:"duration,omitempty"`
}

// ActiveFault is a fault in force (or, for a kill, done).
type ActiveFault struct {
	ID string `json:"id"`
	FaultRequest
	Started time.Time `json:"started"`
	Ends    time.Time `json:"ends"`
	// Killed are the instances a kill took down.
	Killed []deploy.Instance `json:"killed,omitempty"`
	// Hits counts the calls a mesh fault hit so far.
	Hits int64 `json:"hits,omitempty"`
}

// FaultsResponse is the body of GET /api/faults.
type FaultsResponse struct {
	Experiment *Experiment    `json:"experiment"`
	Faults     []*ActiveFault `json:"faults"`
}

// ChaosConfig wires fault injection to what it injects into.
type ChaosConfig struct {
	// DependsOn is the graph: each service's depends_on. A mesh fault on
	// an edge the graph lacks is refused.
	DependsOn map[string][]string
	// SetFaults gives the mesh its faults (the data plane's snapshot).
	SetFaults func(ctx context.Context, faults []mesh.Fault) error
	// MeshHits reports the calls each mesh fault hit, by ID (may be nil).
	MeshHits func() map[string]int64
	// Kill sends SIGKILL to one or every instance of a service (the
	// local target's Kill).
	Kill func(ctx context.Context, service string, all bool) ([]deploy.Instance, error)
	// BusPID is the event bus's process (0: none runs).
	BusPID func() int
	Now    func() time.Time
	Logger *slog.Logger
}

// Chaos injects and removes faults for one experiment at a time, and
// expires them with the experiment's lease.
type Chaos struct {
	cfg ChaosConfig
	log *slog.Logger

	mu     sync.Mutex
	exp    *Experiment
	faults []*ActiveFault
	busOn  map[string]context.CancelFunc // bus faults' goroutines, by fault ID
	stop   chan struct{}
	done   chan struct{}
}

// Lease bounds.
const (
	DefaultLease = 10 * time.Second
	MaxLease     = 5 * time.Minute
)

// NewChaos starts the expiry loop; Close stops it and removes every fault.
func NewChaos(cfg ChaosConfig) *Chaos {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Chaos{cfg: cfg, log: cfg.Logger, busOn: map[string]context.CancelFunc{}, stop: make(chan struct{}), done: make(chan struct{})}
	go c.expire()
	return c
}

// Close removes every fault and stops the expiry loop.
func (c *Chaos) Close(ctx context.Context) error {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
	_, err := c.StopAll(ctx)
	return err
}

func (c *Chaos) expire() {
	defer close(c.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c.expireOnce(ctx)
		cancel()
	}
}

// expireOnce ends an experiment whose lease ran out, and removes the
// faults past their end.
func (c *Chaos) expireOnce(ctx context.Context) {
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exp != nil && now.After(c.exp.LeaseUntil) {
		c.log.WarnContext(ctx, "chaos experiment's lease expired: its client stopped renewing it; removing its faults", "experiment", c.exp.Name, "faults", len(c.faults))
		if _, err := c.endLocked(ctx); err != nil {
			c.log.ErrorContext(ctx, "chaos: removing the expired experiment's faults from the mesh failed", "err", err)
		}
		return
	}
	var keep []*ActiveFault
	changed := false
	for _, f := range c.faults {
		if f.Kind != FaultKill && !now.Before(f.Ends) {
			c.log.InfoContext(ctx, "chaos fault ended", "fault", f.ID, "kind", f.Kind)
			changed = changed || isMeshFault(f.Kind)
			c.stopBusLocked(f.ID)
			continue
		}
		keep = append(keep, f)
	}
	c.faults = keep
	if changed {
		if err := c.pushMeshLocked(ctx); err != nil {
			c.log.ErrorContext(ctx, "chaos: removing an ended fault from the mesh failed", "err", err)
		}
	}
}

func isMeshFault(kind string) bool {
	return kind == FaultDelay || kind == FaultAbort || kind == FaultPartition
}

// Begin starts an experiment; ErrBusy (409) while another runs.
func (c *Chaos) Begin(ctx context.Context, req ExperimentRequest) (*Experiment, error) {
	now := c.cfg.Now()
	lease := time.Duration(req.Lease)
	var errs []error
	switch {
	case lease == 0:
		lease = DefaultLease
	case lease < 0 || lease > MaxLease:
		errs = append(errs, fmt.Errorf("lease %v: want more than 0 and at most %v", lease, MaxLease))
	}
	if strings.TrimSpace(req.Name) == "" {
		errs = append(errs, errors.New("name: empty: name the experiment"))
	}
	deadline := req.Deadline
	if deadline.IsZero() {
		deadline = now.Add(time.Hour)
	} else if !deadline.After(now) {
		errs = append(errs, fmt.Errorf("deadline %s: already past", deadline.Format(time.RFC3339)))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, &badRequest{err}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exp != nil {
		return nil, fmt.Errorf("experiment %q (%s) runs since %s: one experiment at a time ('flotilla chaos stop' ends it): %w", c.exp.Name, c.exp.ID, c.exp.Started.Format(time.RFC3339), deploy.ErrBusy)
	}
	c.exp = &Experiment{ID: newID("exp"), Name: req.Name, Who: actor(ctx, ""), Started: now, LeaseUntil: now.Add(lease), Deadline: deadline, Lease: Duration(lease)}
	c.log.InfoContext(ctx, "chaos experiment started", "experiment", req.Name, "id", c.exp.ID, "lease", lease.String())
	e := *c.exp
	return &e, nil
}

// ErrNoExperiment is returned for an experiment that is not the running one.
var ErrNoExperiment = errors.New("no such experiment runs")

// Renew extends the experiment's lease.
func (c *Chaos) Renew(id string) (*Experiment, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exp == nil || c.exp.ID != id {
		return nil, fmt.Errorf("experiment %s: %w (its lease may have expired, which removed its faults)", id, ErrNoExperiment)
	}
	c.exp.LeaseUntil = c.cfg.Now().Add(time.Duration(c.exp.Lease))
	e := *c.exp
	return &e, nil
}

// End ends the experiment, removing its faults.
func (c *Chaos) End(ctx context.Context, id string) ([]*ActiveFault, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exp == nil || c.exp.ID != id {
		return nil, fmt.Errorf("experiment %s: %w", id, ErrNoExperiment)
	}
	return c.endLocked(ctx)
}

// StopAll removes every fault and ends the experiment, if one runs.
func (c *Chaos) StopAll(ctx context.Context) ([]*ActiveFault, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endLocked(ctx)
}

func (c *Chaos) endLocked(ctx context.Context) ([]*ActiveFault, error) {
	removed := c.faults
	c.faults = nil
	for id := range c.busOn {
		c.stopBusLocked(id)
	}
	if c.exp != nil {
		c.log.InfoContext(ctx, "chaos experiment ended", "experiment", c.exp.Name, "faults_removed", len(removed))
	}
	c.exp = nil
	var err error
	if slices.ContainsFunc(removed, func(f *ActiveFault) bool { return isMeshFault(f.Kind) }) {
		// Only when mesh faults were in force: a platform stopping with
		// none has nothing to undo in a data plane that may be gone.
		err = c.pushMeshLocked(ctx)
	}
	if removed == nil {
		removed = []*ActiveFault{}
	}
	return removed, err
}

// Remove removes one fault.
func (c *Chaos) Remove(ctx context.Context, id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, f := range c.faults {
		if f.ID == id {
			c.faults = append(c.faults[:i], c.faults[i+1:]...)
			c.stopBusLocked(id)
			return c.pushMeshLocked(ctx)
		}
	}
	return fmt.Errorf("fault %s: %w", id, deploy.ErrNotFound)
}

// List returns the experiment and the faults in force.
func (c *Chaos) List() FaultsResponse {
	var hits map[string]int64
	if c.cfg.MeshHits != nil {
		hits = c.cfg.MeshHits()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := FaultsResponse{Faults: []*ActiveFault{}}
	if c.exp != nil {
		e := *c.exp
		out.Experiment = &e
	}
	for _, f := range c.faults {
		cp := *f
		cp.Hits = hits[f.ID]
		out.Faults = append(out.Faults, &cp)
	}
	return out
}

// badRequest marks a request's own error (400).
type badRequest struct{ error }

func (b *badRequest) Unwrap() error { return b.error }

// Validate checks a fault against the graph and the experiment's
// deadline, reporting every problem at once.
func (c *Chaos) validate(req FaultRequest, deadline time.Time, now time.Time) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	known := func(field, s string) bool {
		if _, ok := c.cfg.DependsOn[s]; ok {
			return true
		}
		names := make([]string, 0, len(c.cfg.DependsOn))
		for n := range c.cfg.DependsOn {
			names = append(names, n)
		}
		sort.Strings(names)
		bad("%s: unknown service %q (the graph has: %s)", field, s, strings.Join(names, ", "))
		return false
	}
	edge := func(from, to string) bool {
		for _, d := range c.cfg.DependsOn[from] {
			if d == to {
				return true
			}
		}
		return false
	}
	d := time.Duration(req.Duration)
	switch req.Kind {
	case FaultDelay, FaultAbort:
		if req.Destination == "" {
			bad("destination: empty: name the service whose calls the fault hits")
		} else if known("destination", req.Destination) && req.Source != "" && known("source", req.Source) && !edge(req.Source, req.Destination) {
			bad("edge %s -> %s: the graph has no such edge (%s does not depend on %s)", req.Source, req.Destination, req.Source, req.Destination)
		}
		if req.Kind == FaultDelay && req.Delay <= 0 {
			bad("delay: want more than 0 (e.g. \"500ms\")")
		}
		if req.Jitter < 0 {
			bad("jitter: must not be negative")
		}
		if req.Kind == FaultAbort && req.Status != 0 && (req.Status < 200 || req.Status > 599) {
			bad("status %d: want an HTTP status from 200 to 599", req.Status)
		}
	case FaultPartition:
		if req.Source == "" || req.Destination == "" {
			bad("source and destination: a partition is between two services")
		} else if known("source", req.Source) && known("destination", req.Destination) && !edge(req.Source, req.Destination) && !edge(req.Destination, req.Source) {
			bad("partition %s / %s: the graph has no edge between them, so there is nothing to cut", req.Source, req.Destination)
		}
	case FaultKill:
		if req.Service == "" {
			bad("service: empty: name the service whose instance to kill")
		} else {
			known("service", req.Service)
		}
		if c.cfg.Kill == nil {
			bad("kind kill: this control plane runs no local target to kill instances in")
		}
	case FaultBusStall, FaultBusSlow:
		if c.cfg.BusPID == nil || c.cfg.BusPID() <= 0 {
			bad("kind %s: no event bus process runs", req.Kind)
		}
		if req.Kind == FaultBusSlow && (req.Delay <= 0 || req.Delay >= Duration(time.Second)) {
			bad("delay: a bus-slow pauses the bus for this much of every second: want more than 0 and less than 1s")
		}
	case "":
		bad("kind: empty: want delay, abort, partition, kill, bus-stall or bus-slow")
	default:
		bad("kind %q: want delay, abort, partition, kill, bus-stall or bus-slow", req.Kind)
	}
	if req.Percent < 0 || req.Percent > 100 {
		bad("percent %v: want more than 0 and at most 100", req.Percent)
	}
	switch {
	case req.Kind == FaultKill:
	case d <= 0:
		bad("duration: want more than 0 (e.g. \"10s\"): every fault ends")
	case now.Add(d).After(deadline):
		bad("duration %v: the fault would end at %s, after the experiment's deadline %s", d, now.Add(d).Format(time.RFC3339), deadline.Format(time.RFC3339))
	}
	return errors.Join(errs...)
}

// Inject validates and injects one fault of the running experiment.
// Nothing is injected when the request is refused.
func (c *Chaos) Inject(ctx context.Context, req FaultRequest) (*ActiveFault, error) {
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exp == nil || c.exp.ID != req.Experiment {
		return nil, &badRequest{fmt.Errorf("experiment %q: %w: start one first (POST /api/experiments); a fault belongs to the running experiment, whose lease removes it", req.Experiment, ErrNoExperiment)}
	}
	if err := c.validate(req, c.exp.Deadline, now); err != nil {
		return nil, &badRequest{err}
	}
	f := &ActiveFault{ID: newID("f"), FaultRequest: req, Started: now, Ends: now.Add(time.Duration(req.Duration))}
	if f.Name == "" {
		f.Name = describe(req)
	}
	switch req.Kind {
	case FaultDelay, FaultAbort, FaultPartition:
		c.faults = append(c.faults, f)
		if err := c.pushMeshLocked(ctx); err != nil {
			c.faults = c.faults[:len(c.faults)-1]
			_ = c.pushMeshLocked(ctx)
			return nil, fmt.Errorf("inject %s: %w", f.Name, err)
		}
	case FaultKill:
		killed, err := c.cfg.Kill(ctx, req.Service, req.All)
		if err != nil {
			return nil, fmt.Errorf("inject %s: %w", f.Name, err)
		}
		f.Killed, f.Ends = killed, now
		c.faults = append(c.faults, f)
	case FaultBusStall, FaultBusSlow:
		pid := c.cfg.BusPID()
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return nil, fmt.Errorf("inject %s: stop the bus (pid %d): %w", f.Name, pid, err)
		}
		bctx, cancel := context.WithCancel(context.Background())
		c.busOn[f.ID] = cancel
		if req.Kind == FaultBusSlow {
			go slowBus(bctx, pid, time.Duration(req.Delay))
		} else {
			go func() { <-bctx.Done(); _ = syscall.Kill(pid, syscall.SIGCONT) }()
		}
		c.faults = append(c.faults, f)
	}
	c.log.WarnContext(ctx, "chaos fault injected", "fault", f.ID, "name", f.Name, "until", f.Ends)
	return f, nil
}

// slowBus pauses the bus for pause of every second until ctx ends, then
// lets it run.
func slowBus(ctx context.Context, pid int, pause time.Duration) {
	defer func() { _ = syscall.Kill(pid, syscall.SIGCONT) }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		_ = syscall.Kill(pid, syscall.SIGCONT)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second - pause):
		}
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
}

func (c *Chaos) stopBusLocked(id string) {
	if cancel := c.busOn[id]; cancel != nil {
		cancel()
		delete(c.busOn, id)
	}
}

// pushMeshLocked gives the mesh the mesh faults in force.
func (c *Chaos) pushMeshLocked(ctx context.Context) error {
	if c.cfg.SetFaults == nil {
		return nil
	}
	var mf []mesh.Fault
	for _, f := range c.faults {
		if !isMeshFault(f.Kind) {
			continue
		}
		mf = append(mf, mesh.Fault{ID: f.ID, Kind: f.Kind, Source: f.Source, Destination: f.Destination,
			Delay: time.Duration(f.Delay), Jitter: time.Duration(f.Jitter), Percent: f.Percent, Status: f.Status, Until: f.Ends})
	}
	return c.cfg.SetFaults(ctx, mf)
}

// describe names a fault for people: "delay 500ms on * -> inventory-service".
func describe(r FaultRequest) string {
	src := r.Source
	if src == "" {
		src = "*"
	}
	switch r.Kind {
	case FaultDelay:
		return fmt.Sprintf("delay %v on %s -> %s", time.Duration(r.Delay), src, r.Destination)
	case FaultAbort:
		st := r.Status
		if st == 0 {
			st = http.StatusServiceUnavailable
		}
		return fmt.Sprintf("abort %d on %s -> %s", st, src, r.Destination)
	case FaultPartition:
		return fmt.Sprintf("partition %s / %s", r.Source, r.Destination)
	case FaultKill:
		if r.All {
			return "kill all of " + r.Service
		}
		return "kill one of " + r.Service
	}
	return r.Kind
}

func newID(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// Routes adds the chaos API to mux.
func (c *Chaos) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/experiments", func(w http.ResponseWriter, r *http.Request) {
		var req ExperimentRequest
		if err := decode(r, &req); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		e, err := c.Begin(r.Context(), req)
		if err != nil {
			writeError(w, chaosStatus(err), err)
			return
		}
		writeJSON(w, http.StatusCreated, map[string]any{"experiment": e})
	})
	mux.HandleFunc("POST /api/experiments/{id}/renew", func(w http.ResponseWriter, r *http.Request) {
		e, err := c.Renew(r.PathValue("id"))
		if err != nil {
			writeError(w, chaosStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"experiment": e})
	})
	mux.HandleFunc("DELETE /api/experiments/{id}", func(w http.ResponseWriter, r *http.Request) {
		removed, err := c.End(r.Context(), r.PathValue("id"))
		if err != nil {
			writeError(w, chaosStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"removed": removed})
	})
	mux.HandleFunc("POST /api/faults", func(w http.ResponseWriter, r *http.Request) {
		var req FaultRequest
		if err := decode(r, &req); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		f, err := c.Inject(r.Context(), req)
		if err != nil {
			writeError(w, chaosStatus(err), err)
			return
		}
		writeJSON(w, http.StatusCreated, map[string]any{"fault": f})
	})
	mux.HandleFunc("GET /api/faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, c.List())
	})
	mux.HandleFunc("DELETE /api/faults/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := c.Remove(r.Context(), r.PathValue("id")); err != nil {
			writeError(w, chaosStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"removed": r.PathValue("id")})
	})
	mux.HandleFunc("DELETE /api/faults", func(w http.ResponseWriter, r *http.Request) {
		removed, err := c.StopAll(r.Context())
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"removed": removed})
	})
}

func chaosStatus(err error) int {
	var br *badRequest
	switch {
	case errors.As(err, &br):
		return http.StatusBadRequest
	case errors.Is(err, deploy.ErrBusy):
		return http.StatusConflict
	case errors.Is(err, ErrNoExperiment), errors.Is(err, deploy.ErrNotFound):
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}
