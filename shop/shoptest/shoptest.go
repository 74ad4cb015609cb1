// Package shoptest runs the six order-path services of the shop in this
// process, wired to each other over real HTTP on loopback ports, on the
// database and bus of a kittest.Env: for order's component tests, the
// whole-system tests and the benchmarks.
package shoptest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/shop/cart"
	"github.com/flotilla-ci/flotilla/shop/inventory"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/order"
	"github.com/flotilla-ci/flotilla/shop/payment"
	"github.com/flotilla-ci/flotilla/shop/product"
	"github.com/flotilla-ci/flotilla/shop/user"
	"github.com/flotilla-ci/flotilla/shop/user/usertest"
)

// Options tune the shop for a test.
type Options struct {
	Products int                   // demo catalog size (SKU-0001...)
	Faults   map[string]kit.Faults // by service name
	Order    order.Config          // Lease, CallTimeout, ... (Kit is filled in)
	Crash    func(service, point string)
	// Configure, when set, may adjust every service's kit.Config.
	Configure func(service string, c *kit.Config)
	// UserLimits are user-service's abuse limits (defaults when zero).
	UserLimits user.Limits
}

// Shop is the running services.
type Shop struct {
	User      *user.Main
	Product   *product.Main
	Inventory *inventory.Main
	Cart      *cart.Main
	Payment   *payment.Main
	Order     *order.Main

	AdminToken string
}

// Start runs the six services and stops them when t ends.
func Start(t testing.TB, env kittest.Env, o Options) *Shop {
	t.Helper()
	ctx := context.Background()
	s := &Shop{}
	conf := func(service string) kit.Config {
		c := env.Config(t, service)
		if f, ok := o.Faults[service]; ok {
			c.Faults = f
		}
		if o.Crash != nil {
			c.Crash = func(point string) { o.Crash(service, point) }
		}
		if o.Configure != nil {
			o.Configure(service, &c)
		}
		return c
	}
	start := func(name string, m interface {
		Start(context.Context) error
		Close() error
	}) {
		if err := m.Start(ctx); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(func() { _ = m.Close() })
	}
	s.User = &user.Main{Config: user.Config{Kit: conf(user.Service), Admin: user.Admin{Email: "admin@shop.test", Password: "correct horse"}, KeySecret: "test secret", Limits: o.UserLimits}}
	start(user.Service, s.User)
	pc := conf(product.Service)
	pc.Deps["user"] = s.User.URL()
	s.Product = &product.Main{Config: product.Config{Kit: pc, Seed: o.Products}}
	start(product.Service, s.Product)
	ic := conf(inventory.Service)
	ic.Deps["product"] = s.Product.URL()
	s.Inventory = &inventory.Main{Config: inventory.Config{Kit: ic, Users: s.User.URL(), SweepInterval: time.Second}}
	start(inventory.Service, s.Inventory)
	cc := conf(cart.Service)
	cc.Deps["user"], cc.Deps["product"] = s.User.URL(), s.Product.URL()
	s.Cart = &cart.Main{Config: cart.Config{Kit: cc}}
	start(cart.Service, s.Cart)
	yc := conf(payment.Service)
	yc.Deps["user"] = s.User.URL()
	s.Payment = &payment.Main{Config: payment.Config{Kit: yc}}
	start(payment.Service, s.Payment)
	oc := o.Order
	oc.Kit = conf(order.Service)
	oc.Kit.Deps["user"], oc.Kit.Deps["cart"], oc.Kit.Deps["inventory"], oc.Kit.Deps["payment"] = s.User.URL(), s.Cart.URL(), s.Inventory.URL(), s.Payment.URL()
	s.Order = &order.Main{Config: oc}
	start(order.Service, s.Order)
	s.AdminToken = usertest.Token(t, s.User.URL(), "admin@shop.test")
	return s
}

// Stock receives n units of every SKU-0001..SKU-<skus>.
func (s *Shop) Stock(t testing.TB, skus, n int) {
	t.Helper()
	for i := 1; i <= skus; i++ {
		r := kittest.Call(t, "POST", fmt.Sprintf("%s/stock/SKU-%04d", s.Inventory.URL(), i), s.AdminToken, map[string]int{"add": n})
		if r.Status != 200 {
			t.Fatalf("stock SKU-%04d: %d %s", i, r.Status, r.Body)
		}
	}
}

// Customer registers a customer with a delivery address in DE (the first
// time) and returns its token.
func (s *Shop) Customer(t testing.TB, email string) string {
	t.Helper()
	return s.CustomerIn(t, email, "DE")
}

// CustomerIn registers a customer whose first delivery address is in
// country and returns its token.
func (s *Shop) CustomerIn(t testing.TB, email, country string) string {
	t.Helper()
	tok := usertest.Token(t, s.User.URL(), email)
	var a struct{ Addresses []any }
	kittest.Call(t, "GET", s.User.URL()+"/users/me/addresses", tok, nil).JSON(t, &a)
	if len(a.Addresses) == 0 {
		r := kittest.Call(t, "POST", s.User.URL()+"/users/me/addresses", tok, map[string]string{"line1": "Hauptstr. 1", "city": "Berlin", "postalCode": "10115", "country": country})
		if r.Status != 201 {
			t.Fatalf("add an address for %s: %d %s", email, r.Status, r.Body)
		}
	}
	return tok
}

// Fill puts items (sku → quantity) in the customer's cart.
func (s *Shop) Fill(t testing.TB, token string, items map[string]int) {
	t.Helper()
	for sku, q := range items {
		r := kittest.Call(t, "POST", s.Cart.URL()+"/carts/me/items", token, map[string]any{"sku": sku, "quantity": q})
		if r.Status != 200 {
			t.Fatalf("add %s to cart: %d %s", sku, r.Status, r.Body)
		}
	}
}
