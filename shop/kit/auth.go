package kit

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Token facts shared by the issuer (user-service) and every verifier.
const (
	TokenIssuer   = "user-service"
	TokenAudience = "shop"
	JWKSPath      = "/.well-known/jwks.json"
)

// Roles.
const (
	RoleCustomer = "customer"
	RoleAdmin    = "admin"
)

// TokenLeeway is the clock skew tolerated on a token's exp, nbf and iat,
// by every service and by the gateway in front of them (the platform sets
// the gateway's to it): a token the gateway lets through is one the
// service accepts.
const TokenLeeway = 5 * time.Second

// Claims are the shop's JWT claims.
type Claims struct {
	jwt.RegisteredClaims
	Email string `json:"email"`
	Role  string `json:"role"`
	// Service is the calling service when Role is RoleService (set by
	// Internal, never from a token).
	Service string `json:"-"`
}

// UserID is the token's subject.
func (c *Claims) UserID() string { return c.Subject }

// MayActFor reports whether the caller may read or act on the data of
// user: the user themself, an admin, or a service an internal endpoint
// let in.
func (c *Claims) MayActFor(user string) bool {
	return c != nil && ((c.Subject != "" && c.Subject == user) || c.Role == RoleAdmin || c.Role == RoleService)
}

// JWK is one Ed25519 public key in a JWKS (RFC 8037: kty OKP, crv Ed25519).
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
}

// JWKS is a key set document.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// PublicJWK renders an Ed25519 public key.
func PublicJWK(kid string, pub ed25519.PublicKey) JWK {
	return JWK{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub), Kid: kid, Use: "sig", Alg: "EdDSA"}
}

// Verifier validates shop tokens against user-service's JWKS, cached and
// refetched when a token names a key id it has not seen (at most once per
// MinRefresh, so forged kids cannot hammer user-service).
type Verifier struct {
	URL        string // the JWKS URL
	Client     *http.Client
	MinRefresh time.Duration // default 5s

	mu      sync.Mutex
	keys    map[string]ed25519.PublicKey
	fetched time.Time
}

// NewVerifier verifies against the JWKS of the user-service at base.
func NewVerifier(base string) *Verifier {
	return &Verifier{URL: strings.TrimRight(base, "/") + JWKSPath, Client: &http.Client{Timeout: 5 * time.Second, Transport: newTransport()}}
}

func (v *Verifier) key(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if k, ok := v.keys[kid]; ok {
		return k, nil
	}
	minRefresh := v.MinRefresh
	if minRefresh == 0 {
		minRefresh = 5 * time.Second
	}
	if !v.fetched.IsZero() && time.Since(v.fetched) < minRefresh {
		return nil, fmt.Errorf("unknown key id %q", kid)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.URL, nil)
	if err != nil {
		return nil, err
	}
	if s := ServiceFrom(ctx); s != "" {
		req.Header.Set(CallerHeader, s)
	}
	resp, err := v.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks: %s", resp.Status)
	}
	var set JWKS
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, MaxBody)).Decode(&set); err != nil {
		return nil, fmt.Errorf("decode jwks: %w", err)
	}
	keys := map[string]ed25519.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" {
			continue
		}
		raw, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || len(raw) != ed25519.PublicKeySize {
			continue
		}
		keys[k.Kid] = ed25519.PublicKey(raw)
	}
	v.keys, v.fetched = keys, time.Now()
	if k, ok := keys[kid]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("unknown key id %q", kid)
}

// errJWKS marks a failure to reach user-service (a 503, not the caller's fault).
var errJWKS = errors.New("jwks unavailable")

// Verify parses and validates a token: EdDSA only, issuer, audience, expiry.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	var claims Claims
	_, err := jwt.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, err := v.key(ctx, kid)
		if err != nil && strings.HasPrefix(err.Error(), "fetch jwks") {
			return nil, fmt.Errorf("%w: %w", errJWKS, err)
		}
		return k, err
	}, jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithIssuer(TokenIssuer), jwt.WithAudience(TokenAudience),
		jwt.WithExpirationRequired(), jwt.WithLeeway(TokenLeeway))
	if err != nil {
		return nil, err
	}
	if claims.Subject == "" || (claims.Role != RoleCustomer && claims.Role != RoleAdmin) {
		return nil, errors.New("token without subject or role")
	}
	return &claims, nil
}

type claimsKey struct{}

// ClaimsFrom returns the verified claims Auth put in ctx.
func ClaimsFrom(ctx context.Context) *Claims {
	c, _ := ctx.Value(claimsKey{}).(*Claims)
	return c
}

// BearerToken returns the raw bearer token of r.
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Auth requires a valid bearer token (and, when roles are given, one of
// them) before h runs; the claims are in the request context.
func (v *Verifier) Auth(h HandlerFunc, roles ...string) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		tok := BearerToken(r)
		if tok == "" {
			return Unauthorized("missing bearer token: log in at user-service and send Authorization: Bearer <token>")
		}
		c, err := v.Verify(r.Context(), tok)
		if errors.Is(err, errJWKS) {
			// The fetch's error names user-service's address: the log has it.
			return &Error{Status: http.StatusServiceUnavailable, Code: "auth_unavailable", Message: "cannot verify tokens right now (user-service's keys could not be fetched): try again", cause: err}
		}
		if err != nil {
			return Unauthorized("invalid token: %v", err)
		}
		if len(roles) > 0 {
			ok := false
			for _, role := range roles {
				ok = ok || c.Role == role
			}
			if !ok {
				return Forbidden("role %s may not do this; need %s", c.Role, strings.Join(roles, " or "))
			}
		}
		return h(w, r.WithContext(context.WithValue(r.Context(), claimsKey{}, c)))
	}
}
