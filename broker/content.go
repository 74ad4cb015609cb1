package broker

import (
	"bytes"
	"crypto/sha1" //nolint:gosec // content addresses, as the Pact Broker computes them
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/flotilla-ci/flotilla/contract"
)

// PublishRequest is the body of POST /contracts/publish.
type PublishRequest struct {
	PacticipantName          string            `json:"pacticipantName"`
	PacticipantVersionNumber string            `json:"pacticipantVersionNumber"`
	Branch                   string            `json:"branch,omitempty"`
	Tags                     []string          `json:"tags,omitempty"`
	BuildURL                 string            `json:"buildUrl,omitempty"`
	Contracts                []PublishContract `json:"contracts"`
}

// PublishContract is one contract in a PublishRequest.
type PublishContract struct {
	ConsumerName  string `json:"consumerName"`
	ProviderName  string `json:"providerName"`
	Specification string `json:"specification"`
	ContentType   string `json:"contentType"`
	Content       string `json:"content"`
	OnConflict    string `json:"onConflict,omitempty"`
}

// ValidationErrors maps a field of a request to what is wrong with it, the
// `errors` object of a Pact Broker 400 response.
type ValidationErrors map[string][]string

func (v ValidationErrors) add(field, format string, args ...any) {
	v[field] = append(v[field], fmt.Sprintf(format, args...))
}

func (v ValidationErrors) Error() string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+": "+strings.Join(v[k], "; "))
	}
	return strings.Join(parts, ", ")
}

// ParsePublication decodes and validates a publish-contracts body, as the
// Pact Broker's publish_contracts_schema does, and computes each pact's
// content address. Invalid input returns ValidationErrors naming each field.
func ParsePublication(body []byte) (Publication, error) {
	var req PublishRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil {
		return Publication{}, ValidationErrors{"body": {"must be a JSON object: " + err.Error()}}
	}
	errs := ValidationErrors{}
	singleLine := func(field, v string) {
		if bad := checkName(field, v); bad != nil {
			for k, msgs := range bad {
				errs[k] = append(errs[k], msgs...)
			}
		}
	}
	singleLine("pacticipantName", req.PacticipantName)
	singleLine("pacticipantVersionNumber", req.PacticipantVersionNumber)
	if req.Branch != "" {
		singleLine("branch", req.Branch)
	}
	for i, t := range req.Tags {
		singleLine(fmt.Sprintf("tags[%d]", i), t)
	}
	if len(req.Contracts) == 0 {
		errs.add("contracts", "must contain at least one contract")
	}
	pub := Publication{
		Pacticipant: req.PacticipantName, Version: req.PacticipantVersionNumber,
		Branch: req.Branch, Tags: req.Tags, BuildURL: req.BuildURL,
	}
	for i, c := range req.Contracts {
		f := func(name string) string { return fmt.Sprintf("contracts[%d].%s", i, name) }
		if c.ConsumerName != req.PacticipantName {
			errs.add(f("consumerName"), "must match pacticipantName (%q), got %q", req.PacticipantName, c.ConsumerName)
		}
		singleLine(f("providerName"), c.ProviderName)
		if c.Specification != "pact" {
			errs.add(f("specification"), "must be one of: pact")
		}
		if c.ContentType != "application/json" {
			errs.add(f("contentType"), "must be one of: application/json")
		}
		if c.OnConflict != "" && c.OnConflict != "overwrite" && c.OnConflict != "merge" {
			errs.add(f("onConflict"), "must be one of: overwrite, merge")
		}
		raw, err := base64.StdEncoding.DecodeString(c.Content)
		if err != nil {
			errs.add(f("content"), "is not valid Base64")
			continue
		}
		doc, err := parsePact(raw)
		if err != nil {
			errs.add(f("content"), "%v", err)
			continue
		}
		if _, err := contract.Parse(raw); err != nil {
			errs.add(f("content"), "is not a valid pact: %v", err)
			continue
		}
		if n := nameOf(doc, "consumer"); n != c.ConsumerName {
			errs.add(f("consumerName"), "does not match the consumer name %q in the pact content", n)
		}
		if n := nameOf(doc, "provider"); n != c.ProviderName {
			errs.add(f("providerName"), "does not match the provider name %q in the pact content", n)
		}
		pub.Contracts = append(pub.Contracts, Contract{
			Consumer: c.ConsumerName, Provider: c.ProviderName,
			SHA: contentSHA(doc), Content: raw, Merge: c.OnConflict == "merge",
		})
	}
	if len(errs) > 0 {
		return Publication{}, errs
	}
	return pub, nil
}

// parsePact decodes a pact document, which must be a JSON object.
func parsePact(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil || doc == nil {
		return nil, fmt.Errorf("is not a pact: not a JSON object")
	}
	if dec.More() {
		return nil, fmt.Errorf("is not a pact: trailing data after the JSON object")
	}
	return doc, nil
}

func nameOf(doc map[string]any, role string) string {
	m, _ := doc[role].(map[string]any)
	s, _ := m["name"].(string)
	return s
}

// ContentSHA is the content address of a pact: the SHA-1 of its sorted
// interactions and messages (each canonicalised with sorted keys and
// without `_id`) and its specification version. Metadata, key order and
// interaction order do not change it, as in the Pact Broker.
func ContentSHA(raw []byte) (string, error) {
	doc, err := parsePact(raw)
	if err != nil {
		return "", err
	}
	return contentSHA(doc), nil
}

func contentSHA(doc map[string]any) string {
	canon := map[string]any{}
	for _, key := range []string{"interactions", "messages"} {
		list, _ := doc[key].([]any)
		items := make([]string, 0, len(list))
		for _, it := range list {
			items = append(items, canonicalInteraction(it))
		}
		sort.Strings(items)
		canon[key] = items
	}
	canon["specification"] = specVersion(doc)
	b, _ := json.Marshal(canon)
	h := sha1.Sum(b) //nolint:gosec // a content address
	return hex.EncodeToString(h[:])
}

func canonicalInteraction(it any) string {
	if m, ok := it.(map[string]any); ok {
		c := make(map[string]any, len(m))
		for k, v := range m {
			if k != "_id" {
				c[k] = v
			}
		}
		it = c
	}
	b, _ := json.Marshal(it) // map keys are sorted by encoding/json
	return string(b)
}

func specVersion(doc map[string]any) string {
	md, _ := doc["metadata"].(map[string]any)
	for _, k := range []string{"pactSpecification", "pact-specification", "pactSpecificationVersion"} {
		switch v := md[k].(type) {
		case map[string]any:
			if s, ok := v["version"].(string); ok {
				return majorVersion(s)
			}
		case string:
			return majorVersion(v)
		}
	}
	return "2"
}

func majorVersion(s string) string {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return s[:i]
	}
	return s
}

// InteractionID is the `_id` the broker gives an interaction: the SHA-1 of
// its canonical form, so a verification result's interactionId names it.
func InteractionID(interaction any) string {
	h := sha1.Sum([]byte(canonicalInteraction(interaction))) //nolint:gosec // an identifier
	return hex.EncodeToString(h[:])
}

// servePact returns the pact content with `_id` injected into every
// interaction and message and the given HAL links added.
func servePact(content []byte, links map[string]any) ([]byte, error) {
	doc, err := parsePact(content)
	if err != nil {
		return nil, err
	}
	for _, key := range []string{"interactions", "messages"} {
		list, _ := doc[key].([]any)
		for _, it := range list {
			if m, ok := it.(map[string]any); ok {
				m["_id"] = InteractionID(m)
			}
		}
	}
	doc["_links"] = links
	return json.Marshal(doc)
}

// MergePacts merges the interactions of next into prev, as onConflict
// "merge" asks: interactions are keyed by description and provider states;
// the same key with different content is a conflict.
func MergePacts(prev, next []byte) ([]byte, string, error) {
	a, err := parsePact(prev)
	if err != nil {
		return nil, "", err
	}
	b, err := parsePact(next)
	if err != nil {
		return nil, "", err
	}
	for _, key := range []string{"interactions", "messages"} {
		la, _ := a[key].([]any)
		lb, _ := b[key].([]any)
		if la == nil && lb == nil {
			continue
		}
		index := map[string]int{}
		for i, it := range la {
			index[interactionKey(it)] = i
		}
		for _, it := range lb {
			k := interactionKey(it)
			if i, ok := index[k]; ok {
				if canonicalInteraction(la[i]) != canonicalInteraction(it) {
					return nil, "", fmt.Errorf("%w: interaction %s has different content in the pact being merged", ErrConflict, k)
				}
				continue
			}
			index[k] = len(la)
			la = append(la, it)
		}
		a[key] = la
	}
	out, err := json.Marshal(a)
	if err != nil {
		return nil, "", err
	}
	return out, contentSHA(a), nil
}

func interactionKey(it any) string {
	m, _ := it.(map[string]any)
	d, _ := m["description"].(string)
	st, _ := json.Marshal([]any{m["providerState"], m["providerStates"]})
	return fmt.Sprintf("%q given %s", d, st)
}
