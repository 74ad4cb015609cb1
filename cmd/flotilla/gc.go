package main

import (
	"fmt"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
)

func (a *app) gcCmd() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Prune the artifacts and logs no rollback needs, now",
		Long: `gc asks the running control plane to prune its artifact cache and the logs of
old versions now, and prints what it freed. Per service it keeps the
versions a rollback may need: the serving, canary and previous versions,
and the newest 'flotilla up --keep-versions' others (5) that succeeded in
the history; an artifact a kept version shares stays. Every release prunes
the same way when it ends, so gc is for freeing the space at once. It is
refused while a release runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := ctxTimeout(cmd.Context())
			defer cancel()
			p, err := a.apiClient(addr).GC(ctx)
			if err != nil {
				return apiErr(err)
			}
			if len(p.Artifacts)+len(p.Logs) == 0 {
				fmt.Fprintf(a.stdout, "nothing to prune: %d version(s) kept for rollback\n", p.Kept)
				return nil
			}
			list := func(what string, items []string) {
				if len(items) > 0 {
					fmt.Fprintf(a.stdout, "  %s (%d): %s\n", what, len(items), strings.Join(items, ", "))
				}
			}
			fmt.Fprintf(a.stdout, "freed %s: %d artifact(s), the logs of %d version(s); %d version(s) kept for rollback\n",
				humanize.IBytes(uint64(max(p.Bytes, 0))), len(p.Artifacts), len(p.Logs), p.Kept)
			list("artifacts", p.Artifacts)
			list("logs", p.Logs)
			return nil
		},
	}
	apiFlag(cmd, &addr)
	return cmd
}
