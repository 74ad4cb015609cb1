package user

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/shop/kit"
)

// ensureAdmin creates the administrator of Config.Admin, or sets its
// password, before the service takes any request. An address a customer
// registered is refused: an admin is never made by registering.
func (m *Main) ensureAdmin(ctx context.Context) error {
	a := m.Config.Admin
	if a.Email == "" {
		return nil
	}
	email := strings.ToLower(strings.TrimSpace(a.Email))
	switch {
	case !validEmail(email):
		return fmt.Errorf("ADMIN_EMAIL %q is not an address like admin@example.com", a.Email)
	case len(a.Password) < 12 || len(a.Password) > 128:
		return fmt.Errorf("ADMIN_PASSWORD: want 12 to 128 characters (the admin's password; keep it in a secret store)")
	}
	hash := HashPassword(a.Password)
	return m.app.Tx(ctx, func(tx *sqldb.Tx) error {
		var id, role string
		err := tx.QueryRowContext(ctx, `SELECT id, role FROM users WHERE email = $1`, email).Scan(&id, &role)
		switch {
		case err == nil && role != kit.RoleAdmin:
			return fmt.Errorf("ADMIN_EMAIL %s is registered by a customer account (%s): it is not made an admin; choose another address for the admin", email, id)
		case err == nil:
			_, err = tx.ExecContext(ctx, `UPDATE users SET password_hash = $1 WHERE id = $2`, hash, id)
			return err
		case !sqldb.IsNoRows(err):
			return err
		}
		now := m.now().UTC().Truncate(time.Millisecond)
		u := User{ID: kit.NewID(), Email: email, Name: "Shop Admin", Role: kit.RoleAdmin, CreatedAt: now}
		if _, err := tx.ExecContext(ctx, `INSERT INTO users (id, email, name, password_hash, role, created_ms) VALUES ($1, $2, $3, $4, $5, $6)`,
			u.ID, u.Email, u.Name, hash, u.Role, now.UnixMilli()); err != nil {
			return fmt.Errorf("create admin %s: %w", email, err)
		}
		m.app.Log.InfoContext(ctx, "admin account created from ADMIN_EMAIL", "email", email, "user_id", u.ID)
		return m.app.Emit(ctx, tx, "UserRegistered", u.ID, registered{UserID: u.ID, Email: u.Email, Name: u.Name, Role: u.Role, Timestamp: now, Version: 1})
	})
}

// sealedPrefix marks a seed stored encrypted (AES-256-GCM under
// SHA-256(KeySecret), the nonce first).
const sealedPrefix = "sealed:v1:"

func (m *Main) keyCipher() (cipher.AEAD, error) {
	k := sha256.Sum256([]byte(m.Config.KeySecret))
	b, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func (m *Main) seal(seed []byte, kid string) (string, error) {
	g, err := m.keyCipher()
	if err != nil {
		return "", err
	}
	nonce := make([]byte, g.NonceSize())
	_, _ = rand.Read(nonce)
	return sealedPrefix + base64.StdEncoding.EncodeToString(g.Seal(nonce, nonce, seed, []byte(kid))), nil
}

func (m *Main) open(stored, kid string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(stored, sealedPrefix))
	if err != nil {
		return nil, err
	}
	g, err := m.keyCipher()
	if err != nil {
		return nil, err
	}
	if len(raw) < g.NonceSize() {
		return nil, errors.New("too short")
	}
	return g.Open(nil, raw[:g.NonceSize()], raw[g.NonceSize():], []byte(kid))
}

// loadKey reads the token signing key, creating it on first start. Its
// seed is stored sealed with KeySecret; a seed an older version stored in
// clear is sealed in place. Without KeySecret the key is made for this
// process and never stored.
func (m *Main) loadKey(ctx context.Context) error {
	if m.Config.KeySecret == "" {
		s := make([]byte, ed25519.SeedSize)
		_, _ = rand.Read(s)
		m.priv, m.kid = ed25519.NewKeyFromSeed(s), "k-"+kit.NewID()[:8]
		m.app.Log.WarnContext(ctx, "no SIGNING_KEY_SECRET: the token signing key lives in this process only; tokens end with it")
		return nil
	}
	return m.app.DB.InTx(ctx, func(tx *sqldb.Tx) error {
		var kid, stored string
		err := tx.QueryRowContext(ctx, `SELECT kid, seed FROM signing_keys ORDER BY created_ms DESC LIMIT 1`).Scan(&kid, &stored)
		if sqldb.IsNoRows(err) {
			s := make([]byte, ed25519.SeedSize)
			_, _ = rand.Read(s)
			kid = "k-" + kit.NewID()[:8]
			sealed, err := m.seal(s, kid)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO signing_keys (kid, seed, created_ms) VALUES ($1, $2, $3)`, kid, sealed, m.now().UnixMilli()); err != nil {
				return fmt.Errorf("store signing key: %w", err)
			}
			m.priv, m.kid = ed25519.NewKeyFromSeed(s), kid
			return nil
		}
		if err != nil {
			return fmt.Errorf("load signing key: %w", err)
		}
		var seed []byte
		if strings.HasPrefix(stored, sealedPrefix) {
			if seed, err = m.open(stored, kid); err != nil {
				return fmt.Errorf("signing key %s does not open with SIGNING_KEY_SECRET (was the secret changed?)", kid)
			}
		} else {
			// Stored in clear by an older version: seal it now.
			if seed, err = base64.StdEncoding.DecodeString(stored); err != nil {
				return fmt.Errorf("signing key %s is corrupt", kid)
			}
			sealed, err := m.seal(seed, kid)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE signing_keys SET seed = $1 WHERE kid = $2`, sealed, kid); err != nil {
				return fmt.Errorf("seal signing key: %w", err)
			}
		}
		if len(seed) != ed25519.SeedSize {
			return fmt.Errorf("signing key %s is corrupt", kid)
		}
		m.priv, m.kid = ed25519.NewKeyFromSeed(seed), kid
		return nil
	})
}
