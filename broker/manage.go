package broker

import (
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// The resources teams use to look around and clean up: pacts by branch,
// provider states, branches, and the removals (tags, branches,
// environments, versions, pacticipants, pacts), all following the Pact
// Broker's HAL API as `pact broker` calls it. Removals need a write
// credential like every other non-read request.

// noContent answers 204 with no Content-Type: the pact CLI decodes any
// body that claims to be HAL, and an empty one does not decode.
func noContent(w http.ResponseWriter) error {
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) deleteTag(w http.ResponseWriter, r *http.Request) error {
	if err := s.store.DeleteTag(r.Context(), r.PathValue("pacticipant"), r.PathValue("version"), r.PathValue("tag")); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) branch(w http.ResponseWriter, r *http.Request) error {
	p, br := r.PathValue("pacticipant"), r.PathValue("branch")
	versions, err := s.store.BranchVersions(r.Context(), p, br)
	if err != nil {
		return err
	}
	b := s.base(r)
	list := []any{}
	for _, v := range versions {
		list = append(list, map[string]any{"number": v, "_links": map[string]any{"self": href(link(b, "pacticipants", p, "versions", v))}})
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": br, "_embedded": map[string]any{"versions": list}, "_links": map[string]any{
		"self":              hrefT(link(b, "pacticipants", p, "branches", br), "Branch"),
		"pb:pacticipant":    hrefT(link(b, "pacticipants", p), p),
		"pb:latest-version": hrefT(link(b, "pacticipants", p, "branches", br, "versions", versions[0]), "Latest version of the branch"),
	}})
	return nil
}

func (s *Server) deleteBranch(w http.ResponseWriter, r *http.Request) error {
	if err := s.store.DeleteBranch(r.Context(), r.PathValue("pacticipant"), r.PathValue("branch")); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) updateEnvironment(w http.ResponseWriter, r *http.Request) error {
	e, err := s.store.Environment(r.Context(), r.PathValue("env"))
	if err != nil {
		return err
	}
	var body struct {
		Name        *string `json:"name"`
		DisplayName *string `json:"displayName"`
		Production  *bool   `json:"production"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if body.Name != nil {
		if err := checkEnvironmentName(*body.Name); err != nil {
			return err
		}
		e.Name = *body.Name
	}
	if body.DisplayName != nil {
		e.DisplayName = *body.DisplayName
	}
	if body.Production != nil {
		e.Production = *body.Production
	}
	e, err = s.store.UpdateEnvironment(r.Context(), e)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.environmentBody(s.base(r), e))
	return nil
}

func checkEnvironmentName(name string) error {
	switch {
	case name == "":
		return ValidationErrors{"name": {"is missing"}}
	case strings.ContainsAny(name, " \t\r\n/"):
		return ValidationErrors{"name": {"cannot contain spaces or slashes"}}
	}
	if bad := checkName("name", name); bad != nil {
		return bad
	}
	return nil
}

func (s *Server) deleteEnvironment(w http.ResponseWriter, r *http.Request) error {
	e, err := s.store.Environment(r.Context(), r.PathValue("env"))
	if err != nil {
		return err
	}
	if err := s.store.DeleteEnvironment(r.Context(), e.UUID); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) deleteVersion(w http.ResponseWriter, r *http.Request) error {
	if err := s.store.DeleteVersion(r.Context(), r.PathValue("pacticipant"), r.PathValue("version")); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) deletePacticipant(w http.ResponseWriter, r *http.Request) error {
	if err := s.store.DeletePacticipant(r.Context(), r.PathValue("pacticipant")); err != nil {
		return err
	}
	return noContent(w)
}

func (s *Server) deletePact(w http.ResponseWriter, r *http.Request) error {
	if err := s.store.DeletePactPublication(r.Context(), r.PathValue("provider"), r.PathValue("consumer"), r.PathValue("version")); err != nil {
		return err
	}
	return noContent(w)
}

// branchPacts answers the pacts-by-branch resources `pact broker
// get-pacts` reads: for a provider (pb:pacts links) or for one consumer
// (embedded pacts), on a branch or each consumer's main branch, all or
// only the latest.
func (s *Server) branchPacts(w http.ResponseWriter, r *http.Request) error {
	provider, consumer, branch := r.PathValue("provider"), r.PathValue("consumer"), r.PathValue("branch")
	latest := strings.HasSuffix(r.URL.Path, "/latest")
	if _, err := s.store.Pacticipant(r.Context(), provider); err != nil {
		return err
	}
	if consumer != "" {
		if _, err := s.store.Pacticipant(r.Context(), consumer); err != nil {
			return err
		}
	}
	ps, err := s.store.BranchPacts(r.Context(), provider, consumer, branch, latest)
	if err != nil {
		return err
	}
	b := s.base(r)
	links := []any{}
	embedded := []any{}
	for _, p := range ps {
		u := link(b, "pacts", "provider", p.Provider, "consumer", p.Consumer, "version", p.ConsumerVersion)
		title := fmt.Sprintf("Pact between %s (%s) and %s", p.Consumer, p.ConsumerVersion, p.Provider)
		links = append(links, map[string]any{"href": u, "title": title, "name": p.Consumer})
		embedded = append(embedded, map[string]any{"createdAt": ts(p.CreatedAt),
			"_embedded": map[string]any{"consumerVersion": map[string]any{"number": p.ConsumerVersion,
				"_links": map[string]any{"self": map[string]any{"title": "Version", "name": p.ConsumerVersion, "href": link(b, "pacticipants", p.Consumer, "versions", p.ConsumerVersion)}}}},
			"_links": map[string]any{"self": hrefT(u, title)}})
	}
	body := map[string]any{"_links": map[string]any{
		"self":        href(b + r.URL.EscapedPath()),
		"pb:provider": map[string]any{"href": link(b, "pacticipants", provider), "name": provider},
		"pb:pacts":    links,
	}}
	if consumer != "" {
		body["_embedded"] = map[string]any{"pacts": embedded}
		body["_links"].(map[string]any)["pb:consumer"] = map[string]any{"href": link(b, "pacticipants", consumer), "name": consumer}
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// providerStates lists the provider states of the latest pacts on each
// consumer's main branch (or a branch, or what is deployed or released in
// an environment), with the consumers that use them.
func (s *Server) providerStates(w http.ResponseWriter, r *http.Request) error {
	provider := r.PathValue("provider")
	if _, err := s.store.Pacticipant(r.Context(), provider); err != nil {
		return err
	}
	var ps []Pact
	var err error
	if env := r.PathValue("environment"); env != "" {
		var vps []VerifiablePact
		vps, err = s.store.ForVerification(r.Context(), provider, ForVerificationQuery{Selectors: []ConsumerVersionSelector{{DeployedOrReleased: true, Environment: env}}})
		for _, vp := range vps {
			p, perr := s.store.Pact(r.Context(), provider, vp.Consumer, vp.SHA)
			if perr != nil {
				return perr
			}
			ps = append(ps, p)
		}
	} else {
		ps, err = s.store.BranchPacts(r.Context(), provider, "", r.PathValue("branch"), true)
	}
	if err != nil {
		return err
	}
	type state struct {
		Name      string         `json:"name"`
		Params    map[string]any `json:"params,omitempty"`
		Consumers []string       `json:"consumers"`
	}
	byKey := map[string]*state{}
	for _, p := range ps {
		for _, st := range pactStates(p.Content) {
			key := st.Name + "\x00" + string(mustJSON(st.Params))
			x := byKey[key]
			if x == nil {
				x = &state{Name: st.Name, Params: st.Params}
				byKey[key] = x
			}
			if !contains(x.Consumers, p.Consumer) {
				x.Consumers = append(x.Consumers, p.Consumer)
			}
		}
	}
	list := []*state{}
	for _, x := range byKey {
		sort.Strings(x.Consumers)
		list = append(list, x)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	writeJSON(w, http.StatusOK, map[string]any{"providerStates": list, "_links": map[string]any{"self": href(s.base(r) + r.URL.EscapedPath())}})
	return nil
}

// doc answers the HAL curies' documentation links (/doc/{rel}), so a
// client or person following them gets a page, not a 404.
func (s *Server) doc(w http.ResponseWriter, r *http.Request) error {
	rel := r.PathValue("rel")
	text, ok := relationDocs[rel]
	if !ok {
		return fmt.Errorf("documentation of relation %q: %w", rel, ErrNotFound)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = fmt.Fprintf(w, "<!doctype html><title>pb:%s</title><h1>pb:%s</h1><p>%s</p>\n", html.EscapeString(rel), html.EscapeString(rel), html.EscapeString(text))
	return nil
}

var relationDocs = map[string]string{
	"publish-contracts":                               "POST consumer contracts: {pacticipantName, pacticipantVersionNumber, branch, tags, contracts[]}.",
	"pacticipants":                                    "GET the pacticipants; POST {name, mainBranch} to create one.",
	"pacticipant":                                     "GET, PATCH or DELETE a pacticipant (DELETE removes its versions, pacts and verification results).",
	"pacticipant-version":                             "GET, PUT or DELETE a version of a pacticipant.",
	"pacticipant-version-tag":                         "GET, PUT or DELETE a tag of a pacticipant version.",
	"pacticipant-branch":                              "GET or DELETE a branch of a pacticipant (DELETE keeps the versions).",
	"pacticipant-branch-version":                      "GET or PUT a version on a branch.",
	"latest-version":                                  "GET the latest version of a pacticipant.",
	"latest-provider-pacts":                           "GET the latest pact of each consumer of a provider.",
	"provider-pacts-for-verification":                 "POST {consumerVersionSelectors, providerVersionBranch, includePendingStatus, includeWipPactsSince} for the pacts a provider should verify; read-only credentials may ask.",
	"provider-pacts-with-branch":                      "GET the pacts consumer versions on a branch published for a provider.",
	"provider-pacts-with-main-branch":                 "GET the pacts consumers' main branches published for a provider.",
	"latest-provider-pacts-with-branch":               "GET the latest pact of each consumer on a branch.",
	"latest-provider-pacts-with-main-branch":          "GET the latest pact of each consumer's main branch.",
	"main-branch-pact-versions":                       "GET the pacts a consumer's main branch published for a provider.",
	"latest-main-branch-pact-versions":                "GET the latest pact a consumer's main branch published for a provider.",
	"branch-pact-versions":                            "GET the pacts a consumer's branch published for a provider.",
	"latest-branch-pact-versions":                     "GET the latest pact a consumer's branch published for a provider.",
	"provider-states":                                 "GET the provider states of a provider's pacts, with the consumers that use them.",
	"webhooks":                                        "GET the webhooks; POST one.",
	"webhook":                                         "GET, PUT or DELETE a webhook; POST to its pb:execute to test it.",
	"latest-pact-versions":                            "GET the latest pact of every integration.",
	"publish-pact":                                    "PUT a pact for one consumer version (the legacy publication); DELETE removes it.",
	"environments":                                    "GET the environments; POST one.",
	"environment":                                     "GET, PUT or DELETE an environment.",
	"can-i-deploy-pacticipant-version-to-environment": "GET whether a version may be deployed to an environment.",
	"matrix": "GET the verification matrix (what the CLI's can-i-deploy asks).",
}

// pactStates reads the provider states of a pact's interactions.
func pactStates(content []byte) []struct {
	Name   string
	Params map[string]any
} {
	var doc struct {
		Interactions []map[string]any `json:"interactions"`
		Messages     []map[string]any `json:"messages"`
	}
	_ = json.Unmarshal(content, &doc)
	var out []struct {
		Name   string
		Params map[string]any
	}
	add := func(name string, params map[string]any) {
		if name != "" {
			out = append(out, struct {
				Name   string
				Params map[string]any
			}{name, params})
		}
	}
	for _, in := range append(doc.Interactions, doc.Messages...) {
		if s, ok := in["providerState"].(string); ok {
			add(s, nil)
		}
		if s, ok := in["provider_state"].(string); ok {
			add(s, nil)
		}
		list, _ := in["providerStates"].([]any)
		for _, x := range list {
			m, _ := x.(map[string]any)
			name, _ := m["name"].(string)
			params, _ := m["params"].(map[string]any)
			add(name, params)
		}
	}
	return out
}

// executeWebhook fires a webhook now with example values of the
// variables (pb:execute, what `pact broker test-webhook` posts to) and
// answers with what the receiver said.
func (s *Server) executeWebhook(w http.ResponseWriter, r *http.Request) error {
	wh, err := s.store.Webhook(r.Context(), r.PathValue("uuid"))
	if err != nil {
		return err
	}
	b := s.base(r)
	ctx := map[string]string{"consumerName": wh.Consumer, "providerName": wh.Provider}
	if ctx["consumerName"] == "" {
		ctx["consumerName"] = "example-consumer"
	}
	if ctx["providerName"] == "" {
		ctx["providerName"] = "example-provider"
	}
	// The newest pact of the pair, when there is one, gives real values.
	if ps, err := s.store.LatestPacts(r.Context(), wh.Provider); err == nil {
		for _, p := range ps {
			if wh.Consumer == "" || p.Consumer == wh.Consumer {
				ctx["consumerName"], ctx["providerName"] = p.Consumer, p.Provider
				ctx["consumerVersionNumber"] = p.ConsumerVersion
				ctx["pactPath"] = s.pactURL("", p)
				break
			}
		}
	}
	event := EventContractPublished
	if len(wh.Events) > 0 {
		event = wh.Events[0]
	}
	d := &Deliverer{BaseURL: b, Client: &http.Client{Timeout: 10 * time.Second}}
	del := WebhookDelivery{Webhook: wh, Event: event, Context: ctx}
	vars := templateVars(del, b)
	target := render(wh.URL, vars, true)
	if u, perr := url.Parse(target); perr != nil || !s.cfg.webhookHostAllowed(u.Hostname()) {
		return ValidationErrors{"request.url": {fmt.Sprintf("host of %s is not one of the hosts webhooks may call", target)}}
	}
	status, respBody, err := d.execute(r.Context(), del)
	result := map[string]any{
		"request":  map[string]any{"method": wh.Method, "url": target, "headers": wh.Headers, "body": render(wh.Body, vars, false)},
		"response": map[string]any{"status": status, "body": respBody},
		"success":  err == nil,
		"_links":   map[string]any{"self": href(link(b, "webhooks", wh.UUID, "execute")), "pb:webhook": href(link(b, "webhooks", wh.UUID))},
	}
	if err != nil {
		result["error"] = map[string]any{"message": err.Error()}
		s.log.WarnContext(r.Context(), "webhook test failed", "webhook", wh.UUID, "error", err)
		writeJSON(w, http.StatusInternalServerError, result)
		return nil
	}
	writeJSON(w, http.StatusOK, result)
	return nil
}
