package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/registry"
	"github.com/flotilla-ci/flotilla/registry/sqlstore"
	"github.com/flotilla-ci/flotilla/schema"
)

func (a *app) registryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Run the schema registry (the Confluent Schema Registry REST API)",
	}
	cmd.AddCommand(a.registryServeCmd())
	return cmd
}

// registryServe is `flotilla registry serve`, runnable in tests on port 0.
type registryServe struct {
	addr, db, user, level string
	maxBody               int64
	ready                 func(addr string) // tests learn the bound address here
	stdout, stderr        io.Writer
}

func (a *app) registryServeCmd() *cobra.Command {
	rs := &registryServe{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the schema registry",
		Long: `Serve a schema registry that speaks the Confluent Schema Registry REST API,
so Confluent serializers, franz-go's sr client and flotilla's own serde work
against it. Avro schemas; compatibility by the Avro specification under the
subject's level. State lives in SQLite by default, or in PostgreSQL with
--db postgres://...

With --user NAME:PASSWORD (or FLOTILLA_REGISTRY_USER) requests that change
state need those basic-auth credentials; reads stay open.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rs.stdout, rs.stderr = a.stdout, a.stderr
			return rs.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&rs.addr, "addr", "127.0.0.1:7081", "address to listen on")
	f.StringVar(&rs.db, "db", ".flotilla/registry.db", "database: a SQLite file, or a postgres:// DSN")
	f.StringVar(&rs.user, "user", os.Getenv("FLOTILLA_REGISTRY_USER"), "basic-auth credentials for writes, NAME:PASSWORD (default $FLOTILLA_REGISTRY_USER)")
	f.StringVar(&rs.level, "default-level", string(schema.Backward), "compatibility level of subjects with none set, when no global level is set")
	f.Int64Var(&rs.maxBody, "max-body-bytes", registry.DefaultConfig().MaxBodyBytes, "largest request body accepted")
	return cmd
}

func (rs *registryServe) config() (registry.Config, error) {
	cfg := registry.DefaultConfig()
	cfg.MaxBodyBytes = rs.maxBody
	level, err := schema.ParseMode(rs.level)
	if err != nil {
		return cfg, usageErr(fmt.Errorf("registry serve --default-level: %w", err))
	}
	cfg.DefaultLevel = level
	if rs.user != "" {
		name, pass, ok := strings.Cut(rs.user, ":")
		if !ok || name == "" || pass == "" {
			return cfg, usageErr(errors.New("registry serve --user: want NAME:PASSWORD"))
		}
		cfg.Username, cfg.Password = name, pass
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageErr(fmt.Errorf("registry serve: %w", err))
	}
	return cfg, nil
}

func (rs *registryServe) run(ctx context.Context) error {
	cfg, err := rs.config()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(rs.stderr, nil))
	db, err := sqldb.Open(ctx, rs.db)
	if err != nil {
		return usageErr(fmt.Errorf("registry serve --db: %w", err))
	}
	defer func() { _ = db.Close() }()
	store, err := sqlstore.New(ctx, db)
	if err != nil {
		return fmt.Errorf("registry serve: %w", err)
	}
	srv, err := registry.New(store, cfg, log)
	if err != nil {
		return usageErr(err)
	}
	ln, err := net.Listen("tcp", rs.addr)
	if err != nil {
		return usageErr(fmt.Errorf("registry serve --addr: %w", err))
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(rs.stdout, "flotilla schema registry listening on http://%s (database %s)\n", ln.Addr(), redactDSN(rs.db))
	if cfg.Username == "" {
		log.WarnContext(ctx, "no --user: the registry accepts writes from anyone")
	}
	if rs.ready != nil {
		rs.ready(ln.Addr().String())
	}
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
