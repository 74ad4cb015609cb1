package broker

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// webhookRequest is the Pact Broker's webhook resource.
type webhookRequest struct {
	Description string `json:"description"`
	Consumer    *struct {
		Name string `json:"name"`
	} `json:"consumer"`
	Provider *struct {
		Name string `json:"name"`
	} `json:"provider"`
	Events []struct {
		Name string `json:"name"`
	} `json:"events"`
	Request struct {
		Method  string            `json:"method"`
		URL     string            `json:"url"`
		Headers map[string]string `json:"headers"`
		Body    json.RawMessage   `json:"body"`
	} `json:"request"`
	Enabled *bool `json:"enabled"`
}

var templateVar = regexp.MustCompile(`\$\{pactbroker\.[A-Za-z]+\}`)

// ParseWebhook validates a webhook resource.
func ParseWebhook(body []byte) (Webhook, error) {
	var req webhookRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return Webhook{}, ValidationErrors{"body": {"must be a JSON object: " + err.Error()}}
	}
	errs := ValidationErrors{}
	w := Webhook{Description: req.Description, Method: strings.ToUpper(req.Request.Method), URL: req.Request.URL, Headers: req.Request.Headers, Enabled: true}
	if req.Enabled != nil {
		w.Enabled = *req.Enabled
	}
	if req.Consumer != nil {
		w.Consumer = req.Consumer.Name
	}
	if req.Provider != nil {
		w.Provider = req.Provider.Name
	}
	switch w.Method {
	case "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD":
	default:
		errs.add("request.method", "must be one of GET, POST, PUT, PATCH, DELETE, HEAD")
	}
	u, err := url.Parse(templateVar.ReplaceAllString(w.URL, "x"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs.add("request.url", "must be an absolute http(s) URL, got %q", w.URL)
	}
	if len(req.Events) == 0 {
		errs.add("events", "must name at least one event")
	}
	for i, e := range req.Events {
		if !contains(webhookEvents, e.Name) {
			errs.add(fmt.Sprintf("events[%d].name", i), "must be one of %s", strings.Join(webhookEvents, ", "))
			continue
		}
		w.Events = append(w.Events, e.Name)
	}
	for k := range w.Headers {
		if strings.ContainsAny(k, "\r\n: ") || k == "" {
			errs.add("request.headers", "%q is not a header name", k)
		}
	}
	if len(req.Request.Body) > 0 && string(req.Request.Body) != "null" {
		var s string
		if json.Unmarshal(req.Request.Body, &s) == nil {
			w.Body = s
		} else {
			w.Body = string(req.Request.Body)
		}
	}
	if len(errs) > 0 {
		return Webhook{}, errs
	}
	return w, nil
}

func (s *Server) webhookBody(b string, w Webhook) map[string]any {
	events := []any{}
	for _, e := range w.Events {
		events = append(events, map[string]any{"name": e})
	}
	body := map[string]any{
		"uuid": w.UUID, "description": w.Description, "enabled": w.Enabled, "createdAt": ts(w.CreatedAt), "events": events,
		"request": map[string]any{"method": w.Method, "url": w.URL, "headers": w.Headers, "body": w.Body},
		"_links": map[string]any{
			"self":          hrefT(link(b, "webhooks", w.UUID), w.Description),
			"pb:webhooks":   href(b + "/webhooks"),
			"pb:deliveries": hrefT(link(b, "webhooks", w.UUID, "deliveries"), "Deliveries of this webhook"),
			"pb:execute":    hrefT(link(b, "webhooks", w.UUID, "execute"), "Test the execution of the webhook with the latest matching pact or verification"),
		},
	}
	if w.Consumer != "" {
		body["consumer"] = map[string]any{"name": w.Consumer}
	}
	if w.Provider != "" {
		body["provider"] = map[string]any{"name": w.Provider}
	}
	return body
}

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request) error {
	var raw json.RawMessage
	if err := decodeBody(r, &raw); err != nil {
		return err
	}
	wh, err := ParseWebhook(raw)
	if err != nil {
		return err
	}
	if u, _ := url.Parse(templateVar.ReplaceAllString(wh.URL, "x")); !s.cfg.webhookHostAllowed(u.Hostname()) {
		return ValidationErrors{"request.url": {fmt.Sprintf("host %s is not one of the hosts webhooks may call (%s)", u.Hostname(), strings.Join(s.cfg.WebhookHosts, ", "))}}
	}
	// The legacy creation paths name the consumer and provider.
	if c := r.PathValue("consumer"); c != "" {
		wh.Consumer = c
	}
	if p := r.PathValue("provider"); p != "" {
		wh.Provider = p
	}
	if id := r.PathValue("uuid"); id != "" {
		wh.UUID = id
		if _, err := s.store.Webhook(r.Context(), id); err == nil {
			if err := s.store.DeleteWebhook(r.Context(), id); err != nil {
				return err
			}
		}
	}
	wh, err = s.store.CreateWebhook(r.Context(), wh)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, s.webhookBody(s.base(r), wh))
	return nil
}

func (s *Server) webhooks(w http.ResponseWriter, r *http.Request) error {
	ws, err := s.store.Webhooks(r.Context())
	if err != nil {
		return err
	}
	b := s.base(r)
	links := []any{}
	for _, wh := range ws {
		links = append(links, map[string]any{"href": link(b, "webhooks", wh.UUID), "title": wh.Description, "name": wh.Description})
	}
	writeJSON(w, http.StatusOK, map[string]any{"_links": map[string]any{"self": href(b + "/webhooks"), "pb:webhooks": links}})
	return nil
}

func (s *Server) webhook(w http.ResponseWriter, r *http.Request) error {
	wh, err := s.store.Webhook(r.Context(), r.PathValue("uuid"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.webhookBody(s.base(r), wh))
	return nil
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request) error {
	if err := s.store.DeleteWebhook(r.Context(), r.PathValue("uuid")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) webhookDeliveries(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.store.Deliveries(r.Context(), r.PathValue("uuid"))
	if err != nil {
		return err
	}
	list := []any{}
	for _, d := range ds {
		list = append(list, map[string]any{"event": d.Event, "status": d.Status, "attempts": d.Attempts, "lastStatus": d.LastStatus,
			"lastError": d.LastError, "createdAt": ts(d.CreatedAt), "context": d.Context})
	}
	writeJSON(w, http.StatusOK, map[string]any{"deliveries": list, "_links": map[string]any{"self": href(s.base(r) + r.URL.Path)}})
	return nil
}
