package notification

import (
	"testing"
	"time"
)

// FuzzTemplate parses and renders arbitrary template sources: an error is
// fine, a panic is not.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{
		"Subject: Hi {{.User.Name}}\n\nbody {{money .E.total .E.currency}}",
		"Subject: {{.E.nope}}\n\n",
		"Subject: x\n\n{{range .E}}{{.}}{{end}}",
		"Subject: {{short .E.orderId}}\n\n{{upper .User.Email}} {{money .E.orderId 1}}",
		"{{if}}", "Subject: {{template \"x\"}}", "Subject: {{.User.Name.Foo}}",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	d := Data{Event: "OrderConfirmed", User: Recipient{Name: "Ada", Email: "ada@shop.test"},
		E: map[string]any{"orderId": "0123456789", "total": int64(1234), "currency": "EUR", "timestamp": time.Unix(0, 0)}}
	f.Fuzz(func(t *testing.T, src string, email bool) {
		channel := SMS
		if email {
			channel = Email
		}
		tmpl, err := ParseTemplate("fuzz", "OrderConfirmed", channel, src)
		if err != nil {
			return
		}
		r, err := render(tmpl, channel, d)
		if err != nil {
			return
		}
		if len(r.Body)+len(r.Subject) > maxRendered {
			t.Fatalf("rendered %d bytes, over the bound", len(r.Body))
		}
	})
}
