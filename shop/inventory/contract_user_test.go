package inventory

import (
	"context"
	"fmt"
	"testing"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

// TestContractUser records inventory-service's pact with user-service:
// the signing keys its token verifier fetches. The real inventory-service
// runs against the mock and answers an authenticated stock query.
func TestContractUser(t *testing.T) {
	p := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "user-service"})
	shoppact.JWKS(p)
	p.Run(t, func(base string) error {
		cfg := kittest.SQLiteEnv(t).Config(t, Service)
		cfg.Deps["user"], cfg.Deps["product"] = base, "http://127.0.0.1:1"
		m := &Main{Config: Config{Kit: cfg, Users: base}}
		if err := m.Start(context.Background()); err != nil {
			return err
		}
		defer func() { _ = m.Close() }()
		r := kittest.Call(t, "GET", m.URL()+"/stock/SKU-0001", shoppact.Token(t, "u-42", kit.RoleCustomer), nil)
		if r.Status != 404 || r.ErrorCode() != "not_found" { // authenticated; nothing received yet
			return fmt.Errorf("an authenticated stock query: %d %s", r.Status, r.Body)
		}
		return nil
	})
}
