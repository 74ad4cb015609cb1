package cart

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

// productBody is a product as cart-service reads it (product-service
// sends more; the consumer states only what it uses).
func productBody(sku string, active bool) map[string]any {
	return map[string]any{
		"sku":      sku,
		"name":     contract.Like("Demo product 1"),
		"price":    contract.Integer(1237),
		"currency": contract.Regex("EUR", `^[A-Z]{3}$`),
		"active":   active,
	}
}

// TestContractProduct records cart-service's pact with product-service:
// the lookups cart's product function makes to validate and price a line.
func TestContractProduct(t *testing.T) {
	p := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "product-service"})
	p.AddInteraction().
		Given("product SKU-0001 exists", contract.Params{"sku": "SKU-0001"}).
		UponReceiving("a request for an active product").
		WithRequest(contract.Req{Method: "GET", Path: "/products/SKU-0001"}).
		WillRespondWith(contract.Resp{Status: 200, Headers: map[string]any{"Content-Type": shoppact.JSONType()}, Body: productBody("SKU-0001", true)})
	p.AddInteraction().
		Given("product SKU-0002 is withdrawn", contract.Params{"sku": "SKU-0002"}).
		UponReceiving("a request for a withdrawn product").
		WithRequest(contract.Req{Method: "GET", Path: "/products/SKU-0002"}).
		WillRespondWith(contract.Resp{Status: 200, Headers: map[string]any{"Content-Type": shoppact.JSONType()}, Body: productBody("SKU-0002", false)})
	p.AddInteraction().
		Given("product SKU-9999 does not exist", contract.Params{"sku": "SKU-9999"}).
		UponReceiving("a request for an unknown product").
		WithRequest(contract.Req{Method: "GET", Path: "/products/SKU-9999"}).
		WillRespondWith(contract.Resp{Status: 404, Body: map[string]any{"code": "not_found", "detail": contract.Like("product SKU-9999 does not exist")}})

	p.Run(t, func(base string) error {
		m := &Main{products: kit.NewClient("product-service", base)}
		ctx := context.Background()
		got, err := m.product(ctx, "SKU-0001")
		if err != nil {
			return err
		}
		if got.SKU != "SKU-0001" || got.Price != 1237 || got.Currency != "EUR" || got.Name == "" {
			return fmt.Errorf("product read as %+v", got)
		}
		for sku, code := range map[string]string{"SKU-0002": "unavailable_sku", "SKU-9999": "unknown_sku"} {
			_, err := m.product(ctx, sku)
			var ke *kit.Error
			if !errors.As(err, &ke) || ke.Code != code {
				return fmt.Errorf("product %s: want a %s error, got %v", sku, code, err) //nolint:errorlint // err may be nil here: %w would print %!w(<nil>)
			}
		}
		return nil
	})
}
