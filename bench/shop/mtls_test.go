package shop_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/identity"
	"github.com/flotilla-ci/flotilla/identity/identitytest"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/shoptest"
)

var mtlsRounds = flag.Int("mtls-rounds", 2, "BenchmarkCheckoutMTLS: rounds, each one run of the shop without identities and one with")

// BenchmarkCheckoutMTLS places orders at a fixed rate (-rate, 100/s, for
// -duration) through the six order-path services, first with no
// identities, then with every service's listener and calls on mutual TLS
// (the platform's CA, one SVID per service) and the load generator
// presenting the gateway's certificate, so every hop of a checkout (the
// client to cart and order, order to user, cart, inventory and payment,
// cart and inventory to product) is TLS 1.3 with client certificates.
// The two modes alternate for -mtls-rounds rounds, each on a fresh shop
// (SQLite, the embedded NATS server), and print their percentiles side by
// side.
//
//	go test -run '^$' -bench CheckoutMTLS -benchtime 1x ./bench/shop
func BenchmarkCheckoutMTLS(b *testing.B) {
	type row struct {
		mode               string
		round, n, skipped  int
		errs               int
		p50, p90, p99, max time.Duration
		handshakes         int64
	}
	var rows []row
	for round := 1; round <= *mtlsRounds; round++ {
		for _, mode := range []string{"plaintext", "mtls"} {
			b.Run(fmt.Sprintf("%s-%d", mode, round), func(b *testing.B) {
				res, skipped, hs := checkoutAtRate(b, mode == "mtls")
				rows = append(rows, row{mode, round, len(res.latencies), skipped, res.errors, res.pct(0.5), res.pct(0.9), res.pct(0.99), res.pct(1), hs})
				b.ReportMetric(float64(res.pct(0.99).Microseconds())/1000, "p99-ms@rate")
				for _, e := range res.firstErrs {
					fmt.Printf("checkout %s round %d: error: %s\n", mode, round, e)
				}
			})
		}
	}
	fmt.Printf("\ncheckout at %d orders/s for %s per run, side by side:\n", *rate, *duration)
	fmt.Printf("| round | mode | orders | not sent (every user busy) | errors | p50 | p90 | p99 | max | TLS handshakes |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Printf("| %d | %s | %d | %d | %d | %s | %s | %s | %s | %d |\n", r.round, r.mode, r.n, r.skipped, r.errs,
			r.p50.Round(10*time.Microsecond), r.p90.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.max.Round(10*time.Microsecond), r.handshakes)
	}
}

// checkoutAtRate runs a fresh shop (with identities when mtls) and places
// orders at -rate for -duration, open loop; it returns the latencies of
// placing them and the TLS handshakes the services' listeners did.
func checkoutAtRate(b *testing.B, mtls bool) (*result, int, int64) {
	var ids *identitytest.Env
	if mtls {
		ids = identitytest.New(b, 0, nil)
	}
	s := shoptest.Start(b, kittest.SQLiteEnv(b), shoptest.Options{Products: skus, Configure: func(service string, c *kit.Config) {
		c.LogLevel = 8 // errors only: request logging is not what is measured
		c.Logger = nil
		if mtls {
			// Permissive: the set-up (stock, customers) is plaintext and
			// counted; every measured request and every call between the
			// services is mutual TLS.
			c.Identity, c.MTLS = ids.Dir0(b, identitytest.Service(b, service)), string(identity.Permissive)
		}
	}})
	s.Stock(b, skus, 1_000_000)
	users := make([]*user, 50)
	for i := range users {
		users[i] = &user{token: s.Customer(b, fmt.Sprintf("bench%d@shop.test", i))}
	}
	hc := client
	if mtls {
		src := ids.Source(b, identitytest.System(b, identity.Gateway))
		d := &identity.Dialer{Config: identity.ClientConfig(src, identity.AllowTrustDomain(src.TrustDomain()))}
		d.Net.Timeout = 5 * time.Second
		hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 256}}
	}
	call := func(url, token string, body any, headers ...string) (int, []byte, error) {
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
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer func() { _ = resp.Body.Close() }()
		data, err := io.ReadAll(resp.Body)
		return resp.StatusCode, data, err
	}
	handshakes := func() int64 {
		var n int64
		for _, a := range []*kit.App{s.User.App(), s.Product.App(), s.Inventory.App(), s.Cart.App(), s.Payment.App(), s.Order.App()} {
			if st := a.TLSStats(); st != nil {
				n += st.Handshakes()
			}
		}
		return n
	}
	hs0 := handshakes()
	res := &result{}
	skipped := 0
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(*rate)
	total := int(duration.Seconds() * float64(*rate))
	b.ResetTimer()
	t0 := time.Now()
	for i := 0; i < total; i++ {
		time.Sleep(time.Until(t0.Add(time.Duration(i) * interval)))
		var u *user
		for j := range users {
			if c := users[(i+j)%len(users)]; c.busy.CompareAndSwap(false, true) {
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
			u.n++
			sku := fmt.Sprintf("SKU-%04d", 1+(u.n*7+len(u.token))%skus)
			if st, body, err := call(s.Cart.URL()+"/carts/me/items", u.token, map[string]any{"sku": sku, "quantity": 1}); err != nil || st != 200 {
				res.add(0, "", fmt.Errorf("cart: %d %s: %w", st, body, err))
				return
			}
			start := time.Now()
			st, body, err := call(s.Order.URL()+"/orders", u.token, nil, "Idempotency-Key", fmt.Sprintf("%p-%d", u, u.n))
			d := time.Since(start)
			var o struct{ Status string }
			if err == nil && st != 201 {
				err = fmt.Errorf("place: %d %s", st, body)
			}
			if err == nil {
				err = json.Unmarshal(body, &o)
			}
			res.add(d, o.Status, err)
		}()
	}
	wg.Wait()
	b.StopTimer()
	hs := handshakes() - hs0
	if mtls && hs == 0 {
		b.Fatal("no TLS handshake during the mtls run: the services did not use their identities")
	}
	return res, skipped, hs
}
