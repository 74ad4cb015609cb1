// Package jsonschema is flotilla's JSON Schema support for event schemas:
// parsing and payload validation with github.com/santhosh-tekuri/jsonschema
// (draft-07 unless the schema's $schema says otherwise, as Confluent's
// serializers default to), and compatibility by the Confluent registry's
// rules (its SchemaDiff): the new schema is compared with the old one, and
// every difference that is not in Confluent's set of compatible changes
// (COMPATIBLE_CHANGES_STRICT) is an incompatibility, named as Confluent
// names it, with its JSON path.
//
// Compatibility follows the registry's definitions: BACKWARD compares the
// previous schema (original) with the new one (update), FORWARD the other
// way round. The update must accept every document the original accepts:
// an open content model (no additionalProperties, or true) means a
// property added to it may clash with what writers already sent, a closed
// one (additionalProperties false) that no one sent it, and a partially
// open one (additionalProperties a schema) that it must be covered.
package jsonschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"

	js "github.com/santhosh-tekuri/jsonschema/v6"
)

// MaxSchemaBytes is the largest schema text Parse accepts.
const MaxSchemaBytes = 1 << 20

// Schema is a parsed JSON Schema: its text, its decoded document (for the
// compatibility rules) and its compiled form (for validation). It is
// immutable and safe for concurrent use.
type Schema struct {
	text     string
	doc      any
	cmp      any // doc with the referenced schemas bundled in, for Diff
	compiled *js.Schema
}

// Parse parses and compiles a JSON Schema. Invalid JSON, a document that is
// not a schema under its draft's meta-schema, or a $ref that leaves the
// document is an error that says where.
func Parse(text string) (s *Schema, err error) {
	return ParseWithReferences(text, nil)
}

// ParseWithReferences parses a JSON Schema that refers to others, as a
// registry's schema references do: refs maps each reference's name (what
// the schema's "$ref" says, e.g. "customer.schema.json" or a URL; any
// fragment follows it) to that schema's text, the references' own
// references included. Nothing else is loaded.
func ParseWithReferences(text string, refs map[string]string) (s *Schema, err error) {
	if len(text) > MaxSchemaBytes {
		return nil, fmt.Errorf("schema is %d bytes; the limit is %d", len(text), MaxSchemaBytes)
	}
	if !utf8.ValidString(text) {
		return nil, errors.New("schema is not valid UTF-8")
	}
	doc, err := js.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	switch doc.(type) {
	case map[string]any, bool:
	default:
		return nil, errors.New("a JSON Schema is an object or a boolean")
	}
	defer func() {
		// The compiler is third-party code: a panic on odd input must stay
		// an error, never crash a server.
		if p := recover(); p != nil {
			s, err = nil, fmt.Errorf("invalid schema: %v", p)
		}
	}()
	c := js.NewCompiler()
	c.DefaultDraft(js.Draft7)
	c.UseLoader(noLoader{})
	const loc = "mem:///schema.json"
	if err := c.AddResource(loc, doc); err != nil {
		return nil, fmt.Errorf("invalid schema: %s", oneLine(err.Error()))
	}
	refDocs := map[string]any{}
	for _, name := range sortedNames(refs) {
		rd, err := js.UnmarshalJSON(strings.NewReader(refs[name]))
		if err != nil {
			return nil, fmt.Errorf("reference %q: not JSON: %w", name, err)
		}
		refDocs[name] = rd
		for _, u := range refURLs(name, doc) {
			if err := c.AddResource(u, rd); err != nil {
				return nil, fmt.Errorf("reference %q: invalid schema: %s", name, oneLine(err.Error()))
			}
		}
	}
	compiled, err := c.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("invalid schema: %s", oneLine(err.Error()))
	}
	return &Schema{text: text, doc: doc, cmp: bundle(doc, refDocs), compiled: compiled}, nil
}

func sortedNames(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// refURLs are the URLs a reference name is reached by from the schema: the
// name itself when absolute, else resolved against the in-memory base and
// against the schema's own "$id".
func refURLs(name string, doc any) []string {
	u, err := url.Parse(name)
	if err != nil {
		return []string{name}
	}
	if u.IsAbs() {
		return []string{name}
	}
	base, _ := url.Parse("mem:///schema.json")
	out := []string{base.ResolveReference(u).String()}
	if m, ok := doc.(map[string]any); ok {
		if id, ok := m["$id"].(string); ok {
			if b, err := url.Parse(id); err == nil && b.IsAbs() {
				if r := b.ResolveReference(u).String(); r != out[0] {
					out = append(out, r)
				}
			}
		}
	}
	return out
}

// refsKey is where bundle keeps the referenced schemas in the copy of the
// document Diff compares; a $ref to a reference becomes a local one into it.
const refsKey = "$flotillaReferences"

// bundle returns the document with every referenced schema under refsKey
// (by reference name) and every $ref naming a reference, in the document
// or in a referenced schema, rewritten to point there; a referenced
// schema's own local $refs are rewritten to stay inside it. Without
// references it is doc itself.
func bundle(doc any, refs map[string]any) any {
	if len(refs) == 0 {
		return doc
	}
	rewrite := func(v any, local string) any { return rewriteRefs(v, refs, local) }
	out := rewrite(doc, "")
	m, ok := out.(map[string]any)
	if !ok {
		return out
	}
	bundled := map[string]any{}
	for name, rd := range refs {
		bundled[name] = rewrite(rd, "#/"+refsKey+"/"+escapePointer(name))
	}
	m[refsKey] = bundled
	return m
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// rewriteRefs copies v with each "$ref" naming a reference made local to
// the bundle, and (when local is set, inside a referenced schema) each
// local "$ref" prefixed with local.
func rewriteRefs(v any, refs map[string]any, local string) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[k] = rewriteRefs(x, refs, local)
		}
		if ref, ok := t["$ref"].(string); ok {
			name, frag, _ := strings.Cut(ref, "#")
			switch {
			case name == "" && local != "":
				out["$ref"] = local + frag
			case name != "":
				if _, known := refs[name]; known {
					out["$ref"] = "#/" + refsKey + "/" + escapePointer(name) + frag
				}
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = rewriteRefs(x, refs, local)
		}
		return out
	}
	return v
}

// noLoader refuses every external $ref: a registry must not fetch URLs
// named by the schemas it is sent.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("%s: external references are not loaded (use schema references instead)", url)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// compared is the document Diff compares: the schema with its references
// bundled in.
func (s *Schema) compared() any {
	if s.cmp != nil {
		return s.cmp
	}
	return s.doc
}

// String returns the schema text as given to Parse.
func (s *Schema) String() string { return s.text }

// Normalized returns the schema as compact JSON with sorted keys: the form
// that decides two registrations are the same schema.
func (s *Schema) Normalized() string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s.doc) // maps encode with sorted keys
	return strings.TrimSpace(b.String())
}

// Validate reports whether a JSON payload is valid under the schema; the
// error names each failing location.
func (s *Schema) Validate(payload []byte) error {
	v, err := js.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("payload is not JSON: %w", err)
	}
	if err := s.compiled.Validate(v); err != nil {
		var ve *js.ValidationError
		if errors.As(err, &ve) {
			return fmt.Errorf("payload does not match the schema: %s", oneLine(ve.Error()))
		}
		return err
	}
	return nil
}

// SchemaType returns "JSON", the registry's name for the schema's type.
func (s *Schema) SchemaType() string { return "JSON" }
