package product

import (
	"context"
	"fmt"
	"testing"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

// TestContractUser records product-service's pact with user-service: the
// signing keys its token verifier fetches and the acting admin it resolves
// as the seller of a new product. The real product-service runs against
// the mock and creates a product.
func TestContractUser(t *testing.T) {
	p := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "user-service"})
	shoppact.JWKS(p)
	p.AddInteraction().
		Given("the caller is a registered admin").
		UponReceiving("a request for the caller's profile").
		WithRequest(contract.Req{Method: "GET", Path: "/users/me", Headers: map[string]any{"Authorization": shoppact.Bearer()}}).
		WillRespondWith(contract.Resp{Status: 200, Headers: map[string]any{"Content-Type": shoppact.JSONType()},
			Body: map[string]any{"id": contract.Like("u-42"), "name": contract.Like("Ada Admin")}})
	p.Run(t, func(base string) error {
		cfg := kittest.SQLiteEnv(t).Config(t, Service)
		cfg.Deps["user"] = base
		m := &Main{Config: Config{Kit: cfg}}
		if err := m.Start(context.Background()); err != nil {
			return err
		}
		defer func() { _ = m.Close() }()
		r := kittest.Call(t, "POST", m.URL()+"/products", shoppact.Token(t, "u-42", kit.RoleAdmin),
			map[string]any{"sku": "SKU-0100", "name": "Teapot", "category": "kitchen", "price": 2500, "currency": "EUR"})
		var got Product
		r.JSON(t, &got)
		if r.Status != 201 || got.SellerID != "u-42" || got.SellerName != "Ada Admin" {
			return fmt.Errorf("create a product as an admin: %d %s", r.Status, r.Body)
		}
		return nil
	})
}
