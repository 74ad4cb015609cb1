package load_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/mesh"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/load"
	"github.com/flotilla-ci/flotilla/shop/shipping"
	"github.com/flotilla-ci/flotilla/shop/shoptest"
)

// TestRunAgainstTheShop runs each mode for a few seconds against the real
// services, in this process on loopback, and checks the summary against
// what order-service recorded.
func TestRunAgainstTheShop(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the shop")
	}
	env := kittest.SQLiteEnv(t)
	shop := shoptest.Start(t, env, shoptest.Options{Products: 20})
	shop.Stock(t, 20, 100000)
	kc := env.Config(t, shipping.Service)
	kc.Deps["order"], kc.Deps["user"] = shop.Order.URL(), shop.User.URL()
	sm := &shipping.Main{Config: shipping.Config{Kit: kc, LabelAfter: 50 * time.Millisecond, DeliverAfter: 50 * time.Millisecond}}
	if err := sm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sm.Close() })
	targets := load.Targets{User: shop.User.URL(), Product: shop.Product.URL(), Cart: shop.Cart.URL(), Order: shop.Order.URL(), Shipping: sm.URL()}
	flows := map[string]int{load.Browse: 4, load.AddToCart: 1, load.Checkout: 2, load.Track: 2}
	orders := func() int {
		var n int
		if err := shop.Order.App().DB.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM orders`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	placed := 0
	for _, tc := range []struct {
		name string
		cfg  func(c *load.Config)
	}{
		{"closed loop for a duration", func(c *load.Config) { c.Mode, c.Users, c.Duration = load.Closed, 3, load.Duration(2*time.Second) }},
		{"closed loop for a request count", func(c *load.Config) { c.Mode, c.Users, c.Duration, c.Requests = load.Closed, 2, 0, 60 }},
		{"open loop at a request rate", func(c *load.Config) {
			c.Mode, c.RequestRate, c.Users, c.Duration = load.Open, 30, 8, load.Duration(2*time.Second)
		}},
		{"open loop at a flow rate", func(c *load.Config) {
			c.Mode, c.Rate, c.Users, c.Duration = load.Open, 15, 8, load.Duration(2*time.Second)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := load.DefaultConfig()
			c.Targets, c.Flows, c.Seed = targets, flows, 42
			tc.cfg(&c)
			var progress bytes.Buffer
			s, err := load.Run(context.Background(), c, &progress)
			if err != nil {
				t.Fatal(err)
			}
			var report bytes.Buffer
			s.Write(&report)
			t.Logf("\n%s", report.String())
			if s.Errors != 0 || s.Requests == 0 || s.OrdersPlaced == 0 {
				t.Errorf("summary: %d requests, %d errors, %d orders; want requests and orders without errors", s.Requests, s.Errors, s.OrdersPlaced)
			}
			if c.Requests > 0 && s.Requests != uint64(c.Requests) {
				t.Errorf("%d requests sent, want exactly %d", s.Requests, c.Requests)
			}
			if s.Confirmed+s.Cancelled != s.OrdersPlaced {
				t.Errorf("%d placed but %d confirmed + %d cancelled", s.OrdersPlaced, s.Confirmed, s.Cancelled)
			}
			placed += s.OrdersPlaced
			if got := orders(); got != placed {
				t.Errorf("order-service has %d orders; the runs placed %d", got, placed)
			}
			if s.P50 <= 0 || s.P50 > s.P90 || s.P90 > s.P99 || s.P99 > s.Max {
				t.Errorf("latencies out of order: p50 %v p90 %v p99 %v max %v", s.P50, s.P90, s.P99, s.Max)
			}
			if c.Duration >= load.Duration(time.Second) && !strings.Contains(progress.String(), "requests") {
				t.Errorf("no progress line in %q", progress.String())
			}
			var routed uint64
			for _, r := range s.Routes {
				routed += r.Requests
			}
			if routed != s.Requests || len(s.Routes) < 4 {
				t.Errorf("routes %+v account for %d of %d requests", s.Routes, routed, s.Requests)
			}
			for _, f := range []string{load.Browse, load.Checkout} {
				if s.Flows[f] == 0 {
					t.Errorf("flow %s never ran: %v", f, s.Flows)
				}
			}
		})
	}

	t.Run("through the mesh's edge gateway", func(t *testing.T) {
		// As flotilla up serves it: /api/<service>/... to each service.
		ms, err := mesh.New(mesh.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		gwc := mesh.DefaultGatewayConfig()
		for name, u := range map[string]string{"user-service": shop.User.URL(), "product-service": shop.Product.URL(), "cart-service": shop.Cart.URL(),
			"order-service": shop.Order.URL(), "shipping-service": sm.URL()} {
			if _, err := ms.AddService(context.Background(), mesh.ServiceConfig{Name: name}); err != nil {
				t.Fatal(err)
			}
			if err := ms.SetSubset(context.Background(), name, mesh.Subset{Name: "v1", Endpoints: []string{strings.TrimPrefix(u, "http://")}}); err != nil {
				t.Fatal(err)
			}
			gwc.Routes = append(gwc.Routes, mesh.RouteEntry{Path: "/api/" + strings.TrimSuffix(name, "-service") + "/**", Service: name, Rewrite: "/", Public: true})
		}
		gw, err := mesh.NewGateway(gwc, ms, mesh.GatewayOptions{})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(gw)
		defer srv.Close()
		defer func() { _ = ms.Close(context.Background()) }()
		c := load.DefaultConfig()
		c.Targets, c.Flows, c.Seed = load.Targets{Gateway: srv.URL}, flows, 7
		c.Users, c.Duration, c.Requests = 2, 0, 40
		s, err := load.Run(context.Background(), c, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.Errors != 0 || s.Requests != 40 || s.OrdersPlaced == 0 {
			var report bytes.Buffer
			s.Write(&report)
			t.Errorf("through the gateway:\n%s", report.String())
		}
		placed += s.OrdersPlaced
	})

	t.Run("setup failures are one clear error", func(t *testing.T) {
		c := load.DefaultConfig()
		c.Targets = load.Targets{Gateway: "http://127.0.0.1:1"}
		if _, err := load.Run(context.Background(), c, nil); err == nil || !strings.Contains(err.Error(), "read the catalog") {
			t.Errorf("err = %v; want one naming the catalog", err)
		}
		c.Mode = "burst"
		if _, err := load.Run(context.Background(), c, nil); err == nil || !strings.Contains(err.Error(), "mode") {
			t.Errorf("err = %v; want the config error", err)
		}
	})
}
