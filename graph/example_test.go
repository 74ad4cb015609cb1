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
