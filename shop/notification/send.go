package notification

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flotilla-ci/flotilla/bus"
)

// Mail is one email to send.
type Mail struct {
	ID      string // the notification id: the Message-ID, so a resend after a crash is recognisable
	From    string
	To      string
	Subject string
	Body    string
	Date    time.Time
}

// Mailer sends email. Send returns nil once the message is accepted; an
// error wrapped with bus.Permanent (a 5xx answer, a bad address) is not
// retried, any other error is.
type Mailer interface {
	Send(ctx context.Context, m Mail) error
}

// SMSMessage is one text message to send.
type SMSMessage struct {
	ID   string // the notification id: providers that take an idempotency key get it
	To   string // E.164, +4915112345678
	Body string
}

// SMSProvider sends text messages, with Mailer's error contract.
type SMSProvider interface {
	Send(ctx context.Context, m SMSMessage) error
}

// Format renders m as an RFC 5322 message (UTF-8 text, quoted-printable,
// CRLF line ends).
func Format(m Mail) ([]byte, error) {
	for _, a := range []string{m.From, m.To} {
		if strings.ContainsAny(a, "\r\n") || a == "" {
			return nil, bus.Permanent(fmt.Errorf("mail %s: address %q is empty or spans lines", m.ID, a))
		}
	}
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", m.From)
	h("To", m.To)
	h("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	h("Date", m.Date.Format(time.RFC1123Z))
	h("Message-ID", "<"+m.ID+"@notification.shop>")
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(strings.ReplaceAll(m.Body, "\n", "\r\n"))); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// SMTP sends through an SMTP server with net/smtp.
type SMTP struct {
	Addr     string        // host:port
	Auth     smtp.Auth     // nil for none
	Hello    string        // EHLO name; default localhost
	Timeout  time.Duration // the whole exchange; default 30s
	StartTLS bool          // require STARTTLS
}

var _ Mailer = (*SMTP)(nil)

// Send delivers m: 5xx answers are permanent, 4xx and network failures
// transient.
func (s *SMTP) Send(ctx context.Context, m Mail) error {
	msg, err := Format(m)
	if err != nil {
		return err
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", s.Addr, err)
	}
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	host, _, _ := net.SplitHostPort(s.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		_ = conn.Close()
		return classify(s.Addr, "greeting", err)
	}
	defer func() { _ = c.Close() }()
	hello := s.Hello
	if hello == "" {
		hello = "localhost"
	}
	if err := c.Hello(hello); err != nil {
		return classify(s.Addr, "EHLO", err)
	}
	if s.StartTLS {
		if err := c.StartTLS(nil); err != nil {
			return classify(s.Addr, "STARTTLS", err)
		}
	}
	if s.Auth != nil {
		if err := c.Auth(s.Auth); err != nil {
			return classify(s.Addr, "AUTH", err)
		}
	}
	if err := c.Mail(m.From); err != nil {
		return classify(s.Addr, "MAIL FROM", err)
	}
	if err := c.Rcpt(m.To); err != nil {
		return classify(s.Addr, "RCPT TO "+m.To, err)
	}
	w, err := c.Data()
	if err != nil {
		return classify(s.Addr, "DATA", err)
	}
	if _, err := w.Write(msg); err != nil {
		return classify(s.Addr, "DATA", err)
	}
	if err := w.Close(); err != nil {
		return classify(s.Addr, "end of DATA", err)
	}
	_ = c.Quit()
	return nil
}

func classify(addr, step string, err error) error {
	err = fmt.Errorf("smtp %s: %s: %w", addr, step, err)
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 {
		return bus.Permanent(err)
	}
	return err
}

// Dir is the development sink: each message becomes a file in a
// directory (<id>.eml for mail, <id>.sms for text messages), written to
// a temporary name and renamed, so a message is there whole or not at
// all, and sending the same notification again rewrites the same file.
type Dir struct{ Path string }

var (
	_ Mailer      = Dir{}
	_ SMSProvider = SMSDir{}
)

// Send writes m as <Path>/<id>.eml.
func (d Dir) Send(ctx context.Context, m Mail) error {
	msg, err := Format(m)
	if err != nil {
		return err
	}
	return writeFile(d.Path, m.ID+".eml", msg)
}

// SMSDir writes text messages as <Path>/<id>.sms.
type SMSDir struct{ Path string }

// Send writes m as <Path>/<id>.sms.
func (d SMSDir) Send(ctx context.Context, m SMSMessage) error {
	return writeFile(d.Path, m.ID+".sms", []byte("To: "+m.To+"\n\n"+m.Body+"\n"))
}

func writeFile(dir, name string, data []byte) error {
	if strings.ContainsAny(name, `/\`) {
		return bus.Permanent(fmt.Errorf("file name %q", name))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("sink: %w", err)
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("sink: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("sink: %w", err)
	}
	return nil
}
