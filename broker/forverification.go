package broker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// forVerificationRequest is the body of POST
// /pacts/provider/{provider}/for-verification.
type forVerificationRequest struct {
	ConsumerVersionSelectors []map[string]any `json:"consumerVersionSelectors"`
	ProviderVersionBranch    string           `json:"providerVersionBranch"`
	ProviderVersionTags      []string         `json:"providerVersionTags"`
	IncludePendingStatus     bool             `json:"includePendingStatus"`
	IncludeWIPPactsSince     string           `json:"includeWipPactsSince"`
}

// ParseForVerification decodes and validates a pacts-for-verification
// request body.
func ParseForVerification(body []byte) (ForVerificationQuery, error) {
	var req forVerificationRequest
	var q ForVerificationQuery
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return q, ValidationErrors{"body": {"must be a JSON object: " + err.Error()}}
		}
	}
	errs := ValidationErrors{}
	q.ProviderVersionBranch, q.ProviderVersionTags, q.IncludePendingStatus = req.ProviderVersionBranch, req.ProviderVersionTags, req.IncludePendingStatus
	if req.IncludeWIPPactsSince != "" {
		t, err := parseDate(req.IncludeWIPPactsSince)
		if err != nil {
			errs.add("includeWipPactsSince", "must be a date or date-time (e.g. 2024-01-31 or 2024-01-31T10:00:00Z), got %q", req.IncludeWIPPactsSince)
		}
		q.IncludeWIPPactsSince = t
	}
	for i, raw := range req.ConsumerVersionSelectors {
		f := fmt.Sprintf("consumerVersionSelectors[%d]", i)
		sel, err := parseSelector(raw)
		if err != nil {
			errs.add(f, "%v", err)
			continue
		}
		if sel.MatchingBranch && q.ProviderVersionBranch == "" {
			errs.add(f, "the providerVersionBranch must be specified when the selector matchingBranch=true is used")
		}
		q.Selectors = append(q.Selectors, sel)
	}
	if len(errs) > 0 {
		return q, errs
	}
	return q, nil
}

func parseDate(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("not a date")
}

func parseSelector(raw map[string]any) (ConsumerVersionSelector, error) {
	var sel ConsumerVersionSelector
	str := func(k string) (string, error) {
		v, ok := raw[k]
		if !ok || v == nil {
			return "", nil
		}
		s, ok := v.(string)
		if !ok || strings.TrimSpace(s) == "" {
			return "", fmt.Errorf("%s must be a non-empty string", k)
		}
		return s, nil
	}
	boolean := func(k string) (bool, bool, error) {
		v, ok := raw[k]
		if !ok || v == nil {
			return false, false, nil
		}
		b, ok := v.(bool)
		if !ok {
			return false, true, fmt.Errorf("%s must be true or false", k)
		}
		return b, true, nil
	}
	var err error
	for k := range raw {
		switch k {
		case "mainBranch", "branch", "matchingBranch", "fallbackBranch", "tag", "fallbackTag", "latest",
			"deployed", "released", "deployedOrReleased", "environment", "consumer":
		default:
			return sel, fmt.Errorf("unknown selector key %q", k)
		}
	}
	if b, ok := raw["branch"].(bool); ok {
		if !b {
			return sel, fmt.Errorf("branch must be a branch name, or true with latest true")
		}
		sel.AllBranches = true
	} else if sel.Branch, err = str("branch"); err != nil {
		return sel, err
	}
	for _, p := range []struct {
		k string
		d *string
	}{{"fallbackBranch", &sel.FallbackBranch}, {"tag", &sel.Tag}, {"fallbackTag", &sel.FallbackTag}, {"environment", &sel.Environment}, {"consumer", &sel.Consumer}} {
		if *p.d, err = str(p.k); err != nil {
			return sel, err
		}
	}
	for _, p := range []struct {
		k string
		d *bool
	}{{"mainBranch", &sel.MainBranch}, {"matchingBranch", &sel.MatchingBranch}, {"deployed", &sel.Deployed}, {"released", &sel.Released}, {"deployedOrReleased", &sel.DeployedOrReleased}} {
		if *p.d, _, err = boolean(p.k); err != nil {
			return sel, err
		}
	}
	if l, set, err := boolean("latest"); err != nil {
		return sel, err
	} else if set {
		sel.Latest = &l
	}
	kinds := 0
	for _, b := range []bool{sel.MainBranch, sel.Branch != "" || sel.AllBranches, sel.MatchingBranch, sel.Tag != "", sel.Deployed || sel.Released || sel.DeployedOrReleased || sel.Environment != ""} {
		if b {
			kinds++
		}
	}
	switch {
	case kinds > 1:
		return sel, fmt.Errorf("combine at most one of mainBranch, branch, matchingBranch, tag and deployed/released/environment")
	case kinds == 0 && sel.Latest == nil && sel.Consumer == "":
		return sel, fmt.Errorf("must specify mainBranch, branch, matchingBranch, tag, deployed, released, deployedOrReleased, environment, latest or consumer")
	case sel.AllBranches && (sel.Latest == nil || !*sel.Latest):
		return sel, fmt.Errorf("branch: true requires latest: true")
	case sel.FallbackBranch != "" && sel.Branch == "":
		return sel, fmt.Errorf("fallbackBranch requires branch")
	case sel.FallbackTag != "" && sel.Tag == "":
		return sel, fmt.Errorf("fallbackTag requires tag")
	}
	return sel, nil
}

func (s *Server) forVerificationLink(w http.ResponseWriter, r *http.Request) error {
	provider := r.PathValue("provider")
	if _, err := s.store.Pacticipant(r.Context(), provider); err != nil {
		return err
	}
	b := s.base(r)
	self := link(b, "pacts", "provider", provider, "for-verification")
	writeJSON(w, http.StatusOK, map[string]any{"_links": map[string]any{
		"self":        hrefT(self, "Pacts to be verified"),
		"pb:provider": hrefT(link(b, "pacticipants", provider), provider),
	}})
	return nil
}

func (s *Server) forVerification(w http.ResponseWriter, r *http.Request) error {
	var raw json.RawMessage
	if err := decodeBody(r, &raw); err != nil {
		return err
	}
	q, err := ParseForVerification(raw)
	if err != nil {
		return err
	}
	provider := r.PathValue("provider")
	pacts, err := s.store.ForVerification(r.Context(), provider, q)
	if err != nil {
		return err
	}
	b := s.base(r)
	list := []any{}
	for _, p := range pacts {
		var cvs []string
		for _, by := range p.SelectedBy {
			cvs = append(cvs, by.ConsumerVersion)
		}
		u := link(b, "pacts", "provider", p.Provider, "consumer", p.Consumer, "pact-version", p.SHA, "metadata",
			encodeMetadata(verificationMetadata{ConsumerVersions: cvs, Pending: p.Pending, WIP: p.WIP}))
		props := map[string]any{"notices": verificationNotices(u, p, q)}
		if q.IncludePendingStatus || p.WIP {
			props["pending"] = p.Pending
		}
		if p.WIP {
			props["wip"] = true
		}
		list = append(list, map[string]any{
			"shortDescription":       shortDescription(p),
			"verificationProperties": props,
			"_links":                 map[string]any{"self": map[string]any{"href": u, "name": fmt.Sprintf("Pact between %s (%s) and %s", p.Consumer, strings.Join(cvs, ", "), p.Provider)}},
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"_embedded": map[string]any{"pacts": list},
		"_links":    map[string]any{"self": hrefT(link(b, "pacts", "provider", provider, "for-verification"), "Pacts to be verified")},
	})
	return nil
}

func shortDescription(p VerifiablePact) string {
	if p.WIP {
		return "WIP"
	}
	var parts []string
	for _, by := range p.SelectedBy {
		sel := by.Selector
		var d string
		switch {
		case sel.MainBranch:
			d = "latest from main branch"
		case sel.AllBranches:
			d = "latest from branch " + by.Branch
		case sel.MatchingBranch:
			d = "latest from matching branch " + by.Branch
		case sel.Branch != "":
			d = "latest from branch " + by.Branch
		case sel.Tag != "":
			d = "latest with tag " + by.Tag
		case sel.DeployedOrReleased:
			d = "deployed or released in " + by.Environment
		case sel.Deployed || sel.Environment != "":
			d = "deployed to " + by.Environment
		case sel.Released:
			d = "released in " + by.Environment
		default:
			d = "latest"
		}
		if !contains(parts, d) {
			parts = append(parts, d)
		}
	}
	return strings.Join(parts, ", ")
}

func criterion(p VerifiablePact, by SelectedBy) string {
	sel, c, v := by.Selector, p.Consumer, by.ConsumerVersion
	switch {
	case sel.MainBranch:
		return fmt.Sprintf("latest version of %s from the main branch '%s' (%s)", c, by.Branch, v)
	case sel.MatchingBranch:
		return fmt.Sprintf("latest version of %s from branch '%s' matching the provider's branch (%s)", c, by.Branch, v)
	case sel.Branch != "" || sel.AllBranches:
		return fmt.Sprintf("latest version of %s from branch '%s' (%s)", c, by.Branch, v)
	case sel.Tag != "" && sel.Latest != nil && *sel.Latest:
		return fmt.Sprintf("latest version of %s with tag '%s' (%s)", c, by.Tag, v)
	case sel.Tag != "":
		return fmt.Sprintf("one of the versions of %s with tag '%s' (%s)", c, by.Tag, v)
	case sel.DeployedOrReleased:
		return fmt.Sprintf("version of %s currently deployed or released to %s (%s)", c, by.Environment, v)
	case sel.Deployed || sel.Environment != "" && !sel.Released:
		return fmt.Sprintf("version of %s currently deployed to %s (%s)", c, by.Environment, v)
	case sel.Released:
		return fmt.Sprintf("version of %s currently released and supported in %s (%s)", c, by.Environment, v)
	default:
		return fmt.Sprintf("latest version of %s that has a pact with %s (%s)", c, p.Provider, v)
	}
}

// verificationNotices are the notices the Pact Broker attaches to each
// pact for verification (pacts/build_verifiable_pact_notices.rb).
func verificationNotices(url string, p VerifiablePact, q ForVerificationQuery) []map[string]string {
	out := []map[string]string{}
	add := func(when, text string) { out = append(out, map[string]string{"when": when, "text": text}) }
	on := "any version"
	switch {
	case q.ProviderVersionBranch != "":
		on = fmt.Sprintf("a version of %s from branch '%s'", p.Provider, q.ProviderVersionBranch)
	case len(q.ProviderVersionTags) > 0:
		on = fmt.Sprintf("a version of %s with tag '%s'", p.Provider, strings.Join(q.ProviderVersionTags, "', '"))
	}
	if p.WIP {
		by := p.SelectedBy[0]
		add("before_verification", fmt.Sprintf("The pact at %s is being verified because it is a 'work in progress' pact (ie. it is the pact for the latest version of %s from branch '%s' (%s) and is still in pending state).", url, p.Consumer, by.Branch, by.ConsumerVersion))
	} else {
		var crit []string
		for _, by := range p.SelectedBy {
			crit = append(crit, criterion(p, by))
		}
		word := "criterion"
		if len(crit) > 1 {
			word = "criteria"
		}
		add("before_verification", fmt.Sprintf("The pact at %s is being verified because the pact content belongs to the consumer version matching the following %s:\n    * %s", url, word, strings.Join(crit, "\n    * ")))
	}
	if !q.IncludePendingStatus && !p.WIP {
		return out
	}
	if p.Pending {
		add("before_verification", fmt.Sprintf("This pact is in pending state for this version of %s because a successful verification result for %s has not yet been published. If this verification fails, it will not cause the overall build to fail. Read more at https://pact.io/pending", p.Provider, on))
		add("after_verification:success_true_published_false", fmt.Sprintf("This pact is still in pending state for %s as the successful verification results have not yet been published.", p.Provider))
		add("after_verification:success_false_published_false", fmt.Sprintf("This pact is still in pending state for %s as a successful verification result for %s has not yet been published", p.Provider, on))
		add("after_verification:success_true_published_true", fmt.Sprintf("This pact is no longer in pending state for %s, as a successful verification result for %s has been published. If a later verification of it fails, it will fail the build. Read more at https://pact.io/pending", p.Provider, on))
		add("after_verification:success_false_published_true", fmt.Sprintf("This pact is still in pending state for %s as a successful verification result for %s has not yet been published", p.Provider, on))
	} else {
		add("before_verification", fmt.Sprintf("This pact has previously been successfully verified by %s. If this verification fails, it will fail the build. Read more at https://pact.io/pending", on))
	}
	return out
}
