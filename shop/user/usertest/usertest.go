// Package usertest runs a real user-service for other services' tests.
package usertest

import (
	"context"
	"testing"

	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
	"github.com/flotilla-ci/flotilla/shop/user"
)

// StartForTest runs a user-service for another service's tests (admins:
// admin@shop.test) and returns it with a customer's and an admin's token.
func StartForTest(t testing.TB, env kittest.Env) (m *user.Main, customerToken, adminToken string) {
	t.Helper()
	m = &user.Main{Config: user.Config{Kit: env.Config(t, user.Service), Admin: user.Admin{Email: "admin@shop.test", Password: "correct horse"}, KeySecret: "test secret"}}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m, Token(t, m.URL(), "customer@shop.test"), Token(t, m.URL(), "admin@shop.test")
}

// Token registers email (if new) and logs in, returning the token.
func Token(t testing.TB, url, email string) string {
	t.Helper()
	kittest.Call(t, "POST", url+"/users", "", map[string]string{"email": email, "password": "correct horse", "name": email})
	r := kittest.Call(t, "POST", url+"/login", "", map[string]string{"email": email, "password": "correct horse"})
	if r.Status != 200 {
		t.Fatalf("login %s: %d %s", email, r.Status, r.Body)
	}
	var l struct{ Token string }
	r.JSON(t, &l)
	return l.Token
}
