// Command user runs user-service. Configuration: see kit.Load, plus
// ADMIN_EMAILS (comma-separated emails registered as admins) and TOKEN_TTL.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/user"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kc, err := kit.Load(user.Service, nil, os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "user-service:", err)
		os.Exit(2)
	}
	cfg := user.Config{Kit: kc, TokenTTL: time.Hour}
	if v := os.Getenv("ADMIN_EMAILS"); v != "" {
		cfg.Admins = strings.Split(v, ",")
	}
	if v := os.Getenv("TOKEN_TTL"); v != "" {
		if cfg.TokenTTL, err = time.ParseDuration(v); err != nil {
			fmt.Fprintf(os.Stderr, "user-service: TOKEN_TTL %q: want a duration such as 1h\n", v)
			os.Exit(2)
		}
	}
	m := &user.Main{Config: cfg}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "user-service:", err)
		os.Exit(1)
	}
}
