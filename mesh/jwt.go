package mesh

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrUnknownKey is returned when a token names a key id the JWKS does not
// have, even after a refetch.
var ErrUnknownKey = errors.New("unknown key id")

// ErrKeysUnavailable is returned when a token names a key id the gateway
// does not hold and the key set cannot be fetched (the server is down,
// answers an error or a document without a usable key). The gateway
// answers 503: it cannot tell a good token from a forged one.
var ErrKeysUnavailable = errors.New("signing keys unavailable")

// jwks fetches and caches a JSON Web Key Set. Keys are kept for ttl; an
// unknown kid triggers a refetch, at most one per minInterval (so forged
// kids cannot make the gateway hammer the key server). When a fetch fails
// the keys already held stay in use, and a kid they do not have is
// ErrKeysUnavailable until a fetch succeeds.
type jwks struct {
	url         string
	client      *http.Client
	ttl         time.Duration
	minInterval time.Duration
	now         func() time.Time

	mu          sync.RWMutex
	keys        map[string]crypto.PublicKey
	fetched     time.Time
	lastAttempt time.Time
	lastErr     error      // of the last fetch
	fetchMu     sync.Mutex // one fetch at a time
}

func (k *jwks) key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	k.mu.RLock()
	key, ok := k.keys[kid]
	fresh := k.now().Sub(k.fetched) < k.ttl
	k.mu.RUnlock()
	if ok && fresh {
		return key, nil
	}
	k.fetchMu.Lock()
	defer k.fetchMu.Unlock()
	k.mu.RLock()
	key, ok = k.keys[kid]
	fresh = k.now().Sub(k.fetched) < k.ttl
	recent := k.now().Sub(k.lastAttempt) < k.minInterval && !k.lastAttempt.IsZero()
	lastErr := k.lastErr
	k.mu.RUnlock()
	if ok && (fresh || recent) {
		return key, nil
	}
	if recent {
		if lastErr != nil {
			return nil, fmt.Errorf("kid %q: %w: %w", kid, ErrKeysUnavailable, lastErr)
		}
		return nil, fmt.Errorf("kid %q: %w", kid, ErrUnknownKey)
	}
	// The fetch outlives the request that triggered it: a client that
	// hangs up must not make the key set look unavailable to the others.
	err := k.fetch(context.WithoutCancel(ctx))
	k.mu.Lock()
	k.lastErr = err
	k.mu.Unlock()
	k.mu.RLock()
	key, ok = k.keys[kid]
	k.mu.RUnlock()
	if ok {
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kid %q: %w: %w", kid, ErrKeysUnavailable, err)
	}
	return nil, fmt.Errorf("kid %q: %w", kid, ErrUnknownKey)
}

func (k *jwks) fetch(ctx context.Context) error {
	k.mu.Lock()
	k.lastAttempt = k.now()
	k.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return fmt.Errorf("fetch jwks: %w", err)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch jwks: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch jwks %s: status %d", k.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("fetch jwks: %w", err)
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return fmt.Errorf("jwks %s: %w", k.url, err)
	}
	k.mu.Lock()
	k.keys, k.fetched = keys, k.now()
	k.mu.Unlock()
	return nil
}

// parseJWKS reads the RSA and Ed25519 signing keys of a JWK set (RFC
// 7517, 8037); keys of other types, or for encryption, are skipped.
func parseJWKS(data []byte) (map[string]crypto.PublicKey, error) {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			Use string `json:"use"`
			Crv string `json:"crv"`
			N   string `json:"n"`
			E   string `json:"e"`
			X   string `json:"x"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	out := map[string]crypto.PublicKey{}
	var errs []error
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		b64 := base64.RawURLEncoding
		switch {
		case k.Kty == "RSA":
			n, err1 := b64.DecodeString(k.N)
			e, err2 := b64.DecodeString(k.E)
			if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
				errs = append(errs, fmt.Errorf("keys[%d] (kid %q): bad RSA n/e (base64url, e of 1 to 4 bytes)", i, k.Kid))
				continue
			}
			pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
			if pub.N.BitLen() < 2048 || pub.E < 3 || pub.E%2 == 0 || pub.E > 1<<31-1 {
				errs = append(errs, fmt.Errorf("keys[%d] (kid %q): bad RSA key: %d-bit n, e %d (want 2048 bits at least and an odd e from 3 to 2³¹-1)", i, k.Kid, pub.N.BitLen(), pub.E))
				continue
			}
			out[k.Kid] = pub
		case k.Kty == "OKP" && k.Crv == "Ed25519":
			x, err := b64.DecodeString(k.X)
			if err != nil || len(x) != ed25519.PublicKeySize {
				errs = append(errs, fmt.Errorf("keys[%d] (kid %q): bad Ed25519 x", i, k.Kid))
				continue
			}
			out[k.Kid] = ed25519.PublicKey(x)
		}
	}
	if len(out) == 0 {
		errs = append(errs, errors.New("no usable RS256 or EdDSA signing key"))
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// tokenError is why a bearer token was refused, for the 401's
// WWW-Authenticate and the access log. status is 401, or 503 when the
// keys to check it cannot be had.
type tokenError struct {
	status int
	reason string
}

func (e *tokenError) Error() string { return e.reason }

// verifier checks bearer tokens.
type verifier struct {
	keys   *jwks
	parser *jwt.Parser
}

func newVerifier(c JWTConfig, client *http.Client, now func() time.Time) *verifier {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{"RS256", "EdDSA"}),
		jwt.WithLeeway(time.Duration(c.Leeway)),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(now),
	}
	if c.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(c.Issuer))
	}
	if c.Audience != "" {
		opts = append(opts, jwt.WithAudience(c.Audience))
	}
	return &verifier{
		keys:   &jwks{url: c.JWKSURL, client: client, ttl: time.Duration(c.CacheTTL), minInterval: time.Duration(c.RefetchInterval), now: now},
		parser: jwt.NewParser(opts...),
	}
}

// tokenClaims are a token's registered claims, checked by the parser, and
// all of its claims as decoded, for routes that require some.
type tokenClaims struct {
	jwt.RegisteredClaims
	all map[string]any
}

func (c *tokenClaims) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &c.RegisteredClaims); err != nil {
		return err
	}
	return json.Unmarshal(b, &c.all)
}

// verifyClaims returns the token's subject and all its claims, or a
// *tokenError.
func (v *verifier) verifyClaims(ctx context.Context, raw string) (string, map[string]any, error) {
	var claims tokenClaims
	tok, err := v.parser.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		key, err := v.keys.key(ctx, kid)
		if err != nil {
			return nil, err
		}
		switch key.(type) {
		case *rsa.PublicKey:
			if t.Method.Alg() != "RS256" {
				return nil, fmt.Errorf("kid %q is an RSA key, token says %s", kid, t.Method.Alg())
			}
		case ed25519.PublicKey:
			if t.Method.Alg() != "EdDSA" {
				return nil, fmt.Errorf("kid %q is an Ed25519 key, token says %s", kid, t.Method.Alg())
			}
		}
		return key, nil
	})
	if err == nil {
		return claims.Subject, claims.all, nil
	}
	refuse := func(reason string) (string, map[string]any, error) {
		return "", nil, &tokenError{status: http.StatusUnauthorized, reason: reason}
	}
	switch {
	case errors.Is(err, ErrKeysUnavailable):
		return "", nil, &tokenError{status: http.StatusServiceUnavailable, reason: "signing keys unavailable"}
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refuse("malformed token")
	case tok != nil && tok.Method != nil && tok.Method.Alg() != "RS256" && tok.Method.Alg() != "EdDSA":
		return refuse("signing method " + tok.Method.Alg() + " not accepted (RS256 or EdDSA)")
	case errors.Is(err, ErrUnknownKey):
		return refuse("unknown signing key")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return refuse("invalid signature")
	case errors.Is(err, jwt.ErrTokenExpired):
		return refuse("token expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return refuse("token not valid yet")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer), errors.Is(err, jwt.ErrTokenInvalidAudience):
		return refuse("wrong issuer or audience")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		switch {
		case claims.ExpiresAt == nil:
			return refuse("token has no exp")
		case claims.Issuer == "":
			return refuse("token has no iss")
		default:
			return refuse("token has no aud")
		}
	}
	return refuse("invalid token: " + err.Error())
}
