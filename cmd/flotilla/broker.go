package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/broker/sqlstore"
)

func (a *app) brokerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run the contract broker (the Pact Broker HTTP API)",
	}
	cmd.AddCommand(a.brokerServeCmd())
	return cmd
}

// brokerServe is `flotilla broker serve`, runnable in tests on port 0.
type brokerServe struct {
	addr          string
	db            string
	tokens        []string
	readTokens    []string
	users         []string
	readUsers     []string
	noAnonRead    bool
	baseURL       string
	allowModify   bool
	webhookHosts  []string
	insecureOpen  bool
	maxBody       int64
	ready         func(addr string) // tests learn the bound address here
	stdout, stder interface{ Write([]byte) (int, error) }
}

func (a *app) brokerServeCmd() *cobra.Command {
	bs := &brokerServe{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the contract broker",
		Long: `Serve the contract broker: the Pact Broker HTTP API, so the pact CLI and
flotilla's contract commands both work against it. State lives in SQLite by
default, or in PostgreSQL with --db postgres://...

With no --token/--user the broker is open to everyone (local use). With
credentials, writes need a read-write token or user; reads need any
credential unless anonymous reads are allowed (the default).
FLOTILLA_BROKER_TOKEN adds a read-write token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if t := os.Getenv("FLOTILLA_BROKER_TOKEN"); t != "" {
				bs.tokens = append(bs.tokens, t)
			}
			if bs.maxBody <= 0 {
				return usageErr(fmt.Errorf("broker serve --max-body %d: must be positive", bs.maxBody))
			}
			bs.stdout, bs.stder = a.stdout, a.stderr
			return bs.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&bs.addr, "addr", "127.0.0.1:7292", "address to listen on")
	f.StringVar(&bs.db, "db", ".flotilla/broker.db", "database: a SQLite file, or a postgres:// DSN")
	f.StringArrayVar(&bs.tokens, "token", nil, "a read-write bearer token (repeatable)")
	f.StringArrayVar(&bs.readTokens, "read-token", nil, "a read-only bearer token (repeatable)")
	f.StringArrayVar(&bs.users, "user", nil, "a read-write basic-auth user as NAME:PASSWORD (repeatable)")
	f.StringArrayVar(&bs.readUsers, "read-user", nil, "a read-only basic-auth user as NAME:PASSWORD (repeatable)")
	f.BoolVar(&bs.noAnonRead, "no-anonymous-read", false, "require credentials for reads too")
	f.StringVar(&bs.baseURL, "base-url", "", "absolute URL for links (default: from each request)")
	f.BoolVar(&bs.allowModify, "allow-contract-modification", false, "let a consumer version republish different pact content")
	f.StringArrayVar(&bs.webhookHosts, "webhook-host", nil, "a host webhooks may call, or *.domain (repeatable; default: any on loopback, only loopback hosts otherwise)")
	f.BoolVar(&bs.insecureOpen, "insecure-open", false, "serve a non-loopback address without --token/--user: anyone who reaches it may publish and delete")
	f.Int64Var(&bs.maxBody, "max-body", broker.DefaultConfig().MaxBodyBytes, "the largest request body in bytes (a pact is published base64-encoded: a third larger than the file)")
	return cmd
}

func (bs *brokerServe) config() (broker.Config, error) {
	cfg := broker.DefaultConfig()
	cfg.BaseURL, cfg.AnonymousRead, cfg.AllowContractModification, cfg.WebhookHosts = bs.baseURL, !bs.noAnonRead, bs.allowModify, bs.webhookHosts
	if bs.maxBody != 0 {
		cfg.MaxBodyBytes = bs.maxBody
	}
	for _, t := range bs.tokens {
		cfg.Tokens = append(cfg.Tokens, broker.Token{Value: t, Write: true})
	}
	for _, t := range bs.readTokens {
		cfg.Tokens = append(cfg.Tokens, broker.Token{Value: t})
	}
	for i, list := range [][]string{bs.users, bs.readUsers} {
		for _, u := range list {
			name, pass, ok := strings.Cut(u, ":")
			if !ok {
				return cfg, usageErr(fmt.Errorf("--user %q: want NAME:PASSWORD", name))
			}
			cfg.Users = append(cfg.Users, broker.User{Name: name, Password: pass, Write: i == 0})
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageErr(fmt.Errorf("broker serve: %w", err))
	}
	// Open and calling anywhere is the local default only: on an address
	// others can reach, writes need credentials (or --insecure-open) and
	// webhooks call only the hosts listed.
	if !loopbackAddr(bs.addr) {
		if len(cfg.Tokens) == 0 && len(cfg.Users) == 0 && !bs.insecureOpen {
			return cfg, usageErr(fmt.Errorf("broker serve --addr %s: not a loopback address, and no --token or --user: anyone reaching it could publish and delete contracts; give --token (and --read-token for CI), or --insecure-open to serve it open anyway", bs.addr))
		}
		if len(cfg.WebhookHosts) == 0 {
			cfg.WebhookHosts = []string{"localhost", "127.0.0.1", "::1"}
		}
	}
	return cfg, nil
}

// loopbackAddr reports whether a listen address only accepts local
// connections (an empty host or 0.0.0.0 listens on every interface).
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (bs *brokerServe) run(ctx context.Context) error {
	cfg, err := bs.config()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(bs.stder, nil))
	store, err := sqlstore.Open(ctx, bs.db)
	if err != nil {
		return usageErr(fmt.Errorf("broker serve --db: %w", err))
	}
	defer func() { _ = store.Close() }()
	srv, err := broker.New(cfg, store, log)
	if err != nil {
		return usageErr(err)
	}
	ln, err := net.Listen("tcp", bs.addr)
	if err != nil {
		return usageErr(fmt.Errorf("broker serve --addr: %w", err))
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(bs.stdout, "flotilla broker listening on http://%s (database %s)\n", ln.Addr(), redactDSN(bs.db))
	if len(cfg.Tokens) == 0 && len(cfg.Users) == 0 {
		log.WarnContext(ctx, "no --token or --user: the broker accepts writes from anyone")
	}
	if bs.ready != nil {
		bs.ready(ln.Addr().String())
	}
	// Webhook deliveries: queued by the store with the events, sent from
	// here with retries until delivered or given up on.
	base := cfg.BaseURL
	if base == "" {
		base = "http://" + ln.Addr().String()
	}
	dctx, stopDeliveries := context.WithCancel(ctx)
	defer stopDeliveries()
	go func() { _ = (&broker.Deliverer{Queue: store, BaseURL: base, Log: log}).Run(dctx) }()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func redactDSN(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		if j := strings.LastIndex(dsn, "@"); j > i {
			if k := strings.Index(dsn[i+3:j], ":"); k >= 0 {
				return dsn[:i+3+k] + ":***" + dsn[j:]
			}
		}
	}
	return dsn
}
