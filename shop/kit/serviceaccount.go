package kit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// ServiceAccount is a service's own identity at user-service, for calls
// made on nobody's behalf (a consumer reacting to an event): it logs in
// with its credentials, registering the account on first use, and keeps
// the token until a minute before it expires. The account reads other
// users' data only if user-service gives it the admin role (ADMIN_EMAILS).
type ServiceAccount struct {
	Users    *Client // user-service
	Email    string
	Password string
	Name     string // shown as the account's name when registered; default Email

	mu    sync.Mutex
	token string
	exp   time.Time
}

// Token returns a valid bearer token for the account.
func (s *ServiceAccount) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && time.Until(s.exp) > time.Minute {
		return s.token, nil
	}
	tok, exp, err := s.login(ctx)
	var ue *UpstreamError
	if errors.As(err, &ue) && ue.Status == http.StatusUnauthorized {
		name := s.Name
		if name == "" {
			name = s.Email
		}
		err = s.Users.Do(ctx, "POST", "/users", "", nil, map[string]string{"email": s.Email, "password": s.Password, "name": name}, nil)
		if errors.As(err, &ue) && ue.Status == http.StatusConflict {
			return "", fmt.Errorf("service account %s: registered with another password", s.Email)
		}
		if err != nil {
			return "", fmt.Errorf("register service account %s: %w", s.Email, err)
		}
		tok, exp, err = s.login(ctx)
	}
	if err != nil {
		return "", fmt.Errorf("log in service account %s: %w", s.Email, err)
	}
	s.token, s.exp = tok, exp
	return tok, nil
}

// Forget drops the cached token (after an upstream answered 401).
func (s *ServiceAccount) Forget() {
	s.mu.Lock()
	s.token = ""
	s.mu.Unlock()
}

func (s *ServiceAccount) login(ctx context.Context) (string, time.Time, error) {
	var out struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expiresAt"`
	}
	err := s.Users.Do(ctx, "POST", "/login", "", nil, map[string]string{"email": s.Email, "password": s.Password}, &out)
	return out.Token, out.ExpiresAt, err
}
