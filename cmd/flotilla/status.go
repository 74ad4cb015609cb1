package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/controlplane"
)

func (a *app) statusCmd() *cobra.Command {
	var addr, output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each service's stable and canary versions, weights, health and since when",
		Long: `status asks the control plane ('flotilla up') what runs: per service the stable
version (the one with the most traffic), canary versions, the traffic weights,
health (ready, degraded, down, not deployed), the instances, and since when the
stable version serves. A release in progress is named first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFlag(cmd, output, "text", "json"); err != nil {
				return err
			}
			ctx, cancel := ctxTimeout(cmd.Context())
			defer cancel()
			st, err := controlplane.NewClient(addr).Status(ctx)
			if err != nil {
				return apiErr(err)
			}
			if output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			if r := st.Running; r != nil {
				fmt.Fprintf(a.stdout, "release %d in progress (%s), started by %s at %s\n", r.Release, strings.Join(r.Services, ", "), r.Who, r.Started.Local().Format("15:04:05"))
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SERVICE\tSTABLE\tCANARY\tWEIGHTS\tHEALTH\tINSTANCES\tSINCE")
			for _, s := range st.Services {
				var ws []string
				for v, w := range s.Weights {
					ws = append(ws, fmt.Sprintf("%s=%d", short(v), w))
				}
				sort.Strings(ws)
				since := "-"
				if !s.Since.IsZero() {
					since = s.Since.Local().Format("2006-01-02 15:04:05")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", s.Service, dash(short(s.Stable)), dash(strings.Join(s.Canary, ",")),
					dash(strings.Join(ws, " ")), s.Health, len(s.Instances), since)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	apiFlag(cmd, &addr)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
