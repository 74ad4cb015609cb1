package controlplane

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/flotilla-ci/flotilla/deploy"
)

// ErrUnreachable is wrapped when no control plane answers at the address.
var ErrUnreachable = errors.New("no control plane answers")

// Client is the API's Go client: what `flotilla deploy`, `status`,
// `history` and `rollback` use.
type Client struct {
	// BaseURL is the control plane's address, e.g. http://127.0.0.1:7480.
	BaseURL string
	HTTP    *http.Client
	// Token is sent as the bearer token on every request (see
	// EnsureTokens); a platform's API refuses a request without one.
	Token string
}

// WithToken sets the client's token and returns it.
func (c *Client) WithToken(token string) *Client {
	c.Token = token
	return c
}

// NewClient returns a client for the control plane at base (a URL, or
// host:port).
func NewClient(base string) *Client {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{BaseURL: strings.TrimRight(base, "/"), HTTP: &http.Client{}}
}

// APIError is an answer other than success, with the server's message.
type APIError struct {
	Status int
	Msg    string
}

func (e *APIError) Error() string { return e.Msg }

// Unwrap makes errors.Is(err, deploy.ErrBusy) true for a 409.
func (e *APIError) Unwrap() error {
	if e.Status == http.StatusConflict {
		return deploy.ErrBusy
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w at %s (start one with 'flotilla up'): %w", ErrUnreachable, c.BaseURL, err)
	}
	if resp.StatusCode >= 300 {
		defer func() { _ = resp.Body.Close() }()
		var e struct {
			Error string `json:"error"`
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))
		}
		return nil, &APIError{Status: resp.StatusCode, Msg: e.Error}
	}
	return resp, nil
}

func (c *Client) getJSON(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// Plan asks for a release's plan without deploying anything.
func (c *Client) Plan(ctx context.Context, req deploy.Request) (*deploy.Plan, error) {
	var out struct {
		Plan *deploy.Plan `json:"plan"`
	}
	if err := c.getJSON(ctx, http.MethodPost, "/api/deploys", DeployRequest{Request: req, DryRun: true}, &out); err != nil {
		return nil, err
	}
	return out.Plan, nil
}

// Deploy runs a release, calling events with its progress. A failed
// release returns its report and an error wrapping deploy.ErrReleaseFailed.
func (c *Client) Deploy(ctx context.Context, req deploy.Request, events func(deploy.Event)) (*deploy.Report, error) {
	return c.stream(ctx, "/api/deploys", DeployRequest{Request: req}, events)
}

// Rollback puts a service back on an earlier version.
func (c *Client) Rollback(ctx context.Context, req deploy.RollbackRequest, events func(deploy.Event)) (*deploy.Report, error) {
	return c.stream(ctx, "/api/rollback", req, events)
}

func (c *Client) stream(ctx context.Context, path string, body any, events func(deploy.Event)) (*deploy.Report, error) {
	resp, err := c.do(ctx, http.MethodPost, path, body)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("POST %s: %w", path, err)
		}
		if l.Event != nil {
			if events != nil {
				events(*l.Event)
			}
			continue
		}
		switch {
		case l.Error == "":
			return l.Report, nil
		case l.Failed:
			return l.Report, fmt.Errorf("%w: %s", deploy.ErrReleaseFailed, strings.TrimPrefix(l.Error, deploy.ErrReleaseFailed.Error()+": "))
		case l.Busy:
			return l.Report, &APIError{Status: http.StatusConflict, Msg: l.Error}
		default:
			return l.Report, errors.New(l.Error)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("POST %s: the stream broke: %w (the release goes on in the control plane; see 'flotilla status')", path, err)
	}
	return nil, fmt.Errorf("POST %s: the stream ended without a result (the release goes on in the control plane; see 'flotilla status')", path)
}

// GC prunes the artifacts and logs no rollback needs now, and says what
// it freed.
func (c *Client) GC(ctx context.Context) (*deploy.Pruned, error) {
	var out deploy.Pruned
	if err := c.getJSON(ctx, http.MethodPost, "/api/gc", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Status returns every service's versions, weights and health.
func (c *Client) Status(ctx context.Context) (*StatusResponse, error) {
	var out StatusResponse
	if err := c.getJSON(ctx, http.MethodGet, "/api/status", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Platform returns where a platform's parts are and its own processes
// (GET /api/platform; an error while it is starting).
func (c *Client) Platform(ctx context.Context) (*PlatformInfo, error) {
	var out PlatformInfo
	if err := c.getJSON(ctx, http.MethodGet, "/api/platform", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// History returns deployment records newest first (of one service when
// service is not empty; limit 0 is the server's default).
func (c *Client) History(ctx context.Context, service string, limit int) ([]deploy.Record, error) {
	q := url.Values{}
	if service != "" {
		q.Set("service", service)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/api/history"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out struct {
		Records []deploy.Record `json:"records"`
	}
	if err := c.getJSON(ctx, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	return out.Records, nil
}

// Identities lists the platform's workload identities (GET
// /api/identities).
func (c *Client) Identities(ctx context.Context) (IdentitiesResponse, error) {
	var out IdentitiesResponse
	err := c.getJSON(ctx, http.MethodGet, "/api/identities", nil, &out)
	return out, err
}

// RotateIdentities gives every identity a new SVID now, from a new root
// when newRoot (POST /api/identities/rotate).
func (c *Client) RotateIdentities(ctx context.Context, newRoot bool) (IdentitiesResponse, error) {
	var out IdentitiesResponse
	err := c.getJSON(ctx, http.MethodPost, "/api/identities/rotate", RotateRequest{CA: newRoot}, &out)
	return out, err
}
