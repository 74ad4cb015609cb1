// Command user runs user-service. Configuration: see kit.Load, plus
//
//	ADMIN_EMAIL, ADMIN_PASSWORD  the shop's administrator, created (or its password set) at start
//	SIGNING_KEY_SECRET           seals the token signing key in the database (without it: a key per process)
//	TOKEN_TTL                    a token's lifetime, default 1h
//	LOGIN_WINDOW                 the login throttle's window, default 1m
//	LOGIN_ACCOUNT_FAILURES       failed logins that lock an account for the window, default 5
//	LOGIN_ADDRESS_FAILURES       failed logins that lock a client address for the window, default 20
//	MAX_HASHING                  password hashes (argon2id, 19 MiB each) at once, default 4
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
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
		fail(err.Error())
	}
	if os.Getenv("ADMIN_EMAILS") != "" {
		fail("ADMIN_EMAILS is no longer read (registering a listed address made anyone an admin): set ADMIN_EMAIL and ADMIN_PASSWORD")
	}
	cfg := user.Config{Kit: kc, TokenTTL: time.Hour,
		Admin:     user.Admin{Email: os.Getenv("ADMIN_EMAIL"), Password: os.Getenv("ADMIN_PASSWORD")},
		KeySecret: os.Getenv("SIGNING_KEY_SECRET")}
	if cfg.Admin.Email == "" && cfg.Admin.Password != "" {
		fail("ADMIN_PASSWORD is set without ADMIN_EMAIL")
	}
	durations := map[string]*time.Duration{"TOKEN_TTL": &cfg.TokenTTL, "LOGIN_WINDOW": &cfg.Limits.LoginWindow}
	for name, d := range durations {
		if v := os.Getenv(name); v != "" {
			if *d, err = time.ParseDuration(v); err != nil || *d <= 0 {
				fail(fmt.Sprintf("%s %q: want a duration such as 1h", name, v))
			}
		}
	}
	ints := map[string]*int{"LOGIN_ACCOUNT_FAILURES": &cfg.Limits.AccountFailures, "LOGIN_ADDRESS_FAILURES": &cfg.Limits.AddressFailures, "MAX_HASHING": &cfg.Limits.MaxHashing}
	for name, n := range ints {
		if v := os.Getenv(name); v != "" {
			if *n, err = strconv.Atoi(v); err != nil || *n <= 0 {
				fail(fmt.Sprintf("%s %q: want a positive whole number", name, v))
			}
		}
	}
	m := &user.Main{Config: cfg}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "user-service:", err)
		os.Exit(1)
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "user-service:", msg)
	os.Exit(2)
}
