package notification

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"text/template"
)

// Channels a notification goes out on.
const (
	Email = "email"
	SMS   = "sms"
)

// Events are the events customers hear about.
var Events = []string{"UserRegistered", "OrderConfirmed", "OrderCancelled", "ShipmentCreated", "ShipmentDelivered", "PaymentRefunded"}

// maxRendered bounds a rendered message.
const maxRendered = 64 << 10

// Templates are the message templates, one per event and channel, from
// files named <Event>.<channel>.tmpl (text/template). An email template
// starts with a "Subject: ..." line and a blank line; the rest is the
// body. Templates see Data: {{.User.Name}}, {{.E.orderId}} (the event's
// fields by their schema names), and the functions money (minor units and
// a currency: {{money .E.total .E.currency}}), short (an id's first 8
// characters) and upper. A missing field is an error, not "<no value>".
type Templates struct {
	byKey map[[2]string]*template.Template
}

// Data is what a template renders.
type Data struct {
	Event string
	User  Recipient
	E     map[string]any
}

// Rendered is a rendered message.
type Rendered struct {
	Subject string // email only
	Body    string
}

var funcs = template.FuncMap{
	"money": func(amount any, currency any) (string, error) {
		var n int64
		switch v := amount.(type) {
		case int64:
			n = v
		case int:
			n = int64(v)
		case int32:
			n = int64(v)
		default:
			return "", fmt.Errorf("money: amount %v is not a whole number of minor units", amount)
		}
		sign := ""
		if n < 0 {
			sign, n = "-", -n
		}
		return fmt.Sprintf("%s%d.%02d %v", sign, n/100, n%100, currency), nil
	},
	"short": func(id any) string {
		s := fmt.Sprint(id)
		if len(s) > 8 {
			return s[:8]
		}
		return s
	},
	"upper": strings.ToUpper,
}

// ParseTemplates reads every *.tmpl of fsys, reporting every bad file at
// once (unknown event or channel, parse errors, an email template without
// a subject line).
func ParseTemplates(fsys fs.FS) (*Templates, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read templates: %w", err)
	}
	t := &Templates{byKey: map[[2]string]*template.Template{}}
	var errs []error
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".tmpl") {
			continue
		}
		src, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		event, channel, _ := strings.Cut(strings.TrimSuffix(e.Name(), ".tmpl"), ".")
		tmpl, err := ParseTemplate(e.Name(), event, channel, string(src))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		t.byKey[[2]string{event, channel}] = tmpl
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// ParseTemplate parses one template (name is for errors).
func ParseTemplate(name, event, channel, src string) (*template.Template, error) {
	if !slices.Contains(Events, event) {
		return nil, fmt.Errorf("template %s: unknown event %q; want one of %s", name, event, strings.Join(Events, ", "))
	}
	if channel != Email && channel != SMS {
		return nil, fmt.Errorf("template %s: unknown channel %q; want email or sms (files are <Event>.<channel>.tmpl)", name, channel)
	}
	if channel == Email && !strings.HasPrefix(src, "Subject:") {
		return nil, fmt.Errorf("template %s: an email template starts with a \"Subject: ...\" line", name)
	}
	tmpl, err := template.New(name).Option("missingkey=error").Funcs(funcs).Parse(src)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return tmpl, nil
}

// Has reports whether event has a template for channel.
func (t *Templates) Has(event, channel string) bool {
	_, ok := t.byKey[[2]string{event, channel}]
	return ok
}

// Render renders event's template for channel.
func (t *Templates) Render(event, channel string, d Data) (Rendered, error) {
	tmpl, ok := t.byKey[[2]string{event, channel}]
	if !ok {
		return Rendered{}, fmt.Errorf("no %s template for %s", channel, event)
	}
	return render(tmpl, channel, d)
}

type limitedBuffer struct{ bytes.Buffer }

var errTooLong = fmt.Errorf("rendered message is over %d bytes", maxRendered)

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > maxRendered {
		return 0, errTooLong
	}
	return b.Buffer.Write(p)
}

func render(tmpl *template.Template, channel string, d Data) (Rendered, error) {
	var buf limitedBuffer
	if err := tmpl.Execute(&buf, d); err != nil {
		return Rendered{}, fmt.Errorf("render %s: %w", tmpl.Name(), err)
	}
	out := strings.ReplaceAll(buf.String(), "\r\n", "\n")
	if channel == SMS {
		body := strings.TrimSpace(out)
		if body == "" {
			return Rendered{}, fmt.Errorf("render %s: the message is empty", tmpl.Name())
		}
		return Rendered{Body: body}, nil
	}
	head, body, _ := strings.Cut(out, "\n")
	subject := strings.TrimSpace(strings.TrimPrefix(head, "Subject:"))
	if subject == "" || !strings.HasPrefix(head, "Subject:") {
		return Rendered{}, fmt.Errorf("render %s: the subject is empty", tmpl.Name())
	}
	return Rendered{Subject: subject, Body: strings.TrimLeft(body, "\n")}, nil
}
