package cart

import (
	"context"
	"testing"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

// TestContractUser records cart-service's pact with user-service: the
// signing keys cart's token verifier fetches. The real cart-service runs
// against the mock and serves a customer's cart.
func TestContractUser(t *testing.T) {
	p := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "user-service"})
	shoppact.JWKS(p)
	p.Run(t, func(base string) error {
		cfg := kittest.SQLiteEnv(t).Config(t, Service)
		cfg.Deps["user"], cfg.Deps["product"] = base, "http://127.0.0.1:1"
		m := &Main{Config: Config{Kit: cfg}}
		if err := m.Start(context.Background()); err != nil {
			return err
		}
		defer func() { _ = m.Close() }()
		r := kittest.Call(t, "GET", m.URL()+"/carts/me", shoppact.Token(t, "u-42", kit.RoleCustomer), nil)
		var c Cart
		r.JSON(t, &c)
		if r.Status != 200 || c.UserID != "u-42" {
			t.Errorf("GET /carts/me with a token signed by the served key: %d %s", r.Status, r.Body)
		}
		return nil
	})
}
