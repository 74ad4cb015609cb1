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
	// 100 requests/s of 5 browse (2 requests) to 1 checkout (3 on average):
	// 13/6 requests a flow, 46 flows a second.
	fmt.Printf("%s %v requests/s, %.2f requests a flow, %.1f flows/s, %s %v\n", c.Mode, c.RequestRate, c.RequestsPerFlow(), c.FlowRate(), c.Targets.URL("order"), err)

	_, err = load.ParseConfig([]byte("targets: {product: \"http://127.0.0.1:9102\"}\nflows: {browse: 1, checkout: 1}\n"))
	fmt.Println(err)
	// Output:
	// open 100 requests/s, 2.17 requests a flow, 46.2 flows/s, http://127.0.0.1:8080/api/order <nil>
	// flows: checkout needs targets.cart (or targets.gateway)
	// flows: checkout needs targets.order (or targets.gateway)
	// flows: checkout needs targets.user (or targets.gateway)
}
