package jsonschema_test

import (
	"strings"
	"testing"

	"github.com/flotilla-ci/flotilla/schema"
	"github.com/flotilla-ci/flotilla/schema/jsonschema"
)

// obj builds an object schema: props is the properties' JSON, extra any
// more keywords.
func obj(props string, extra ...string) string {
	s := `{"type":"object","properties":{` + props + `}`
	for _, e := range extra {
		s += "," + e
	}
	return s + "}"
}

// The pairs follow Confluent's rules (SchemaDiff's compatible changes and
// the content-model documentation): old, new, whether new reads what old
// wrote (BACKWARD), whether old reads what new writes (FORWARD), and the
// difference the BACKWARD check must name when it fails.
var pairs = []struct {
	name          string
	old, new      string
	backward, fwd bool
	want          string // a difference type of the failing direction (backward first)
}{
	// Content models: open (no additionalProperties), closed (false), partially open (a schema).
	{"optional property added to an open model", obj(`"a":{"type":"string"}`), obj(`"a":{"type":"string"},"b":{"type":"string"}`), false, true, "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"},
	{"property removed from an open model", obj(`"a":{"type":"string"},"b":{"type":"string"}`), obj(`"a":{"type":"string"}`), true, false, "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"},
	{"empty-schema property added to an open model", obj(`"a":{"type":"string"}`), obj(`"a":{"type":"string"},"b":{}`), true, true, ""},
	{"optional property added to a closed model", obj(`"a":{"type":"string"}`, `"additionalProperties":false`), obj(`"a":{"type":"string"},"b":{"type":"string"}`, `"additionalProperties":false`), true, false, "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"},
	{"required property added to a closed model", obj(`"a":{"type":"string"}`, `"additionalProperties":false`), obj(`"a":{"type":"string"},"b":{"type":"string"}`, `"additionalProperties":false`, `"required":["b"]`), false, false, "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL"},
	{"required property with a default added to a closed model", obj(`"a":{"type":"string"}`, `"additionalProperties":false`), obj(`"a":{"type":"string"},"b":{"type":"string","default":"x"}`, `"additionalProperties":false`, `"required":["b"]`), true, false, "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"},
	{"property removed from a closed model", obj(`"a":{"type":"string"},"b":{"type":"string"}`, `"additionalProperties":false`), obj(`"a":{"type":"string"}`, `"additionalProperties":false`), false, true, "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL"},
	{"false property removed from a closed model", obj(`"a":{"type":"string"},"b":false`, `"additionalProperties":false`), obj(`"a":{"type":"string"}`, `"additionalProperties":false`), true, true, ""},
	{"property added covered by a partially open model", obj(`"a":{"type":"string"}`, `"additionalProperties":{"type":"string"}`), obj(`"a":{"type":"string"},"b":{"type":"string"}`, `"additionalProperties":{"type":"string"}`), true, true, ""},
	{"property added not covered by a partially open model", obj(`"a":{"type":"string"}`, `"additionalProperties":{"type":"string"}`), obj(`"a":{"type":"string"},"b":{"type":"integer"}`, `"additionalProperties":{"type":"string"}`), false, false, "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"},
	{"model closed", obj(`"a":{"type":"string"}`), obj(`"a":{"type":"string"}`, `"additionalProperties":false`), false, true, "ADDITIONAL_PROPERTIES_REMOVED"},
	{"model opened", obj(`"a":{"type":"string"}`, `"additionalProperties":false`), obj(`"a":{"type":"string"}`), true, false, "ADDITIONAL_PROPERTIES_REMOVED"},
	{"partially open model opened", obj(`"a":{"type":"string"}`, `"additionalProperties":{"type":"string"}`), obj(`"a":{"type":"string"}`), true, false, "ADDITIONAL_PROPERTIES_NARROWED"},
	{"partial model widened", obj(``, `"additionalProperties":{"type":"integer"}`), obj(``, `"additionalProperties":{"type":"number"}`), true, false, "ADDITIONAL_PROPERTIES_NARROWED"},
	// required
	{"required added", obj(`"a":{"type":"string"}`), obj(`"a":{"type":"string"}`, `"required":["a"]`), false, true, "REQUIRED_ATTRIBUTE_ADDED"},
	{"required with default added", obj(`"a":{"type":"string","default":"x"}`), obj(`"a":{"type":"string","default":"x"}`, `"required":["a"]`), true, true, ""},
	{"required removed", obj(`"a":{"type":"string"}`, `"required":["a"]`), obj(`"a":{"type":"string"}`), true, false, "REQUIRED_ATTRIBUTE_ADDED"},
	// types
	{"integer widened to number", obj(`"n":{"type":"integer"}`), obj(`"n":{"type":"number"}`), true, false, "TYPE_NARROWED"},
	{"number narrowed to integer", obj(`"n":{"type":"number"}`), obj(`"n":{"type":"integer"}`), false, true, "TYPE_NARROWED"},
	{"string to integer", obj(`"n":{"type":"string"}`), obj(`"n":{"type":"integer"}`), false, false, "TYPE_CHANGED"},
	{"string to boolean", `{"type":"string"}`, `{"type":"boolean"}`, false, false, "TYPE_CHANGED"},
	{"object to array", `{"type":"object"}`, `{"type":"array"}`, false, false, "TYPE_CHANGED"},
	{"type made nullable", obj(`"a":{"type":"string"}`), obj(`"a":{"type":["string","null"]}`), true, false, "TYPE_CHANGED"},
	{"null dropped from a type list", obj(`"a":{"type":["string","null"]}`), obj(`"a":{"type":"string"}`), false, true, "TYPE_CHANGED"},
	{"type list extended", `{"type":["string","null"]}`, `{"type":["string","null","integer"]}`, true, false, "SUM_TYPE_NARROWED"},
	{"anything to an empty schema", `{"type":"string"}`, `{}`, true, false, "TYPE_CHANGED"},
	{"same schema", obj(`"a":{"type":"string"}`, `"required":["a"]`), obj(`"a":{"type":"string"}`, `"required":["a"]`), true, true, ""},
	{"description, title and default changed", `{"type":"string","title":"a","description":"x","default":"d"}`, `{"type":"string","title":"b","description":"y","default":"e"}`, true, true, ""},
	// enum and const
	{"enum extended", `{"enum":["A","B"]}`, `{"enum":["A","B","C"]}`, true, false, "ENUM_ARRAY_NARROWED"},
	{"enum narrowed", `{"enum":["A","B","C"]}`, `{"enum":["A","B"]}`, false, true, "ENUM_ARRAY_NARROWED"},
	{"enum changed", `{"enum":["A","B"]}`, `{"enum":["A","C"]}`, false, false, "ENUM_ARRAY_CHANGED"},
	{"enum reordered", `{"enum":["A","B"]}`, `{"enum":["B","A"]}`, true, true, ""},
	{"const changed", `{"const":"A"}`, `{"const":"B"}`, false, false, "ENUM_ARRAY_CHANGED"},
	// strings
	{"maxLength increased", `{"type":"string","maxLength":5}`, `{"type":"string","maxLength":10}`, true, false, "MAX_LENGTH_DECREASED"},
	{"maxLength added", `{"type":"string"}`, `{"type":"string","maxLength":10}`, false, true, "MAX_LENGTH_ADDED"},
	{"maxLength removed", `{"type":"string","maxLength":10}`, `{"type":"string"}`, true, false, "MAX_LENGTH_ADDED"},
	{"minLength decreased", `{"type":"string","minLength":5}`, `{"type":"string","minLength":1}`, true, false, "MIN_LENGTH_INCREASED"},
	{"minLength added", `{"type":"string"}`, `{"type":"string","minLength":1}`, false, true, "MIN_LENGTH_ADDED"},
	{"pattern added", `{"type":"string"}`, `{"type":"string","pattern":"^a"}`, false, true, "PATTERN_ADDED"},
	{"pattern removed", `{"type":"string","pattern":"^a"}`, `{"type":"string"}`, true, false, "PATTERN_ADDED"},
	{"pattern changed", `{"type":"string","pattern":"^a"}`, `{"type":"string","pattern":"^b"}`, false, false, "PATTERN_CHANGED"},
	// numbers
	{"maximum increased", `{"type":"number","maximum":5}`, `{"type":"number","maximum":10}`, true, false, "MAXIMUM_DECREASED"},
	{"maximum added", `{"type":"number"}`, `{"type":"number","maximum":10}`, false, true, "MAXIMUM_ADDED"},
	{"minimum decreased", `{"type":"number","minimum":5}`, `{"type":"number","minimum":0}`, true, false, "MINIMUM_INCREASED"},
	{"minimum removed", `{"type":"number","minimum":5}`, `{"type":"number"}`, true, false, "MINIMUM_ADDED"},
	{"exclusiveMaximum increased", `{"type":"number","exclusiveMaximum":5}`, `{"type":"number","exclusiveMaximum":6}`, true, false, "EXCLUSIVE_MAXIMUM_DECREASED"},
	{"exclusiveMinimum added", `{"type":"number"}`, `{"type":"number","exclusiveMinimum":0}`, false, true, "EXCLUSIVE_MINIMUM_ADDED"},
	{"multipleOf reduced", `{"type":"integer","multipleOf":10}`, `{"type":"integer","multipleOf":5}`, true, false, "MULTIPLE_OF_EXPANDED"},
	{"multipleOf changed", `{"type":"integer","multipleOf":3}`, `{"type":"integer","multipleOf":5}`, false, false, "MULTIPLE_OF_CHANGED"},
	{"multipleOf added", `{"type":"integer"}`, `{"type":"integer","multipleOf":5}`, false, true, "MULTIPLE_OF_ADDED"},
	// objects' sizes
	{"maxProperties increased", `{"type":"object","maxProperties":2}`, `{"type":"object","maxProperties":3}`, true, false, "MAX_PROPERTIES_DECREASED"},
	{"minProperties added", `{"type":"object"}`, `{"type":"object","minProperties":1}`, false, true, "MIN_PROPERTIES_ADDED"},
	// arrays
	{"items type widened", `{"type":"array","items":{"type":"integer"}}`, `{"type":"array","items":{"type":"number"}}`, true, false, "TYPE_NARROWED"},
	{"items type changed", `{"type":"array","items":{"type":"integer"}}`, `{"type":"array","items":{"type":"string"}}`, false, false, "TYPE_CHANGED"},
	{"maxItems decreased", `{"type":"array","maxItems":5}`, `{"type":"array","maxItems":3}`, false, true, "MAX_ITEMS_DECREASED"},
	{"minItems removed", `{"type":"array","minItems":1}`, `{"type":"array"}`, true, false, "MIN_ITEMS_ADDED"},
	{"uniqueItems added", `{"type":"array"}`, `{"type":"array","uniqueItems":true}`, false, true, "UNIQUE_ITEMS_ADDED"},
	{"tuple item added to an open tuple", `{"type":"array","items":[{"type":"string"}]}`, `{"type":"array","items":[{"type":"string"},{"type":"integer"}]}`, false, true, "ITEM_ADDED_TO_OPEN_CONTENT_MODEL"},
	{"tuple item added to a closed tuple", `{"type":"array","items":[{"type":"string"}],"additionalItems":false}`, `{"type":"array","items":[{"type":"string"},{"type":"integer"}],"additionalItems":false}`, true, false, "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL"},
	// nested objects
	{"nested property type narrowed", obj(`"o":` + obj(`"n":{"type":"number"}`)), obj(`"o":` + obj(`"n":{"type":"integer"}`)), false, true, "TYPE_NARROWED"},
	{"nested required added", obj(`"o":` + obj(`"n":{"type":"number"}`)), obj(`"o":` + obj(`"n":{"type":"number"}`, `"required":["n"]`)), false, true, "REQUIRED_ATTRIBUTE_ADDED"},
	// combined types
	{"oneOf extended", `{"oneOf":[{"type":"string"},{"type":"integer"}]}`, `{"oneOf":[{"type":"string"},{"type":"integer"},{"type":"boolean"}]}`, true, false, "SUM_TYPE_NARROWED"},
	{"anyOf narrowed", `{"anyOf":[{"type":"string"},{"type":"integer"}]}`, `{"anyOf":[{"type":"string"}]}`, false, true, "SUM_TYPE_NARROWED"},
	{"allOf narrowed", `{"allOf":[{"type":"object","required":["a"]},{"type":"object","required":["b"]}]}`, `{"allOf":[{"type":"object","required":["a"]}]}`, true, false, "PRODUCT_TYPE_EXTENDED"},
	{"oneOf to anyOf", `{"oneOf":[{"type":"string"},{"type":"integer"}]}`, `{"anyOf":[{"type":"string"},{"type":"integer"}]}`, false, false, "COMBINED_TYPE_CHANGED"},
	{"a type made one branch of a oneOf", `{"type":"string"}`, `{"oneOf":[{"type":"string"},{"type":"integer"}]}`, true, false, "TYPE_CHANGED"},
	// references
	{"a referenced definition narrowed", `{"type":"object","properties":{"m":{"$ref":"#/definitions/money"}},"definitions":{"money":{"type":"number"}}}`,
		`{"type":"object","properties":{"m":{"$ref":"#/definitions/money"}},"definitions":{"money":{"type":"integer"}}}`, false, true, "TYPE_NARROWED"},
	{"a recursive schema unchanged", `{"$ref":"#/definitions/node","definitions":{"node":{"type":"object","properties":{"next":{"$ref":"#/definitions/node"}}}}}`,
		`{"$ref":"#/definitions/node","definitions":{"node":{"type":"object","properties":{"next":{"$ref":"#/definitions/node"}}}}}`, true, true, ""},
}

func TestCompatibilityPairs(t *testing.T) {
	if len(pairs) < 60 {
		t.Fatalf("%d pairs; the issue asks for at least 60", len(pairs))
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			o, err := jsonschema.Parse(p.old)
			if err != nil {
				t.Fatalf("old: %v", err)
			}
			n, err := jsonschema.Parse(p.new)
			if err != nil {
				t.Fatalf("new: %v", err)
			}
			back, fwd := jsonschema.Incompatible(o, n), jsonschema.Incompatible(n, o)
			if (len(back) == 0) != p.backward {
				t.Errorf("backward: got %v, want compatible=%v", back, p.backward)
			}
			if (len(fwd) == 0) != p.fwd {
				t.Errorf("forward: got %v, want compatible=%v", fwd, p.fwd)
			}
			if p.want != "" {
				found := false
				for _, d := range append(back, fwd...) {
					found = found || string(d.Type) == p.want
				}
				if !found {
					t.Errorf("want a %s; backward %v, forward %v", p.want, back, fwd)
				}
			}
			full := jsonschema.Check(schema.Full, n, []*jsonschema.Schema{o})
			if (len(full) == 0) != (p.backward && p.fwd) {
				t.Errorf("FULL: %v", full)
			}
		})
	}
}

func TestCheckTransitive(t *testing.T) {
	v1 := mustParse(t, obj(`"a":{"type":"string"}`, `"additionalProperties":false`))
	v2 := mustParse(t, obj(`"a":{"type":"string"},"b":{"type":"string"}`, `"additionalProperties":false`))
	v3 := mustParse(t, obj(`"a":{"type":"string"},"b":{"type":"string"},"c":{"type":"string"}`, `"additionalProperties":false`, `"required":["c"]`))
	if got := jsonschema.Check(schema.Backward, v3, []*jsonschema.Schema{v1, v2}); len(got) != 1 || got[0].Version != 2 || got[0].Type != "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL" || got[0].Path != "#/properties/c" {
		t.Errorf("BACKWARD: %+v", got)
	}
	if got := jsonschema.Check(schema.ForwardTransitive, v2, []*jsonschema.Schema{v1}); len(got) != 1 || got[0].Direction != schema.OldReadsNew {
		t.Errorf("FORWARD_TRANSITIVE: %+v", got)
	}
	if got := jsonschema.Check(schema.BackwardTransitive, v2, []*jsonschema.Schema{v1}); len(got) != 0 {
		t.Errorf("BACKWARD_TRANSITIVE: %+v", got)
	}
}

func mustParse(t *testing.T, s string) *jsonschema.Schema {
	t.Helper()
	sc, err := jsonschema.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func TestParseAndValidate(t *testing.T) {
	for _, bad := range []struct{ text, want string }{
		{`{"type":`, "not JSON"},
		{`"string"`, "an object or a boolean"},
		{`{"type":"strng"}`, "invalid schema"},
		{`{"$ref":"http://example.com/x.json"}`, "external references are not loaded"},
		{`{"type":"object","minProperties":-1}`, "invalid schema"},
	} {
		if _, err := jsonschema.Parse(bad.text); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Parse(%s) = %v, want %q", bad.text, err, bad.want)
		}
	}
	s := mustParse(t, obj(`"orderId":{"type":"string"},"total":{"type":"integer","minimum":0}`, `"required":["orderId"]`))
	if err := s.Validate([]byte(`{"orderId":"o1","total":5}`)); err != nil {
		t.Errorf("valid payload: %v", err)
	}
	for _, bad := range []string{`{"total":5}`, `{"orderId":"o1","total":-1}`, `{"orderId":1}`, `not json`} {
		if err := s.Validate([]byte(bad)); err == nil {
			t.Errorf("payload %s passed", bad)
		}
	}
	if a, b := mustParse(t, `{"type":"string", "maxLength":3}`), mustParse(t, "{\"maxLength\":3,\n\"type\":\"string\"}"); a.Normalized() != b.Normalized() {
		t.Errorf("normalized forms differ: %s %s", a.Normalized(), b.Normalized())
	}
}

// TestReferences: a schema referring to another by a registry reference's
// name validates payloads against it and is compared through it: a change
// inside the referenced schema is a change of the schema that uses it.
func TestReferences(t *testing.T) {
	address := `{"type":"object","properties":{"street":{"type":"string"},"zip":{"$ref":"#/definitions/zip"}},"required":["street"],"additionalProperties":false,"definitions":{"zip":{"type":"string"}}}`
	addressNarrow := `{"type":"object","properties":{"street":{"type":"string"},"zip":{"$ref":"#/definitions/zip"}},"required":["street"],"additionalProperties":false,"definitions":{"zip":{"type":"integer"}}}`
	order := `{"type":"object","properties":{"id":{"type":"string"},"shipTo":{"$ref":"address.schema.json"}},"required":["id"]}`
	s, err := jsonschema.ParseWithReferences(order, map[string]string{"address.schema.json": address})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate([]byte(`{"id":"o1","shipTo":{"street":"Main 1","zip":"12345"}}`)); err != nil {
		t.Errorf("valid payload refused: %v", err)
	}
	if err := s.Validate([]byte(`{"id":"o1","shipTo":{"zip":"12345"}}`)); err == nil {
		t.Error("a payload missing the referenced schema's required street was accepted")
	}
	if _, err := jsonschema.Parse(order); err == nil {
		t.Error("a $ref to a schema not given as a reference was accepted")
	}
	narrow, err := jsonschema.ParseWithReferences(order, map[string]string{"address.schema.json": addressNarrow})
	if err != nil {
		t.Fatal(err)
	}
	if d := jsonschema.Incompatible(s, s); len(d) != 0 {
		t.Errorf("a schema with references against itself: %v", d)
	}
	d := jsonschema.Incompatible(s, narrow)
	if len(d) == 0 || !strings.Contains(d[0].Path, "shipTo") {
		t.Errorf("narrowing zip inside the reference: got %v, want a difference under shipTo", d)
	}
	// A reference by absolute URL, resolved against the schema's $id.
	withID := `{"$id":"https://example.com/schemas/order.json","type":"object","properties":{"shipTo":{"$ref":"address.json"}}}`
	if _, err := jsonschema.ParseWithReferences(withID, map[string]string{"address.json": address}); err != nil {
		t.Errorf("a relative reference under an $id: %v", err)
	}
}
