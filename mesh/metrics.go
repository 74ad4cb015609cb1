package mesh

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/flotilla-ci/flotilla/canary"
)

// Latency bucket upper bounds, in seconds (Prometheus "le").
var bucketBounds = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

var bucketNanos = func() []int64 {
	out := make([]int64, len(bucketBounds))
	for i, b := range bucketBounds {
		out[i] = int64(b * 1e9)
	}
	return out
}()

const nBuckets = 14 // len(bucketBounds); index nBuckets is +Inf

func bucketOf(d time.Duration) int {
	n := int64(d)
	for i, b := range bucketNanos {
		if n <= b {
			return i
		}
	}
	return nBuckets
}

type counter struct{ n atomic.Uint64 }

func (c *counter) inc() { c.n.Add(1) }

// hist is a latency histogram (buckets not cumulative).
type hist struct {
	count   atomic.Uint64
	sum     atomic.Int64 // nanoseconds
	buckets [nBuckets + 1]atomic.Uint64
}

// sourceStats holds one source's histograms, per status class (1xx..5xx).
type sourceStats struct {
	source  string
	classes [5]hist
}

// Windowed counts for canary.Metrics: a ring of slotDur slots.
const (
	slotDur = 5 * time.Second
	nSlots  = 180 // 15 minutes
)

type slot struct {
	epoch   atomic.Int64 // slot number (unix time / slotDur); 0 when empty
	count   atomic.Uint64
	errors  atomic.Uint64
	buckets [nBuckets + 1]atomic.Uint64
}

// versionStats is everything measured about one subset (version) of a
// service. It outlives the subset, so a canary can be judged after it is
// gone.
type versionStats struct {
	service, version string

	sources atomic.Pointer[map[string]*sourceStats] // copy on write
	mu      sync.Mutex                              // guards source inserts and slot resets
	ring    [nSlots]slot
}

// registry holds every metric of a mesh (and its gateways).
type registry struct {
	mu         sync.Mutex
	versions   map[[2]string]*versionStats
	retry      map[string]*counter
	noRoute    map[string]*counter
	eject      map[[3]string]*counter
	deny       map[[3]string]*counter
	sourceSeen map[string]bool
	sourceFast sync.Map // the same, read without the lock
	extra      []extraWriter
}

// extraWriter writes metrics kept outside the registry: the mesh's state
// gauges, a gateway's counters (owner: removed by Gateway.Retire).
type extraWriter struct {
	owner *Gateway
	write func(*bufio.Writer)
}

func newRegistry() *registry {
	return &registry{
		versions:   map[[2]string]*versionStats{},
		retry:      map[string]*counter{},
		noRoute:    map[string]*counter{},
		eject:      map[[3]string]*counter{},
		deny:       map[[3]string]*counter{},
		sourceSeen: map[string]bool{},
	}
}

func (r *registry) version(service, version string) *versionStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := [2]string{service, version}
	v := r.versions[k]
	if v == nil {
		v = &versionStats{service: service, version: version}
		empty := map[string]*sourceStats{}
		v.sources.Store(&empty)
		r.versions[k] = v
	}
	return v
}

func (r *registry) lookupVersion(service, version string) *versionStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.versions[[2]string{service, version}]
}

func keyed[K comparable](r *registry, m map[K]*counter, k K) *counter {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := m[k]
	if c == nil {
		c = new(counter)
		m[k] = c
	}
	return c
}

func (r *registry) retries(service string) *counter    { return keyed(r, r.retry, service) }
func (r *registry) unroutable(service string) *counter { return keyed(r, r.noRoute, service) }
func (r *registry) ejections(service, version, ep string) *counter {
	return keyed(r, r.eject, [3]string{service, version, ep})
}
func (r *registry) denied(src, dst, mode string) *counter {
	return keyed(r, r.deny, [3]string{src, dst, mode})
}

// maxSources caps the distinct source labels taken from the caller header
// when there is no policy to name the callers; later ones are "other".
const maxSources = 64

func (r *registry) sourceLabel(caller string) string {
	if _, ok := r.sourceFast.Load(caller); ok {
		return caller
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sourceSeen[caller] {
		return caller
	}
	if len(r.sourceSeen) >= maxSources || len(caller) > 128 || !utf8.ValidString(caller) {
		return "other"
	}
	r.sourceSeen[caller] = true
	r.sourceFast.Store(caller, true)
	return caller
}

// record counts one finished request.
func (r *registry) record(v *versionStats, src string, status int, d time.Duration, now time.Time) {
	ss := (*v.sources.Load())[src]
	if ss == nil {
		ss = v.addSource(src)
	}
	class := status/100 - 1
	if class < 0 || class > 4 {
		class = 4
	}
	b := bucketOf(d)
	h := &ss.classes[class]
	h.count.Add(1)
	h.sum.Add(int64(d))
	h.buckets[b].Add(1)

	e := now.UnixNano() / int64(slotDur)
	sl := &v.ring[e%nSlots]
	if sl.epoch.Load() != e {
		v.mu.Lock()
		if sl.epoch.Load() != e {
			sl.count.Store(0)
			sl.errors.Store(0)
			for i := range sl.buckets {
				sl.buckets[i].Store(0)
			}
			sl.epoch.Store(e)
		}
		v.mu.Unlock()
	}
	sl.count.Add(1)
	if status >= 500 {
		sl.errors.Add(1)
	}
	sl.buckets[b].Add(1)
}

func (v *versionStats) addSource(src string) *sourceStats {
	v.mu.Lock()
	defer v.mu.Unlock()
	old := *v.sources.Load()
	if ss := old[src]; ss != nil {
		return ss
	}
	next := make(map[string]*sourceStats, len(old)+1)
	for k, s := range old {
		next[k] = s
	}
	ss := &sourceStats{source: src}
	next[src] = ss
	v.sources.Store(&next)
	return ss
}

// Stats implements canary.Metrics over the mesh's own measurements, at a
// resolution of 5 s and for windows of up to 15 minutes (longer ones are
// cut to that, as Window reports).
func (m *Mesh) Stats(ctx context.Context, service, version string, window time.Duration) (canary.Stats, error) {
	if window <= 0 {
		return canary.Stats{}, fmt.Errorf("stats %s@%s: window %v must be positive", service, version, window)
	}
	v := m.metrics.lookupVersion(service, version)
	if v == nil {
		return canary.Stats{}, fmt.Errorf("stats %s@%s: %w", service, version, canary.ErrNoData)
	}
	k := int64((window + slotDur - 1) / slotDur)
	if k > nSlots {
		k = nSlots
	}
	cur := m.cfg.Now().UnixNano() / int64(slotDur)
	var st canary.Stats
	var buckets [nBuckets + 1]uint64
	for e := cur - k + 1; e <= cur; e++ {
		sl := &v.ring[((e%nSlots)+nSlots)%nSlots]
		if sl.epoch.Load() != e {
			continue
		}
		st.Requests += int64(sl.count.Load())
		st.Errors += int64(sl.errors.Load())
		for i := range buckets {
			buckets[i] += sl.buckets[i].Load()
		}
	}
	st.Window = time.Duration(k) * slotDur
	if st.Requests == 0 {
		return canary.Stats{Window: st.Window}, fmt.Errorf("stats %s@%s over %v: %w", service, version, st.Window, canary.ErrNoData)
	}
	st.ErrorRate = float64(st.Errors) / float64(st.Requests)
	st.P50 = quantile(0.50, buckets[:])
	st.P90 = quantile(0.90, buckets[:])
	st.P99 = quantile(0.99, buckets[:])
	st.Latency = canary.Histogram{Bounds: make([]time.Duration, nBuckets), Counts: make([]int64, nBuckets+1)}
	for i, b := range bucketNanos {
		st.Latency.Bounds[i] = time.Duration(b)
	}
	for i, c := range buckets {
		st.Latency.Counts[i] = int64(c)
	}
	return st, nil
}

// quantile estimates the q-quantile from (non-cumulative) bucket counts
// by linear interpolation within the bucket, as histogram_quantile does;
// a quantile in the +Inf bucket is the highest finite bound.
func quantile(q float64, buckets []uint64) time.Duration {
	var total uint64
	for _, b := range buckets {
		total += b
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var cum uint64
	for i, b := range buckets {
		if b == 0 {
			continue
		}
		if float64(cum+b) >= rank {
			if i >= nBuckets {
				return time.Duration(bucketNanos[nBuckets-1])
			}
			lo := 0.0
			if i > 0 {
				lo = bucketBounds[i-1]
			}
			hi := bucketBounds[i]
			frac := (rank - float64(cum)) / float64(b)
			return time.Duration((lo + (hi-lo)*frac) * 1e9)
		}
		cum += b
	}
	return time.Duration(bucketNanos[nBuckets-1])
}

// MetricsHandler serves the mesh's metrics (and those of gateways built on
// it) in the Prometheus text exposition format.
func (m *Mesh) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		// A bufio.Writer keeps its first error and Flush returns it, so the
		// writers below ignore theirs; a failed write here means the scraper
		// has gone and there is no one left to tell.
		bw := bufio.NewWriterSize(w, 32<<10)
		m.metrics.write(bw)
		_ = bw.Flush()
	})
}

var classNames = [5]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// writeState writes gauges read from the routing tables at scrape time
// (nothing on the request path): weights, in-flight requests, endpoints.
func (m *Mesh) writeState(w *bufio.Writer) {
	type row struct {
		labels []string
		v      float64
	}
	var weights, inflight, endpoints []row
	for _, st := range m.Status() {
		for _, sub := range st.Subsets {
			weights = append(weights, row{[]string{"destination", st.Name, "version", sub.Name}, float64(sub.Weight)})
			var n int64
			healthy, ejected := 0, 0
			for _, e := range sub.Endpoints {
				n += e.InFlight
				if e.EjectedUntil.IsZero() {
					healthy++
				} else {
					ejected++
				}
			}
			inflight = append(inflight, row{[]string{"destination", st.Name, "version", sub.Name}, float64(n)})
			endpoints = append(endpoints,
				row{[]string{"destination", st.Name, "version", sub.Name, "state", "serving"}, float64(healthy)},
				row{[]string{"destination", st.Name, "version", sub.Name, "state", "ejected"}, float64(ejected)})
		}
	}
	buf := make([]byte, 0, 256)
	gauge := func(name, help string, rows []row) {
		_, _ = w.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " gauge\n")
		for _, r := range rows {
			buf = appendSample(buf[:0], name, r.labels, "", "", r.v)
			_, _ = w.Write(buf)
		}
	}
	gauge("flotilla_mesh_subset_weight", "The weight of each subset (version) of a service.", weights)
	gauge("flotilla_mesh_inflight_requests", "Requests in flight to each subset.", inflight)
	gauge("flotilla_mesh_endpoints", "Endpoints of each subset, serving or ejected by outlier detection.", endpoints)
}

func (r *registry) write(w *bufio.Writer) {
	r.mu.Lock()
	versions := make([]*versionStats, 0, len(r.versions))
	for _, v := range r.versions {
		versions = append(versions, v)
	}
	retry := sortedCounters(r.retry, func(k string) []string { return []string{"destination", k} })
	noRoute := sortedCounters(r.noRoute, func(k string) []string { return []string{"destination", k} })
	eject := sortedCounters(r.eject, func(k [3]string) []string {
		return []string{"destination", k[0], "version", k[1], "endpoint", k[2]}
	})
	deny := sortedCounters(r.deny, func(k [3]string) []string {
		return []string{"source", k[0], "destination", k[1], "mode", k[2]}
	})
	extra := append([]extraWriter{}, r.extra...)
	r.mu.Unlock()
	sort.Slice(versions, func(i, j int) bool {
		if versions[i].service != versions[j].service {
			return versions[i].service < versions[j].service
		}
		return versions[i].version < versions[j].version
	})

	type series struct {
		v  *versionStats
		ss *sourceStats
	}
	var all []series
	for _, v := range versions {
		srcs := *v.sources.Load()
		names := make([]string, 0, len(srcs))
		for n := range srcs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			all = append(all, series{v, srcs[n]})
		}
	}
	buf := make([]byte, 0, 256)
	labels := func(s series, class int) []string {
		return []string{"destination", s.v.service, "version", s.v.version, "source", s.ss.source, "status_class", classNames[class]}
	}
	_, _ = w.WriteString("# HELP flotilla_mesh_requests_total Requests the mesh proxied, by destination service, version (subset), source service and status class.\n# TYPE flotilla_mesh_requests_total counter\n")
	for _, s := range all {
		for c := range s.ss.classes {
			n := s.ss.classes[c].count.Load()
			if n == 0 {
				continue
			}
			buf = appendSample(buf[:0], "flotilla_mesh_requests_total", labels(s, c), "", "", float64(n))
			_, _ = w.Write(buf)
		}
	}
	_, _ = w.WriteString("# HELP flotilla_mesh_request_duration_seconds Time from the mesh receiving a request to the end of its response.\n# TYPE flotilla_mesh_request_duration_seconds histogram\n")
	for _, s := range all {
		for c := range s.ss.classes {
			h := &s.ss.classes[c]
			n := h.count.Load()
			if n == 0 {
				continue
			}
			ls := labels(s, c)
			var cum uint64
			for i := 0; i <= nBuckets; i++ {
				cum += h.buckets[i].Load()
				le := "+Inf"
				if i < nBuckets {
					le = strconv.FormatFloat(bucketBounds[i], 'g', -1, 64)
				}
				buf = appendSample(buf[:0], "flotilla_mesh_request_duration_seconds_bucket", ls, "le", le, float64(cum))
				_, _ = w.Write(buf)
			}
			buf = appendSample(buf[:0], "flotilla_mesh_request_duration_seconds_sum", ls, "", "", float64(h.sum.Load())/1e9)
			_, _ = w.Write(buf)
			// The count is the +Inf bucket, so the two always agree.
			buf = appendSample(buf[:0], "flotilla_mesh_request_duration_seconds_count", ls, "", "", float64(cum))
			_, _ = w.Write(buf)
		}
	}
	writeCounters(w, "flotilla_mesh_retries_total", "Retries the mesh made (another endpoint, after a connection failure or a retriable response).", retry)
	writeCounters(w, "flotilla_mesh_unroutable_total", "Requests refused with 503 because no subset could take them (none, or an unknown version pin).", noRoute)
	writeCounters(w, "flotilla_mesh_outlier_ejections_total", "Times an endpoint was ejected after consecutive failures.", eject)
	writeCounters(w, "flotilla_mesh_authz_denied_total", "Calls to a service the caller does not depend on (refused in enforce mode, let through in warn mode).", deny)
	for _, f := range extra {
		f.write(w)
	}
}

type labeledCounter struct {
	labels []string
	c      *counter
}

func sortedCounters[K comparable](m map[K]*counter, lbl func(K) []string) []labeledCounter {
	out := make([]labeledCounter, 0, len(m))
	for k, c := range m {
		out = append(out, labeledCounter{lbl(k), c})
	}
	sort.Slice(out, func(i, j int) bool {
		return strings.Join(out[i].labels, "\x00") < strings.Join(out[j].labels, "\x00")
	})
	return out
}

func writeCounters(w *bufio.Writer, name, help string, cs []labeledCounter) {
	_, _ = w.WriteString("# HELP " + name + " " + help + "\n# TYPE " + name + " counter\n")
	buf := make([]byte, 0, 256)
	for _, c := range cs {
		buf = appendSample(buf[:0], name, c.labels, "", "", float64(c.c.n.Load()))
		_, _ = w.Write(buf)
	}
}

// appendSample appends one exposition line; labels are name/value pairs.
func appendSample(b []byte, name string, labels []string, extraName, extraValue string, v float64) []byte {
	b = append(b, name...)
	if len(labels) > 0 || extraName != "" {
		b = append(b, '{')
		first := true
		add := func(k, val string) {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(b, k...)
			b = append(b, '=', '"')
			b = appendEscaped(b, val)
			b = append(b, '"')
		}
		for i := 0; i+1 < len(labels); i += 2 {
			add(labels[i], labels[i+1])
		}
		if extraName != "" {
			add(extraName, extraValue)
		}
		b = append(b, '}')
	}
	b = append(b, ' ')
	switch {
	case math.IsInf(v, 1):
		b = append(b, "+Inf"...)
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		b = strconv.AppendInt(b, int64(v), 10)
	default:
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
	}
	return append(b, '\n')
}

func appendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b = append(b, '\\', '\\')
		case '"':
			b = append(b, '\\', '"')
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return b
}
