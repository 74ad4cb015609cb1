// Command notification runs notification-service. Configuration: see
// kit.Load, plus:
//
//	USER_URL        user-service, for the JWKS that verifies tokens (unset: the API answers 503, mail still goes out)
//	DATA_DIR        where the default sinks write mail/<id>.eml and sms/<id>.sms (default data)
//	SMTP_URL        smtp://[user:password@]host:port[?starttls=true]: send email there instead of the .eml sink
//	MAIL_FROM       the sender address (default shop@flotilla.test)
//	TEMPLATES_DIR   <Event>.<channel>.tmpl files replacing the built-in templates
package main

import (
	"context"
	"fmt"
	"net/smtp"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/notification"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kc, err := kit.Load(notification.Service, nil, os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "notification-service:", err)
		os.Exit(2)
	}
	cfg := notification.Config{Kit: kc, Users: os.Getenv("USER_URL"), DataDir: os.Getenv("DATA_DIR"), From: os.Getenv("MAIL_FROM")}
	if v := os.Getenv("SMTP_URL"); v != "" {
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "smtp" || u.Port() == "" {
			fmt.Fprintf(os.Stderr, "notification-service: SMTP_URL %q: want smtp://[user:password@]host:port\n", v)
			os.Exit(2)
		}
		s := &notification.SMTP{Addr: u.Host, StartTLS: u.Query().Get("starttls") == "true"}
		if u.User != nil {
			pw, _ := u.User.Password()
			s.Auth = smtp.PlainAuth("", u.User.Username(), pw, u.Hostname())
		}
		cfg.Mailer = s
	}
	if d := os.Getenv("TEMPLATES_DIR"); d != "" {
		cfg.Templates = os.DirFS(d)
	}
	m := &notification.Main{Config: cfg}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "notification-service:", err)
		os.Exit(1)
	}
}
