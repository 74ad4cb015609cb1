// Package tracing_test measures what tracing adds to placing an order: two
// copies of the shop's order path in one process, one traced at 100%
// sampling and exporting over OTLP/HTTP to a collector, one with tracing
// off (no OTEL_EXPORTER_OTLP_ENDPOINT: the no-op provider), placing orders
// at the same fixed rate in alternating phases, so both see the same
// machine.
//
//	go test ./bench/tracing -run '^$' -bench . -benchtime 1x
//
// Targets (issue 18): under 5% added at p50 and under 10% at p99, at 100
// orders/s.
package tracing_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/shoptest"
)

var (
	rate   = flag.Int("rate", 100, "orders/s of each phase")
	phase  = flag.Duration("phase", 5*time.Second, "length of one phase")
	rounds = flag.Int("rounds", 4, "phases per mode, alternating")
)

const skus = 100

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

type user struct {
	token string
	n     int
	busy  atomic.Bool
}

type mode struct {
	name  string
	shop  *shoptest.Shop
	users []*user
	mu    sync.Mutex
	lat   []time.Duration
	errs  int
	first string
}

func (m *mode) pct(p float64) time.Duration {
	if len(m.lat) == 0 {
		return 0
	}
	sort.Slice(m.lat, func(i, j int) bool { return m.lat[i] < m.lat[j] })
	return m.lat[min(len(m.lat)-1, int(p*float64(len(m.lat))))]
}

func (m *mode) placeOne(u *user) {
	u.n++
	sku := fmt.Sprintf("SKU-%04d", 1+(u.n*7+len(u.token))%skus)
	if st, body, err := post(m.shop.Cart.URL()+"/carts/me/items", u.token, map[string]any{"sku": sku, "quantity": 1}); err != nil || st != 200 {
		m.fail(fmt.Errorf("cart: %d %s: %w", st, body, err))
		return
	}
	start := time.Now()
	st, body, err := post(m.shop.Order.URL()+"/orders", u.token, nil, "Idempotency-Key", fmt.Sprintf("%p-%d", u, u.n))
	d := time.Since(start)
	if err == nil && st != 201 {
		err = fmt.Errorf("place: %d %s", st, body)
	}
	if err != nil {
		m.fail(err)
		return
	}
	m.mu.Lock()
	m.lat = append(m.lat, d)
	m.mu.Unlock()
}

func (m *mode) fail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.errs++
	if m.first == "" {
		m.first = err.Error()
	}
}

// run places orders at the rate for d, open loop.
func (m *mode) run(d time.Duration) {
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(*rate)
	total := int(d.Seconds() * float64(*rate))
	t0 := time.Now()
	for i := 0; i < total; i++ {
		time.Sleep(time.Until(t0.Add(time.Duration(i) * interval)))
		for j := 0; j < len(m.users); j++ {
			u := m.users[(i+j)%len(m.users)]
			if u.busy.CompareAndSwap(false, true) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer u.busy.Store(false)
					m.placeOne(u)
				}()
				break
			}
		}
	}
	wg.Wait()
}

func BenchmarkCheckoutTracing(b *testing.B) {
	var spans, exports atomic.Int64
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		spans.Add(n)
		exports.Add(1)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	start := func(name string, traced bool) *mode {
		m := &mode{name: name}
		m.shop = shoptest.Start(b, kittest.SQLiteEnv(b), shoptest.Options{Products: skus, Configure: func(svc string, c *kit.Config) {
			c.LogLevel = 8
			c.Logger = nil
			c.OTEL = map[string]string{"OTEL_SERVICE_NAME": svc, "OTEL_RESOURCE_ATTRIBUTES": "service.version=bench"}
			if traced {
				c.OTEL["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.URL
			}
		}})
		m.shop.Stock(b, skus, 1_000_000)
		for i := range 50 {
			m.users = append(m.users, &user{token: m.shop.Customer(b, fmt.Sprintf("bench%d@shop.test", i))})
		}
		if m.shop.Order.App().Tracing.Enabled() != traced {
			b.Fatalf("%s: tracing enabled %v", name, m.shop.Order.App().Tracing.Enabled())
		}
		return m
	}
	off, on := start("off", false), start("on", true)
	// Warm both up (connections, prepared statements, the JIT of nothing).
	off.run(time.Second)
	on.run(time.Second)
	off.lat, on.lat = nil, nil
	b.ResetTimer()
	for range *rounds {
		off.run(*phase)
		on.run(*phase)
	}
	b.StopTimer()
	st := on.shop.Order.App().Tracing.Stats()
	p50off, p50on, p99off, p99on := off.pct(0.5), on.pct(0.5), off.pct(0.99), on.pct(0.99)
	add := func(a, b time.Duration) float64 { return 100 * (float64(b) - float64(a)) / float64(a) }
	b.ReportMetric(float64(p50off.Microseconds())/1000, "p50-ms-off")
	b.ReportMetric(float64(p50on.Microseconds())/1000, "p50-ms-on")
	b.ReportMetric(float64(p99off.Microseconds())/1000, "p99-ms-off")
	b.ReportMetric(float64(p99on.Microseconds())/1000, "p99-ms-on")
	fmt.Printf("tracing at %d orders/s, %d phases of %s each, alternating:\n", *rate, *rounds, *phase)
	for _, m := range []*mode{off, on} {
		fmt.Printf("  tracing %-3s: %d orders, %d errors, p50 %s, p90 %s, p99 %s\n", m.name, len(m.lat), m.errs,
			m.pct(0.5).Round(10*time.Microsecond), m.pct(0.9).Round(10*time.Microsecond), m.pct(0.99).Round(10*time.Microsecond))
		if m.first != "" {
			fmt.Printf("  tracing %s: first error: %s\n", m.name, m.first)
		}
	}
	fmt.Printf("  added by tracing: p50 %+.1f%% (target < 5%%), p99 %+.1f%% (target < 10%%)\n", add(p50off, p50on), add(p99off, p99on))
	fmt.Printf("  order-service exported %d spans, dropped %d; the collector got %d exports, %d KiB from all services\n",
		st.Exported, st.Dropped, exports.Load(), spans.Load()/1024)
}
