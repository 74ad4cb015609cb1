package user

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
)

func start(t *testing.T, env kittest.Env) *Main {
	t.Helper()
	m := &Main{Config: Config{Kit: env.Config(t, Service), Admin: Admin{Email: "admin@shop.test", Password: "correct horse"}, KeySecret: "test secret"}}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func register(t *testing.T, url, email string) (User, string) {
	t.Helper()
	r := kittest.Call(t, "POST", url+"/users", "", map[string]string{"email": email, "password": "correct horse", "name": "Ada"})
	if r.Status != 201 {
		t.Fatalf("register %s: %d %s", email, r.Status, r.Body)
	}
	var u User
	r.JSON(t, &u)
	r = kittest.Call(t, "POST", url+"/login", "", map[string]string{"email": email, "password": "correct horse"})
	if r.Status != 200 {
		t.Fatalf("login %s: %d %s", email, r.Status, r.Body)
	}
	var l struct{ Token string }
	r.JSON(t, &l)
	return u, l.Token
}

func count(t *testing.T, m *Main, table string) int {
	var n int
	if err := m.app.DB.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestUserService(t *testing.T) {
	kittest.Each(t, func(t *testing.T, env kittest.Env) {
		m := start(t, env)
		url := m.URL()

		// UserRegistered reaches a consumer, Avro-decoded, with the standard headers.
		var mu sync.Mutex
		var events []bus.Message
		sub, err := m.app.Bus.Subscribe(context.Background(), bus.Subscription{Topic: "UserRegistered", Group: "test", Handler: func(_ context.Context, msg bus.Message) error {
			mu.Lock()
			events = append(events, msg)
			mu.Unlock()
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sub.Close() }()

		ada, adaTok := register(t, url, "Ada@Shop.test")
		if ada.Email != "ada@shop.test" || ada.Role != kit.RoleCustomer {
			t.Errorf("registered %+v", ada)
		}
		// The admin exists from the start; registering its address, in
		// any case, is refused.
		if r := kittest.Call(t, "POST", url+"/users", "", map[string]string{"email": "ADMIN@shop.test", "password": "another password", "name": "Mallory"}); r.Status != 409 {
			t.Errorf("registering the admin's address: %d %s", r.Status, r.Body)
		}
		var login struct {
			Token string
			User  User
		}
		kittest.Call(t, "POST", url+"/login", "", map[string]string{"email": "admin@shop.test", "password": "correct horse"}).JSON(t, &login)
		admin, adminTok := login.User, login.Token
		if admin.Role != kit.RoleAdmin || adminTok == "" {
			t.Errorf("admin logged in as %+v", admin)
		}

		t.Run("bad input writes nothing", func(t *testing.T) {
			before := count(t, m, "users")
			for _, tc := range []struct {
				name   string
				body   any
				status int
				code   string
			}{
				{"duplicate", map[string]string{"email": "ada@shop.test", "password": "12345678", "name": "x"}, 409, "email_taken"},
				{"missing email", map[string]string{"password": "12345678", "name": "x"}, 400, "bad_request"},
				{"bad email", map[string]string{"email": "ada", "password": "12345678", "name": "x"}, 400, "bad_request"},
				{"short password", map[string]string{"email": "b@shop.test", "password": "1234", "name": "x"}, 400, "bad_request"},
				{"missing name", map[string]string{"email": "b@shop.test", "password": "12345678"}, 400, "bad_request"},
				{"unknown field", map[string]string{"email": "b@shop.test", "password": "12345678", "name": "x", "role": "admin"}, 400, "bad_request"},
				{"malformed", `{"email":`, 400, "bad_request"},
				{"oversized", `{"name":"` + strings.Repeat("x", kit.MaxBody) + `"}`, 413, "too_large"},
			} {
				r := kittest.Call(t, "POST", url+"/users", "", tc.body)
				if r.Status != tc.status || r.ErrorCode() != tc.code {
					t.Errorf("%s: %d %s, want %d %s", tc.name, r.Status, r.Body, tc.status, tc.code)
				}
			}
			if after := count(t, m, "users"); after != before {
				t.Errorf("bad registrations wrote %d users", after-before)
			}
		})

		t.Run("login", func(t *testing.T) {
			for _, body := range []map[string]string{
				{"email": "ada@shop.test", "password": "wrong password"},
				{"email": "nobody@shop.test", "password": "correct horse"},
			} {
				if r := kittest.Call(t, "POST", url+"/login", "", body); r.Status != 401 {
					t.Errorf("login %v: %d, want 401", body, r.Status)
				}
			}
		})

		t.Run("tokens", func(t *testing.T) {
			if r := kittest.Call(t, "GET", url+"/users/me", adaTok, nil); r.Status != 200 || !strings.Contains(string(r.Body), ada.ID) {
				t.Errorf("me: %d %s", r.Status, r.Body)
			}
			// Another service verifies over the real JWKS endpoint.
			v := kit.NewVerifier(url)
			c, err := v.Verify(context.Background(), adaTok)
			if err != nil || c.UserID() != ada.ID || c.Role != kit.RoleCustomer {
				t.Fatalf("remote verify: %+v %v", c, err)
			}
			// Expired, forged, alg none, wrong audience, garbage, missing.
			expired := *m
			expired.now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
			expTok, _, _ := expired.Issue(ada)
			_, other, _ := ed25519.GenerateKey(rand.Reader)
			forged := jwt.NewWithClaims(jwt.SigningMethodEdDSA, kit.Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: kit.TokenIssuer, Subject: admin.ID,
				Audience: jwt.ClaimStrings{kit.TokenAudience}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}, Role: kit.RoleAdmin})
			forged.Header["kid"] = m.kid
			forgedTok, _ := forged.SignedString(other)
			none := jwt.NewWithClaims(jwt.SigningMethodNone, kit.Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: kit.TokenIssuer, Subject: admin.ID,
				Audience: jwt.ClaimStrings{kit.TokenAudience}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}, Role: kit.RoleAdmin})
			noneTok, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
			for name, tok := range map[string]string{"expired": expTok, "forged": forgedTok, "alg none": noneTok, "garbage": "a.b.c", "missing": ""} {
				r := kittest.Call(t, "GET", url+"/users/me", tok, nil)
				if r.Status != 401 || r.ErrorCode() != "unauthorized" {
					t.Errorf("%s token: %d %s, want 401", name, r.Status, r.Body)
				}
			}
		})

		t.Run("profiles and ownership", func(t *testing.T) {
			bob, bobTok := register(t, url, "bob@shop.test")
			if r := kittest.Call(t, "GET", url+"/users/"+ada.ID, bobTok, nil); r.Status != 403 {
				t.Errorf("bob reading ada: %d, want 403", r.Status)
			}
			if r := kittest.Call(t, "GET", url+"/users/"+bob.ID, adminTok, nil); r.Status != 200 {
				t.Errorf("admin reading bob: %d %s", r.Status, r.Body)
			}
			if r := kittest.Call(t, "GET", url+"/users/nope", adminTok, nil); r.Status != 404 {
				t.Errorf("unknown user: %d", r.Status)
			}
			if r := kittest.Call(t, "PATCH", url+"/users/me", bobTok, map[string]string{"name": "Robert"}); r.Status != 200 || !strings.Contains(string(r.Body), "Robert") {
				t.Errorf("rename: %d %s", r.Status, r.Body)
			}
			addr := map[string]string{"line1": "1 Main St", "city": "Berlin", "postalCode": "10115", "country": "DE"}
			if r := kittest.Call(t, "POST", url+"/users/me/addresses", bobTok, addr); r.Status != 201 {
				t.Errorf("add address: %d %s", r.Status, r.Body)
			}
			before := count(t, m, "addresses")
			for _, bad := range []map[string]string{
				{"line1": "1 Main St", "city": "Berlin", "postalCode": "10115", "country": "Germany"},
				{"city": "Berlin", "postalCode": "10115", "country": "DE"},
			} {
				if r := kittest.Call(t, "POST", url+"/users/me/addresses", bobTok, bad); r.Status != 400 {
					t.Errorf("bad address %v: %d", bad, r.Status)
				}
			}
			if count(t, m, "addresses") != before {
				t.Error("bad address written")
			}
			r := kittest.Call(t, "GET", url+"/users/me/addresses", adaTok, nil)
			if r.Status != 200 || strings.Contains(string(r.Body), "Berlin") {
				t.Errorf("ada sees bob's addresses: %s", r.Body)
			}
		})

		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			n := len(events)
			mu.Unlock()
			if n >= 3 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(events) != 3 {
			t.Fatalf("%d UserRegistered events, want 3 (the admin at start, ada, bob)", len(events))
		}
		var got registered
		if err := m.app.Codec.Decode(context.Background(), "UserRegistered", events[1].Payload, &got); err != nil {
			t.Fatal(err)
		}
		if got.UserID != ada.ID || got.Email != "ada@shop.test" || got.Version != 1 || events[1].Key != ada.ID ||
			events[1].ID() == "" || events[1].Headers[bus.HeaderTraceparent] == "" || events[1].Headers[bus.HeaderOccurredAt] == "" {
			t.Errorf("event %+v headers %v", got, events[1].Headers)
		}
	})
}

func TestSigningKeySurvivesRestart(t *testing.T) {
	env := kittest.Env{NewDSN: func(testing.TB) string { return "" }, BusURL: kittest.EmbeddedNATS(t)}
	env.BusStream = kittest.Stream(t, env.BusURL)
	dsn := t.TempDir() + "/user.db"
	cfg := env.Config(t, Service)
	cfg.DatabaseURL = dsn
	m1 := &Main{Config: Config{Kit: cfg, KeySecret: "s3cret"}}
	if err := m1.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, tok := register(t, m1.URL(), "ada@shop.test")
	// The seed is stored sealed, never in clear.
	var stored string
	if err := m1.app.DB.QueryRowContext(context.Background(), `SELECT seed FROM signing_keys`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored, sealedPrefix) || strings.Contains(stored, base64.StdEncoding.EncodeToString(m1.priv.Seed())) {
		t.Errorf("signing key stored as %q", stored)
	}
	_ = m1.Close()
	// Another secret does not open it: the start fails, saying so.
	bad := &Main{Config: Config{Kit: cfg, KeySecret: "guess"}}
	if err := bad.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "SIGNING_KEY_SECRET") {
		t.Errorf("start with another secret: %v", err)
		_ = bad.Close()
	}
	m2 := &Main{Config: Config{Kit: cfg, KeySecret: "s3cret"}}
	if err := m2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m2.Close() }()
	if r := kittest.Call(t, "GET", m2.URL()+"/users/me", tok, nil); r.Status != 200 {
		t.Errorf("token from before the restart: %d %s", r.Status, r.Body)
	}
}

func TestPassword(t *testing.T) {
	h := HashPassword("correct horse")
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") || !CheckPassword(h, "correct horse") || CheckPassword(h, "correct horsE") {
		t.Errorf("hash %s", h)
	}
	for _, bad := range []string{"", "$argon2id$", "$bcrypt$x$y$z$w", "$argon2id$v=19$m=1,t=0,p=1$AA$AA"} {
		if CheckPassword(bad, "x") {
			t.Errorf("CheckPassword(%q) = true", bad)
		}
	}
}
