package order

import (
	"context"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
)

// authHeaders carry the customer's token, which order-service forwards
// while it handles their request.
func authHeaders() map[string]any { return map[string]any{"Authorization": shoppact.Bearer()} }

// userPact is order-service's pact with user-service: the signing keys
// its token verifier fetches, and the check that the caller exists with
// a delivery address.
func userPact() *contract.ConsumerPact {
	p := contract.NewConsumerPact(contract.Config{Consumer: Service, Provider: "user-service"})
	shoppact.JWKS(p)
	p.AddInteraction().
		Given("the caller is a registered customer with a delivery address").
		UponReceiving("a request for the caller's addresses").
		WithRequest(contract.Req{Method: "GET", Path: "/users/me/addresses", Headers: authHeaders()}).
		WillRespondWith(contract.Resp{Status: 200, Headers: jsonHeaders(), Body: map[string]any{
			"addresses": contract.EachLike(map[string]any{"country": contract.Regex("DE", `^[A-Z]{2}$`)}, 1, 0)}})
	return p
}

// startOrder runs the real order-service against the given dependencies;
// the ones a test does not exercise point at a closed port.
func startOrder(t *testing.T, deps map[string]string) *Main {
	t.Helper()
	cfg := kittest.SQLiteEnv(t).Config(t, Service)
	for _, d := range Deps {
		cfg.Deps[d] = "http://127.0.0.1:1"
	}
	for k, v := range deps {
		cfg.Deps[k] = v
	}
	m := &Main{Config: Config{Kit: cfg, CallTimeout: time.Second}}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// TestContractUser records order-service's pact with user-service through
// the real order-service placing an order: the token is verified with the
// served keys and the caller checked before the cart is read (cart-service
// is down here, so the order is refused with 502).
func TestContractUser(t *testing.T) {
	userPact().Run(t, func(users string) error {
		m := startOrder(t, map[string]string{"user": users})
		r := kittest.Call(t, "POST", m.URL()+"/orders", shoppact.Token(t, "u-42", kit.RoleCustomer), nil)
		if r.Status != 502 {
			t.Errorf("place an order with cart-service down: %d %s, want 502", r.Status, r.Body)
		}
		return m.Close()
	})
}
