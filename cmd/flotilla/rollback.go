package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/deploy"
)

func (a *app) rollbackCmd() *cobra.Command {
	var addr, to string
	cmd := &cobra.Command{
		Use:   "rollback SERVICE",
		Short: "Put a service back on an earlier version",
		Long: `rollback starts an earlier version of a service again (from its cached
artifact and the config it ran with), waits until it is ready, moves the
traffic to it and drains and stops the current one. Without --to it goes back
to the version that served before the current one.`,
		Example: `  flotilla rollback order-service
  flotilla rollback order-service --to 3f2a1b9c0d1e`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r := newRenderer(a.stdout, isTerminal(a.stdout))
			rep, err := a.apiClient(addr).Rollback(cmd.Context(), deploy.RollbackRequest{Service: args[0], To: to, Who: who()}, r.event)
			if rep != nil {
				r.report(rep)
			}
			if err != nil {
				if errors.Is(err, deploy.ErrReleaseFailed) {
					return failed()
				}
				return apiErr(err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the version to go back to (default: the one before the current)")
	apiFlag(cmd, &addr)
	return cmd
}
