package kit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client calls another shop service's API, forwarding trace context and
// the caller's bearer token.
type Client struct {
	Service string // for error messages: "inventory-service"
	Base    string
	HTTP    *http.Client
}

// NewClient returns a client for the service at base. A call made under
// the context of a service of this process that has an identity
// (WithService; the App's contexts) is made over mutual TLS with it.
func NewClient(service, base string) *Client {
	return &Client{Service: service, Base: strings.TrimRight(base, "/"), HTTP: &http.Client{
		Timeout:   10 * time.Second,
		Transport: clientTransport(service, newTransport()),
	}}
}

// UpstreamError is a non-2xx answer from another service.
type UpstreamError struct {
	Service string
	Status  int
	Err     Error
}

func (e *UpstreamError) Error() string {
	return fmt.Sprintf("%s answered %d %s: %s", e.Service, e.Status, e.Err.Code, e.Err.Message)
}

// Do sends in (when not nil) as JSON and decodes a 2xx answer into out
// (when not nil). Non-2xx answers are *UpstreamError; transport failures and
// timeouts are returned wrapped.
func (c *Client) Do(ctx context.Context, method, path, token string, headers map[string]string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if s := ServiceFrom(ctx); s != "" {
		req.Header.Set(CallerHeader, s)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s %s: %w", c.Service, method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4*MaxBody))
	if err != nil {
		return fmt.Errorf("%s %s %s: read: %w", c.Service, method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		ue := &UpstreamError{Service: c.Service, Status: resp.StatusCode}
		if e, ok := ParseProblem(resp.StatusCode, data); ok {
			ue.Err = e
		} else {
			ue.Err = Error{Code: "upstream", Message: strings.TrimSpace(string(data))}
		}
		return ue
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s %s: decode answer: %w", c.Service, method, path, err)
		}
	}
	return nil
}
