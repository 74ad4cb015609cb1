// Package user is user-service: registration with argon2id-hashed
// passwords, login issuing EdDSA JWTs, the JWKS other services verify them
// with, profiles, addresses and roles (customer, admin). It publishes
// UserRegistered.
//
// API:
//
//	POST  /users                      register {email, password, name} → 201 user
//	POST  /login                      {email, password} → {token, expiresAt, user}
//	GET   /.well-known/jwks.json      the signing keys (Ed25519, RFC 8037)
//	GET   /users/me                   the caller's profile
//	PATCH /users/me                   {name}
//	GET   /users/{id}                 a profile: the user themself, an admin, or a service forwarding their token
//	POST  /users/me/addresses         {line1, city, postalCode, country} → 201 address
//	GET   /users/me/addresses
//	GET   /users/{id}/addresses       the user themself or an admin (shipping-service's account)
package user

import (
	"context"
	"crypto/ed25519"
	"embed"
	"errors"
	"io/fs"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/shop/kit"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

//go:embed schemas/*.avsc
var schemaFS embed.FS

// Schemas are the event schemas user-service publishes.
func Schemas() fs.FS { s, _ := fs.Sub(schemaFS, "schemas"); return s }

// Service is the service's name in flotilla.yaml.
const Service = "user-service"

// Config is user-service's configuration.
type Config struct {
	Kit kit.Config
	// Admin, when its email is set, is the shop's administrator, created
	// (or its password set) at start before any request is served
	// (ADMIN_EMAIL, ADMIN_PASSWORD): the one way to an admin account, so
	// nobody can race for it by registering an address. An address
	// already registered by a customer is refused, never promoted.
	Admin    Admin
	TokenTTL time.Duration // TOKEN_TTL, default 1h
	// KeySecret encrypts the token signing key's seed in the database
	// (SIGNING_KEY_SECRET). Without it the key lives in this process only
	// (tokens do not survive a restart) and nothing of it is stored.
	KeySecret string
	Limits    Limits
}

// Admin is the administrator's account.
type Admin struct {
	Email, Password string
}

// Main runs user-service.
type Main struct {
	Config Config

	app     *kit.App
	hashing *hashSlots
	byAcct  *throttle
	byAddr  *throttle
	priv    ed25519.PrivateKey
	kid     string
	now     func() time.Time
}

// Start opens everything and serves; URL then answers.
func (m *Main) Start(ctx context.Context) error {
	if m.Config.TokenTTL <= 0 {
		m.Config.TokenTTL = time.Hour
	}
	if m.now == nil {
		m.now = time.Now
	}
	mig, _ := fs.Sub(migrationFS, "migrations")
	app, err := kit.Start(ctx, m.Config.Kit, mig, Schemas())
	if err != nil {
		return err
	}
	m.app = app
	l := &m.Config.Limits
	l.defaults()
	m.hashing = &hashSlots{slots: make(chan struct{}, l.MaxHashing), wait: l.HashWait}
	m.byAcct = newThrottle(l.AccountFailures, l.LoginWindow, m.now)
	m.byAddr = newThrottle(l.AddressFailures, l.LoginWindow, m.now)
	if err := m.loadKey(ctx); err != nil {
		_ = app.Close()
		return err
	}
	if err := m.ensureAdmin(ctx); err != nil {
		_ = app.Close()
		return err
	}
	mux := app.Mux
	mux.Handle("POST /users", kit.Handle(m.register))
	mux.Handle("POST /login", kit.Handle(m.login))
	mux.Handle("GET "+kit.JWKSPath, kit.Handle(m.jwks))
	v := m.verifier()
	mux.Handle("GET /users/me", kit.Handle(v.Auth(m.me)))
	mux.Handle("PATCH /users/me", kit.Handle(v.Auth(m.updateMe)))
	mux.Handle("GET /users/{id}", kit.Handle(v.AuthOrService(m.get, "shipping-service", "notification-service", "order-service")))
	mux.Handle("POST /users/me/addresses", kit.Handle(v.Auth(m.addAddress)))
	mux.Handle("GET /users/me/addresses", kit.Handle(v.Auth(m.addresses)))
	mux.Handle("GET /users/{id}/addresses", kit.Handle(v.AuthOrService(m.userAddresses, "shipping-service", "order-service")))
	app.Serve()
	return nil
}

// Run starts the service and stops it when ctx is done.
func (m *Main) Run(ctx context.Context) error {
	if err := m.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return m.Close()
}

// URL is the service's base URL.
func (m *Main) URL() string { return m.app.URL() }

// App is the running kit.App.
func (m *Main) App() *kit.App { return m.app }

// Close drains and stops the service.
func (m *Main) Close() error {
	if m.app == nil {
		return nil
	}
	return m.app.Close()
}

// verifier checks tokens against this process's own key, in memory.
func (m *Main) verifier() *kit.Verifier {
	v := kit.NewVerifier(m.URL())
	v.Client = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		rec := &memResponse{header: http.Header{}}
		m.jwksWrite(rec)
		return rec.response(r), nil
	})}
	return v
}

// User is a profile as the API shows it.
type User struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"createdAt"`
}

type registered struct {
	UserID    string    `avro:"userId"`
	Email     string    `avro:"email"`
	Name      string    `avro:"name"`
	Role      string    `avro:"role"`
	Timestamp time.Time `avro:"timestamp"`
	Version   int       `avro:"version"`
}

func validEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && len(s) <= 254 && strings.Contains(s[strings.LastIndexByte(s, '@'):], ".")
}

// checkName cleans a user's name of control characters and checks it.
func checkName(name string) (string, error) { return kit.CheckName("name", name, 100) }

func (m *Main) register(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Email    string `json:"email"`
		Password string `json:"password"`
		Name     string `json:"name"`
	}
	if err := kit.Decode(r, &in); err != nil {
		return err
	}
	in.Email = strings.ToLower(strings.TrimSpace(in.Email))
	switch {
	case in.Email == "":
		return kit.BadRequest("email is required")
	case !validEmail(in.Email):
		return kit.BadRequest("email %q is not an address like name@example.com", in.Email)
	case len(in.Password) < 8:
		return kit.BadRequest("password must be at least 8 characters")
	case len(in.Password) > 128:
		return kit.BadRequest("password must be at most 128 characters")
	}
	name, err := checkName(in.Name)
	if err != nil {
		return err
	}
	// Every account registered here is a customer's: the admin comes
	// from the start-up secret (Config.Admin) alone.
	u := User{ID: kit.NewID(), Email: in.Email, Name: name, Role: kit.RoleCustomer, CreatedAt: m.now().UTC().Truncate(time.Millisecond)}
	var hash string
	ctx := r.Context()
	if err := m.hashing.do(ctx, func() { hash = HashPassword(in.Password) }); err != nil {
		if e := (*kit.Error)(nil); errors.As(err, &e) && e.Status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		return err
	}
	err = m.app.Tx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO users (id, email, name, password_hash, role, created_ms) VALUES ($1, $2, $3, $4, $5, $6)`,
			u.ID, u.Email, u.Name, hash, u.Role, u.CreatedAt.UnixMilli()); err != nil {
			if sqldb.IsUniqueViolation(err) {
				return kit.Conflict("email_taken", "%s is already registered; log in instead", u.Email)
			}
			return err
		}
		return m.app.Emit(ctx, tx, "UserRegistered", u.ID, registered{UserID: u.ID, Email: u.Email, Name: u.Name, Role: u.Role, Timestamp: u.CreatedAt, Version: 1})
	})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/users/"+u.ID)
	kit.WriteJSON(w, http.StatusCreated, u)
	return nil
}

// dummyHash keeps login's timing the same for unknown emails.
var dummyHash = HashPassword("not a real password")

func (m *Main) login(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if err := kit.Decode(r, &in); err != nil {
		return err
	}
	if in.Email == "" || in.Password == "" {
		return kit.BadRequest("email and password are required")
	}
	in.Email = strings.ToLower(strings.TrimSpace(in.Email))
	if len(in.Email) > 254 || len(in.Password) > 128 {
		return kit.Unauthorized("wrong email or password")
	}
	// The throttle first: a refused attempt costs no hashing.
	addr := clientAddress(r)
	if ok, left := m.byAddr.blocked(addr); ok {
		return tooMany(w, left, "from "+addr)
	}
	if ok, left := m.byAcct.blocked(in.Email); ok {
		return tooMany(w, left, "of this account")
	}
	var u User
	var hash string
	var created int64
	err := m.app.DB.QueryRowContext(r.Context(), `SELECT id, email, name, role, password_hash, created_ms FROM users WHERE email = $1`, in.Email).
		Scan(&u.ID, &u.Email, &u.Name, &u.Role, &hash, &created)
	if sqldb.IsNoRows(err) {
		hash, err = dummyHash, nil
	}
	if err != nil {
		return err
	}
	match := false
	if err := m.hashing.do(r.Context(), func() { match = CheckPassword(hash, in.Password) && u.ID != "" }); err != nil {
		if e := (*kit.Error)(nil); errors.As(err, &e) && e.Status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		return err
	}
	if !match {
		m.byAddr.fail(addr)
		m.byAcct.fail(in.Email)
		return kit.Unauthorized("wrong email or password")
	}
	m.byAcct.forget(in.Email)
	u.CreatedAt = time.UnixMilli(created).UTC()
	tok, exp, err := m.Issue(u)
	if err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, map[string]any{"token": tok, "expiresAt": exp, "user": u})
	return nil
}

// Issue signs a token for u.
func (m *Main) Issue(u User) (string, time.Time, error) {
	return m.IssueAt(u, m.now())
}

// IssueAt signs a token for u as if issued at now: valid from now for
// the token TTL (a test's token that has already expired).
func (m *Main) IssueAt(u User, now time.Time) (string, time.Time, error) {
	exp := now.Add(m.Config.TokenTTL)
	claims := kit.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: kit.TokenIssuer, Subject: u.ID, Audience: jwt.ClaimStrings{kit.TokenAudience},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp), ID: kit.NewID(),
		},
		Email: u.Email, Role: u.Role,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = m.kid
	s, err := t.SignedString(m.priv)
	return s, exp, err
}

func (m *Main) jwks(w http.ResponseWriter, r *http.Request) error {
	m.jwksWrite(w)
	return nil
}

func (m *Main) jwksWrite(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	kit.WriteJSON(w, http.StatusOK, kit.JWKS{Keys: []kit.JWK{kit.PublicJWK(m.kid, m.priv.Public().(ed25519.PublicKey))}})
}

func (m *Main) load(ctx context.Context, id string) (User, error) {
	var u User
	var created int64
	err := m.app.DB.QueryRowContext(ctx, `SELECT id, email, name, role, created_ms FROM users WHERE id = $1`, id).Scan(&u.ID, &u.Email, &u.Name, &u.Role, &created)
	if sqldb.IsNoRows(err) {
		return u, kit.NotFound("user %s does not exist", id)
	}
	u.CreatedAt = time.UnixMilli(created).UTC()
	return u, err
}

func (m *Main) me(w http.ResponseWriter, r *http.Request) error {
	u, err := m.load(r.Context(), kit.ClaimsFrom(r.Context()).UserID())
	if err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, u)
	return nil
}

func (m *Main) get(w http.ResponseWriter, r *http.Request) error {
	c := kit.ClaimsFrom(r.Context())
	id := r.PathValue("id")
	if !c.MayActFor(id) {
		return kit.Forbidden("user %s may not read user %s", c.UserID(), id)
	}
	u, err := m.load(r.Context(), id)
	if err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, u)
	return nil
}

func (m *Main) updateMe(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Name string `json:"name"`
	}
	if err := kit.Decode(r, &in); err != nil {
		return err
	}
	name, err := checkName(in.Name)
	if err != nil {
		return err
	}
	id := kit.ClaimsFrom(r.Context()).UserID()
	res, err := m.app.DB.ExecContext(r.Context(), `UPDATE users SET name = $1 WHERE id = $2`, name, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return kit.NotFound("user %s does not exist", id)
	}
	return m.me(w, r)
}

// Address is a postal address of a user.
type Address struct {
	ID         string `json:"id"`
	Line1      string `json:"line1"`
	City       string `json:"city"`
	PostalCode string `json:"postalCode"`
	Country    string `json:"country"`
}

func (m *Main) addAddress(w http.ResponseWriter, r *http.Request) error {
	var a Address
	if err := kit.Decode(r, &a); err != nil {
		return err
	}
	if a.ID != "" {
		return kit.BadRequest("id is assigned by the service; leave it out")
	}
	for field, v := range map[string]string{"line1": a.Line1, "city": a.City, "postalCode": a.PostalCode} {
		if strings.TrimSpace(v) == "" {
			return kit.BadRequest("%s is required", field)
		}
		if len(v) > 200 {
			return kit.BadRequest("%s is over 200 characters", field)
		}
	}
	if len(a.Country) != 2 || strings.ToUpper(a.Country) != a.Country {
		return kit.BadRequest("country %q: want an ISO 3166 alpha-2 code such as DE", a.Country)
	}
	a.ID = kit.NewID()
	id := kit.ClaimsFrom(r.Context()).UserID()
	if _, err := m.load(r.Context(), id); err != nil {
		return err
	}
	if _, err := m.app.DB.ExecContext(r.Context(), `INSERT INTO addresses (id, user_id, line1, city, postal_code, country, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		a.ID, id, a.Line1, a.City, a.PostalCode, a.Country, m.now().UnixMilli()); err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusCreated, a)
	return nil
}

func (m *Main) addresses(w http.ResponseWriter, r *http.Request) error {
	rows, err := m.app.DB.QueryContext(r.Context(), `SELECT id, line1, city, postal_code, country FROM addresses WHERE user_id = $1 ORDER BY created_ms, id`, kit.ClaimsFrom(r.Context()).UserID())
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	out := []Address{}
	for rows.Next() {
		var a Address
		if err := rows.Scan(&a.ID, &a.Line1, &a.City, &a.PostalCode, &a.Country); err != nil {
			return err
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	kit.WriteJSON(w, http.StatusOK, map[string]any{"addresses": out})
	return nil
}
