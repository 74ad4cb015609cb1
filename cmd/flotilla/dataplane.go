package main

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/dataplane"
	"github.com/flotilla-ci/flotilla/identity"
)

// dataplaneCmd runs the data plane (the mesh and the edge gateway) as a
// process of its own. It is hidden: `flotilla up` starts it.
func (a *app) dataplaneCmd() *cobra.Command {
	var (
		state, ident, mtls, ns string
		drain                  time.Duration
	)
	cmd := &cobra.Command{
		Use:    "dataplane --state DIR",
		Short:  "Run the data plane: the mesh and the edge gateway (started by 'flotilla up')",
		Hidden: true,
		Args:   cobra.NoArgs,
		Long: `dataplane serves the mesh's service addresses and the edge gateway with the
configuration saved in --state (the last snapshot it acknowledged), at once,
then takes new snapshots from the control plane on the admin socket
DIR/admin.sock. SIGTERM stops it after draining in-flight requests (at most
--drain-timeout). Its log goes to stderr. Started with listening sockets to
take over (FLOTILLA_FDS=n: file descriptors 3 to 3+n-1, from the data plane it
replaces), it serves them instead of listening anew.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if state == "" {
				return usageErr(fmt.Errorf("dataplane: --state DIR is required (see 'flotilla dataplane --help')"))
			}
			if drain <= 0 {
				return usageErr(fmt.Errorf("dataplane --drain-timeout %v: want a positive duration", drain))
			}
			mode, err := identity.ParseMode(mtls)
			if err != nil {
				return usageErr(fmt.Errorf("dataplane --mtls: %w", err))
			}
			// The mesh forwards every request of the shop in this
			// process: collect less often than the default (mesh/doc.go).
			debug.SetGCPercent(400)
			info, _ := debug.ReadBuildInfo()
			// The listening sockets its supervisor kept from the data
			// plane this one replaces.
			inherited, err := dataplane.InheritedListeners()
			if err != nil {
				return err
			}
			m := &dataplane.Main{Config: dataplane.Config{
				State: state, DrainTimeout: drain, Version: versionLine(version, info), Inherited: inherited,
				Identity: ident, MTLS: mode, Namespace: ns, OTEL: dataplane.OTELEnv(),
				Logger: slog.New(slog.NewTextHandler(a.stderr, nil)),
			}}
			return m.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "the state directory: the admin socket and the last acknowledged snapshot")
	cmd.Flags().DurationVar(&drain, "drain-timeout", 30*time.Second, "how long in-flight requests may take to finish at shutdown and on removal")
	cmd.Flags().StringVar(&ident, "identity", "", "the workloads' identity directory: the mesh serves mutual TLS as flotilla-system/mesh (empty: plaintext)")
	cmd.Flags().StringVar(&mtls, "mtls", string(identity.Strict), "with --identity: strict, or permissive (plaintext also accepted, and counted)")
	cmd.Flags().StringVar(&ns, "namespace", identity.DefaultNamespace, "the services' namespace in their SPIFFE IDs")
	return cmd
}
