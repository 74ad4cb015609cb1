package user_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/shoptest/shoppact"
	"github.com/flotilla-ci/flotilla/shop/user"
	"github.com/flotilla-ci/flotilla/shop/user/usertest"
)

// TestContractProvider verifies every consumer's pact with user-service
// against the real service on SQLite; state handlers register the caller
// and the request filter sends the token user-service issued to it.
func TestContractProvider(t *testing.T) {
	env := kittest.SQLiteEnv(t)
	m := &user.Main{Config: user.Config{Kit: env.Config(t, user.Service), Admin: user.Admin{Email: "admin@shop.test", Password: "correct horse"}, KeySecret: "test secret"}}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	auth := &shoppact.Auth{}
	register := func(email, password string) error {
		r := kittest.Call(t, "POST", m.URL()+"/users", "", map[string]string{"email": email, "password": password, "name": email})
		if r.Status != 201 && r.Status != 409 {
			return fmt.Errorf("register %s: %d %s", email, r.Status, r.Body)
		}
		return nil
	}
	states := map[string]contract.StateHandler{
		"the caller is a registered admin": func(_ context.Context, setup bool, _ map[string]any) (map[string]any, error) {
			auth.Set(usertest.Token(t, m.URL(), "admin@shop.test"))
			return nil, nil
		},
		"the caller is a registered customer": func(_ context.Context, setup bool, _ map[string]any) (map[string]any, error) {
			auth.Set(usertest.Token(t, m.URL(), "customer@shop.test"))
			return nil, nil
		},
		"the caller is a registered customer with a delivery address": func(_ context.Context, setup bool, _ map[string]any) (map[string]any, error) {
			tok := usertest.Token(t, m.URL(), "customer@shop.test")
			if r := kittest.Call(t, "POST", m.URL()+"/users/me/addresses", tok, map[string]string{"line1": "Hauptstr. 1", "city": "Berlin", "postalCode": "10115", "country": "DE"}); r.Status != 201 {
				return nil, fmt.Errorf("add an address: %d %s", r.Status, r.Body)
			}
			auth.Set(tok)
			return nil, nil
		},
		"user u-42 has a delivery address in DE": func(context.Context, bool, map[string]any) (map[string]any, error) {
			tok := usertest.Token(t, m.URL(), "addressee@shop.test")
			r := kittest.Call(t, "POST", m.URL()+"/users/me/addresses", tok, map[string]string{"line1": "Hauptstr. 1", "city": "Berlin", "postalCode": "10115", "country": "DE"})
			if r.Status != 201 {
				return nil, fmt.Errorf("add an address: %d %s", r.Status, r.Body)
			}
			var me user.User
			kittest.Call(t, "GET", m.URL()+"/users/me", tok, nil).JSON(t, &me)
			auth.Set("") // shipping-service calls as itself
			return map[string]any{"userId": me.ID}, nil
		},
	}
	v := shoppact.Verifier(t, user.Service, m.URL(), auth, states)
	// Messages are what registering through the API wrote to the outbox.
	registered := 0
	v.MessageProducers = map[string]contract.MessageProducer{
		"a UserRegistered event": func(ctx context.Context, _ []contract.ProviderState) (contract.Message, error) {
			registered++
			if err := register(fmt.Sprintf("new-%d@shop.test", registered), "correct horse"); err != nil {
				return contract.Message{}, err
			}
			avsc, err := shoppact.Schema(user.Schemas(), "UserRegistered")
			if err != nil {
				return contract.Message{}, err
			}
			return shoppact.Outboxed(ctx, m.App(), avsc, "UserRegistered")
		},
	}
	contract.Verify(t, v)

	// The same pacts fail against a user-service that renamed a field.
	t.Run("broken provider fails", func(t *testing.T) {
		broken := shoppact.Tamper(t, m.URL(), "/users/me", func(b map[string]any) { b["userId"] = b["id"]; delete(b, "id") })
		bv := shoppact.Verifier(t, user.Service, broken, auth, states)
		bv.Sources, bv.Publisher = shoppact.Files(t), nil // broken on purpose: pacts/, nothing published
		bv.MessageProducers = v.MessageProducers
		rep, err := bv.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var failed []string
		for _, p := range rep.Pacts {
			for _, in := range p.Interactions {
				if !in.OK() {
					failed = append(failed, p.Consumer+": "+contract.FormatInteraction(p, in))
				}
			}
		}
		if rep.OK() || len(failed) == 0 || !strings.Contains(strings.Join(failed, "\n"), "$.id") {
			t.Fatalf("verification against a provider without $.id passed or did not name it:\n%s", strings.Join(failed, "\n"))
		}
		t.Logf("as expected:\n%s", strings.Join(failed, "\n"))
	})
}
