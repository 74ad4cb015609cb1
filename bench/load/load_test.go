// Package load_test benchmarks flotilla load: first its own cost, side by
// side with vegeta's attacker (the peer it is built on) against the same
// trivial upstream at the same open-loop rate; then the shop's flows
// against the real services (the six order-path services plus shipping and
// notification, in this process on loopback), checking afterwards that
// every confirmed order got a shipment and exactly one confirmation mail.
// Search runs too (the search flow queries words of product names).
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/load
//	go test -run '^$' -bench . -benchtime 1x ./bench/load -rate 3000 -shop-rate 40 -duration 10s
package load_test

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/load"
	"github.com/flotilla-ci/flotilla/shop/notification"
	"github.com/flotilla-ci/flotilla/shop/search"
	"github.com/flotilla-ci/flotilla/shop/search/bleveindex"
	"github.com/flotilla-ci/flotilla/shop/shipping"
	"github.com/flotilla-ci/flotilla/shop/shoptest"
)

var (
	rate     = flag.Float64("rate", 2000, "requests/s of the generator-overhead phase")
	shopRate = flag.Float64("shop-rate", 20, "flows/s against the shop")
	duration = flag.Duration("duration", 5*time.Second, "length of each phase")
)

// BenchmarkGenerator: the same GET at the same rate, flotilla load's
// browse flow (two requests a flow, paced by request rate) versus vegeta's
// attacker; the upstream answers at once, so the latencies are the
// generators' own plus loopback.
func BenchmarkGenerator(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/products" {
			_, _ = w.Write([]byte(`{"items":[{"sku":"SKU-0001","name":"Blue Kettle"},{"sku":"SKU-0002","name":"Red Mug"}],"total":2}`))
			return
		}
		_, _ = w.Write([]byte(`{"sku":"SKU-0001"}`))
	}))
	defer srv.Close()
	for i := 0; i < b.N; i++ {
		c := load.DefaultConfig()
		c.Targets.Product = srv.URL
		c.Mode, c.RequestRate, c.Duration, c.Flows = load.Open, *rate, load.Duration(*duration), map[string]int{load.Browse: 1}
		s, err := load.Run(context.Background(), c, nil)
		if err != nil {
			b.Fatal(err)
		}
		atk := vegeta.NewAttacker(vegeta.Timeout(10 * time.Second))
		tr := vegeta.NewStaticTargeter(vegeta.Target{Method: "GET", URL: srv.URL + "/products?limit=20&offset=0&sort=price"}, vegeta.Target{Method: "GET", URL: srv.URL + "/products/SKU-0001"})
		var m vegeta.Metrics
		for res := range atk.Attack(tr, vegeta.ConstantPacer{Freq: int(*rate), Per: time.Second}, *duration, "peer") {
			m.Add(res)
		}
		m.Close()
		fmt.Printf("generator at %.0f req/s for %s against a no-op upstream:\n", *rate, *duration)
		fmt.Printf("  flotilla load: %d requests, %.0f/s, %d errors, p50 %s p90 %s p99 %s max %s, %d flows skipped\n",
			s.Requests, s.Rate, s.Errors, s.P50, s.P90, s.P99, s.Max, s.Skipped)
		fmt.Printf("  vegeta attack: %d requests, %.0f/s, %.1f%% success, p50 %s p90 %s p99 %s max %s\n",
			m.Requests, m.Rate, m.Success*100, m.Latencies.P50, m.Latencies.P90, m.Latencies.P99, m.Latencies.Max)
		fmt.Printf("  ratio flotilla/vegeta: rate %.2f, p50 %.2f, p99 %.2f\n", s.Rate/m.Rate,
			float64(s.P50)/float64(m.Latencies.P50), float64(s.P99)/float64(m.Latencies.P99))
	}
}

// BenchmarkShop: the flows against the real services, open loop.
func BenchmarkShop(b *testing.B) {
	env := kittest.SQLiteEnv(b)
	shop := shoptest.Start(b, env, shoptest.Options{Products: 100})
	shop.Stock(b, 100, 1000000)
	kc := env.Config(b, shipping.Service)
	kc.Deps["order"], kc.Deps["user"] = shop.Order.URL(), shop.User.URL()
	sm := &shipping.Main{Config: shipping.Config{Kit: kc}}
	if err := sm.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sm.Close() }()
	sc := env.Config(b, search.Service)
	sc.Deps["product"] = shop.Product.URL()
	dir := filepath.Join(b.TempDir(), "index")
	se := &search.Main{Config: search.Config{Kit: sc, Open: func() (search.Index, error) { return bleveindex.Open(dir) }, Reset: func() error { return bleveindex.Reset(dir) }}}
	if err := se.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = se.Close() }()
	mail := b.TempDir()
	nm := &notification.Main{Config: notification.Config{Kit: env.Config(b, notification.Service), Users: shop.User.URL(), DataDir: mail}}
	if err := nm.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = nm.Close() }()
	for i := 0; i < b.N; i++ {
		c := load.DefaultConfig()
		c.Targets = load.Targets{User: shop.User.URL(), Product: shop.Product.URL(), Cart: shop.Cart.URL(), Order: shop.Order.URL(), Shipping: sm.URL(), Search: se.URL()}
		c.Mode, c.Rate, c.Users, c.Duration = load.Open, *shopRate, 40, load.Duration(*duration)
		c.Flows = map[string]int{load.Browse: 5, load.Search: 2, load.AddToCart: 2, load.Checkout: 1, load.Track: 1}
		s, err := load.Run(context.Background(), c, os.Stderr)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Printf("shop flows at %.0f flows/s for %s (sqlite, embedded NATS, 9 services in one process):\n", *shopRate, *duration)
		s.Write(os.Stdout)
		// Every confirmed order gets a shipment and one confirmation mail.
		ctx := context.Background()
		deadline := time.Now().Add(60 * time.Second)
		for {
			var confirmed, shipped, notified int
			_ = shop.Order.App().DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM orders WHERE status = 'CONFIRMED'`).Scan(&confirmed)
			_ = sm.App().DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM shipments WHERE status <> 'PENDING'`).Scan(&shipped)
			_ = nm.App().DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM notifications WHERE event = 'OrderConfirmed' AND status = 'SENT'`).Scan(&notified)
			files, _ := filepath.Glob(filepath.Join(mail, "mail", "*.eml"))
			if confirmed == shipped && confirmed == notified {
				fmt.Printf("  confirmed orders %d, shipments %d, confirmation mails %d (.eml files in all: %d)\n", confirmed, shipped, notified, len(files))
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("confirmed orders %d, shipments %d, confirmation mails %d after 60s", confirmed, shipped, notified)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}
