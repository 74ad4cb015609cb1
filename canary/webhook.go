package canary

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// WebhookPayload is the JSON body a webhook receives: which webhook, and
// the canary's state at the time (its decisions left out but the last).
type WebhookPayload struct {
	Name     string            `json:"name"`
	Kind     WebhookKind       `json:"kind"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Canary   State             `json:"canary"`
}

// HookResult is the outcome of one webhook call, as decisions record it.
type HookResult struct {
	Name   string      `json:"name"`
	Kind   WebhookKind `json:"kind"`
	OK     bool        `json:"ok"`
	Status int         `json:"status,omitempty"` // 0 when there was no response
	Reason string      `json:"reason,omitempty"`
}

// callHook POSTs the payload and reports a 2xx within the timeout as OK;
// any other status, a transport error or the timeout is a failure (what
// it means is the kind's).
func callHook(ctx context.Context, client *http.Client, w Webhook, st State) HookResult {
	res := HookResult{Name: w.Name, Kind: w.Kind}
	timeout := hookTimeout(w)
	if n := len(st.Decisions); n > 1 {
		st.Decisions = st.Decisions[n-1:]
	}
	body, err := json.Marshal(WebhookPayload{Name: w.Name, Kind: w.Kind, Metadata: w.Metadata, Canary: st})
	if err != nil {
		res.Reason = fmt.Sprintf("encode payload: %v", err)
		return res
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		res.Reason = fmt.Sprintf("webhook %s: %v", w.Name, err)
		return res
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		if cctx.Err() != nil && ctx.Err() == nil {
			res.Reason = fmt.Sprintf("webhook %s (%s) timed out after %v", w.Name, w.Kind, timeout)
		} else {
			res.Reason = fmt.Sprintf("webhook %s (%s): %v", w.Name, w.Kind, err)
		}
		return res
	}
	defer func() { _ = resp.Body.Close() }()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	res.Status = resp.StatusCode
	res.OK = resp.StatusCode >= 200 && resp.StatusCode < 300
	if !res.OK {
		res.Reason = fmt.Sprintf("webhook %s (%s) answered %d", w.Name, w.Kind, resp.StatusCode)
		if t := bytes.TrimSpace(msg); len(t) > 0 {
			res.Reason += ": " + string(t)
		}
	}
	return res
}

// hookTimeout is the timeout a webhook's call gets.
func hookTimeout(w Webhook) time.Duration {
	if w.Timeout > 0 {
		return w.Timeout
	}
	return DefaultWebhookTimeout
}
