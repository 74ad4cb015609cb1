package kit

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
)

// Poison events: any bytes decode or fail with an error, never a panic.
func FuzzCodecDecode(f *testing.F) {
	const schema = `{"type":"record","name":"OrderCreated","fields":[
		{"name":"orderId","type":"string"},{"name":"items","type":{"type":"array","items":"string"}},
		{"name":"total","type":"double"},{"name":"lines","type":{"type":"array","items":{"type":"record","name":"L","fields":[{"name":"q","type":"int"}]}}},
		{"name":"note","type":["null","string"],"default":null}]}`
	c, _ := NewCodec("")
	if err := c.Add(context.Background(), "OrderCreated", schema); err != nil {
		f.Fatal(err)
	}
	good, err := c.Encode(context.Background(), "OrderCreated", map[string]any{"orderId": "o-1", "items": []any{"A"}, "total": 1.5, "lines": []any{map[string]any{"q": 2}}, "note": nil})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		var v map[string]any
		_ = c.Decode(context.Background(), "OrderCreated", data, &v)
	})
}

// Request bodies: any bytes give nil or a 4xx *Error.
func FuzzDecode(f *testing.F) {
	f.Add(`{"sku":"A","quantity":2}`)
	f.Add(`{"sku":`)
	f.Add(`[1,2]`)
	f.Fuzz(func(t *testing.T, body string) {
		var v struct {
			SKU      string `json:"sku"`
			Quantity int    `json:"quantity"`
		}
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		err := Decode(r, &v)
		if err == nil {
			return
		}
		var e *Error
		if !errors.As(err, &e) || e.Status < 400 || e.Status > 499 || e.Message == "" {
			t.Fatalf("Decode(%q) = %#v; want a 4xx *Error with a message", body, err)
		}
	})
}
