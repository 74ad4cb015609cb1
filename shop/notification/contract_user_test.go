package notification

import (
	"context"
	"fmt"
	"testing"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

// TestContractUser records notification-service's pact with user-service:
// the signing keys its token verifier fetches for the notifications API.
// The real notification-service runs against the mock and answers an
// authenticated listing.
func TestContractUser(t *testing.T) {
	p := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "user-service"})
	shoppact.JWKS(p)
	p.Run(t, func(base string) error {
		cfg := kittest.SQLiteEnv(t).Config(t, Service)
		m := &Main{Config: Config{Kit: cfg, Users: base, DataDir: t.TempDir()}}
		if err := m.Start(context.Background()); err != nil {
			return err
		}
		defer func() { _ = m.Close() }()
		r := kittest.Call(t, "GET", m.URL()+"/notifications", shoppact.Token(t, "u-42", kit.RoleCustomer), nil)
		if r.Status != 200 {
			return fmt.Errorf("an authenticated listing: %d %s", r.Status, r.Body)
		}
		return nil
	})
}
