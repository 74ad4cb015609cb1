// Package shop_test benchmarks placing orders through the shop's six
// order-path services (real HTTP between them on loopback, each with its
// own database, events through JetStream): the latency of placing an
// order at a fixed arrival rate, and the sustained maximum, on SQLite (with
// the embedded NATS server) and on PostgreSQL (with the NATS server).
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/shop
//	FLOTILLA_TEST_POSTGRES=postgres://... FLOTILLA_TEST_NATS=nats://... go test -run '^$' -bench . -benchtime 1x ./bench/shop
//
// Targets (issue 6, on a 2-core machine): at 100 orders/s, p99 of placing
// an order under 50 ms; at least 300 orders/s sustained on PostgreSQL
// without errors.
package shop_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/internal/sqldb"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/shoptest"
)

var (
	rate     = flag.Int("rate", 100, "orders/s of the fixed-rate phase")
	duration = flag.Duration("duration", 15*time.Second, "length of each phase")
	workers  = flag.Int("workers", 50, "concurrent users of the maximum-throughput phase")
	maxConns = flag.Int("db-max-conns", 0, "every service's database connection cap (DB_MAX_CONNS); 0 = the kit's default")
)

const skus = 100

func BenchmarkPlaceOrder(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { run(b, kittest.SQLiteEnv(b)) })
	b.Run("postgres", func(b *testing.B) { run(b, kittest.PostgresEnv(b)) })
}

var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

func post(url, token string, body any, headers ...string) (int, []byte, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest("POST", url, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

type result struct {
	mu        sync.Mutex
	latencies []time.Duration
	errors    int
	firstErrs []string
	statuses  map[string]int
}

func (r *result) add(d time.Duration, status string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.statuses == nil {
		r.statuses = map[string]int{}
	}
	if err != nil {
		r.errors++
		if len(r.firstErrs) < 3 {
			r.firstErrs = append(r.firstErrs, err.Error())
		}
		return
	}
	r.latencies = append(r.latencies, d)
	r.statuses[status]++
}

func (r *result) pct(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	sort.Slice(r.latencies, func(i, j int) bool { return r.latencies[i] < r.latencies[j] })
	return r.latencies[min(len(r.latencies)-1, int(p*float64(len(r.latencies))))]
}

// user is a customer whose cart holds one order at a time.
type user struct {
	token string
	n     int
	busy  atomic.Bool
}

func run(b *testing.B, env kittest.Env) {
	s := shoptest.Start(b, env, shoptest.Options{Products: skus, Configure: func(_ string, c *kit.Config) {
		c.LogLevel = 8 // errors only: request logging is not what is measured
		c.Logger = nil
		c.DBMaxConns = *maxConns
	}})
	s.Stock(b, skus, 1_000_000)
	users := make([]*user, *workers)
	for i := range users {
		users[i] = &user{token: s.Customer(b, fmt.Sprintf("bench%d@shop.test", i))}
	}
	placeOne := func(u *user, res *result) {
		u.n++
		sku := fmt.Sprintf("SKU-%04d", 1+(u.n*7+len(u.token))%skus)
		if st, body, err := post(s.Cart.URL()+"/carts/me/items", u.token, map[string]any{"sku": sku, "quantity": 1 + u.n%3}); err != nil || st != 200 {
			res.add(0, "", fmt.Errorf("cart: %d %s: %w", st, body, err))
			return
		}
		start := time.Now()
		st, body, err := post(s.Order.URL()+"/orders", u.token, nil, "Idempotency-Key", fmt.Sprintf("%p-%d", u, u.n))
		d := time.Since(start)
		var o struct{ Status string }
		if err == nil && st != 201 {
			err = fmt.Errorf("place: %d %s", st, body)
		}
		if err == nil {
			err = json.Unmarshal(body, &o)
		}
		res.add(d, o.Status, err)
	}
	dbs := map[string]*sqldb.DB{"user": s.User.App().DB, "product": s.Product.App().DB, "inventory": s.Inventory.App().DB,
		"cart": s.Cart.App().DB, "payment": s.Payment.App().DB, "order": s.Order.App().DB}
	stmts0 := statements(dbs)
	cpu0 := cpuTime()
	b.ResetTimer()

	// Phase 1: a fixed arrival rate (open loop: arrivals do not wait for answers).
	fixed := &result{}
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(*rate)
	total := int(duration.Seconds() * float64(*rate))
	t0 := time.Now()
	skipped := 0
	for i := 0; i < total; i++ {
		time.Sleep(time.Until(t0.Add(time.Duration(i) * interval)))
		var u *user
		for j := 0; j < len(users); j++ {
			c := users[(i+j)%len(users)]
			if c.busy.CompareAndSwap(false, true) {
				u = c
				break
			}
		}
		if u == nil {
			skipped++
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer u.busy.Store(false)
			placeOne(u, fixed)
		}()
	}
	wg.Wait()
	fixedTime := time.Since(t0)

	// Phase 2: the maximum: every user places orders back to back.
	max := &result{}
	t1 := time.Now()
	deadline := t1.Add(*duration)
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				placeOne(u, max)
			}
		}()
	}
	wg.Wait()
	maxTime := time.Since(t1)
	b.StopTimer()

	n := len(max.latencies)
	b.ReportMetric(float64(fixed.pct(0.50).Microseconds())/1000, "p50-ms@rate")
	b.ReportMetric(float64(fixed.pct(0.99).Microseconds())/1000, "p99-ms@rate")
	b.ReportMetric(float64(n)/maxTime.Seconds(), "orders/s-max")
	b.ReportMetric(float64(max.pct(0.99).Microseconds())/1000, "p99-ms@max")
	fmt.Printf("shop %s: at %d orders/s for %s: %d orders (%d not sent: every user busy), %d errors, p50 %s, p90 %s, p99 %s, max %s, outcomes %v\n",
		env.Name, *rate, fixedTime.Round(time.Millisecond), len(fixed.latencies), skipped, fixed.errors,
		fixed.pct(0.50).Round(10*time.Microsecond), fixed.pct(0.90).Round(10*time.Microsecond), fixed.pct(0.99).Round(10*time.Microsecond), fixed.pct(1).Round(10*time.Microsecond), fixed.statuses)
	fmt.Printf("shop %s: maximum with %d users for %s: %d orders, %.0f orders/s, %d errors, p50 %s, p99 %s, outcomes %v\n",
		env.Name, len(users), maxTime.Round(time.Millisecond), n, float64(n)/maxTime.Seconds(), max.errors,
		max.pct(0.50).Round(10*time.Microsecond), max.pct(0.99).Round(10*time.Microsecond), max.statuses)
	// Round trips and this process's CPU (the six services and the load
	// generator; not the database or the bus servers) per order placed,
	// over both phases, the cart fill and the outbox relays included.
	orders := float64(len(fixed.latencies) + fixed.errors + n + max.errors)
	cpu := cpuTime() - cpu0
	stmts := statements(dbs)
	var per []string
	var all int64
	for _, name := range []string{"user", "product", "cart", "inventory", "payment", "order"} {
		d := stmts[name] - stmts0[name]
		all += d
		per = append(per, fmt.Sprintf("%s %.1f", name, float64(d)/orders))
		if st := dbs[name].Stats(); st.WaitCount > 0 {
			per[len(per)-1] += fmt.Sprintf(" (pool waits %d, %s)", st.WaitCount, st.WaitDuration.Round(time.Millisecond))
		}
	}
	b.ReportMetric(float64(all)/orders, "stmts/order")
	b.ReportMetric(float64(cpu.Microseconds())/1000/orders, "cpu-ms/order")
	fmt.Printf("shop %s: per order: %.1f statements (%s), %.2f ms CPU in the services and load generator\n",
		env.Name, float64(all)/orders, strings.Join(per, ", "), float64(cpu.Microseconds())/1000/orders)
	for _, e := range append(fixed.firstErrs, max.firstErrs...) {
		fmt.Printf("shop %s: error: %s\n", env.Name, e)
	}
}

func statements(dbs map[string]*sqldb.DB) map[string]int64 {
	out := map[string]int64{}
	for name, db := range dbs {
		out[name] = db.Statements()
	}
	return out
}

// cpuTime is the user and system CPU this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
