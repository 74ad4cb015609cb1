package serde

import (
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
	"sync"
	"time"
)

// Client talks to a Confluent-compatible schema registry over HTTP. It
// caches schemas by id (ids are immutable). It is safe for concurrent use.
type Client struct {
	base       string
	http       *http.Client
	user, pass string

	mu   sync.RWMutex
	byID map[int]cached
}

type cached struct {
	text string
	refs []string
}

var _ Registry = (*Client)(nil)

// NewClient returns a client of the registry at baseURL (such as
// http://127.0.0.1:8085). User and password, when set, go as basic auth.
func NewClient(baseURL, user, password string) *Client {
	return &Client{
		base: strings.TrimRight(baseURL, "/"),
		http: &http.Client{Timeout: 10 * time.Second},
		user: user, pass: password,
		byID: map[int]cached{},
	}
}

// APIError is an error body from the registry.
type APIError struct {
	Status  int
	Code    int    `json:"error_code"`
	Message string `json:"message"`
}

func (e *APIError) Error() string {
	return fmt.Sprintf("registry: %d %s", e.Code, e.Message)
}

// Unwrap maps registry codes onto this package's sentinel errors.
func (e *APIError) Unwrap() error {
	switch {
	case e.Status == http.StatusConflict: // 409 or 40901 depending on the server's age
		return ErrIncompatible
	case e.Code == 40401, e.Code == 40402, e.Code == 40403:
		return ErrNotFound
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	req.Header.Set("Accept", "application/vnd.schemaregistry.v1+json")
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("registry %s: %w", c.base, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("registry %s: %w", c.base, err)
	}
	if resp.StatusCode >= 300 {
		e := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Message == "" {
			e.Code, e.Message = resp.StatusCode, strings.TrimSpace(string(b))
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("registry %s %s: bad answer: %w", method, path, err)
	}
	return nil
}

func subjectPath(subject string) string { return "/subjects/" + url.PathEscape(subject) }

// Register implements Registry.
func (c *Client) Register(ctx context.Context, subject, schema string) (int, error) {
	var out struct {
		ID int `json:"id"`
	}
	if err := c.do(ctx, http.MethodPost, subjectPath(subject)+"/versions", map[string]string{"schema": schema}, &out); err != nil {
		return 0, err
	}
	c.remember(out.ID, schema)
	return out.ID, nil
}

// RegisterTyped registers a schema of a type other than Avro (JSON or
// PROTOBUF) under subject and returns its id.
func (c *Client) RegisterTyped(ctx context.Context, subject, schemaType, schema string) (int, error) {
	var out struct {
		ID int `json:"id"`
	}
	if err := c.do(ctx, http.MethodPost, subjectPath(subject)+"/versions", map[string]string{"schema": schema, "schemaType": schemaType}, &out); err != nil {
		return 0, err
	}
	return out.ID, nil
}

// Lookup implements Registry.
func (c *Client) Lookup(ctx context.Context, subject, schema string) (int, error) {
	var out struct {
		ID int `json:"id"`
	}
	if err := c.do(ctx, http.MethodPost, subjectPath(subject), map[string]string{"schema": schema}, &out); err != nil {
		return 0, err
	}
	return out.ID, nil
}

// SchemaByID implements Registry.
func (c *Client) SchemaByID(ctx context.Context, id int) (string, []string, error) {
	c.mu.RLock()
	s, ok := c.byID[id]
	c.mu.RUnlock()
	if ok {
		return s.text, s.refs, nil
	}
	var out struct {
		Schema     string      `json:"schema"`
		References []reference `json:"references"`
	}
	if err := c.do(ctx, http.MethodGet, "/schemas/ids/"+strconv.Itoa(id), nil, &out); err != nil {
		return "", nil, err
	}
	var refs []string
	if err := c.resolve(ctx, out.References, map[reference]bool{}, &refs, 0); err != nil {
		return "", nil, fmt.Errorf("references of schema %d: %w", id, err)
	}
	c.mu.Lock()
	c.byID[id] = cached{out.Schema, refs}
	c.mu.Unlock()
	return out.Schema, refs, nil
}

type reference struct {
	Name    string `json:"name"`
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

// resolve appends the texts of the referenced versions to out,
// dependencies first.
func (c *Client) resolve(ctx context.Context, refs []reference, seen map[reference]bool, out *[]string, depth int) error {
	if depth > 16 {
		return errors.New("references nest too deep")
	}
	for _, r := range refs {
		if seen[r] {
			continue
		}
		seen[r] = true
		var v struct {
			Schema     string      `json:"schema"`
			References []reference `json:"references"`
		}
		if err := c.do(ctx, http.MethodGet, subjectPath(r.Subject)+"/versions/"+strconv.Itoa(r.Version), nil, &v); err != nil {
			return fmt.Errorf("%s (%s version %d): %w", r.Name, r.Subject, r.Version, err)
		}
		if err := c.resolve(ctx, v.References, seen, out, depth+1); err != nil {
			return err
		}
		*out = append(*out, v.Schema)
	}
	return nil
}

func (c *Client) remember(id int, schema string) {
	c.mu.Lock()
	if _, ok := c.byID[id]; !ok {
		c.byID[id] = cached{text: schema}
	}
	c.mu.Unlock()
}

// Version is one registered version of a subject.
type Version struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
	ID      int    `json:"id"`
	Schema  string `json:"schema"`
	// SchemaType is AVRO (sent as "" by the registry, as Confluent
	// does), JSON or PROTOBUF.
	SchemaType string `json:"schemaType,omitempty"`
	// Refs holds the texts of the schemas it references, each one's own
	// references before it (for schema.ParseWithReferences).
	Refs []string `json:"-"`
}

// Versions returns every live version of subject, oldest first; none (and
// no error) when the subject does not exist.
func (c *Client) Versions(ctx context.Context, subject string) ([]Version, error) {
	var nums []int
	err := c.do(ctx, http.MethodGet, subjectPath(subject)+"/versions", nil, &nums)
	var e *APIError
	if errors.As(err, &e) && e.Code == 40401 {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]Version, 0, len(nums))
	for _, n := range nums {
		var v struct {
			Version
			References []reference `json:"references"`
		}
		if err := c.do(ctx, http.MethodGet, subjectPath(subject)+"/versions/"+strconv.Itoa(n), nil, &v); err != nil {
			return nil, err
		}
		if err := c.resolve(ctx, v.References, map[reference]bool{}, &v.Refs, 0); err != nil {
			return nil, fmt.Errorf("references of %s version %d: %w", subject, n, err)
		}
		out = append(out, v.Version)
	}
	return out, nil
}

// Level returns the compatibility level that applies to subject.
func (c *Client) Level(ctx context.Context, subject string) (string, error) {
	var out struct {
		Level string `json:"compatibilityLevel"`
	}
	if err := c.do(ctx, http.MethodGet, "/config/"+url.PathEscape(subject)+"?defaultToGlobal=true", nil, &out); err != nil {
		return "", err
	}
	return out.Level, nil
}

// SetLevel sets subject's compatibility level.
func (c *Client) SetLevel(ctx context.Context, subject, level string) error {
	return c.do(ctx, http.MethodPut, "/config/"+url.PathEscape(subject), map[string]string{"compatibility": level}, nil)
}
