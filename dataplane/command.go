package dataplane

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/flotilla-ci/flotilla/identity"
	"github.com/flotilla-ci/flotilla/internal/supervise"
	"github.com/flotilla-ci/flotilla/tracing"
)

// InheritedListeners are the listening sockets this process was started
// with by its supervisor (supervise.FilesEnv says how many): for a main.
func InheritedListeners() ([]net.Listener, error) {
	v := os.Getenv(supervise.FilesEnv)
	if v == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("dataplane: %s=%q: want a count of inherited descriptors", supervise.FilesEnv, v)
	}
	return FileListeners(n)
}

// Command runs the data plane from command-line arguments, as `flotilla
// dataplane` takes them (--state DIR, --drain-timeout D), logging to
// stderr: for a test binary that runs itself as the data plane (its
// TestMain calls Command when its first argument is "dataplane").
func Command(ctx context.Context, args []string, stderr io.Writer, version string) error {
	fs := flag.NewFlagSet("dataplane", flag.ContinueOnError)
	fs.SetOutput(stderr)
	state := fs.String("state", "", "the state directory")
	drain := fs.Duration("drain-timeout", 30*time.Second, "how long in-flight requests may take to finish")
	ident := fs.String("identity", "", "the workloads' identity directory (mutual TLS; empty: plaintext)")
	mtls := fs.String("mtls", string(identity.Strict), "strict or permissive (with --identity)")
	ns := fs.String("namespace", identity.DefaultNamespace, "the services' namespace in their SPIFFE IDs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *state == "" || fs.NArg() > 0 {
		return fmt.Errorf("dataplane: want --state DIR [--drain-timeout D], not %q", args)
	}
	inherited, err := InheritedListeners()
	if err != nil {
		return err
	}
	mode, err := identity.ParseMode(*mtls)
	if err != nil {
		return fmt.Errorf("dataplane: --mtls: %w", err)
	}
	m := &Main{Config: Config{State: *state, DrainTimeout: *drain, Version: version, Inherited: inherited,
		Identity: *ident, MTLS: mode, Namespace: *ns, OTEL: OTELEnv(),
		Logger: slog.New(tracing.LogHandler(slog.NewTextHandler(stderr, nil)))}}
	return m.Run(ctx)
}
