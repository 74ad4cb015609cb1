package store

import (
	"container/list"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// ErrNotFound is a trace the store does not have (never received, or
// evicted).
var ErrNotFound = errors.New("trace not found")

// Config bounds a Store.
type Config struct {
	// MaxSpans and MaxBytes bound the spans kept (MaxBytes by the spans'
	// estimated size, see SpanSize): past either, the oldest traces are
	// evicted whole.
	MaxSpans int
	MaxBytes int64
	// Limits bound each span.
	Limits Limits
}

// DefaultConfig keeps up to 100,000 spans or 128 MiB: the last few
// thousand checkouts of the shop.
func DefaultConfig() Config {
	return Config{MaxSpans: 100_000, MaxBytes: 128 << 20, Limits: DefaultLimits()}
}

// Validate reports every invalid field at once.
func (c Config) Validate() error {
	var errs []error
	if c.MaxSpans <= 0 {
		errs = append(errs, errors.New("trace store: max spans must be positive"))
	}
	if c.MaxBytes <= 0 {
		errs = append(errs, errors.New("trace store: max bytes must be positive"))
	}
	if c.Limits.MaxAttributes < 0 || c.Limits.MaxEvents < 0 || c.Limits.MaxLinks < 0 || c.Limits.MaxValueLen < 0 {
		errs = append(errs, errors.New("trace store: span limits must not be negative"))
	}
	return errors.Join(errs...)
}

// Store keeps recent traces in memory, bounded by span count and size,
// evicting the oldest traces first (as .NET Aspire's dashboard does for
// local development). It is safe for concurrent use.
type Store struct {
	cfg Config

	mu     sync.RWMutex
	traces map[string]*trace
	order  *list.List // of *trace, oldest received first
	spans  int
	bytes  int64
	// linkedBy: a trace's id to the traces with spans linking into it.
	linkedBy map[string]map[string]struct{}
	stats    Stats
}

// Stats are the store's counters.
type Stats struct {
	Traces  int   `json:"traces"`
	Spans   int   `json:"spans"`
	Bytes   int64 `json:"bytes"`
	Evicted int64 `json:"evicted_traces"`
	// Dropped counts the spans refused because a single trace is larger
	// than the store, and duplicates.
	Dropped int64 `json:"dropped_spans"`
}

type trace struct {
	id    string
	spans []Span
	bytes int64
	elem  *list.Element
	links map[string]struct{} // trace ids its spans link to
}

// New returns an empty store.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Store{cfg: cfg, traces: map[string]*trace{}, order: list.New(), linkedBy: map[string]map[string]struct{}{}}, nil
}

// Limits are the per-span limits of the store's configuration.
func (s *Store) Limits() Limits { return s.cfg.Limits }

// SpanSize estimates the memory a span takes in the store.
func SpanSize(sp *Span) int64 {
	n := int64(unsafe.Sizeof(Span{}))
	n += int64(len(sp.TraceID) + len(sp.SpanID) + len(sp.ParentSpanID) + len(sp.StatusMessage))
	n += attrsSize(sp.Attributes)
	for _, e := range sp.Events {
		n += int64(unsafe.Sizeof(Event{})) + attrsSize(e.Attributes)
	}
	for _, l := range sp.Links {
		n += int64(unsafe.Sizeof(Link{})+32+16) + attrsSize(l.Attributes)
	}
	return n
}

func attrsSize(a Attrs) int64 {
	n := int64(len(a)) * int64(unsafe.Sizeof(Attr{}))
	for _, kv := range a {
		n += int64(len(kv.Value)) // keys are interned
	}
	return n
}

// Add stores spans (of any traces), evicting the oldest traces past the
// bounds. A span already stored (same trace and span id) is ignored.
func (s *Store) Add(spans []Span) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range spans {
		sp := spans[i]
		t := s.traces[sp.TraceID]
		if t == nil {
			t = &trace{id: sp.TraceID}
			t.elem = s.order.PushBack(t)
			s.traces[sp.TraceID] = t
		} else if slices.ContainsFunc(t.spans, func(x Span) bool { return x.SpanID == sp.SpanID }) {
			s.stats.Dropped++
			continue
		}
		size := SpanSize(&sp)
		if t.bytes+size > s.cfg.MaxBytes || len(t.spans)+1 > s.cfg.MaxSpans {
			s.stats.Dropped++
			continue
		}
		t.spans = append(t.spans, sp)
		t.bytes += size
		s.spans++
		s.bytes += size
		for _, l := range sp.Links {
			if l.TraceID == sp.TraceID {
				continue
			}
			if t.links == nil {
				t.links = map[string]struct{}{}
			}
			t.links[l.TraceID] = struct{}{}
			by := s.linkedBy[l.TraceID]
			if by == nil {
				by = map[string]struct{}{}
				s.linkedBy[l.TraceID] = by
			}
			by[sp.TraceID] = struct{}{}
		}
		s.evict(t)
	}
}

// evict drops the oldest traces, other than keep, until within bounds.
func (s *Store) evict(keep *trace) {
	for s.spans > s.cfg.MaxSpans || s.bytes > s.cfg.MaxBytes {
		e := s.order.Front()
		if e == nil {
			return
		}
		t := e.Value.(*trace)
		if t == keep {
			if e.Next() == nil {
				return
			}
			t = e.Next().Value.(*trace)
		}
		s.remove(t)
		s.stats.Evicted++
	}
}

func (s *Store) remove(t *trace) {
	s.order.Remove(t.elem)
	delete(s.traces, t.id)
	s.spans -= len(t.spans)
	s.bytes -= t.bytes
	for id := range t.links {
		if by := s.linkedBy[id]; by != nil {
			delete(by, t.id)
			if len(by) == 0 {
				delete(s.linkedBy, id)
			}
		}
	}
	// linkedBy[t.id] stays while traces link to it: they may still be
	// shown with a trace of that id received again.
}

// Stats returns the store's counters now.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.stats
	st.Traces, st.Spans, st.Bytes = len(s.traces), s.spans, s.bytes
	return st
}

// Get returns a trace with the traces linked to it (a consumer's trace
// that links to a producer in this one), spans in start order. An id the
// store does not have is ErrNotFound.
func (s *Store) Get(id string) (*Trace, error) {
	id = strings.ToLower(strings.TrimSpace(id))
	if !validTraceID(id) {
		return nil, fmt.Errorf("trace id %q: want 32 hex digits", id)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.traces[id]
	if t == nil {
		return nil, fmt.Errorf("trace %s: %w (the store keeps the most recent %d spans; older traces are evicted)", id, ErrNotFound, s.cfg.MaxSpans)
	}
	out := &Trace{TraceID: id}
	seen := map[string]bool{}
	var add func(t *trace)
	add = func(t *trace) {
		if seen[t.id] || len(seen) >= 64 {
			return
		}
		seen[t.id] = true
		out.Spans = append(out.Spans, t.spans...)
		for by := range s.linkedBy[t.id] {
			if lt := s.traces[by]; lt != nil {
				add(lt)
			}
		}
	}
	add(t)
	SortSpans(out.Spans)
	return out, nil
}

func validTraceID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range id {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// SortSpans sorts spans by start, then span id.
func SortSpans(spans []Span) {
	sort.SliceStable(spans, func(i, j int) bool {
		if !spans[i].Start.Equal(spans[j].Start) {
			return spans[i].Start.Before(spans[j].Start)
		}
		return spans[i].SpanID < spans[j].SpanID
	})
}

// Query selects traces. Service and Version match one span (a span of
// Service at Version); Errors keeps traces with an error span; MinDuration
// compares with the root span's duration; Since with the trace's start.
type Query struct {
	Service     string        `json:"service,omitempty"`
	Version     string        `json:"version,omitempty"`
	MinDuration time.Duration `json:"min_duration,omitempty"`
	Errors      bool          `json:"errors,omitempty"`
	Since       time.Time     `json:"since,omitzero"`
	// Limit bounds the traces listed, newest first (DefaultLimit when 0).
	Limit int `json:"limit,omitempty"`
}

// DefaultLimit is how many traces a query lists by default.
const DefaultLimit = 20

// ParseQuery reads a Query from URL parameters: service, version,
// min_duration (a Go duration), errors (true/false), since (RFC 3339, or a
// duration back from now), limit. Each bad parameter is named.
func ParseQuery(v url.Values, now time.Time) (Query, error) {
	q := Query{Service: v.Get("service"), Version: v.Get("version")}
	var errs []error
	if s := v.Get("min_duration"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("min_duration %q: want a duration such as 250ms or 1.5s", s))
		}
		q.MinDuration = d
	}
	if s := v.Get("errors"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("errors %q: want true or false", s))
		}
		q.Errors = b
	}
	if s := v.Get("since"); s != "" {
		t, err := ParseSince(s, now)
		if err != nil {
			errs = append(errs, err)
		}
		q.Since = t
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("limit %q: want a number of traces", s))
		}
		q.Limit = n
	}
	return q, errors.Join(errs...)
}

// Values is the query as URL parameters (ParseQuery's).
func (q Query) Values() url.Values {
	v := url.Values{}
	if q.Service != "" {
		v.Set("service", q.Service)
	}
	if q.Version != "" {
		v.Set("version", q.Version)
	}
	if q.MinDuration > 0 {
		v.Set("min_duration", q.MinDuration.String())
	}
	if q.Errors {
		v.Set("errors", "true")
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// ParseSince reads a time as RFC 3339, or as a duration back from now
// ("15m": the last fifteen minutes).
func ParseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("since %q: want a time (RFC 3339, 2026-01-02T15:04:05Z) or a duration back from now (15m)", s)
}

// List returns the summaries of the traces that match q, newest first.
func (s *Store) List(q Query) []Summary {
	limit := q.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Summary
	for e := s.order.Back(); e != nil; e = e.Prev() {
		t := e.Value.(*trace)
		if sum, ok := Summarize(t.id, t.spans, q); ok {
			out = append(out, sum)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.After(out[j].Start) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// Summarize summarizes one trace's spans, and reports whether it matches q.
func Summarize(id string, spans []Span, q Query) (Summary, bool) {
	if len(spans) == 0 {
		return Summary{}, false
	}
	sum := Summary{TraceID: id, Spans: len(spans)}
	match := q.Service == "" && q.Version == ""
	services, versions := map[string]bool{}, map[string]bool{}
	ids := make(map[string]bool, len(spans))
	for i := range spans {
		ids[spans[i].SpanID] = true
	}
	var root *Span
	var first, last time.Time
	for i := range spans {
		sp := &spans[i]
		if (q.Service == "" || sp.Service == q.Service) && (q.Version == "" || sp.Version == q.Version) {
			match = true
		}
		if sp.Error() {
			sum.Errors++
		}
		services[sp.Service] = true
		if sp.Version != "" {
			versions[sp.Service+"@"+sp.Version] = true
		}
		if first.IsZero() || sp.Start.Before(first) {
			first = sp.Start
		}
		if sp.End.After(last) {
			last = sp.End
		}
		if sp.ParentSpanID == "" || !ids[sp.ParentSpanID] {
			// The true root has no parent; a span whose parent has not
			// arrived stands in for it, the earliest first.
			if root == nil || betterRoot(sp, root) {
				root = sp
			}
		}
	}
	if root == nil {
		root = &spans[0]
	}
	sum.Service, sum.Name, sum.Start = root.Service, root.Name, first
	sum.Duration, sum.Extent = root.Duration(), last.Sub(first)
	for k := range services {
		sum.Services = append(sum.Services, k)
	}
	for k := range versions {
		sum.Versions = append(sum.Versions, k)
	}
	sort.Strings(sum.Services)
	sort.Strings(sum.Versions)
	switch {
	case !match,
		q.Errors && sum.Errors == 0,
		q.MinDuration > 0 && sum.Duration < q.MinDuration,
		!q.Since.IsZero() && first.Before(q.Since):
		return sum, false
	}
	return sum, true
}

// betterRoot: a span without a parent is a better root than one whose
// parent is missing; between equals, the earlier.
func betterRoot(a, b *Span) bool {
	if ar, br := a.ParentSpanID == "", b.ParentSpanID == ""; ar != br {
		return ar
	}
	return a.Start.Before(b.Start)
}
