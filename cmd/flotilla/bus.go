package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/spf13/cobra"

	busnats "github.com/flotilla-ci/flotilla/bus/nats"
)

// busCmd is `flotilla bus`: the event bus as a process of its own, which
// `flotilla up` starts and supervises (hidden: users run `flotilla up`).
func (a *app) busCmd() *cobra.Command {
	var (
		dir, addr string
		maxStore  int64
	)
	cmd := &cobra.Command{
		Use:    "bus",
		Short:  "Run the platform's event bus (the embedded NATS JetStream server)",
		Hidden: true,
		Long: `bus runs the NATS JetStream server that 'flotilla up' starts for the platform,
as a process of its own so that it keeps running while the control plane
restarts or crashes. Every write is synced to disk before it is
acknowledged. SIGTERM (or Ctrl-C) shuts it down cleanly.`,
		Example: `  flotilla bus --dir .flotilla/nats --addr 127.0.0.1:7422`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := busConfig(dir, addr, maxStore)
			if err != nil {
				return usageErr(err)
			}
			m := &busnats.Main{Config: cfg, Logger: slog.New(slog.NewTextHandler(a.stderr, nil)),
				Ready: func(url string) { fmt.Fprintln(a.stdout, "bus ready:", url) }}
			if err := m.Run(cmd.Context()); err != nil {
				return &exitError{code: exitNoAnswer, err: fmt.Errorf("bus: %w", err)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "JetStream storage directory (required)")
	f.StringVar(&addr, "addr", "127.0.0.1:7422", "address to listen on for NATS clients (port 0 picks a free one)")
	f.Int64Var(&maxStore, "max-store", 0, "cap on JetStream file storage in bytes (0: the server's default)")
	return cmd
}

func busConfig(dir, addr string, maxStore int64) (busnats.ServerConfig, error) {
	var errs []error
	if dir == "" {
		errs = append(errs, errors.New("bus: --dir is required (the JetStream storage directory)"))
	}
	host, port, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n < 0 || n > 65535 {
		errs = append(errs, fmt.Errorf("bus --addr %q: want host:port with a port from 0 to 65535", addr))
	}
	if maxStore < 0 {
		errs = append(errs, fmt.Errorf("bus --max-store %d: must not be negative", maxStore))
	}
	return busnats.ServerConfig{Dir: dir, Host: host, Port: n, MaxStore: maxStore}, errors.Join(errs...)
}
