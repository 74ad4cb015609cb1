package contract_test

import (
	"fmt"
	"net/http"

	"github.com/flotilla-ci/flotilla/contract"
)

// Matching a provider's response against a pact: the provider renamed
// "total" and sent a price as a string.
func Example() {
	pact, err := contract.Parse([]byte(`{
	  "consumer": {"name": "web"}, "provider": {"name": "order-service"},
	  "metadata": {"pactSpecification": {"version": "4.0"}},
	  "interactions": [{
	    "type": "Synchronous/HTTP", "description": "a request for an order",
	    "request": {"method": "GET", "path": "/orders/7"},
	    "response": {"status": 200,
	      "body": {"contentType": "application/json", "content": {"total": 19.5, "items": [{"price": 9.75}]}},
	      "matchingRules": {"body": {
	        "$.total": {"matchers": [{"match": "decimal"}]},
	        "$.items": {"matchers": [{"match": "type", "min": 1}]},
	        "$.items[*].price": {"matchers": [{"match": "decimal"}]}}}}
	  }]
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	in := pact.Interactions[0]
	actual := contract.HTTPResponse{
		Status:  200,
		Headers: http.Header{"Content-Type": {"application/json"}},
		Body:    []byte(`{"amount": 19.5, "items": [{"price": 3.5}, {"price": "9.75"}]}`),
	}
	for _, m := range contract.MatchResponse(in.Response, actual) {
		fmt.Println(m)
	}
	// Output:
	// body $.items[1].price: expected a decimal number (matcher decimal), got "9.75"
	// body $.total: expected a key "total" with 19.5, got no such key
}
