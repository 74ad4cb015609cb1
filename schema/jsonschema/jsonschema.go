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
	compiled *js.Schema
}

// Parse parses and compiles a JSON Schema. Invalid JSON, a document that is
// not a schema under its draft's meta-schema, or a $ref that leaves the
// document is an error that says where.
func Parse(text string) (s *Schema, err error) {
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
	compiled, err := c.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("invalid schema: %s", oneLine(err.Error()))
	}
	return &Schema{text: text, doc: doc, compiled: compiled}, nil
}

// noLoader refuses every external $ref: a registry must not fetch URLs
// named by the schemas it is sent.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("%s: external references are not loaded (use schema references instead)", url)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

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
