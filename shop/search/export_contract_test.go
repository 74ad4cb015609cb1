package search

import "github.com/flotilla-ci/flotilla/shop/kit"

// HandlerFor is the handler search-service consumes event with, for the
// contract tests (package search_test) to hand pact messages to.
func (m *Main) HandlerFor(event string) kit.ConsumeFunc {
	return map[string]kit.ConsumeFunc{
		"ProductCreated": m.onCreated, "ProductUpdated": m.onUpdated, "PriceChanged": m.onPrice,
		"OrderCreated": m.onOrderCreated, "OrderConfirmed": m.onOrderConfirmed,
	}[event]
}
