package mesh

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// endpoint is one instance. It outlives routing tables: its in-flight
// count, outlier state and connection pool carry over when the table is
// rebuilt.
type endpoint struct {
	addr      string
	transport roundTripper

	inflight atomic.Int64
	closed   atomic.Bool // removed: take no new requests

	fails        atomic.Int32 // consecutive failures
	ejectedUntil atomic.Int64 // unix nanos; 0 when in service
	ejections    atomic.Int32 // times ejected in a row (multiplier)
	ejectedTotal *counter
}

func (e *endpoint) ejected(now int64) bool {
	u := e.ejectedUntil.Load()
	return u != 0 && now < u
}

// subset is an immutable view of a subset within one table; stats and
// endpoints are shared with the tables before and after it.
type subset struct {
	name       string
	nameHeader []string // {name}, for the response header
	canary     bool
	endpoints  []*endpoint
	stats      *versionStats
	rr         *atomic.Uint64 // shared across tables
}

// table is an immutable routing table, swapped atomically on every change.
type table struct {
	subsets  []*subset
	byName   map[string]*subset
	canary   *subset
	weights  []int    // parallel to subsets
	schedule []uint16 // smooth weighted round robin, one period
}

// pick chooses the subset for a request: a version pin, then the canary
// lane, then the weights. It returns nil when nothing can serve.
func (t *table) pick(h http.Header, rr *atomic.Uint64) (*subset, bool) {
	if v := h[VersionHeader]; len(v) > 0 {
		return t.byName[v[0]], true
	}
	if t.canary != nil {
		if v := h[CanaryHeader]; len(v) > 0 && strings.EqualFold(v[0], "true") {
			return t.canary, false
		}
	}
	if len(t.schedule) == 0 {
		return nil, false
	}
	i := rr.Add(1) - 1
	return t.subsets[t.schedule[i%uint64(len(t.schedule))]], false
}

// maxWeightTotal bounds the schedule's length.
const maxWeightTotal = 10000

// buildSchedule returns one period of nginx's smooth weighted round robin
// over the weights (reduced by their gcd): over any whole period each
// index appears exactly weight times, spread evenly.
func buildSchedule(weights []int) []uint16 {
	g := 0
	for _, w := range weights {
		g = gcd(g, w)
	}
	if g == 0 {
		return nil
	}
	total := 0
	for _, w := range weights {
		total += w / g
	}
	cur := make([]int, len(weights))
	out := make([]uint16, 0, total)
	for range total {
		best := -1
		for i, w := range weights {
			cur[i] += w / g
			if w > 0 && (best < 0 || cur[i] > cur[best]) {
				best = i
			}
		}
		cur[best] -= total
		out = append(out, uint16(best))
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func newTable(subs []*subset, weights []int) *table {
	t := &table{subsets: subs, weights: weights, byName: make(map[string]*subset, len(subs))}
	for _, s := range subs {
		t.byName[s.name] = s
		if s.canary {
			t.canary = s
		}
	}
	t.schedule = buildSchedule(weights)
	return t
}

// roundTripper is an endpoint's connection pool.
type roundTripper interface {
	http.RoundTripper
	CloseIdleConnections()
}

func (s *service) newEndpoint(addr string) *endpoint {
	std := s.m.newTransport(s.name)
	if s.m.cfg.StdTransport {
		return &endpoint{addr: addr, transport: std}
	}
	lt := newLeanTransport(addr, s.m.cfg.MaxIdleConnsPerEndpoint, std)
	if s.m.tls != nil {
		lt.tls = s.m.tls.dialer(s.name)
	}
	return &endpoint{addr: addr, transport: lt}
}

// The dialer's settings towards instances.
const (
	dialTimeout = 2 * time.Second
	keepAlive   = 30 * time.Second
)

func (m *Mesh) newTransport(service string) *http.Transport {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: keepAlive}
	dial := d.DialContext
	if m.tls != nil {
		dial = m.tls.dialer(service).DialContext
	}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           dial,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   m.cfg.MaxIdleConnsPerEndpoint,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
		WriteBufferSize:       16 << 10,
		ReadBufferSize:        16 << 10,
	}
}

// setSubset adds or replaces a subset and returns the endpoints it
// dropped (already closed to new requests).
func (s *service) setSubset(in Subset) []*endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setSubsetLocked(in)
}

func (s *service) setSubsetLocked(in Subset) []*endpoint {
	old := s.table.Load()
	prev := old.byName[in.Name]
	keep := map[string]*endpoint{}
	if prev != nil {
		for _, e := range prev.endpoints {
			keep[e.addr] = e
		}
	}
	ns := &subset{name: in.Name, nameHeader: []string{in.Name}, canary: in.Canary}
	if prev != nil {
		ns.stats, ns.rr = prev.stats, prev.rr
	} else {
		ns.stats = s.m.metrics.version(s.name, in.Name)
		ns.rr = new(atomic.Uint64)
	}
	for _, a := range in.Endpoints {
		e := keep[a]
		if e == nil {
			e = s.newEndpoint(a)
			e.ejectedTotal = s.m.metrics.ejections(s.name, in.Name, a)
		}
		delete(keep, a)
		ns.endpoints = append(ns.endpoints, e)
	}
	subs := make([]*subset, 0, len(old.subsets)+1)
	weights := make([]int, 0, len(old.subsets)+1)
	replaced := false
	for i, o := range old.subsets {
		if o.name == in.Name {
			subs = append(subs, ns)
			replaced = true
		} else {
			c := *o
			if in.Canary {
				c.canary = false
			}
			subs = append(subs, &c)
		}
		weights = append(weights, old.weights[i])
	}
	if !replaced {
		w := 0
		if len(old.subsets) == 0 {
			w = 100
		}
		subs = append(subs, ns)
		weights = append(weights, w)
	}
	var dropped []*endpoint
	for _, e := range keep {
		e.closed.Store(true)
		dropped = append(dropped, e)
	}
	s.table.Store(newTable(subs, weights))
	return dropped
}

func (s *service) removeSubset(name string) ([]*endpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.table.Load()
	target := old.byName[name]
	if target == nil {
		return nil, fmt.Errorf("subset %s: %w", name, ErrUnknownSubset)
	}
	var subs []*subset
	var weights []int
	rest, mine := 0, 0
	for i, o := range old.subsets {
		if o.name == name {
			mine = old.weights[i]
			continue
		}
		subs = append(subs, o)
		weights = append(weights, old.weights[i])
		rest += old.weights[i]
	}
	if mine > 0 && rest == 0 && len(subs) > 0 {
		return nil, fmt.Errorf("subset %s carries all the traffic (weight %d) and the others none: shift the weights first", name, mine)
	}
	for _, e := range target.endpoints {
		e.closed.Store(true)
	}
	s.table.Store(newTable(subs, weights))
	return target.endpoints, nil
}

func (s *service) setWeights(in map[string]int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.table.Load()
	var errs []error
	names := make([]string, 0, len(in))
	for n := range in {
		names = append(names, n)
	}
	sort.Strings(names)
	total := 0
	for _, n := range names {
		w := in[n]
		if old.byName[n] == nil {
			errs = append(errs, fmt.Errorf("subset %s: %w", n, ErrUnknownSubset))
		}
		if w < 0 {
			errs = append(errs, fmt.Errorf("subset %s: weight %d is negative", n, w))
		}
		total += w
	}
	if total <= 0 && len(errs) == 0 {
		errs = append(errs, errors.New("every weight is 0: at least one subset must carry traffic"))
	}
	if total > maxWeightTotal {
		errs = append(errs, fmt.Errorf("weights add up to %d: at most %d", total, maxWeightTotal))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	weights := make([]int, len(old.subsets))
	for i, sub := range old.subsets {
		weights[i] = in[sub.name]
	}
	s.table.Store(newTable(old.subsets, weights))
	return nil
}

// routeRule is a compiled Route.
type routeRule struct {
	prefix  string
	timeout time.Duration
	retries int // -1: the mesh's
}

func buildRoutes(in []Route) ([]routeRule, error) {
	var out []routeRule
	seen := map[string]bool{}
	var errs []error
	for _, r := range in {
		p := strings.TrimSuffix(r.PathPrefix, "/")
		if !strings.HasPrefix(r.PathPrefix, "/") {
			errs = append(errs, fmt.Errorf("route %q: path prefix must start with /", r.PathPrefix))
			continue
		}
		if seen[p] {
			errs = append(errs, fmt.Errorf("route %q: declared twice", r.PathPrefix))
			continue
		}
		seen[p] = true
		if r.Timeout < 0 {
			errs = append(errs, fmt.Errorf("route %q: timeout must not be negative", r.PathPrefix))
		}
		rr := routeRule{prefix: p, timeout: r.Timeout, retries: -1}
		if r.Retries != nil {
			if *r.Retries < 0 {
				errs = append(errs, fmt.Errorf("route %q: retries must not be negative", r.PathPrefix))
			}
			rr.retries = *r.Retries
		}
		out = append(out, rr)
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].prefix) > len(out[j].prefix) })
	return out, errors.Join(errs...)
}

// matchPrefix reports whether path is prefix or below it, at a segment
// boundary. The empty prefix (from "/") matches everything.
func matchPrefix(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || prefix == "" || path[len(prefix)] == '/'
}
