package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/flotilla-ci/flotilla/graph"
)

// smoke runs one check against the service's stable address through the
// header lane: X-Canary: true and a pin to the new version, so it reaches
// the new version while users still reach the old one.
func (o *Orchestrator) smoke(ctx context.Context, addr, version string, c graph.SmokeCheck) error {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.SmokeTimeout)
	defer cancel()
	method := c.Method
	if method == "" {
		method = http.MethodGet
	}
	want := c.Status
	if want == 0 {
		want = http.StatusOK
	}
	var body io.Reader
	if c.Body != "" {
		body = strings.NewReader(c.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+c.Path, body)
	if err != nil {
		return fmt.Errorf("smoke %q: %w", c.Name, err)
	}
	if c.Body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(CanaryHeader, "true")
	req.Header.Set(VersionHeader, version)
	resp, err := o.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("smoke %q: %w", c.Name, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if got := resp.Header.Get(UpstreamHeader); got != "" && got != version {
		return fmt.Errorf("smoke %q: answered by version %s, not %s (the header lane does not reach the new version)", c.Name, got, version)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("smoke %q: %s %s answered %d, want %d%s", c.Name, method, c.Path, resp.StatusCode, want, bodyNote(data))
	}
	if c.JSONField == "" {
		return nil
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("smoke %q: %s %s: the body is not JSON (%w)%s", c.Name, method, c.Path, err, bodyNote(data))
	}
	got, ok := field(doc, c.JSONField)
	if !ok {
		return fmt.Errorf("smoke %q: %s %s: no field %q in the body%s", c.Name, method, c.Path, c.JSONField, bodyNote(data))
	}
	if got != c.JSONValue {
		return fmt.Errorf("smoke %q: %s %s: field %s is %q, want %q", c.Name, method, c.Path, c.JSONField, got, c.JSONValue)
	}
	return nil
}

// field follows a dotted path (data.items.0.id) and returns the value as
// text: strings as they are, everything else as JSON.
func field(doc any, path string) (string, bool) {
	cur := doc
	for _, part := range strings.Split(path, ".") {
		switch v := cur.(type) {
		case map[string]any:
			x, ok := v[part]
			if !ok {
				return "", false
			}
			cur = x
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(v) {
				return "", false
			}
			cur = v[i]
		default:
			return "", false
		}
	}
	if s, ok := cur.(string); ok {
		return s, true
	}
	b, _ := json.Marshal(cur)
	return string(b), true
}

func bodyNote(b []byte) string {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return ""
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return " (body: " + s + ")"
}
