package mesh

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// signClaims signs any claims, so a test can leave out or spoil one.
func signClaims(t *testing.T, method jwt.SigningMethod, kid string, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// goodClaims are the claims the test gateway accepts, valid for an hour
// from now.
func goodClaims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "mallory", "iss": "shop-user-service", "aud": "shop",
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(),
	}
}

func with(c jwt.MapClaims, k string, v any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for kk, vv := range c {
		out[kk] = vv
	}
	if v == nil {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

// refused checks that a request was answered status and never reached
// the service.
func (f *gwFixture) refused(t *testing.T, token string, status int, reason string) {
	t.Helper()
	for len(f.seen) > 0 {
		<-f.seen
	}
	rec := f.do("GET", "/api/orders/1", token, nil)
	if rec.Code != status {
		t.Fatalf("status %d, want %d: %s", rec.Code, status, rec.Body.String())
	}
	if !strings.Contains(rec.Body.String(), reason) {
		t.Errorf("body %q does not say %q", rec.Body.String(), reason)
	}
	if len(f.seen) > 0 {
		t.Errorf("the service got the request")
	}
	if status == http.StatusUnauthorized && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("401 without WWW-Authenticate: %v", rec.Header())
	}
}

// TestGatewayJWTFailsClosed sends tokens that are each wrong in one way;
// every one is refused with 401 and none reaches the service.
func TestGatewayJWTFailsClosed(t *testing.T) {
	f := newGateway(t, nil)
	r1, r2 := rsaKeys(t)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	f.keys.add("rsa-1", &r1.PublicKey)
	f.keys.add("ed-1", edPub)
	now := f.clock.Now()
	good := goodClaims(now)
	der, err := x509.MarshalPKIXPublicKey(&r1.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	edJWK, _ := json.Marshal(map[string]string{"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(edPub)})

	// The control: the same claims, rightly signed, pass.
	if rec := f.do("GET", "/api/orders/1", signClaims(t, jwt.SigningMethodRS256, "rsa-1", r1, good), nil); rec.Code != 200 {
		t.Fatalf("valid token: %d %s", rec.Code, rec.Body.String())
	}
	tests := []struct {
		name   string
		token  string
		reason string
	}{
		{"wrong issuer", signClaims(t, jwt.SigningMethodRS256, "rsa-1", r1, with(good, "iss", "evil-issuer")), "wrong issuer or audience"},
		{"no issuer", signClaims(t, jwt.SigningMethodRS256, "rsa-1", r1, with(good, "iss", nil)), "token has no iss"},
		{"wrong audience", signClaims(t, jwt.SigningMethodRS256, "rsa-1", r1, with(good, "aud", "admin")), "wrong issuer or audience"},
		{"audience list without ours", signClaims(t, jwt.SigningMethodRS256, "rsa-1", r1, with(good, "aud", []string{"admin", "billing"})), "wrong issuer or audience"},
		{"no audience", signClaims(t, jwt.SigningMethodRS256, "rsa-1", r1, with(good, "aud", nil)), "token has no aud"},
		{"no exp", signClaims(t, jwt.SigningMethodRS256, "rsa-1", r1, with(good, "exp", nil)), "token has no exp"},
		{"exp not a number", signClaims(t, jwt.SigningMethodRS256, "rsa-1", r1, with(good, "exp", "tomorrow")), "malformed"},
		{"expired beyond the leeway", signClaims(t, jwt.SigningMethodRS256, "rsa-1", r1, with(good, "exp", now.Add(-time.Minute).Unix())), "token expired"},
		{"nbf in the future", signClaims(t, jwt.SigningMethodRS256, "rsa-1", r1, with(good, "nbf", now.Add(time.Hour).Unix())), "token not valid yet"},
		{"alg none", signClaims(t, jwt.SigningMethodNone, "rsa-1", jwt.UnsafeAllowNoneSignatureType, good), "signing method none not accepted"},
		{"alg none without a kid", signClaims(t, jwt.SigningMethodNone, "", jwt.UnsafeAllowNoneSignatureType, good), "signing method none not accepted"},
		{"HS256 with the RSA modulus as secret", signClaims(t, jwt.SigningMethodHS256, "rsa-1", r1.N.Bytes(), good), "signing method HS256 not accepted"},
		{"HS256 with the PEM public key as secret", signClaims(t, jwt.SigningMethodHS256, "rsa-1", pubPEM, good), "signing method HS256 not accepted"},
		{"HS256 with the Ed25519 key as secret", signClaims(t, jwt.SigningMethodHS256, "ed-1", []byte(edPub), good), "signing method HS256 not accepted"},
		{"HS256 with the JWK as secret", signClaims(t, jwt.SigningMethodHS256, "ed-1", edJWK, good), "signing method HS256 not accepted"},
		{"RS384, not an accepted method", signClaims(t, jwt.SigningMethodRS384, "rsa-1", r1, good), "signing method RS384 not accepted"},
		{"PS256 with the right key", signClaims(t, jwt.SigningMethodPS256, "rsa-1", r1, good), "signing method PS256 not accepted"},
		{"RS256 under the Ed25519 key's kid", signClaims(t, jwt.SigningMethodRS256, "ed-1", r1, good), "invalid token"},
		{"EdDSA under the RSA key's kid", signClaims(t, jwt.SigningMethodEdDSA, "rsa-1", edPriv, good), "invalid token"},
		{"signed by another key", signClaims(t, jwt.SigningMethodRS256, "rsa-1", r2, good), "invalid signature"},
		{"unknown kid", signClaims(t, jwt.SigningMethodRS256, "rsa-9", r2, good), "unknown signing key"},
		{"no kid", signClaims(t, jwt.SigningMethodRS256, "", r1, good), "unknown signing key"},
		{"claims changed after signing", tamper(t, signClaims(t, jwt.SigningMethodRS256, "rsa-1", r1, good), with(good, "sub", "admin")), "invalid signature"},
		{"signature cut off", strings.TrimRightFunc(signClaims(t, jwt.SigningMethodRS256, "rsa-1", r1, good), func(r rune) bool { return r != '.' }), "invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.clock.Add(2 * time.Second) // past the refetch interval
			f.refused(t, tc.token, http.StatusUnauthorized, tc.reason)
		})
	}
}

// tamper swaps a signed token's claims, keeping its header and signature.
func tamper(t *testing.T, token string, claims jwt.MapClaims) string {
	t.Helper()
	parts := strings.Split(token, ".")
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

// TestGatewayJWKSUnavailable: a gateway that cannot get the keys answers
// 503 and never lets a request through; keys it already holds stay in
// use while the key server is down, and a rotated key is taken once the
// server is back.
func TestGatewayJWKSUnavailable(t *testing.T) {
	r1, r2 := rsaKeys(t)
	for _, down := range []struct {
		name string
		set  func(f *gwFixture)
	}{
		{"status 500", func(f *gwFixture) { f.keys.answer(http.StatusInternalServerError, "oops") }},
		{"garbage", func(f *gwFixture) { f.keys.answer(http.StatusOK, "<html>not a key set</html>") }},
		{"no usable key", func(f *gwFixture) { f.keys.answer(http.StatusOK, `{"keys":[{"kty":"EC","kid":"x"}]}`) }},
		{"empty set", func(f *gwFixture) { f.keys.answer(http.StatusOK, `{"keys":[]}`) }},
		{"unreachable", func(f *gwFixture) { f.keys.srv.CloseClientConnections(); _ = f.keys.srv.Listener.Close() }},
	} {
		t.Run(down.name, func(t *testing.T) {
			t.Run("at start", func(t *testing.T) {
				f := newGateway(t, nil)
				f.keys.add("rsa-1", &r1.PublicKey)
				down.set(f)
				tok := sign(t, jwt.SigningMethodRS256, "rsa-1", r1, "alice", f.clock.Now().Add(time.Hour))
				f.refused(t, tok, http.StatusServiceUnavailable, "signing keys unavailable")
				// Within the refetch interval the answer is the same,
				// without asking the key server again.
				n := f.keys.fetches.Load()
				f.refused(t, tok, http.StatusServiceUnavailable, "signing keys unavailable")
				if got := f.keys.fetches.Load(); got != n {
					t.Errorf("%d fetches within the refetch interval, want none", got-n)
				}
				// A forged token is refused too, never let through.
				f.refused(t, sign(t, jwt.SigningMethodRS256, "rsa-1", r2, "mallory", f.clock.Now().Add(time.Hour)), http.StatusServiceUnavailable, "signing keys unavailable")
			})
			t.Run("after keys were cached", func(t *testing.T) {
				f := newGateway(t, nil)
				f.keys.add("rsa-1", &r1.PublicKey)
				exp := f.clock.Now().Add(2 * time.Hour)
				alice := sign(t, jwt.SigningMethodRS256, "rsa-1", r1, "alice", exp)
				if rec := f.do("GET", "/api/orders/1", alice, nil); rec.Code != 200 {
					t.Fatalf("valid token: %d %s", rec.Code, rec.Body.String())
				}
				down.set(f)
				// Past the cache TTL the refetch fails: the keys held
				// stay in use, for good and forged tokens alike.
				f.clock.Add(11 * time.Minute)
				if rec := f.do("GET", "/api/orders/1", alice, nil); rec.Code != 200 {
					t.Errorf("cached key while the key server is down: %d %s", rec.Code, rec.Body.String())
				}
				f.refused(t, sign(t, jwt.SigningMethodRS256, "rsa-1", r2, "mallory", exp), http.StatusUnauthorized, "invalid signature")
				// A key rotated in while the server is down cannot be
				// checked: 503, not a pass and not a 401 that would make
				// clients drop a good token.
				f.clock.Add(2 * time.Second)
				carol := sign(t, jwt.SigningMethodRS256, "rsa-2", r2, "carol", exp)
				f.refused(t, carol, http.StatusServiceUnavailable, "signing keys unavailable")
			})
		})
	}
}

// TestGatewayJWKSRotation: after the key server comes back, a rotated-in
// key is accepted and a rotated-out one refused.
func TestGatewayJWKSRotation(t *testing.T) {
	r1, r2 := rsaKeys(t)
	f := newGateway(t, nil)
	f.keys.add("rsa-1", &r1.PublicKey)
	exp := f.clock.Now().Add(2 * time.Hour)
	alice := sign(t, jwt.SigningMethodRS256, "rsa-1", r1, "alice", exp)
	carol := sign(t, jwt.SigningMethodRS256, "rsa-2", r2, "carol", exp)
	if rec := f.do("GET", "/api/orders/1", alice, nil); rec.Code != 200 {
		t.Fatalf("valid token: %d %s", rec.Code, rec.Body.String())
	}
	f.keys.answer(http.StatusBadGateway, "")
	f.clock.Add(2 * time.Second)
	f.refused(t, carol, http.StatusServiceUnavailable, "signing keys unavailable")

	// The server is back with rsa-1 replaced by rsa-2.
	f.keys.mu.Lock()
	f.keys.keys = nil
	f.keys.mu.Unlock()
	f.keys.add("rsa-2", &r2.PublicKey)
	f.keys.answer(0, "")
	f.clock.Add(2 * time.Second)
	if rec := f.do("GET", "/api/orders/1", carol, nil); rec.Code != 200 {
		t.Fatalf("rotated-in key: %d %s", rec.Code, rec.Body.String())
	}
	f.refused(t, alice, http.StatusUnauthorized, "unknown signing key")
}

func TestParseJWKS(t *testing.T) {
	r1, _ := rsaKeys(t)
	b64 := base64.RawURLEncoding.EncodeToString
	n := b64(r1.N.Bytes())
	tests := []struct {
		name, doc, err string
	}{
		{"not JSON", `<html>`, "parse"},
		{"no keys", `{"keys":[]}`, "no usable"},
		{"only an encryption key", `{"keys":[{"kty":"RSA","kid":"a","use":"enc","n":"` + n + `","e":"AQAB"}]}`, "no usable"},
		{"short modulus", `{"keys":[{"kty":"RSA","kid":"a","n":"` + b64(make([]byte, 100)) + `","e":"AQAB"}]}`, "bad RSA"},
		{"modulus padded with zeros", `{"keys":[{"kty":"RSA","kid":"a","n":"` + b64(append(make([]byte, 200), bytes.Repeat([]byte{0xff}, 57)...)) + `","e":"AQAB"}]}`, "bad RSA"},
		{"exponent 1", `{"keys":[{"kty":"RSA","kid":"a","n":"` + n + `","e":"AQ"}]}`, "bad RSA"},
		{"exponent 0", `{"keys":[{"kty":"RSA","kid":"a","n":"` + n + `","e":"AA"}]}`, "bad RSA"},
		{"exponent over 2³¹", `{"keys":[{"kty":"RSA","kid":"a","n":"` + n + `","e":"_____w"}]}`, "bad RSA"},
		{"even exponent", `{"keys":[{"kty":"RSA","kid":"a","n":"` + n + `","e":"BA"}]}`, "bad RSA"},
		{"short Ed25519 key", `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"AAAA"}]}`, "bad Ed25519"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := parseJWKS([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("keys %v, err %v, want an error saying %q", keys, err, tc.err)
			}
		})
	}
	keys, err := parseJWKS([]byte(`{"keys":[{"kty":"RSA","kid":"a","use":"sig","n":"` + n + `","e":"AQAB"},{"kty":"EC","kid":"b"}]}`))
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %v, err %v, want the one RSA key", keys, err)
	}
}

// FuzzParseJWKS: any document is either refused with an error or gives
// only usable keys; never a panic.
func FuzzParseJWKS(f *testing.F) {
	b64 := base64.RawURLEncoding.EncodeToString
	n := b64(append([]byte{0xc3}, make([]byte, 255)...))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"a","use":"sig","n":"` + n + `","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"e","x":"` + b64(make([]byte, 32)) + `"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"a","n":"AAAA","e":"AQAB"},{"kty":"EC","crv":"P-256"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","e":"/////w"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := parseJWKS(data)
		if err != nil {
			if keys != nil {
				t.Errorf("keys %v beside error %v", keys, err)
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("no keys and no error")
		}
		for kid, k := range keys {
			switch k := k.(type) {
			case *rsa.PublicKey:
				if k.N.BitLen() < 2048 || k.E < 3 || k.E%2 == 0 || k.E > 1<<31-1 {
					t.Errorf("kid %q: weak RSA key (%d bits, e=%d)", kid, k.N.BitLen(), k.E)
				}
			case ed25519.PublicKey:
				if len(k) != ed25519.PublicKeySize {
					t.Errorf("kid %q: Ed25519 key of %d bytes", kid, len(k))
				}
			default:
				t.Errorf("kid %q: key of type %T", kid, k)
			}
		}
	})
}
