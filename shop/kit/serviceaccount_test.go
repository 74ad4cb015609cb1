package kit_test

import (
	"context"
	"strings"
	"testing"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/user/usertest"
)

func TestServiceAccount(t *testing.T) {
	users, _, _ := usertest.StartForTest(t, kittest.SQLiteEnv(t))
	ctx := context.Background()
	acct := &kit.ServiceAccount{Users: kit.NewClient("user-service", users.URL()), Email: "svc@shop.test", Password: "service password", Name: "svc"}
	tok, err := acct.Token(ctx) // registers on first use
	if err != nil {
		t.Fatal(err)
	}
	claims, err := kit.NewVerifier(users.URL()).Verify(ctx, tok)
	if err != nil || claims.Email != "svc@shop.test" {
		t.Fatalf("token: %+v, %v", claims, err)
	}
	if again, _ := acct.Token(ctx); again != tok {
		t.Error("a fresh token was fetched while the cached one is valid")
	}
	acct.Forget()
	if _, err := acct.Token(ctx); err != nil {
		t.Errorf("log in again after Forget: %v", err)
	}
	wrong := &kit.ServiceAccount{Users: kit.NewClient("user-service", users.URL()), Email: "svc@shop.test", Password: "another password"}
	if _, err := wrong.Token(ctx); err == nil || !strings.Contains(err.Error(), "another password") {
		t.Errorf("wrong password: err = %v; want one saying the account has another password", err)
	}
	down := &kit.ServiceAccount{Users: kit.NewClient("user-service", "http://127.0.0.1:1"), Email: "svc@shop.test", Password: "x"}
	if _, err := down.Token(ctx); err == nil || !strings.Contains(err.Error(), "log in service account") {
		t.Errorf("user-service down: err = %v", err)
	}
}
