package graph_test

import (
	"fmt"

	"github.com/flotilla-ci/flotilla/graph"
)

func Example() {
	m, err := graph.ParseYAML("flotilla.yaml", "/repo", []byte(`
services:
  user-service:  {path: shop/user}
  cart-service:  {path: shop/cart, depends_on: [user-service]}
  order-service: {path: shop/order, depends_on: [user-service, cart-service]}
  mail-service:  {path: shop/mail}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	g := graph.New(m)
	fmt.Println("problems:", len(g.Validate()))
	waves, _ := g.Waves(nil)
	for i, w := range waves {
		fmt.Println("wave", i+1, w)
	}
	// Only order and user: order still waits for user.
	only, _ := g.Order([]string{"order-service", "user-service"})
	fmt.Println("only:", only)
	impact, _ := g.Impact("user-service")
	fmt.Println("impact of user-service:", impact)
	fmt.Println("owner of shop/cart/cart.go:", m.Owner("shop/cart/cart.go").Name)
	// Output:
	// problems: 0
	// wave 1 [mail-service user-service]
	// wave 2 [cart-service]
	// wave 3 [order-service]
	// only: [user-service order-service]
	// impact of user-service: [cart-service order-service]
	// owner of shop/cart/cart.go: cart-service
}

// A service's canary block overrides the manifest's defaults field by
// field; a service that says nothing gets the defaults.
func ExamplePolicy() {
	m, err := graph.ParseYAML("flotilla.yaml", "/repo", []byte(`
defaults:
  canary: {interval: 15s, threshold: 2, max_error_rate: 0.01, bake: 2m}
services:
  payment-service:
    path: shop/payment
    canary: {steps: [5, 25, 50, 100], max_p99: 200ms}
  mail-service: {path: shop/mail}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range m.Services {
		fmt.Printf("%s: %s\n", s.Name, s.Policy.Summary())
	}
	p := m.Service("payment-service").Policy
	fmt.Println(p.Strategy, p.Steps, p.Interval, p.Threshold, p.MaxP99)
	// Output:
	// mail-service: direct, then a 2m bake judged every 15s on errors ≤ 1% (at least 20 requests)
	// payment-service: canary 5/25/50/100% every 15s, rolled back after 2 failed; judged on errors ≤ 1%, p99 ≤ 200ms (at least 20 requests); bake 2m
	// canary [5 25 50 100] 15s 2 200ms
}
