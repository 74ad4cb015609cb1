package load_test

import (
	"fmt"

	"github.com/flotilla-ci/flotilla/shop/load"
)

func ExampleParseConfig() {
	c, err := load.ParseConfig([]byte(`
targets: {gateway: "http://127.0.0.1:8080"}
mode: open
rate: 100
duration: 5m
flows: {browse: 5, checkout: 1}
`))
	fmt.Println(c.Mode, c.Rate, c.Targets.URL("order"), err)

	_, err = load.ParseConfig([]byte("targets: {product: \"http://127.0.0.1:9102\"}\nflows: {browse: 1, checkout: 1}\n"))
	fmt.Println(err)
	// Output:
	// open 100 http://127.0.0.1:8080/api/order <nil>
	// flows: checkout needs targets.cart (or targets.gateway)
	// flows: checkout needs targets.order (or targets.gateway)
	// flows: checkout needs targets.user (or targets.gateway)
}
