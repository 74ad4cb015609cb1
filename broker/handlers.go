package broker

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

func (s *Server) index(w http.ResponseWriter, r *http.Request) error {
	b := s.base(r)
	writeJSON(w, http.StatusOK, map[string]any{"_links": map[string]any{
		"self":                               hrefT(b, "Index"),
		"pb:publish-contracts":               hrefT(b+"/contracts/publish", "Publish contracts"),
		"pb:pacticipants":                    hrefT(b+"/pacticipants", "Pacticipants"),
		"pb:pacticipant":                     templated(b+"/pacticipants/{pacticipant}", "Fetch pacticipant by name"),
		"pb:pacticipant-version":             templated(b+"/pacticipants/{pacticipant}/versions/{version}", "Get, create or delete a pacticipant version"),
		"pb:pacticipant-version-tag":         templated(b+"/pacticipants/{pacticipant}/versions/{version}/tags/{tag}", "Get, create or delete a tag for a pacticipant version"),
		"pb:pacticipant-branch-version":      templated(b+"/pacticipants/{pacticipant}/branches/{branch}/versions/{version}", "Get or add/create a pacticipant version for a branch"),
		"pb:latest-version":                  templated(b+"/pacticipants/{pacticipant}/latest-version", "Latest pacticipant version"),
		"pb:latest-provider-pacts":           templated(b+"/pacts/provider/{provider}/latest", "Latest pacts by provider"),
		"pb:provider-pacts-for-verification": templated(b+"/pacts/provider/{provider}/for-verification", "Pact versions to be verified for the specified provider"),
		"pb:webhooks":                        hrefT(b+"/webhooks", "Webhooks"),
		"pb:webhook":                         templated(b+"/webhooks/{uuid}", "Webhook"),
		"pb:latest-pact-versions":            hrefT(b+"/pacts/latest", "Latest pact versions"),
		"pb:publish-pact":                    templated(b+"/pacts/provider/{provider}/consumer/{consumer}/version/{consumerApplicationVersion}", "Publish a pact"),
		"pb:environments":                    hrefT(b+"/environments", "Environments"),
		"pb:environment":                     templated(b+"/environments/{uuid}", "Environment"),
		"pb:can-i-deploy-pacticipant-version-to-environment": templated(b+"/can-i-deploy?pacticipant={pacticipant}&version={version}&environment={environment}", "Determine if a pacticipant version can be deployed to an environment"),
		"pb:matrix":                                 hrefT(b+"/matrix", "The matrix of verification results"),
		"pb:pacticipant-branch":                     templated(b+"/pacticipants/{pacticipant}/branches/{branch}", "Get or delete a pacticipant branch"),
		"pb:provider-pacts-with-branch":             templated(b+"/pacts/provider/{provider}/branch/{branch}", "All pact versions for the provider with the specified consumer version branch"),
		"pb:latest-provider-pacts-with-branch":      templated(b+"/pacts/provider/{provider}/branch/{branch}/latest", "Latest pacts for the provider with the specified consumer version branch"),
		"pb:provider-pacts-with-main-branch":        templated(b+"/pacts/provider/{provider}/branch", "All pact versions for the provider from the consumers' main branches"),
		"pb:latest-provider-pacts-with-main-branch": templated(b+"/pacts/provider/{provider}/branch/latest", "Latest pacts for the provider from the consumers' main branches"),
		"pb:branch-pact-versions":                   templated(b+"/pacts/provider/{provider}/consumer/{consumer}/branch/{branch}", "All pact versions of a consumer branch"),
		"pb:latest-branch-pact-versions":            templated(b+"/pacts/provider/{provider}/consumer/{consumer}/branch/{branch}/latest", "Latest pact of a consumer branch"),
		"pb:main-branch-pact-versions":              templated(b+"/pacts/provider/{provider}/consumer/{consumer}/branch", "All pact versions of the consumer's main branch"),
		"pb:latest-main-branch-pact-versions":       templated(b+"/pacts/provider/{provider}/consumer/{consumer}/branch/latest", "Latest pact of the consumer's main branch"),
		"pb:provider-states":                        templated(b+"/pacts/provider/{provider}/provider-states", "Provider states of the provider's pacts"),
		"curies":                                    []any{map[string]any{"name": "pb", "href": b + "/doc/{rel}?context=index", "templated": true}},
	}})
	return nil
}

func (s *Server) publish(w http.ResponseWriter, r *http.Request) error {
	var raw json.RawMessage
	if err := decodeBody(r, &raw); err != nil {
		return err
	}
	pub, err := ParsePublication(raw)
	if err != nil {
		return err
	}
	res, err := s.store.Publish(r.Context(), pub, s.cfg.AllowContractModification)
	if err != nil {
		return err
	}
	b := s.base(r)
	v := res.Version
	var notices []notice
	var logs []map[string]any
	say := func(typ, text string) {
		notices = append(notices, notice{Type: typ, Text: text})
		logs = append(logs, map[string]any{"level": typ, "message": text, "deprecationWarning": ""})
	}
	created := fmt.Sprintf("Created %s version %s", v.Pacticipant, v.Number)
	if pub.Branch != "" {
		created += " with branch " + pub.Branch
	}
	if len(pub.Tags) > 0 {
		created += " and tags " + strings.Join(pub.Tags, ", ")
	}
	say("success", created)
	var contracts []any
	for _, c := range res.Contracts {
		u := link(b, "pacts", "provider", c.Provider, "consumer", c.Consumer, "pact-version", c.SHA)
		switch {
		case c.Changed:
			say("warning", fmt.Sprintf("Pact between %s (%s) and %s has changed since it was previously published for this version", c.Consumer, v.Number, c.Provider))
		case c.NewContent:
			say("success", fmt.Sprintf("Pact published for %s version %s and provider %s.", c.Consumer, v.Number, c.Provider))
		default:
			say("success", fmt.Sprintf("Pact published for %s version %s and provider %s. The content is unchanged from a previous version, so verification results for it still apply.", c.Consumer, v.Number, c.Provider))
		}
		say("info", "  View the published pact at "+u)
		contracts = append(contracts, map[string]any{"href": u, "name": fmt.Sprintf("Pact between %s (%s) and %s", c.Consumer, v.Number, c.Provider), "title": "Pact"})
	}
	var tagLinks []any
	for _, t := range v.Tags {
		tagLinks = append(tagLinks, map[string]any{"href": link(b, "pacticipants", v.Pacticipant, "versions", v.Number, "tags", t), "title": "Tag", "name": t})
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"notices": notices,
		"logs":    logs,
		"_embedded": map[string]any{
			"pacticipant": map[string]any{"name": v.Pacticipant, "_links": map[string]any{"self": map[string]any{"href": link(b, "pacticipants", v.Pacticipant), "name": v.Pacticipant, "title": "Pacticipant"}}},
			"version": map[string]any{"number": v.Number, "branch": nilIfEmpty(pub.Branch), "buildUrl": nilIfEmpty(v.BuildURL),
				"_links": map[string]any{"self": map[string]any{"href": link(b, "pacticipants", v.Pacticipant, "versions", v.Number), "name": v.Number, "title": "Version"}}},
		},
		"_links": map[string]any{
			"pb:pacticipant":              map[string]any{"href": link(b, "pacticipants", v.Pacticipant), "title": "Pacticipant", "name": v.Pacticipant},
			"pb:pacticipant-version":      map[string]any{"href": link(b, "pacticipants", v.Pacticipant, "versions", v.Number), "title": "Pacticipant version", "name": v.Number},
			"pb:pacticipant-version-tags": nonNil(tagLinks),
			"pb:contracts":                nonNil(contracts),
		},
	})
	return nil
}

func nonNil(l []any) []any {
	if l == nil {
		return []any{}
	}
	return l
}

func (s *Server) pacticipantBody(b string, p Pacticipant) map[string]any {
	self := link(b, "pacticipants", p.Name)
	return map[string]any{
		"name": p.Name, "displayName": p.Name, "mainBranch": nilIfEmpty(p.MainBranch), "createdAt": ts(p.CreatedAt),
		"_links": map[string]any{
			"self":                  href(self),
			"pb:versions":           href(self + "/versions"),
			"pb:version":            templated(self+"/versions/{version}", "Get, create or delete a pacticipant version"),
			"pb:version-tag":        templated(self+"/versions/{version}/tags/{tag}", "Get, create or delete a tag for a version of "+p.Name),
			"pb:branch-version":     templated(self+"/branches/{branch}/versions/{version}", "Get or add/create a version for a branch of "+p.Name),
			"pb:latest-version":     hrefT(self+"/latest-version", "Latest version"),
			"pb:can-i-deploy-badge": templated(self+"/latest-version/{tag}/can-i-deploy/to/{environment}/badge", "Can I deploy badge"),
		},
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (s *Server) pacticipants(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.store.Pacticipants(r.Context())
	if err != nil {
		return err
	}
	b := s.base(r)
	list := []any{}
	for _, p := range ps {
		list = append(list, s.pacticipantBody(b, p))
	}
	writeJSON(w, http.StatusOK, map[string]any{"pacticipants": list, "_embedded": map[string]any{"pacticipants": list}, "_links": map[string]any{"self": href(b + "/pacticipants")}})
	return nil
}

func (s *Server) pacticipant(w http.ResponseWriter, r *http.Request) error {
	p, err := s.store.Pacticipant(r.Context(), r.PathValue("pacticipant"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.pacticipantBody(s.base(r), p))
	return nil
}

func (s *Server) createPacticipant(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Name       string `json:"name"`
		MainBranch string `json:"mainBranch"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if err := checkNames(map[string]string{"pacticipant": body.Name, "mainBranch": body.MainBranch}); err != nil {
		return err
	}
	p, err := s.store.SetMainBranch(r.Context(), body.Name, body.MainBranch)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, s.pacticipantBody(s.base(r), p))
	return nil
}

func (s *Server) updatePacticipant(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		MainBranch *string `json:"mainBranch"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	name := r.PathValue("pacticipant")
	var (
		p   Pacticipant
		err error
	)
	if err := checkNames(map[string]string{"pacticipant": name}); err != nil {
		return err
	}
	if body.MainBranch != nil {
		if err := checkNames(map[string]string{"mainBranch": *body.MainBranch}); err != nil {
			return err
		}
		p, err = s.store.SetMainBranch(r.Context(), name, *body.MainBranch)
	} else {
		p, err = s.store.Pacticipant(r.Context(), name)
		if errors.Is(err, ErrNotFound) {
			p, err = s.store.SetMainBranch(r.Context(), name, "")
		}
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.pacticipantBody(s.base(r), p))
	return nil
}

func (s *Server) versionBody(b string, v Version) map[string]any {
	self := link(b, "pacticipants", v.Pacticipant, "versions", v.Number)
	branch := ""
	if len(v.Branches) > 0 {
		branch = v.Branches[len(v.Branches)-1]
	}
	tags := []any{}
	for _, t := range v.Tags {
		tags = append(tags, map[string]any{"name": t, "_links": map[string]any{"self": href(self + "/tags/" + urlSeg(t))}})
	}
	branches := []any{}
	for _, br := range v.Branches {
		branches = append(branches, map[string]any{"name": br, "_links": map[string]any{"self": href(link(b, "pacticipants", v.Pacticipant, "branches", br, "versions", v.Number))}})
	}
	return map[string]any{
		"number": v.Number, "branch": nilIfEmpty(branch), "buildUrl": nilIfEmpty(v.BuildURL), "createdAt": ts(v.CreatedAt),
		"_embedded": map[string]any{"tags": tags, "branchVersions": branches},
		"_links": map[string]any{
			"self":           hrefT(self, "Version"),
			"pb:pacticipant": hrefT(link(b, "pacticipants", v.Pacticipant), v.Pacticipant),
			"pb:tag":         templated(self+"/tags/{tag}", "Get, create or delete a tag for this pacticipant version"),
		},
	}
}

func urlSeg(s string) string { return strings.TrimPrefix(link("", s), "/") }

func (s *Server) version(w http.ResponseWriter, r *http.Request) error {
	v, err := s.store.Version(r.Context(), r.PathValue("pacticipant"), r.PathValue("version"))
	if err != nil {
		return err
	}
	envs, err := s.store.Environments(r.Context())
	if err != nil {
		return err
	}
	b := s.base(r)
	body := s.versionBody(b, v)
	var deploy, release []any
	for _, e := range envs {
		deploy = append(deploy, map[string]any{"name": e.Name, "title": "Record deployment to " + e.DisplayNameOrName(),
			"href": link(b, "pacticipants", v.Pacticipant, "versions", v.Number, "deployed-versions", "environment", e.UUID)})
		release = append(release, map[string]any{"name": e.Name, "title": "Record release to " + e.DisplayNameOrName(),
			"href": link(b, "pacticipants", v.Pacticipant, "versions", v.Number, "released-versions", "environment", e.UUID)})
	}
	links := body["_links"].(map[string]any)
	links["pb:record-deployment"] = nonNil(deploy)
	links["pb:record-release"] = nonNil(release)
	writeJSON(w, http.StatusOK, body)
	return nil
}

// DisplayNameOrName is the display name, or the name when it has none.
func (e Environment) DisplayNameOrName() string {
	if e.DisplayName != "" {
		return e.DisplayName
	}
	return e.Name
}

func (s *Server) latestVersion(w http.ResponseWriter, r *http.Request) error {
	v, err := s.store.LatestVersion(r.Context(), r.PathValue("pacticipant"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.versionBody(s.base(r), v))
	return nil
}

func (s *Server) putVersion(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Branch   string `json:"branch"`
		BuildURL string `json:"buildUrl"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if err := checkNames(map[string]string{"pacticipant": r.PathValue("pacticipant"), "version": r.PathValue("version"), "branch": body.Branch}); err != nil {
		return err
	}
	v, err := s.store.EnsureVersion(r.Context(), r.PathValue("pacticipant"), r.PathValue("version"), body.Branch, "", body.BuildURL)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.versionBody(s.base(r), v))
	return nil
}

// checkNames validates names from a request's path or body with the one
// validation both stores rely on; empty optional fields pass.
func checkNames(fields map[string]string) error {
	errs := ValidationErrors{}
	for k, v := range fields {
		if v == "" && (k == "branch" || k == "tag" || k == "mainBranch") {
			continue
		}
		if bad := checkName(k, v); bad != nil {
			for f, msgs := range bad {
				errs[f] = append(errs[f], msgs...)
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

func (s *Server) tag(w http.ResponseWriter, r *http.Request) error {
	p, vn, t := r.PathValue("pacticipant"), r.PathValue("version"), r.PathValue("tag")
	var v Version
	var err error
	if r.Method == http.MethodPut {
		if err := checkNames(map[string]string{"pacticipant": p, "version": vn, "tag": t}); err != nil {
			return err
		}
		v, err = s.store.EnsureVersion(r.Context(), p, vn, "", t, "")
	} else {
		v, err = s.store.Version(r.Context(), p, vn)
		if err == nil && !contains(v.Tags, t) {
			err = fmt.Errorf("tag %s of %s version %s: %w", t, p, vn, ErrNotFound)
		}
	}
	if err != nil {
		return err
	}
	b := s.base(r)
	status := http.StatusOK
	if r.Method == http.MethodPut {
		status = http.StatusCreated
	}
	writeJSON(w, status, map[string]any{"name": t, "_links": map[string]any{
		"self":       href(link(b, "pacticipants", p, "versions", vn, "tags", t)),
		"pb:version": href(link(b, "pacticipants", p, "versions", v.Number)),
	}})
	return nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func (s *Server) branchVersion(w http.ResponseWriter, r *http.Request) error {
	p, br, vn := r.PathValue("pacticipant"), r.PathValue("branch"), r.PathValue("version")
	var v Version
	var err error
	if r.Method == http.MethodPut {
		if err := checkNames(map[string]string{"pacticipant": p, "version": vn, "branch": br}); err != nil {
			return err
		}
		v, err = s.store.EnsureVersion(r.Context(), p, vn, br, "", "")
	} else {
		v, err = s.store.Version(r.Context(), p, vn)
		if err == nil && !contains(v.Branches, br) {
			err = fmt.Errorf("version %s of %s on branch %s: %w", vn, p, br, ErrNotFound)
		}
	}
	if err != nil {
		return err
	}
	b := s.base(r)
	writeJSON(w, http.StatusOK, map[string]any{"_links": map[string]any{
		"self":       href(link(b, "pacticipants", p, "branches", br, "versions", vn)),
		"pb:version": href(link(b, "pacticipants", p, "versions", v.Number)),
	}})
	return nil
}

// verificationMetadata travels in a pact URL from pacts-for-verification
// back to the verification results published to it.
type verificationMetadata struct {
	ConsumerVersions []string `json:"cv,omitempty"`
	Pending          bool     `json:"p,omitempty"`
	WIP              bool     `json:"w,omitempty"`
}

func encodeMetadata(m verificationMetadata) string {
	b, _ := json.Marshal(m)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *Server) pactURL(b string, p Pact) string {
	return link(b, "pacts", "provider", p.Provider, "consumer", p.Consumer, "pact-version", p.SHA)
}

func (s *Server) pactVersion(w http.ResponseWriter, r *http.Request) error {
	p, err := s.store.Pact(r.Context(), r.PathValue("provider"), r.PathValue("consumer"), r.PathValue("sha"))
	if err != nil {
		return err
	}
	return s.writePact(w, r, p)
}

func (s *Server) pactForVersion(w http.ResponseWriter, r *http.Request) error {
	p, err := s.store.PactForConsumerVersion(r.Context(), r.PathValue("provider"), r.PathValue("consumer"), r.PathValue("version"))
	if err != nil {
		return err
	}
	return s.writePact(w, r, p)
}

// putPact is the legacy publication (pb:publish-pact) older clients use:
// PUT the pact document itself for one consumer version and provider.
func (s *Server) putPact(w http.ResponseWriter, r *http.Request) error {
	var raw json.RawMessage
	if err := decodeBody(r, &raw); err != nil {
		return err
	}
	consumer, provider, version := r.PathValue("consumer"), r.PathValue("provider"), r.PathValue("version")
	pub, err := ParsePublication(mustJSON(PublishRequest{
		PacticipantName: consumer, PacticipantVersionNumber: version,
		Contracts: []PublishContract{{ConsumerName: consumer, ProviderName: provider, Specification: "pact",
			ContentType: "application/json", Content: base64.StdEncoding.EncodeToString(raw)}},
	}))
	if err != nil {
		return err
	}
	res, err := s.store.Publish(r.Context(), pub, s.cfg.AllowContractModification)
	if err != nil {
		return err
	}
	p, err := s.store.Pact(r.Context(), provider, consumer, res.Contracts[0].SHA)
	if err != nil {
		return err
	}
	p.ConsumerVersion = version
	status := http.StatusOK
	if res.Contracts[0].NewContent {
		status = http.StatusCreated
	}
	return s.writePactStatus(w, r, p, status)
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func (s *Server) latestPact(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.store.LatestPacts(r.Context(), r.PathValue("provider"))
	if err != nil {
		return err
	}
	for _, p := range ps {
		if p.Consumer == r.PathValue("consumer") {
			return s.writePact(w, r, p)
		}
	}
	return fmt.Errorf("latest pact between %s and %s: %w", r.PathValue("consumer"), r.PathValue("provider"), ErrNotFound)
}

func (s *Server) writePact(w http.ResponseWriter, r *http.Request, p Pact) error {
	return s.writePactStatus(w, r, p, http.StatusOK)
}

func (s *Server) writePactStatus(w http.ResponseWriter, r *http.Request, p Pact, status int) error {
	b := s.base(r)
	self := s.pactURL(b, p)
	publishTo := self
	if m := r.PathValue("metadata"); m != "" {
		publishTo += "/metadata/" + m
	}
	links := map[string]any{
		"self":                            hrefT(self, "Pact"),
		"pb:consumer":                     hrefT(link(b, "pacticipants", p.Consumer), "Consumer"),
		"pb:provider":                     hrefT(link(b, "pacticipants", p.Provider), "Provider"),
		"pb:pact-version":                 hrefT(self, "Pact content version permalink"),
		"pb:publish-verification-results": hrefT(publishTo+"/verification-results", "Publish verification results"),
	}
	if p.ConsumerVersion != "" {
		links["pb:consumer-version"] = hrefT(link(b, "pacticipants", p.Consumer, "versions", p.ConsumerVersion), "Consumer version")
	}
	body, err := servePact(p.Content, links)
	if err != nil {
		return err
	}
	writeRaw(w, status, body)
	return nil
}

func (s *Server) latestProviderPacts(w http.ResponseWriter, r *http.Request) error {
	provider := r.PathValue("provider")
	if _, err := s.store.Pacticipant(r.Context(), provider); err != nil {
		return err
	}
	ps, err := s.store.LatestPacts(r.Context(), provider)
	if err != nil {
		return err
	}
	b := s.base(r)
	list := []any{}
	for _, p := range ps {
		list = append(list, map[string]any{"href": s.pactURL(b, p), "title": "Pact between " + p.Consumer + " (" + p.ConsumerVersion + ") and " + p.Provider, "name": p.Consumer})
	}
	writeJSON(w, http.StatusOK, map[string]any{"_links": map[string]any{
		"self":        href(link(b, "pacts", "provider", provider, "latest")),
		"provider":    map[string]any{"href": link(b, "pacticipants", provider), "name": provider},
		"pb:pacts":    list,
		"pacts":       list,
		"pb:provider": map[string]any{"href": link(b, "pacticipants", provider), "name": provider},
	}})
	return nil
}

// latestPactVersions lists the latest pact of every integration.
func (s *Server) latestPactVersions(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.store.LatestPacts(r.Context(), "")
	if err != nil {
		return err
	}
	b := s.base(r)
	list := []any{}
	for _, p := range ps {
		list = append(list, map[string]any{
			"createdAt": ts(p.CreatedAt),
			"_embedded": map[string]any{
				"consumer": map[string]any{"name": p.Consumer, "_links": map[string]any{"self": href(link(b, "pacticipants", p.Consumer))},
					"_embedded": map[string]any{"version": map[string]any{"number": p.ConsumerVersion}}},
				"provider": map[string]any{"name": p.Provider, "_links": map[string]any{"self": href(link(b, "pacticipants", p.Provider))}},
			},
			"_links": map[string]any{"self": []any{
				hrefT(link(b, "pacts", "provider", p.Provider, "consumer", p.Consumer, "latest"), "Latest pact"),
				hrefT(link(b, "pacts", "provider", p.Provider, "consumer", p.Consumer, "version", p.ConsumerVersion), "Pact"),
			}},
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"pacts": list, "_links": map[string]any{"self": href(b + "/pacts/latest")}})
	return nil
}

// VerificationRequest is the body of a verification result publication.
type VerificationRequest struct {
	ProviderApplicationVersion string          `json:"providerApplicationVersion"`
	Success                    *bool           `json:"success"`
	BuildURL                   string          `json:"buildUrl"`
	TestResults                json.RawMessage `json:"testResults"`
	VerifiedBy                 json.RawMessage `json:"verifiedBy"`
}

func (s *Server) publishVerification(w http.ResponseWriter, r *http.Request) error {
	var body VerificationRequest
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	errs := ValidationErrors{}
	if bad := checkName("providerApplicationVersion", body.ProviderApplicationVersion); bad != nil {
		errs = bad
	}
	if body.Success == nil {
		errs.add("success", "must be true or false")
	}
	if len(errs) > 0 {
		return errs
	}
	v, err := s.store.AddVerification(r.Context(), Verification{
		Consumer: r.PathValue("consumer"), Provider: r.PathValue("provider"), PactSHA: r.PathValue("sha"),
		ProviderVersion: body.ProviderApplicationVersion, Success: *body.Success, BuildURL: body.BuildURL,
		TestResults: body.TestResults, VerifiedBy: body.VerifiedBy,
	})
	if err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "verification published", "provider", v.Provider, "provider_version", v.ProviderVersion,
		"consumer", v.Consumer, "pact_version", v.PactSHA, "success", v.Success)
	writeJSON(w, http.StatusCreated, s.verificationBody(s.base(r), v))
	return nil
}

func (s *Server) verificationURL(b string, v Verification) string {
	return link(b, "pacts", "provider", v.Provider, "consumer", v.Consumer, "pact-version", v.PactSHA, "verification-results", strconv.FormatInt(v.ID, 10))
}

func (s *Server) verificationBody(b string, v Verification) map[string]any {
	var tr any = []any{}
	if len(v.TestResults) > 0 && string(v.TestResults) != "null" {
		tr = v.TestResults
	}
	var by any
	if len(v.VerifiedBy) > 0 {
		by = v.VerifiedBy
	}
	return map[string]any{
		"providerName": v.Provider, "providerApplicationVersion": v.ProviderVersion, "success": v.Success,
		"verificationDate": ts(v.VerifiedAt), "buildUrl": nilIfEmpty(v.BuildURL), "testResults": tr, "verifiedBy": by,
		"_links": map[string]any{
			"self":                hrefT(s.verificationURL(b, v), "Verification result"),
			"pb:pact-version":     hrefT(link(b, "pacts", "provider", v.Provider, "consumer", v.Consumer, "pact-version", v.PactSHA), "Pact"),
			"pb:provider-version": hrefT(link(b, "pacticipants", v.Provider, "versions", v.ProviderVersion), "Provider version"),
		},
	}
}

func (s *Server) verification(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return fmt.Errorf("verification result %q: %w", r.PathValue("id"), ErrNotFound)
	}
	v, err := s.store.Verification(r.Context(), id)
	if err != nil {
		return err
	}
	if v.Provider != r.PathValue("provider") || v.Consumer != r.PathValue("consumer") || v.PactSHA != r.PathValue("sha") {
		return fmt.Errorf("verification result %d of this pact: %w", id, ErrNotFound)
	}
	writeJSON(w, http.StatusOK, s.verificationBody(s.base(r), v))
	return nil
}

func (s *Server) environmentBody(b string, e Environment) map[string]any {
	self := link(b, "environments", e.UUID)
	return map[string]any{
		"uuid": e.UUID, "name": e.Name, "displayName": e.DisplayNameOrName(), "production": e.Production, "createdAt": ts(e.CreatedAt),
		"_links": map[string]any{
			"self": hrefT(self, e.Name),
			"pb:currently-deployed-deployed-versions":  hrefT(self+"/deployed-versions/currently-deployed", "Versions currently deployed to "+e.Name),
			"pb:currently-supported-released-versions": hrefT(self+"/released-versions/currently-supported", "Versions released and supported in "+e.Name),
			"pb:environments":                          href(b + "/environments"),
		},
	}
}

func (s *Server) environments(w http.ResponseWriter, r *http.Request) error {
	envs, err := s.store.Environments(r.Context())
	if err != nil {
		return err
	}
	b := s.base(r)
	list := []any{}
	for _, e := range envs {
		if n := r.URL.Query().Get("name"); n != "" && n != e.Name {
			continue
		}
		list = append(list, s.environmentBody(b, e))
	}
	writeJSON(w, http.StatusOK, map[string]any{"_embedded": map[string]any{"environments": list}, "_links": map[string]any{"self": href(b + "/environments")}})
	return nil
}

func (s *Server) environment(w http.ResponseWriter, r *http.Request) error {
	e, err := s.store.Environment(r.Context(), r.PathValue("env"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.environmentBody(s.base(r), e))
	return nil
}

func (s *Server) createEnvironment(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		UUID        string `json:"uuid"`
		Name        string `json:"name"`
		DisplayName string `json:"displayName"`
		Production  bool   `json:"production"`
		Contacts    any    `json:"contacts"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if err := checkEnvironmentName(body.Name); err != nil {
		return err
	}
	if _, err := s.store.Environment(r.Context(), body.Name); err == nil {
		return badRequest(map[string][]string{"name": {fmt.Sprintf("Another environment with name '%s' already exists.", body.Name)}})
	}
	e, err := s.store.CreateEnvironment(r.Context(), Environment{UUID: body.UUID, Name: body.Name, DisplayName: body.DisplayName, Production: body.Production})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, s.environmentBody(s.base(r), e))
	return nil
}

func (s *Server) deploymentBody(b string, d Deployment) map[string]any {
	kind := "deployed-versions"
	if d.Release {
		kind = "released-versions"
	}
	body := map[string]any{
		"uuid": d.UUID, "createdAt": ts(d.CreatedAt),
		"_embedded": map[string]any{
			"version":     map[string]any{"number": d.Version, "_links": map[string]any{"self": href(link(b, "pacticipants", d.Pacticipant, "versions", d.Version))}},
			"pacticipant": map[string]any{"name": d.Pacticipant, "_links": map[string]any{"self": href(link(b, "pacticipants", d.Pacticipant))}},
			"environment": s.environmentBody(b, d.Environment),
		},
		"_links": map[string]any{
			"self":           href(link(b, kind, d.UUID)),
			"pb:environment": hrefT(link(b, "environments", d.Environment.UUID), d.Environment.Name),
		},
	}
	if d.Release {
		body["currentlySupported"] = d.Current
		if !d.Current {
			body["supportEndedAt"] = ts(d.EndedAt)
		}
	} else {
		body["currentlyDeployed"] = d.Current
		body["applicationInstance"] = nilIfEmpty(d.ApplicationInstance)
		body["target"] = nilIfEmpty(d.ApplicationInstance)
		if !d.Current {
			body["undeployedAt"] = ts(d.EndedAt)
		}
	}
	return body
}

func (s *Server) recordDeployment(w http.ResponseWriter, r *http.Request) error {
	return s.record(w, r, false)
}

func (s *Server) recordRelease(w http.ResponseWriter, r *http.Request) error {
	return s.record(w, r, true)
}

func (s *Server) record(w http.ResponseWriter, r *http.Request, release bool) error {
	var body struct {
		ApplicationInstance string `json:"applicationInstance"`
		Target              string `json:"target"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	inst := body.ApplicationInstance
	if inst == "" {
		inst = body.Target
	}
	d, err := s.store.RecordDeployment(r.Context(), r.PathValue("pacticipant"), r.PathValue("version"), r.PathValue("env"), inst, release)
	if err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "deployment recorded", "pacticipant", d.Pacticipant, "version", d.Version, "environment", d.Environment.Name, "release", release)
	writeJSON(w, http.StatusCreated, s.deploymentBody(s.base(r), d))
	return nil
}

func (s *Server) deployment(w http.ResponseWriter, r *http.Request) error {
	d, err := s.store.Deployment(r.Context(), r.PathValue("uuid"))
	if err != nil {
		return err
	}
	if d.Release != strings.HasPrefix(r.URL.Path, "/released-versions/") {
		return fmt.Errorf("%s: %w", r.URL.Path, ErrNotFound)
	}
	writeJSON(w, http.StatusOK, s.deploymentBody(s.base(r), d))
	return nil
}

func (s *Server) patchDeployment(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		CurrentlyDeployed  *bool `json:"currentlyDeployed"`
		CurrentlySupported *bool `json:"currentlySupported"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	d, err := s.store.Deployment(r.Context(), r.PathValue("uuid"))
	if err != nil {
		return err
	}
	flag := body.CurrentlyDeployed
	if d.Release {
		flag = body.CurrentlySupported
	}
	switch {
	case flag == nil:
	case *flag && !d.Current:
		return badRequest(map[string][]string{"currentlyDeployed": {"can only be set to false"}})
	case !*flag:
		if d, err = s.store.EndDeployment(r.Context(), d.UUID); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, s.deploymentBody(s.base(r), d))
	return nil
}

func (s *Server) currentlyDeployed(w http.ResponseWriter, r *http.Request) error {
	e, err := s.store.Environment(r.Context(), r.PathValue("env"))
	if err != nil {
		return err
	}
	ds, err := s.store.CurrentDeployments(r.Context(), e.UUID, r.URL.Query().Get("pacticipant"))
	if err != nil {
		return err
	}
	release := strings.HasSuffix(r.URL.Path, "/currently-supported")
	b := s.base(r)
	list := []any{}
	for _, d := range ds {
		if d.Release == release {
			list = append(list, s.deploymentBody(b, d))
		}
	}
	key := "deployedVersions"
	if release {
		key = "releasedVersions"
	}
	writeJSON(w, http.StatusOK, map[string]any{"_embedded": map[string]any{key: list}, "_links": map[string]any{"self": href(b + r.URL.RequestURI())}})
	return nil
}
