package shipping

import (
	"context"
	"fmt"
	"testing"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

// TestContractUserAndOrder records shipping-service's pacts with
// user-service (its service account's login, the customer's addresses) and
// order-service (the confirmed order), through plan, the function that
// gathers what a label needs.
func TestContractUserAndOrder(t *testing.T) {
	json := map[string]any{"Content-Type": shoppact.JSONType()}
	users := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "user-service"})
	users.AddInteraction().
		Given("the shipping service account is registered as an admin").
		UponReceiving("a login of the shipping service account").
		WithRequest(contract.Req{Method: "POST", Path: "/login", Body: map[string]any{"email": "shipping@shop.internal", "password": "shipping-service-account"}}).
		WillRespondWith(contract.Resp{Status: 200, Headers: json, Body: map[string]any{
			"token":     contract.Regex("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJzaGlwcGluZyJ9.c2ln", `^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`),
			"expiresAt": contract.Timestamp("yyyy-MM-dd'T'HH:mm:ss.SSSSSSSSSXXX", "2030-01-01T00:00:00.000000000Z"),
		}})
	users.AddInteraction().
		Given("user u-42 has a delivery address in DE").
		UponReceiving("a request for a customer's addresses").
		WithRequest(contract.Req{Method: "GET", Path: contract.FromProviderState("/users/${userId}/addresses", "/users/u-42/addresses"), Headers: map[string]any{"Authorization": shoppact.Bearer()}}).
		WillRespondWith(contract.Resp{Status: 200, Headers: json, Body: map[string]any{"addresses": contract.EachLike(map[string]any{
			"line1": contract.Like("Hauptstr. 1"), "city": contract.Like("Berlin"), "postalCode": contract.Like("10115"), "country": contract.Regex("DE", `^[A-Z]{2}$`),
		}, 1, 0)}})
	orders := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "order-service"})
	orders.AddInteraction().
		Given("order o-1 is confirmed").
		UponReceiving("a request for a confirmed order").
		WithRequest(contract.Req{Method: "GET", Path: contract.FromProviderState("/orders/${orderId}", "/orders/o-1"), Headers: map[string]any{"Authorization": shoppact.Bearer()}}).
		WillRespondWith(contract.Resp{Status: 200, Headers: json, Body: map[string]any{
			"status": "CONFIRMED",
			"items":  contract.EachLike(map[string]any{"sku": contract.Like("SKU-0001"), "quantity": contract.Integer(2)}, 1, 0),
		}})

	users.Run(t, func(userURL string) error {
		var err error
		orders.Run(t, func(orderURL string) error {
			m := &Main{Config: Config{Rates: RateTable{Home: "DE", Rates: DefaultRates()}, ItemWeightG: 500}}
			m.orders, m.users = kit.NewClient("order-service", orderURL), kit.NewClient("user-service", userURL)
			m.account = &kit.ServiceAccount{Users: m.users, Email: "shipping@shop.internal", Password: "shipping-service-account", Name: Service}
			quote, addr, weight, perr := m.plan(context.Background(), Shipment{ID: "s-1", OrderID: "o-1", UserID: "u-42"})
			switch {
			case perr != nil:
				err = perr
			case addr.Country != "DE" || weight != 1000 || quote.Carrier == "":
				err = fmt.Errorf("planned %+v to %+v weighing %d", quote, addr, weight)
			}
			return err
		})
		return err
	})
}
