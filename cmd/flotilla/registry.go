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
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
	"github.com/flotilla-ci/flotilla/registry"
	"github.com/flotilla-ci/flotilla/registry/migrate"
	"github.com/flotilla-ci/flotilla/registry/sqlstore"
	"github.com/flotilla-ci/flotilla/schema"
)

func (a *app) registryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Run the schema registry (the Confluent Schema Registry REST API)",
	}
	cmd.AddCommand(a.registryServeCmd(), a.registryImportCmd())
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

func (a *app) registryImportCmd() *cobra.Command {
	var from, fromUser, to, toUser, prefix string
	cmd := &cobra.Command{
		Use:   "import --from URL",
		Short: "Copy subjects from another schema registry, keeping ids and versions",
		Long: `Import copies every live version of every subject (or of those with
--subject-prefix) from a Confluent-compatible registry into flotilla's, with
the same schema ids and version numbers, so events already written (their
wire header carries the id) still decode; compatibility levels come along.
The target is put in IMPORT mode for the copy and back to READWRITE after.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return usageErr(errors.New("registry import: --from URL and --to URL (or FLOTILLA_REGISTRY_URL) are required"))
			}
			src, err := srClient(from, fromUser, "--from-user")
			if err != nil {
				return err
			}
			dst, err := srClient(to, toUser, "--user")
			if err != nil {
				return err
			}
			rep, err := migrate.Copy(cmd.Context(), src, dst, migrate.Options{SubjectPrefix: prefix})
			if err != nil {
				fmt.Fprintf(a.stdout, "imported %d versions of %d schemas before stopping\n", rep.Versions, rep.Schemas)
				return remoteErr(err)
			}
			fmt.Fprintf(a.stdout, "imported %d subjects: %d versions of %d schemas, same ids; %d compatibility levels\n",
				rep.Subjects, rep.Versions, rep.Schemas, rep.Levels)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "the registry to copy from")
	f.StringVar(&fromUser, "from-user", "", "basic auth for --from, NAME:PASSWORD")
	f.StringVar(&to, "to", os.Getenv("FLOTILLA_REGISTRY_URL"), "the registry to copy into (default $FLOTILLA_REGISTRY_URL)")
	f.StringVar(&toUser, "user", os.Getenv("FLOTILLA_REGISTRY_USER"), "basic auth for --to, NAME:PASSWORD (default $FLOTILLA_REGISTRY_USER)")
	f.StringVar(&prefix, "subject-prefix", "", "copy only subjects starting with this")
	return cmd
}

func srClient(url, user, flag string) (*sr.Client, error) {
	opts := []sr.ClientOpt{sr.URLs(url)}
	if user != "" {
		name, pass, ok := strings.Cut(user, ":")
		if !ok {
			return nil, usageErr(fmt.Errorf("%s: want NAME:PASSWORD", flag))
		}
		opts = append(opts, sr.BasicAuth(name, pass))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, usageErr(fmt.Errorf("registry %s: %w", url, err))
	}
	return cl, nil
}
