package broker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// The events a webhook can subscribe to, as the Pact Broker names them.
const (
	EventContractPublished                      = "contract_published"
	EventContractContentChanged                 = "contract_content_changed"
	EventContractRequiringVerificationPublished = "contract_requiring_verification_published"
	EventProviderVerificationPublished          = "provider_verification_published"
	EventProviderVerificationSucceeded          = "provider_verification_succeeded"
	EventProviderVerificationFailed             = "provider_verification_failed"
)

var webhookEvents = []string{EventContractPublished, EventContractContentChanged, EventContractRequiringVerificationPublished,
	EventProviderVerificationPublished, EventProviderVerificationSucceeded, EventProviderVerificationFailed}

// Webhook is a request the broker sends when an event happens to pacts of
// a consumer and provider (empty: any). URL, header values and body may
// use the Pact Broker's ${pactbroker.*} variables.
type Webhook struct {
	UUID        string
	Description string
	Consumer    string
	Provider    string
	Events      []string
	Method      string
	URL         string
	Headers     map[string]string
	Body        string
	Enabled     bool
	CreatedAt   time.Time
}

// WebhookDelivery is one event to deliver to one webhook. The store keeps
// it from the transaction that caused the event until it is delivered or
// given up on, so no event is lost to a crash or a receiver that is down.
type WebhookDelivery struct {
	ID      int64
	Webhook Webhook
	Event   string
	// Context holds the variables of the event: consumerName,
	// providerName, consumerVersionNumber, consumerVersionBranch,
	// providerVersionNumber, and the paths pactPath and
	// verificationResultPath (made absolute on delivery).
	Context    map[string]string
	Attempts   int
	Status     string // pending, succeeded or failed
	LastStatus int
	LastError  string
	CreatedAt  time.Time
}

// DeliveryQueue is what a Deliverer needs from the store.
type DeliveryQueue interface {
	// ClaimDeliveries leases up to limit due deliveries until now+lease.
	ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]WebhookDelivery, error)
	// FinishDelivery records an attempt: delivered, or retried at retryAt,
	// or (giveUp) failed for good.
	FinishDelivery(ctx context.Context, id int64, delivered bool, status int, errText string, retryAt time.Time, giveUp bool) error
}

// Deliverer sends webhook deliveries with retries.
type Deliverer struct {
	Queue DeliveryQueue
	// BaseURL makes pactUrl and verificationResultUrl absolute.
	BaseURL string
	Client  *http.Client
	Log     *slog.Logger
	// Poll is how often due deliveries are looked for (default 500ms);
	// MaxAttempts bounds retries (default 10), which back off from
	// 1s doubling to at most 5 minutes.
	Poll        time.Duration
	MaxAttempts int
}

// Run delivers until ctx ends.
func (d *Deliverer) Run(ctx context.Context) error {
	poll := d.Poll
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if err := d.DeliverDue(ctx); err != nil && ctx.Err() == nil {
			d.log().ErrorContext(ctx, "webhook deliveries", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (d *Deliverer) log() *slog.Logger {
	if d.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Log
}

// DeliverDue sends every delivery that is due now.
func (d *Deliverer) DeliverDue(ctx context.Context) error {
	maxAttempts := d.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = 10
	}
	for {
		ds, err := d.Queue.ClaimDeliveries(ctx, time.Now(), time.Minute, 20)
		if err != nil || len(ds) == 0 {
			return err
		}
		for _, del := range ds {
			status, err := d.send(ctx, del)
			attempt := del.Attempts + 1
			backoff := min(time.Duration(1<<min(attempt-1, 9))*time.Second, 5*time.Minute)
			msg := ""
			if err != nil {
				msg = err.Error()
				d.log().WarnContext(ctx, "webhook delivery failed", "webhook", del.Webhook.UUID, "event", del.Event, "attempt", attempt, "error", msg)
			}
			if ferr := d.Queue.FinishDelivery(ctx, del.ID, err == nil, status, msg, time.Now().Add(backoff), err != nil && attempt >= maxAttempts); ferr != nil {
				return ferr
			}
		}
	}
}

func (d *Deliverer) send(ctx context.Context, del WebhookDelivery) (int, error) {
	status, _, err := d.execute(ctx, del)
	return status, err
}

// templateVars are the Pact Broker's documented webhook variables for a
// delivery: every one has a value (empty when the event has none), so no
// ${pactbroker.*} reaches the receiver as literal text.
func templateVars(del WebhookDelivery, base string) map[string]string {
	vars := map[string]string{}
	for _, k := range []string{"pactUrl", "verificationResultUrl", "consumerVersionNumber", "consumerVersionTags", "consumerVersionBranch",
		"consumerVersionDescriptions", "providerVersionNumber", "providerVersionTags", "providerVersionBranch", "providerVersionDescriptions",
		"consumerName", "providerName", "consumerLabels", "providerLabels", "buildUrl", "currentlyDeployedProviderVersionNumber",
		"githubVerificationStatus", "bitbucketVerificationStatus", "azureDevOpsVerificationStatus", "gitlabVerificationStatus"} {
		vars[k] = ""
	}
	for k, v := range del.Context {
		vars[k] = v
	}
	vars["eventName"] = del.Event
	base = strings.TrimSuffix(base, "/")
	if p := del.Context["pactPath"]; p != "" {
		vars["pactUrl"] = base + p
	}
	if p := del.Context["verificationResultPath"]; p != "" {
		vars["verificationResultUrl"] = base + p
	}
	delete(vars, "pactPath")
	delete(vars, "verificationResultPath")
	delete(vars, "success")
	// The commit statuses each CI host expects, as the Pact Broker maps a
	// verification's outcome (pending until a result is published).
	github, bitbucket, azure, gitlab := "pending", "INPROGRESS", "pending", "pending"
	switch del.Context["success"] {
	case "true":
		github, bitbucket, azure, gitlab = "success", "SUCCESSFUL", "succeeded", "success"
	case "false":
		github, bitbucket, azure, gitlab = "failure", "FAILED", "failed", "failed"
	}
	vars["githubVerificationStatus"], vars["bitbucketVerificationStatus"] = github, bitbucket
	vars["azureDevOpsVerificationStatus"], vars["gitlabVerificationStatus"] = azure, gitlab
	return vars
}

var templateRef = regexp.MustCompile(`\$\{pactbroker\.([A-Za-z]+)\}`)

// render substitutes the variables; escape query-escapes them (for URLs).
// An unknown variable is left as written.
func render(s string, vars map[string]string, escape bool) string {
	return templateRef.ReplaceAllStringFunc(s, func(m string) string {
		v, ok := vars[templateRef.FindStringSubmatch(m)[1]]
		if !ok {
			return m
		}
		if escape {
			return url.QueryEscape(v)
		}
		return v
	})
}

// execute sends one delivery and returns the receiver's status and the
// start of its body.
func (d *Deliverer) execute(ctx context.Context, del WebhookDelivery) (int, string, error) {
	vars := templateVars(del, d.BaseURL)
	w := del.Webhook
	var body io.Reader
	if w.Body != "" {
		body = bytes.NewReader([]byte(render(w.Body, vars, false)))
	}
	req, err := http.NewRequestWithContext(ctx, w.Method, render(w.URL, vars, true), body)
	if err != nil {
		return 0, "", fmt.Errorf("webhook %s: %w", w.UUID, err)
	}
	for k, v := range w.Headers {
		req.Header.Set(k, render(v, vars, false))
	}
	c := d.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	got, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, string(got), fmt.Errorf("%s %s: status %d", w.Method, w.URL, resp.StatusCode)
	}
	return resp.StatusCode, string(got), nil
}
