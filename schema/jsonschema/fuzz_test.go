package jsonschema_test

import (
	"testing"

	"github.com/flotilla-ci/flotilla/schema"
	"github.com/flotilla-ci/flotilla/schema/jsonschema"
)

// FuzzJSONSchema: any two texts are parsed; when both are schemas, the
// rules compare them both ways and a payload is validated, without a
// panic or a hang (recursive $refs included).
func FuzzJSONSchema(f *testing.F) {
	for _, p := range pairs {
		f.Add(p.old, p.new, `{"a":"x","n":1}`)
	}
	f.Add(`{"$ref":"#"}`, `{"$ref":"#/definitions/a","definitions":{"a":{"$ref":"#/definitions/a"}}}`, `{}`)
	f.Fuzz(func(t *testing.T, a, b, payload string) {
		sa, errA := jsonschema.Parse(a)
		sb, errB := jsonschema.Parse(b)
		if errA != nil || errB != nil {
			return
		}
		_ = jsonschema.Diff(sa, sb)
		_ = jsonschema.Check(schema.FullTransitive, sb, []*jsonschema.Schema{sa})
		_ = sa.Validate([]byte(payload))
		_ = sa.Normalized()
	})
}

// FuzzJSONSchemaReferences: a schema with a reference named r.json is
// parsed, compared with itself through the bundle, and validates a
// payload, without a panic or a hang (references that refer back to the
// schema, to themselves or to fragments included).
func FuzzJSONSchemaReferences(f *testing.F) {
	f.Add(`{"properties":{"a":{"$ref":"r.json"}}}`, `{"type":"string"}`, `{"a":"x"}`)
	f.Add(`{"$ref":"r.json#/definitions/x"}`, `{"definitions":{"x":{"$ref":"#/definitions/x"}}}`, `1`)
	f.Add(`{"$ref":"r.json"}`, `{"$ref":"r.json"}`, `{}`)
	f.Fuzz(func(t *testing.T, main, ref, payload string) {
		s, err := jsonschema.ParseWithReferences(main, map[string]string{"r.json": ref})
		if err != nil {
			return
		}
		_ = jsonschema.Diff(s, s)
		_ = s.Validate([]byte(payload))
	})
}
