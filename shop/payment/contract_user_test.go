package payment

import (
	"context"
	"fmt"
	"testing"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

// TestContractUser records payment-service's pact with user-service: the
// signing keys its token verifier fetches. The real payment-service runs
// against the mock and answers a customer reading a payment.
func TestContractUser(t *testing.T) {
	p := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "user-service"})
	shoppact.JWKS(p)
	p.Run(t, func(base string) error {
		cfg := kittest.SQLiteEnv(t).Config(t, Service)
		cfg.Deps["user"] = base
		m := &Main{Config: Config{Kit: cfg}}
		if err := m.Start(context.Background()); err != nil {
			return err
		}
		defer func() { _ = m.Close() }()
		r := kittest.Call(t, "GET", m.URL()+"/payments/p-unknown", shoppact.Token(t, "u-42", kit.RoleCustomer), nil)
		if r.Status != 404 || r.ErrorCode() != "not_found" {
			return fmt.Errorf("an authenticated query for an unknown payment: %d %s", r.Status, r.Body)
		}
		return nil
	})
}
