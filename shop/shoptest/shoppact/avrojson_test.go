package shoppact

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const lineSchema = `{"type": "record", "name": "Reserved", "fields": [
	{"name": "orderId", "type": "string"},
	{"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
		{"name": "sku", "type": "string"}, {"name": "quantity", "type": "int"}]}}},
	{"name": "note", "type": ["null", "string"], "default": null},
	{"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
	{"name": "version", "type": "int", "default": 1}]}`

func TestAvroJSONRoundTrip(t *testing.T) {
	ts := time.UnixMilli(1767225600123).UTC()
	native := map[string]any{"orderId": "o-1", "items": []any{map[string]any{"sku": "SKU-0001", "quantity": 2}},
		"note": map[string]any{"string": "gift"}, "timestamp": ts, "version": 1}
	j, err := ToJSON(lineSchema, native)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"orderId": "o-1", "items": []any{map[string]any{"sku": "SKU-0001", "quantity": 2}},
		"note": map[string]any{"string": "gift"}, "timestamp": int64(1767225600123), "version": 1}
	if d := cmp.Diff(want, j); d != "" {
		t.Fatalf("ToJSON (-want +got):\n%s", d)
	}
	back, err := FromJSON(lineSchema, map[string]any{"orderId": "o-1", "items": []any{map[string]any{"sku": "SKU-0001", "quantity": 2.0}},
		"note": map[string]any{"string": "gift"}, "timestamp": 1767225600123.0, "version": 1.0})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(native, back); d != "" {
		t.Fatalf("FromJSON (-want +got):\n%s", d)
	}
}

func TestFromJSONNamesWhatIsWrong(t *testing.T) {
	for _, c := range []struct {
		name string
		in   map[string]any
		want string
	}{
		{"missing required field", map[string]any{"items": []any{}, "timestamp": 1.0}, "$.orderId: missing"},
		{"wrong type", map[string]any{"orderId": 7.0, "items": []any{}, "timestamp": 1.0}, "$.orderId: want a string"},
		{"fraction for an int", map[string]any{"orderId": "o", "items": []any{map[string]any{"sku": "S", "quantity": 1.5}}, "timestamp": 1.0}, "$.items[0].quantity: want an integer"},
		{"bad union", map[string]any{"orderId": "o", "items": []any{}, "timestamp": 1.0, "note": "gift"}, "$.note: want null"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := FromJSON(lineSchema, c.in)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("FromJSON: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestFromJSONDefaults(t *testing.T) {
	got, err := FromJSON(lineSchema, map[string]any{"orderId": "o", "items": []any{}, "timestamp": 0.0})
	if err != nil {
		t.Fatal(err)
	}
	m := got.(map[string]any)
	if m["version"] != 1 || m["note"] != nil {
		t.Fatalf("defaults: %v", m)
	}
}
