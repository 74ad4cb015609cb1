package load_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/flotilla-ci/flotilla/shop/load"
)

// standIn answers every route the flows call, at once, like the shop
// would: a catalog, accounts, carts, and orders placed with status.
type standIn struct {
	*httptest.Server
	requests atomic.Int64 // load requests: everything but setup (catalog, accounts)
	orders   atomic.Int64
}

func newStandIn(t *testing.T, orderStatus string) *standIn {
	t.Helper()
	return newStandInReason(t, orderStatus, "")
}

// newStandInReason is a stand-in whose placed orders become orderStatus
// with reason (a cancelled order's "code: message").
func newStandInReason(t *testing.T, orderStatus, reason string) *standIn {
	t.Helper()
	s := &standIn{}
	mux := http.NewServeMux()
	answer := func(code int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("limit") != "100" && !strings.HasPrefix(r.URL.Path, "/users") && r.URL.Path != "/login" {
				s.requests.Add(1)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_, _ = w.Write([]byte(body))
		}
	}
	mux.HandleFunc("GET /products", answer(200, `{"items":[{"sku":"SKU-0001","name":"Blue Kettle"},{"sku":"SKU-0002","name":"Red Mug"}],"total":2}`))
	mux.HandleFunc("GET /products/{sku}", answer(200, `{"sku":"SKU-0001"}`))
	mux.HandleFunc("GET /search", answer(200, `{"hits":[],"total":0}`))
	mux.HandleFunc("POST /users", answer(201, `{}`))
	mux.HandleFunc("POST /login", answer(200, `{"token":"t"}`))
	mux.HandleFunc("POST /users/me/addresses", answer(201, `{}`))
	mux.HandleFunc("POST /carts/me/items", answer(200, `{}`))
	mux.HandleFunc("DELETE /carts/me", answer(204, ``))
	mux.HandleFunc("GET /orders", answer(200, `{"items":[]}`))
	mux.HandleFunc("GET /orders/{id}", answer(200, `{}`))
	mux.HandleFunc("GET /orders/{id}/shipment", answer(200, `{}`))
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		id := s.orders.Add(1)
		answer(201, fmt.Sprintf(`{"id":"o-%d","status":%q,"reason":%q}`, id, orderStatus, reason))(w, r)
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *standIn) targets() load.Targets {
	return load.Targets{User: s.URL, Product: s.URL, Cart: s.URL, Order: s.URL, Shipping: s.URL, Search: s.URL}
}

// TestOpenLoopRequestRate: an open loop at R requests/s offers R requests
// a second whatever the flows' mix, counts what the flows actually send,
// and every request the shop saw is in the summary. The loop's pacing (when
// each flow is due) is TestDue's; no assertion here reads the wall clock.
func TestOpenLoopRequestRate(t *testing.T) {
	const rate, requests = 200.0, 400
	for _, tc := range []struct {
		name   string
		status string // what a placed order becomes
		flows  map[string]int
		// perFlow is the requests a flow sends here: the mix's
		// expectation, unless the shop makes the flows differ.
		perFlow func(c load.Config) float64
	}{
		{"flows with a fixed count", "CONFIRMED", map[string]int{load.Browse: 1, load.Search: 1, load.AddToCart: 1},
			func(c load.Config) float64 { return c.RequestsPerFlow() }},
		{"checkouts of one to three items", "CONFIRMED", map[string]int{load.Browse: 4, load.Search: 3, load.AddToCart: 1, load.Checkout: 2, load.Track: 1}, nil},
		// Every order is cancelled: a checkout also empties the cart (4
		// on average, not 3), and track never has an order to read (1,
		// not 2): 7/4 requests a flow where the mix says 9/4.
		{"flows that send other counts than the mix says", "CANCELLED", map[string]int{load.Checkout: 1, load.Track: 3},
			func(load.Config) float64 { return 7.0 / 4 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shop := newStandIn(t, tc.status)
			c := load.DefaultConfig()
			c.Targets, c.Flows, c.Seed = shop.targets(), tc.flows, 11
			c.Mode, c.RequestRate, c.Users, c.Duration, c.Requests = load.Open, rate, 500, 0, requests
			s, err := load.Run(context.Background(), c, nil)
			if err != nil {
				t.Fatal(err)
			}
			var report bytes.Buffer
			s.Write(&report)
			t.Logf("mix %.3f requests a flow:\n%s", c.RequestsPerFlow(), report.String())
			if s.Errors != 0 || s.Requests != requests {
				t.Errorf("%d requests, %d errors; want %d without errors", s.Requests, s.Errors, requests)
			}
			if got := shop.requests.Load(); got != int64(s.Requests) {
				t.Errorf("the shop saw %d requests, the summary counts %d", got, s.Requests)
			}
			if s.Offered != rate {
				t.Errorf("offered %v requests/s, want %v", s.Offered, rate)
			}
			if tc.perFlow != nil {
				// What the flows sent, counted by one user in a closed
				// loop: the same seeded draw whatever the machine's load,
				// where an open loop's finished flows depend on timing.
				c.Mode, c.RequestRate, c.Users = load.Closed, 0, 1
				s, err := load.Run(context.Background(), c, nil)
				if err != nil {
					t.Fatal(err)
				}
				within(t, "requests a flow", s.PerFlow, tc.perFlow(c), 0.05)
			}
			for _, w := range []string{fmt.Sprintf("(offered %.1f/s)", rate), "requests each"} {
				if !strings.Contains(report.String(), w) {
					t.Errorf("summary lacks %q", w)
				}
			}
		})
	}

	t.Run("a flow rate offers that many flows' requests", func(t *testing.T) {
		shop := newStandIn(t, "CONFIRMED")
		c := load.DefaultConfig()
		c.Targets, c.Flows, c.Seed = shop.targets(), map[string]int{load.Browse: 1, load.Search: 1}, 5
		c.Mode, c.Rate, c.Users, c.Duration, c.Requests = load.Open, 200, 0, 0, 300
		s, err := load.Run(context.Background(), c, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Browse sends two requests, search one: offered is the flow
		// rate times what the flows sent.
		if want := 200 * s.PerFlow; s.PerFlow < 1 || s.PerFlow > 2 || s.Offered != want {
			t.Errorf("offered %v requests/s at %v requests a flow, want %v", s.Offered, s.PerFlow, want)
		}
		data, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{`"rate":`, `"offered":`, `"flowRate":`, `"requestsPerFlow":`} {
			if !bytes.Contains(data, []byte(key)) {
				t.Errorf("json summary lacks %s: %s", key, data)
			}
		}
	})

	t.Run("a closed loop offers no rate", func(t *testing.T) {
		shop := newStandIn(t, "CONFIRMED")
		c := load.DefaultConfig()
		c.Targets, c.Flows, c.Users, c.Duration, c.Requests = shop.targets(), map[string]int{load.Browse: 1}, 2, 0, 40
		s, err := load.Run(context.Background(), c, nil)
		if err != nil {
			t.Fatal(err)
		}
		var report bytes.Buffer
		s.Write(&report)
		if s.Offered != 0 || strings.Contains(report.String(), "offered") || s.PerFlow != 2 {
			t.Errorf("closed loop: offered %v, %v requests a flow:\n%s", s.Offered, s.PerFlow, report.String())
		}
	})
}

func within(t *testing.T, what string, got, want, tolerance float64) {
	t.Helper()
	if math.Abs(got-want) > tolerance*want {
		t.Errorf("%s = %.2f, want %.2f within %.0f%%", what, got, want, tolerance*100)
	}
}
