package load_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/shop/load"
)

// TestBusinessFailures: orders the shop cancels are no HTTP errors, but the
// summary reports them beside the errors, by reason, in text and JSON.
func TestBusinessFailures(t *testing.T) {
	shop := newStandInReason(t, "CANCELLED", "out_of_stock: SKU-0001: 0 available, 1 requested")
	c := load.DefaultConfig()
	c.Targets, c.Flows, c.Users, c.Duration, c.Requests = shop.targets(), map[string]int{load.Checkout: 1}, 2, 0, 60
	s, err := load.Run(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	var report bytes.Buffer
	s.Write(&report)
	if s.Errors != 0 || s.OrdersPlaced == 0 || s.Cancelled != s.OrdersPlaced || s.CancelledBy["out_of_stock"] != s.Cancelled || len(s.CancelledBy) != 1 {
		t.Errorf("%d errors, %d placed, %d cancelled by %v; want every order cancelled out_of_stock and no errors:\n%s", s.Errors, s.OrdersPlaced, s.Cancelled, s.CancelledBy, report.String())
	}
	if want := fmt.Sprintf("business failures: %d orders cancelled, by reason out_of_stock=%d", s.Cancelled, s.Cancelled); !strings.Contains(report.String(), want) {
		t.Errorf("summary lacks %q:\n%s", want, report.String())
	}
	data, _ := json.Marshal(s)
	var back struct {
		CancelledBy map[string]int `json:"ordersCancelledBy"`
		Cancelled   int            `json:"ordersCancelled"`
	}
	if err := json.Unmarshal(data, &back); err != nil || back.CancelledBy["out_of_stock"] != s.Cancelled || back.Cancelled != s.Cancelled {
		t.Errorf("json summary %s: %v", data, err)
	}

	t.Run("confirmed orders are no business failures", func(t *testing.T) {
		shop := newStandIn(t, "CONFIRMED")
		c.Targets = shop.targets()
		s, err := load.Run(context.Background(), c, nil)
		if err != nil {
			t.Fatal(err)
		}
		var report bytes.Buffer
		s.Write(&report)
		if s.Cancelled != 0 || len(s.CancelledBy) != 0 || strings.Contains(report.String(), "business failures") {
			t.Errorf("confirmed orders reported as failures:\n%s", report.String())
		}
	})
}

// interrupting wraps shop's routes, cancelling the run's context when the
// n-th request matching match arrives (and answering it).
func interrupting(t *testing.T, shop *standIn, n int64, match func(r *http.Request) bool) (load.Targets, context.Context) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var seen atomic.Int64
	h := shop.Config.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if match(r) && seen.Add(1) == n {
			cancel()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return load.Targets{User: srv.URL, Product: srv.URL, Cart: srv.URL, Order: srv.URL, Shipping: srv.URL, Search: srv.URL}, ctx
}

// TestInterrupted: a run whose context is cancelled (Ctrl-C) returns the
// summary of what it has, during setup as during the load, never an error
// and no summary.
func TestInterrupted(t *testing.T) {
	t.Run("during setup", func(t *testing.T) {
		shop := newStandIn(t, "CONFIRMED")
		targets, ctx := interrupting(t, shop, 3, func(r *http.Request) bool { return r.Method == "POST" && r.URL.Path == "/users" })
		c := load.DefaultConfig()
		c.Targets, c.Flows, c.Users = targets, map[string]int{load.Browse: 1, load.Checkout: 1}, 50
		s, err := load.Run(ctx, c, nil)
		if err != nil || s == nil {
			t.Fatalf("Run = %v, %v; want the summary of an interrupted setup", s, err)
		}
		var report bytes.Buffer
		s.Write(&report)
		if !s.Interrupted || s.Requests != 0 || !strings.Contains(s.Setup, "catalog of 2 products read, registering accounts") ||
			!strings.Contains(report.String(), "interrupted during setup (catalog of 2 products read, registering accounts)") {
			t.Errorf("summary:\n%s", report.String())
		}
	})
	t.Run("during the load", func(t *testing.T) {
		for _, mode := range []string{load.Closed, load.Open} {
			shop := newStandIn(t, "CONFIRMED")
			targets, ctx := interrupting(t, shop, 20, func(r *http.Request) bool { return r.URL.Path == "/search" })
			c := load.DefaultConfig()
			c.Targets, c.Flows, c.Users, c.Duration = targets, map[string]int{load.Search: 1}, 2, load.Duration(1<<62)
			if mode == load.Open {
				c.Mode, c.RequestRate, c.Users = load.Open, 500, 0
			}
			s, err := load.Run(ctx, c, nil)
			if err != nil || s == nil {
				t.Fatalf("%s: Run = %v, %v; want the summary of an interrupted run", mode, s, err)
			}
			var report bytes.Buffer
			s.Write(&report)
			if !s.Interrupted || s.Setup != "" || s.Requests < 20 || s.Flows[load.Search] < 20 || !strings.Contains(report.String(), "interrupted after ") {
				t.Errorf("%s: summary:\n%s", mode, report.String())
			}
		}
	})
	t.Run("a run that ends by itself is not interrupted", func(t *testing.T) {
		shop := newStandIn(t, "CONFIRMED")
		c := load.DefaultConfig()
		c.Targets, c.Flows, c.Users, c.Duration, c.Requests = shop.targets(), map[string]int{load.Search: 1}, 2, 0, 10
		s, err := load.Run(context.Background(), c, nil)
		if err != nil || s.Interrupted {
			t.Errorf("Run = %+v, %v", s, err)
		}
	})
}

// TestSetupOutlastsTheRequestTimeout: registering accounts is setup, not
// load: a shop slower to register than --timeout (hashing passwords on a
// busy machine) still gets its run, while the run's own requests keep
// their limit.
func TestSetupOutlastsTheRequestTimeout(t *testing.T) {
	shop := newStandIn(t, "CONFIRMED")
	h := shop.Config.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" && r.URL.Path == "/users" {
			time.Sleep(300 * time.Millisecond) // three times the request timeout below
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c := load.DefaultConfig()
	c.Targets = load.Targets{User: srv.URL, Product: srv.URL, Cart: srv.URL, Order: srv.URL, Shipping: srv.URL, Search: srv.URL}
	c.Flows, c.Users, c.Duration, c.Requests = map[string]int{load.Checkout: 1}, 2, 0, 10
	c.Timeout = load.Duration(100 * time.Millisecond)
	s, err := load.Run(context.Background(), c, nil)
	if err != nil {
		t.Fatalf("a setup slower than --timeout: %v", err)
	}
	if s.Requests == 0 {
		t.Errorf("no request of the run was sent: %+v", s)
	}
}
