package search_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/search"
	"github.com/flotilla-ci/flotilla/shop/search/bleveindex"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

// TestContractUser records search-service's pact with user-service: the
// signing keys its token verifier fetches. The real search-service runs
// against the mock and answers an admin's request for the rebuild's
// status.
func TestContractUser(t *testing.T) {
	p := contract.NewConsumerPact(contract.Config{Consumer: search.Service, Provider: "user-service"})
	shoppact.JWKS(p)
	p.Run(t, func(base string) error {
		cfg := kittest.SQLiteEnv(t).Config(t, search.Service)
		cfg.Deps["product"], cfg.Deps["user"] = "http://127.0.0.1:1", base
		dir := t.TempDir()
		m := &search.Main{Config: search.Config{Kit: cfg, Users: base, RetryEvery: time.Hour,
			Open:  func() (search.Index, error) { return bleveindex.Open(dir) },
			Reset: func() error { return bleveindex.Reset(dir) }}}
		if err := m.Start(context.Background()); err != nil {
			return err
		}
		defer func() { _ = m.Close() }()
		r := kittest.Call(t, "GET", m.URL()+"/admin/reindex", shoppact.Token(t, "u-1", kit.RoleAdmin), nil)
		if r.Status != 200 {
			return fmt.Errorf("an admin's request for the rebuild's status: %d %s", r.Status, r.Body)
		}
		return nil
	})
}
