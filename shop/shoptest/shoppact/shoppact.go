// Package shoppact holds what the shop's contract tests share: the key
// consumers sign their bearer tokens with while recording pacts, the
// user-service JWKS interaction of every consumer that verifies tokens, a
// request filter that swaps a recorded bearer token for one the real
// user-service issued (as Pact users do with a request filter), and the
// conversion between an event's Avro encoding and its Avro JSON shape, the
// content of the shop's message pacts; and where provider verifications
// read pacts and publish results (pacts/ by default, a contract broker
// when FLOTILLA_BROKER_URL is set: see Sources and Publisher).
package shoppact

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flotilla-ci/flotilla/bus"
	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/shop/kit"
)

// Kid is the key id of the consumers' signing key.
const Kid = "k-contract"

var key = ed25519.NewKeyFromSeed(func() []byte { s := sha256.Sum256([]byte("flotilla shop contract tests")); return s[:] }())

// tokenRE is what a bearer token looks like in a pact: a compact JWS.
const tokenRE = `^Bearer [A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`

// Token signs a token for user with role, valid for an hour, that a
// consumer's verifier accepts once it fetched the JWKS of JWKS.
func Token(t testing.TB, user, role string) string {
	t.Helper()
	tok, err := sign(user, role, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func sign(user, role string, now time.Time) (string, error) {
	c := kit.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: kit.TokenIssuer, Subject: user, Audience: jwt.ClaimStrings{kit.TokenAudience},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), ID: "contract",
		},
		Email: user + "@shop.test", Role: role,
	}
	tk := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tk.Header["kid"] = Kid
	return tk.SignedString(key)
}

// exampleToken is the token written into pacts: fixed, so pact files do
// not change from run to run (Ed25519 signatures are deterministic).
var exampleToken = func() string {
	s, _ := sign("u-42", kit.RoleCustomer, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	return s
}()

// Bearer is the Authorization header an interaction expects: any bearer
// JWS, recorded with a fixed example.
func Bearer() contract.Term { return contract.Regex("Bearer "+exampleToken, tokenRE) }

// JSONType matches a JSON Content-Type header.
func JSONType() contract.Term {
	return contract.Regex("application/json", `^application/json(;.*)?$`)
}

// JWKS adds the interaction every token-verifying consumer has with
// user-service: reading the signing keys (Ed25519, RFC 8037). The mock
// serves the consumers' key, so their verifier accepts Token's tokens.
func JWKS(p *contract.ConsumerPact) {
	x := base64.RawURLEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
	p.AddInteraction().
		UponReceiving("a request for the token signing keys").
		WithRequest(contract.Req{Method: "GET", Path: kit.JWKSPath}).
		WillRespondWith(contract.Resp{Status: 200, Headers: map[string]any{"Content-Type": JSONType()},
			Body: map[string]any{"keys": contract.EachLike(map[string]any{
				"kty": contract.Equality("OKP"),
				"crv": contract.Equality("Ed25519"),
				"x":   contract.Regex(x, `^[A-Za-z0-9_-]{43}$`),
				"kid": contract.Like(Kid),
			}, 1, 0)}})
}

// Auth is a provider verification's request filter: it replaces the
// Authorization header of every request that has one with the token of the
// current provider state (set by a state handler from the real
// user-service).
type Auth struct {
	mu    sync.Mutex
	token string
}

// Set makes tok the token sent from now on.
func (a *Auth) Set(tok string) {
	a.mu.Lock()
	a.token = tok
	a.mu.Unlock()
}

// Client is the verifier's HTTP client applying the filter.
func (a *Auth) Client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		if r.Header.Get("Authorization") != "" {
			a.mu.Lock()
			tok := a.token
			a.mu.Unlock()
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Schema reads event's schema from a service's schemas folder.
func Schema(schemas fs.FS, event string) (string, error) {
	b, err := fs.ReadFile(schemas, event+".avsc")
	if err != nil {
		return "", fmt.Errorf("schema of %s: %w", event, err)
	}
	return string(b), nil
}

// Outboxed is the message a producer's real code wrote to its outbox last
// for event: the Avro payload decoded with the producer's schema and
// rendered in its Avro JSON shape, with the event's name as metadata.
func Outboxed(ctx context.Context, app *kit.App, avsc, event string) (contract.Message, error) {
	var payload []byte
	err := app.DB.QueryRowContext(ctx, `SELECT payload FROM outbox WHERE topic = $1 ORDER BY id DESC LIMIT 1`, event).Scan(&payload)
	if err != nil {
		return contract.Message{}, fmt.Errorf("no %s in the outbox: %w", event, err)
	}
	var native map[string]any
	if err := app.Codec.Decode(ctx, event, payload, &native); err != nil {
		return contract.Message{}, err
	}
	j, err := ToJSON(avsc, native)
	if err != nil {
		return contract.Message{}, err
	}
	return contract.JSONMessage(j, Metadata(event))
}

// Metadata is a shop event's message metadata in a pact.
func Metadata(event string) map[string]any {
	return map[string]any{bus.HeaderEventType: event}
}

// Delivered turns a pact's message into the bus message a consumer's
// handler receives: its JSON content encoded, with the consumer's codec,
// under the event's schema as the consumer reads it (so a field the
// consumer needs but the message lacks fails here).
func Delivered(ctx context.Context, codec *kit.Codec, avsc, event string, msg contract.Message) (bus.Message, error) {
	var j any
	if err := msg.JSON(&j); err != nil {
		return bus.Message{}, err
	}
	native, err := FromJSON(avsc, j)
	if err != nil {
		return bus.Message{}, fmt.Errorf("%s: %w", event, err)
	}
	payload, err := codec.Encode(ctx, event, native)
	if err != nil {
		return bus.Message{}, err
	}
	return bus.Message{Topic: event, Key: "contract", Payload: payload, Headers: map[string]string{
		bus.HeaderEventID: kit.NewID(), bus.HeaderEventType: event, bus.HeaderContentType: kit.ContentTypeAvro,
		bus.HeaderOccurredAt: time.Now().UTC().Format(time.RFC3339Nano),
	}}, nil
}

// Dir is the pacts directory at the module root.
func Dir(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, contract.DefaultDir)
		}
		if filepath.Dir(d) == d {
			t.Fatal("no go.mod above the test's directory")
		}
	}
}

// Verifier is the verification of provider's pacts (Sources: pacts/, or
// a broker's pacts for verification), against the provider at base, with
// auth as the request filter, publishing its results when Publisher says
// so. A check against a provider broken on purpose sets Sources to Files
// and Publisher to nil: it must never publish.
func Verifier(t testing.TB, provider, base string, auth *Auth, states map[string]contract.StateHandler) contract.Verifier {
	t.Helper()
	return contract.Verifier{
		Provider:        provider,
		BaseURL:         base,
		Sources:         Sources(t, provider),
		Publisher:       Publisher(t, provider),
		StateHandlers:   states,
		Client:          auth.Client(),
		NoStateTeardown: true,
	}
}

// Tamper serves base's answers through fn, which may change a decoded
// JSON answer to path: a provider broken on purpose, for the check that a
// verification can fail.
func Tamper(t testing.TB, base, path string, fn func(body map[string]any)) string {
	t.Helper()
	target, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(r *http.Response) error {
		if r.Request.URL.Path != path {
			return nil
		}
		data, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		_ = r.Body.Close()
		var m map[string]any
		if json.Unmarshal(data, &m) == nil {
			fn(m)
			data, _ = json.Marshal(m)
		}
		r.Body = io.NopCloser(bytes.NewReader(data))
		r.ContentLength = int64(len(data))
		r.Header.Set("Content-Length", strconv.Itoa(len(data)))
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL
}
