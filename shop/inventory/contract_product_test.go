package inventory

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

// TestContractProduct records inventory-service's pact with
// product-service: the SKU validation checkSKU does before stock is
// received or reserved.
func TestContractProduct(t *testing.T) {
	p := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "product-service"})
	for _, c := range []struct {
		sku, state, desc string
		active           bool
	}{
		{"SKU-0001", "product SKU-0001 exists", "a request to validate an active product", true},
		{"SKU-0002", "product SKU-0002 is withdrawn", "a request to validate a withdrawn product", false},
	} {
		p.AddInteraction().
			Given(c.state, contract.Params{"sku": c.sku}).
			UponReceiving(c.desc).
			WithRequest(contract.Req{Method: "GET", Path: "/products/" + c.sku}).
			WillRespondWith(contract.Resp{Status: 200, Headers: map[string]any{"Content-Type": shoppact.JSONType()},
				Body: map[string]any{"sku": c.sku, "active": c.active}})
	}
	p.AddInteraction().
		Given("product SKU-9999 does not exist", contract.Params{"sku": "SKU-9999"}).
		UponReceiving("a request to validate an unknown product").
		WithRequest(contract.Req{Method: "GET", Path: "/products/SKU-9999"}).
		WillRespondWith(contract.Resp{Status: 404, Body: map[string]any{"code": "not_found", "detail": contract.Like("product SKU-9999 does not exist")}})

	p.Run(t, func(base string) error {
		m := &Main{products: kit.NewClient("product-service", base), skus: map[string]time.Time{}}
		ctx := context.Background()
		if err := m.checkSKU(ctx, "SKU-0001"); err != nil {
			return err
		}
		for sku, code := range map[string]string{"SKU-0002": "unavailable_sku", "SKU-9999": "unknown_sku"} {
			err := m.checkSKU(ctx, sku)
			var ke *kit.Error
			if !errors.As(err, &ke) || ke.Code != code {
				return fmt.Errorf("sku %s: want a %s error, got %v", sku, code, err) //nolint:errorlint // err may be nil here: %w would print %!w(<nil>)
			}
		}
		return nil
	})
}
