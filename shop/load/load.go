// Package load is the shop's load generator (flotilla load): weighted user
// flows (browse, search, add to cart, check out, track an order) against
// the edge gateway or the services' own URLs, in a closed loop (N virtual
// users, each starting its next flow when the last ended) or an open loop
// (a fixed rate of requests per second whatever the answers take, so a
// slow shop shows as latency instead of hiding it: coordinated omission
// avoided), for a duration and/or a request count, with a progress line
// and a summary: requests offered and achieved per second, errors by
// status, p50/p90/p99/max latency, orders placed.
//
// It is built on vegeta (github.com/tsenart/vegeta/v12): vegeta's Metrics
// (t-digest quantiles) summarises every request as a vegeta Result.
// vegeta's Attacker is not used because it fires independent single
// requests, while a shop flow is a sequence whose next request depends on
// the last answer (the order id to track, the cart to check out); nor is
// its ConstantPacer, because how many requests a flow sends is only known
// once it ran. The open loop's schedule is a request budget instead: the
// next flow is due when the requests of the flows already started (what
// the finished ones sent, the mix's average for the rest) are all paid
// for at the request rate. It never waits for an answer; the first
// request of a flow is timed from the moment the schedule meant it to
// start, not from when it could be sent, as vegeta's attacker does.
package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Summary is what a run did.
type Summary struct {
	Mode           string         `json:"mode"`
	Elapsed        time.Duration  `json:"elapsed"`
	Requests       uint64         `json:"requests"`
	Rate           float64        `json:"rate"`              // requests per second achieved
	Offered        float64        `json:"offered,omitempty"` // open loop: requests per second offered (the request rate, or the flow rate times RequestsPerFlow)
	FlowRate       float64        `json:"flowRate"`          // flows started per second
	PerFlow        float64        `json:"requestsPerFlow"`   // requests a flow sent on average (flows that finished before the end)
	Errors         int            `json:"errors"`
	ErrorsByStatus map[string]int `json:"errorsByStatus"` // "0" is a transport failure or timeout
	// Timeouts are the errors that are slowness, not a wrong answer: the
	// request outlasted --timeout, or the service answered 504 (a call it
	// made to another service timed out). A request that timed out may
	// still have taken effect (an order placed after the client gave up).
	Timeouts     int            `json:"timeouts"`
	StatusCodes  map[string]int `json:"statusCodes"`
	P50          time.Duration  `json:"p50"`
	P90          time.Duration  `json:"p90"`
	P99          time.Duration  `json:"p99"`
	Max          time.Duration  `json:"max"`
	Flows        map[string]int `json:"flows"` // flows started
	OrdersPlaced int            `json:"ordersPlaced"`
	Confirmed    int            `json:"ordersConfirmed"`
	Cancelled    int            `json:"ordersCancelled"`
	// CancelledBy are the cancelled orders by reason, the code before the
	// order's "code: message" reason (out_of_stock, payment_failed, ...):
	// business failures, which are no HTTP errors.
	CancelledBy map[string]int `json:"ordersCancelledBy"`
	Pending     int            `json:"ordersPending"` // accepted (202) but not settled when placed
	// Interrupted is set when the run's context was cancelled (Ctrl-C)
	// before it ended by itself; Setup says how far setup had come when
	// that happened before the load began.
	Interrupted bool           `json:"interrupted,omitempty"`
	Setup       string         `json:"setup,omitempty"`
	Skipped     int            `json:"skipped"` // open loop: flows not started (max_in_flight or every account busy)
	Samples     []string       `json:"errorSamples,omitempty"`
	Routes      []RouteSummary `json:"routes"` // by method and route, busiest first
}

// RouteSummary is one route's share of a run: where the slow hop is.
type RouteSummary struct {
	Route    string        `json:"route"` // "POST /orders"
	Requests uint64        `json:"requests"`
	Errors   int           `json:"errors"`
	Timeouts int           `json:"timeouts"` // of the errors (see Summary.Timeouts)
	P50      time.Duration `json:"p50"`
	P99      time.Duration `json:"p99"`
	Max      time.Duration `json:"max"`
}

// Write prints the summary as a short report.
func (s *Summary) Write(w io.Writer) {
	if s.Interrupted {
		if s.Setup != "" {
			fmt.Fprintf(w, "interrupted during setup (%s): no load was sent\n", s.Setup)
		} else {
			fmt.Fprintf(w, "interrupted after %s: the summary covers what was sent until then\n", s.Elapsed.Round(time.Millisecond))
		}
	}
	offered := ""
	if s.Offered > 0 {
		offered = fmt.Sprintf(" (offered %.1f/s)", s.Offered)
	}
	fmt.Fprintf(w, "mode %s, %s: %d requests, %.1f/s%s, %d errors\n", s.Mode, s.Elapsed.Round(time.Millisecond), s.Requests, s.Rate, offered, s.Errors)
	fmt.Fprintf(w, "latency p50 %s  p90 %s  p99 %s  max %s\n", ms(s.P50), ms(s.P90), ms(s.P99), ms(s.Max))
	fmt.Fprintf(w, "status %s\n", counts(s.StatusCodes))
	if s.Errors > 0 {
		fmt.Fprintf(w, "errors by status %s\n", counts(s.ErrorsByStatus))
		if s.Timeouts > 0 {
			fmt.Fprintf(w, "  %d of them timeouts (--timeout passed, or a 504: a service's call to another timed out)\n", s.Timeouts)
		}
		for _, e := range s.Samples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	fmt.Fprintf(w, "flows %s (%.1f/s, %.2f requests each)\n", counts(s.Flows), s.FlowRate, s.PerFlow)
	for _, r := range s.Routes {
		fmt.Fprintf(w, "  %-30s %7d requests %5d errors  p50 %9s  p99 %9s  max %9s\n", r.Route, r.Requests, r.Errors, ms(r.P50), ms(r.P99), ms(r.Max))
	}
	pending := ""
	if s.Pending > 0 {
		pending = fmt.Sprintf(", pending %d", s.Pending)
	}
	fmt.Fprintf(w, "orders placed %d (confirmed %d, cancelled %d%s)\n", s.OrdersPlaced, s.Confirmed, s.Cancelled, pending)
	if s.Cancelled > 0 {
		fmt.Fprintf(w, "business failures: %d orders cancelled, by reason %s\n", s.Cancelled, counts(s.CancelledBy))
	}
	if s.Skipped > 0 {
		fmt.Fprintf(w, "skipped %d flows: the open loop had max_in_flight flows running or every account busy\n", s.Skipped)
	}
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + "ms" }

func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// account is a customer the run registered.
type account struct {
	email, token string
	orders       []string // confirmed orders, for the track flow
}

type product struct {
	SKU  string `json:"sku"`
	Name string `json:"name"`
}

// runner is one run.
type runner struct {
	cfg    Config
	client *http.Client
	// setup sends the run's setup requests (the catalog, registering
	// accounts), which are not measured: their limit is setupTimeout, so
	// a shop slow to hash passwords on a busy machine still gets its run.
	setup *http.Client

	catalog []product
	words   []string

	budget      atomic.Int64 // requests left; math.MaxInt64 without a count
	stop        context.CancelFunc
	interrupted atomic.Bool // the caller's context ended the run, not its duration or count

	mu       sync.Mutex
	metrics  vegeta.Metrics
	routes   map[string]*routeStats
	sum      Summary
	finished int // flows that ended before the run did
	sent     int // the requests they sent
}

type routeStats struct {
	m        vegeta.Metrics
	errors   int
	timeouts int
}

// Run runs the load described by c, writing a progress line to progress
// (nil for none) every second, and returns the summary. Setup failures
// (the catalog cannot be read, accounts cannot be registered) are errors;
// failed requests during the run are counted in the summary.
func Run(ctx context.Context, c Config, progress io.Writer) (*Summary, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	tr := &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 90 * time.Second}
	r := &runner{cfg: c, client: &http.Client{Timeout: time.Duration(c.Timeout), Transport: tr},
		setup: &http.Client{Timeout: max(time.Duration(c.Timeout), setupTimeout), Transport: tr}}
	defer tr.CloseIdleConnections()
	r.sum = Summary{Mode: c.Mode, ErrorsByStatus: map[string]int{}, Flows: map[string]int{}, CancelledBy: map[string]int{}}
	r.routes = map[string]*routeStats{}
	if c.Requests > 0 {
		r.budget.Store(int64(c.Requests))
	} else {
		r.budget.Store(1 << 62)
	}
	// Interrupted during setup, the run has nothing but how far it came:
	// that is its summary, not an error.
	setupStart := time.Now()
	if err := r.loadCatalog(ctx); err != nil {
		if ctx.Err() != nil {
			return r.summary(setupStart, "reading the catalog"), nil
		}
		return nil, err
	}
	accounts, err := r.register(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return r.summary(setupStart, fmt.Sprintf("catalog of %d products read, registering accounts", len(r.catalog))), nil
		}
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	if c.Duration > 0 {
		runCtx, cancel = context.WithTimeout(ctx, time.Duration(c.Duration))
	}
	defer cancel()
	r.stop = cancel
	start := time.Now()
	done := make(chan struct{})
	var pw sync.WaitGroup
	if progress != nil {
		pw.Add(1)
		go func() {
			defer pw.Done()
			r.progress(progress, start, done)
		}()
	}
	// Cancelling the caller's context (Ctrl-C) ends the run like its
	// duration does, and the summary says it was cut short.
	stopWatch := context.AfterFunc(ctx, func() { r.interrupted.Store(true) })
	defer stopWatch()
	if c.Mode == Closed {
		r.closed(runCtx, accounts)
	} else {
		r.open(runCtx, accounts)
	}
	if ctx.Err() != nil {
		// The run ended because the caller's context did; AfterFunc's
		// own goroutine may not have run yet.
		r.interrupted.Store(true)
	}
	close(done)
	pw.Wait()
	return r.summary(start, ""), nil
}

// summary is the run's summary from start; setup says how far setup had
// come when the run was interrupted before the load began ("" once it
// began).
func (r *runner) summary(start time.Time, setup string) *Summary {
	c := r.cfg
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metrics.Close()
	s := r.sum
	s.Elapsed = time.Since(start)
	s.Setup = setup
	s.Interrupted = setup != "" || r.interrupted.Load()
	s.Requests = r.metrics.Requests
	if secs := s.Elapsed.Seconds(); secs > 0 {
		s.Rate = float64(s.Requests) / secs
	}
	flows := 0
	for _, n := range s.Flows {
		flows += n
	}
	if secs := s.Elapsed.Seconds(); secs > 0 {
		s.FlowRate = float64(flows) / secs
	}
	s.PerFlow = r.perFlow(false)
	if c.Mode == Open {
		s.Offered = r.offered()
	}
	s.StatusCodes = r.metrics.StatusCodes
	s.P50, s.P90, s.P99, s.Max = r.metrics.Latencies.P50, r.metrics.Latencies.P90, r.metrics.Latencies.P99, r.metrics.Latencies.Max
	for name, rs := range r.routes {
		rs.m.Close()
		s.Routes = append(s.Routes, RouteSummary{Route: name, Requests: rs.m.Requests, Errors: rs.errors, Timeouts: rs.timeouts,
			P50: rs.m.Latencies.P50, P99: rs.m.Latencies.P99, Max: rs.m.Latencies.Max})
	}
	sort.Slice(s.Routes, func(i, j int) bool {
		a, b := s.Routes[i], s.Routes[j]
		return a.Requests > b.Requests || a.Requests == b.Requests && a.Route < b.Route
	})
	return &s
}

func (r *runner) progress(w io.Writer, start time.Time, done <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last uint64
	for {
		select {
		case <-done:
			fmt.Fprintln(w)
			return
		case <-t.C:
		}
		r.mu.Lock()
		n := r.metrics.Requests
		p99 := r.metrics.Latencies.Quantile(0.99)
		offered := ""
		if r.cfg.Mode == Open {
			offered = fmt.Sprintf(" of %.1f/s offered", r.offered())
		}
		line := fmt.Sprintf("\r%6s  %8d requests  %7.1f/s%s  %5d errors  p99 %9s  %6d orders (%d cancelled)",
			time.Since(start).Round(time.Second), n, float64(n-last), offered, r.sum.Errors, ms(p99), r.sum.OrdersPlaced, r.sum.Cancelled)
		r.mu.Unlock()
		last = n
		fmt.Fprint(w, line)
	}
}

// perFlow is the requests a flow sends on average: what the flows that
// finished sent, or the mix's expectation before any has (prior: the
// expectation weighs as much as a few finished flows, so the first ones
// do not swing the schedule). Callers hold r.mu.
func (r *runner) perFlow(prior bool) float64 {
	const weight = 20
	switch {
	case prior:
		return max(1, (float64(r.sent)+weight*r.cfg.RequestsPerFlow())/float64(r.finished+weight))
	case r.finished == 0:
		return r.cfg.RequestsPerFlow()
	default:
		return float64(r.sent) / float64(r.finished)
	}
}

// offered is the open loop's request rate: the one asked for, or the
// flow rate times the requests a flow sends. Callers hold r.mu.
func (r *runner) offered() float64 {
	if r.cfg.Rate > 0 {
		return r.cfg.Rate * r.perFlow(false)
	}
	return r.cfg.RequestRate
}

// ended records a flow that sent n requests, unless the run was over
// before it ended (it may have been cut short).
func (r *runner) ended(ctx context.Context, n int) {
	if ctx.Err() != nil {
		return
	}
	r.mu.Lock()
	r.finished++
	r.sent += n
	r.mu.Unlock()
}

// due is when, from the open loop's start, the flow after the first
// scheduled flows (skipped ones included) is due; prev is when the last
// one was. At a flow rate that is slot n of a constant pace. At a request
// rate every scheduled flow costs requests, what it sent once it finished
// and the average so far until then (a skipped flow is offered load that
// was not sent), and the next flow is due when they are all paid for at
// the rate: never before prev, so a start is never timed from a moment
// already past when it was scheduled.
func (r *runner) due(scheduled int, prev time.Duration) time.Duration {
	var secs float64
	if r.cfg.Rate > 0 {
		secs = float64(scheduled) / r.cfg.Rate
	} else {
		r.mu.Lock()
		paid := float64(r.sent) + float64(scheduled-r.finished)*r.perFlow(true)
		r.mu.Unlock()
		secs = paid / r.cfg.RequestRate
	}
	return max(prev, time.Duration(min(secs, float64(1<<62)/float64(time.Second))*float64(time.Second)))
}

// pick draws a flow by weight.
func (r *runner) pick(rng *rand.Rand) string {
	total := 0
	for _, n := range FlowNames {
		total += r.cfg.Flows[n]
	}
	x := rng.IntN(total)
	for _, n := range FlowNames {
		if x < r.cfg.Flows[n] {
			return n
		}
		x -= r.cfg.Flows[n]
	}
	return Browse
}

func needsAccount(flow string) bool { return slices.Contains(needs[flow], "user") }

func (r *runner) closed(ctx context.Context, accounts []*account) {
	var wg sync.WaitGroup
	for i := range r.cfg.Users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(i)))
			var acct *account
			if len(accounts) > 0 {
				acct = accounts[i%len(accounts)]
			}
			for ctx.Err() == nil && r.budget.Load() > 0 {
				r.flow(ctx, rng, r.pick(rng), acct, time.Time{})
				if r.cfg.Think > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(time.Duration(r.cfg.Think)):
					}
				}
			}
		}()
	}
	wg.Wait()
}

func (r *runner) open(ctx context.Context, accounts []*account) {
	idle := make(chan *account, len(accounts))
	for _, a := range accounts {
		idle <- a
	}
	rng := rand.New(rand.NewPCG(r.cfg.Seed, 1<<32))
	var wg sync.WaitGroup
	var inFlight atomic.Int64
	began := time.Now()
	var at time.Duration // when the next flow is due
	scheduled := 0
	for ctx.Err() == nil && r.budget.Load() > 0 {
		if wait := at - time.Since(began); wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			continue
		}
		// A flow started late is timed from its slot, not from when it
		// got out.
		intended := began.Add(at)
		scheduled++
		at = r.due(scheduled, at)
		flow := r.pick(rng)
		var acct *account
		if needsAccount(flow) {
			select {
			case acct = <-idle:
			default:
			}
		}
		if (needsAccount(flow) && acct == nil) || inFlight.Load() >= int64(r.cfg.MaxInFlight) {
			r.mu.Lock()
			r.sum.Skipped++
			r.mu.Unlock()
			if acct != nil {
				idle <- acct
			}
			continue
		}
		seed := rng.Uint64()
		inFlight.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer inFlight.Add(-1)
			r.flow(ctx, rand.New(rand.NewPCG(seed, 7)), flow, acct, intended)
			if acct != nil {
				idle <- acct
			}
		}()
	}
	wg.Wait()
}

// call is one request of a flow.
type call struct {
	method, url, route, token string
	body                      any
	headers                   map[string]string
	ok                        []int // answers that are not errors
}

// errBudget ends a flow when the request count is reached.
var errBudget = errors.New("request budget spent")

// flowRun is one flow as it runs: when it was meant to start (the open
// loop's schedule; zero in the closed loop) and the requests it sent.
type flowRun struct {
	intended time.Time
	requests int
}

// do sends c as part of fr, timed from fr's intended start when it is the
// flow's first request, records it, and returns the status and body.
func (r *runner) do(ctx context.Context, c call, fr *flowRun) (int, []byte, error) {
	if ctx.Err() != nil {
		return 0, nil, ctx.Err() // the run is over: a flow's next step is not sent
	}
	if r.budget.Add(-1) < 0 {
		r.stop()
		return 0, nil, errBudget
	}
	fr.requests++
	var body io.Reader
	if c.body != nil {
		b, _ := json.Marshal(c.body)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), c.method, c.url, body)
	if err != nil {
		return 0, nil, err
	}
	if c.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	start := time.Now()
	if !fr.intended.IsZero() {
		start, fr.intended = fr.intended, time.Time{}
	}
	res := vegeta.Result{Method: c.method, URL: c.route, Timestamp: start}
	var data []byte
	resp, err := r.client.Do(req)
	if err == nil {
		data, err = io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		_ = resp.Body.Close()
		res.Code = uint16(resp.StatusCode)
		res.BytesIn = uint64(len(data))
	}
	res.Latency = time.Since(start)
	ok := err == nil && slices.Contains(c.ok, int(res.Code))
	if err != nil {
		res.Error = err.Error()
	} else if !ok {
		res.Error = fmt.Sprintf("%s %s: %d %s", c.method, c.route, res.Code, strings.TrimSpace(string(data[:min(len(data), 200)])))
	}
	if r.cfg.Observe != nil {
		r.cfg.Observe(Observation{At: start, Route: c.method + " " + c.route, Status: int(res.Code), Latency: res.Latency, Failed: !ok})
	}
	r.mu.Lock()
	r.metrics.Add(&res)
	key := c.method + " " + c.route
	rs := r.routes[key]
	if rs == nil {
		rs = &routeStats{}
		r.routes[key] = rs
	}
	rs.m.Add(&res)
	if !ok {
		rs.errors++
		r.sum.Errors++
		r.sum.ErrorsByStatus[strconv.Itoa(int(res.Code))]++
		if timedOut(err, int(res.Code)) {
			rs.timeouts++
			r.sum.Timeouts++
		}
		if len(r.sum.Samples) < 10 {
			r.sum.Samples = append(r.sum.Samples, res.Error)
		}
	}
	r.mu.Unlock()
	if !ok {
		return int(res.Code), data, fmt.Errorf("%s", res.Error)
	}
	return int(res.Code), data, nil
}

// flow runs one flow; its errors are already counted, and the requests it
// sent too.
func (r *runner) flow(ctx context.Context, rng *rand.Rand, name string, a *account, intended time.Time) {
	r.mu.Lock()
	r.sum.Flows[name]++
	r.mu.Unlock()
	fr := &flowRun{intended: intended}
	defer func() { r.ended(ctx, fr.requests) }()
	product := r.cfg.Targets.URL("product")
	pickSKU := func() string { return r.catalog[rng.IntN(len(r.catalog))].SKU }
	switch name {
	case Browse:
		off := rng.IntN(max(len(r.catalog)-20, 1))
		sorts := []string{"price", "-price", "name", "created"}
		if _, _, err := r.do(ctx, call{method: "GET", url: fmt.Sprintf("%s/products?limit=20&offset=%d&sort=%s", product, off, sorts[rng.IntN(len(sorts))]),
			route: "/products", ok: []int{200}}, fr); err != nil {
			return
		}
		_, _, _ = r.do(ctx, call{method: "GET", url: product + "/products/" + pickSKU(), route: "/products/{sku}", ok: []int{200}}, fr)
	case Search:
		q := r.words[rng.IntN(len(r.words))]
		_, _, _ = r.do(ctx, call{method: "GET", url: r.cfg.Targets.URL("search") + "/search?q=" + q + "&limit=20", route: "/search", ok: []int{200}}, fr)
	case AddToCart:
		_, _, _ = r.do(ctx, call{method: "POST", url: r.cfg.Targets.URL("cart") + "/carts/me/items", route: "/carts/me/items", token: a.token,
			body: map[string]any{"sku": pickSKU(), "quantity": 1}, ok: []int{200}}, fr)
	case Checkout:
		r.checkout(ctx, rng, a, fr, pickSKU)
	case Track:
		order := r.cfg.Targets.URL("order")
		r.mu.Lock()
		var id string
		if len(a.orders) > 0 {
			id = a.orders[rng.IntN(len(a.orders))]
		}
		r.mu.Unlock()
		if id == "" {
			_, _, _ = r.do(ctx, call{method: "GET", url: order + "/orders?limit=5", route: "/orders", token: a.token, ok: []int{200}}, fr)
			return
		}
		if _, _, err := r.do(ctx, call{method: "GET", url: order + "/orders/" + id, route: "/orders/{id}", token: a.token, ok: []int{200}}, fr); err != nil {
			return
		}
		if ship := r.cfg.Targets.URL("shipping"); ship != "" {
			// 404: confirmed, but shipping has not created the shipment yet.
			_, _, _ = r.do(ctx, call{method: "GET", url: ship + "/orders/" + id + "/shipment", route: "/orders/{id}/shipment", token: a.token, ok: []int{200, 404}}, fr)
		}
	}
}

func (r *runner) checkout(ctx context.Context, rng *rand.Rand, a *account, fr *flowRun, pickSKU func() string) {
	cart := r.cfg.Targets.URL("cart")
	for range 1 + rng.IntN(cartItems) {
		if _, _, err := r.do(ctx, call{method: "POST", url: cart + "/carts/me/items", route: "/carts/me/items", token: a.token,
			body: map[string]any{"sku": pickSKU(), "quantity": 1}, ok: []int{200}}, fr); err != nil {
			return
		}
	}
	_, data, err := r.do(ctx, call{method: "POST", url: r.cfg.Targets.URL("order") + "/orders", route: "/orders", token: a.token,
		headers: map[string]string{"Idempotency-Key": fmt.Sprintf("load-%016x", rng.Uint64())}, ok: []int{201, 202}}, fr)
	if err != nil {
		return
	}
	var o struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(data, &o)
	r.mu.Lock()
	r.sum.OrdersPlaced++
	switch o.Status {
	case "CONFIRMED":
		r.sum.Confirmed++
		a.orders = append(a.orders, o.ID)
		if len(a.orders) > 50 {
			a.orders = a.orders[1:]
		}
	case "CANCELLED":
		r.sum.Cancelled++
		r.sum.CancelledBy[reasonCode(o.Reason)]++
	default:
		r.sum.Pending++
	}
	r.mu.Unlock()
	if o.Status == "CANCELLED" {
		// A cancelled order leaves the cart as it was: empty it for the next checkout.
		_, _, _ = r.do(ctx, call{method: "DELETE", url: cart + "/carts/me", route: "/carts/me", token: a.token, ok: []int{200, 204}}, fr)
	}
}

// reasonCode is the code of an order's "code: message" reason
// ("out_of_stock: SKU-1: 0 available" is out_of_stock), or "unknown".
func reasonCode(reason string) string {
	code, _, _ := strings.Cut(reason, ":")
	if code = strings.TrimSpace(code); code == "" || strings.ContainsAny(code, " \t\n") || len(code) > 64 {
		return "unknown"
	}
	return code
}

// loadCatalog reads the products the flows pick from.
func (r *runner) loadCatalog(ctx context.Context) error {
	base := r.cfg.Targets.URL("product")
	if base == "" {
		r.catalog, r.words = []product{{SKU: "none"}}, []string{"shop"}
		return nil
	}
	for off := 0; off < 1000; off += 100 {
		var page struct {
			Items []product `json:"items"`
		}
		if err := r.get(ctx, fmt.Sprintf("%s/products?limit=100&offset=%d", base, off), &page); err != nil {
			return fmt.Errorf("read the catalog: %w", err)
		}
		r.catalog = append(r.catalog, page.Items...)
		if len(page.Items) < 100 {
			break
		}
	}
	if len(r.catalog) == 0 {
		return fmt.Errorf("read the catalog: product-service at %s lists no products; seed it first", base)
	}
	seen := map[string]bool{}
	for _, p := range r.catalog {
		for _, w := range strings.Fields(strings.ToLower(p.Name)) {
			w = strings.Trim(w, ".,;:!?()\"'")
			if len(w) > 2 && !seen[w] && w == urlSafe(w) {
				seen[w] = true
				r.words = append(r.words, w)
			}
		}
	}
	if len(r.words) == 0 {
		r.words = []string{"shop"}
	}
	return nil
}

func urlSafe(s string) string {
	return strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' {
			return c
		}
		return -1
	}, s)
}

func (r *runner) get(ctx context.Context, url string, out any) error {
	return r.send(ctx, "GET", url, "", nil, out)
}

func (r *runner) send(ctx context.Context, method, url, token string, in, out any) error {
	var payload []byte
	if in != nil {
		payload, _ = json.Marshal(in)
	}
	// A busy user-service (its password hashing is bounded: 503) or the
	// gateway's rate limit (429) says when to come back: setup does, a few
	// times, rather than fail the run.
	for attempt := 1; ; attempt++ {
		var body io.Reader
		if in != nil {
			body = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(ctx, method, url, body)
		if err != nil {
			return err
		}
		if in != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := r.setup.Do(req)
		if err != nil {
			return err
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		_ = resp.Body.Close()
		if (resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests) && attempt < 10 {
			wait := time.Second
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 && s <= 10 {
				wait = time.Duration(s) * time.Second
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			continue
		}
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, strings.TrimSpace(string(data)))
		}
		if out != nil {
			return json.Unmarshal(data, out)
		}
		return nil
	}
}

// setupTimeout bounds each setup request, or --timeout when that is longer.
const setupTimeout = 2 * time.Minute

// register creates the run's customer accounts (with a delivery address)
// and logs them in, eight at a time.
func (r *runner) register(ctx context.Context) ([]*account, error) {
	need := false
	for name, w := range r.cfg.Flows {
		need = need || (w > 0 && needsAccount(name))
	}
	if !need {
		return nil, nil
	}
	n := r.cfg.Users
	if r.cfg.Mode == Open && n == 0 {
		// Each running flow holds an account: enough for two seconds of
		// flows, at least 50, at most 1000.
		n = max(50, min(int(r.cfg.FlowRate()*2), 1000))
	}
	users := r.cfg.Targets.URL("user")
	run := fmt.Sprintf("%08x", rand.Uint32())
	accounts := make([]*account, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			a := &account{email: fmt.Sprintf("load-%s-%d@load.test", run, i)}
			const pw = "load-password"
			if err := r.send(ctx, "POST", users+"/users", "", map[string]string{"email": a.email, "password": pw, "name": fmt.Sprintf("Load %d", i)}, nil); err != nil {
				errs[i] = err
				return
			}
			var login struct {
				Token string `json:"token"`
			}
			if err := r.send(ctx, "POST", users+"/login", "", map[string]string{"email": a.email, "password": pw}, &login); err != nil {
				errs[i] = err
				return
			}
			a.token = login.Token
			errs[i] = r.send(ctx, "POST", users+"/users/me/addresses", a.token, map[string]string{"line1": fmt.Sprintf("Teststr. %d", i+1), "city": "Berlin", "postalCode": "10115", "country": "DE"}, nil)
			accounts[i] = a
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("register %d load accounts: %w", n, err)
		}
	}
	return accounts, nil
}

// timedOut says whether a failed request was slowness rather than a wrong
// answer: the client's timeout or deadline passed, or the service answered
// 504 Gateway Timeout.
func timedOut(err error, status int) bool {
	if status == http.StatusGatewayTimeout {
		return true
	}
	var ne net.Error
	return err != nil && (errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()))
}
