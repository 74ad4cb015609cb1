package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) historyCmd() *cobra.Command {
	var addr, output string
	var limit int
	cmd := &cobra.Command{
		Use:   "history [SERVICE]",
		Short: "Show the deployment history, newest first",
		Long: `history lists what each release did to each service, newest first: the release,
when, the service, the version and the one it replaced, deploy or rollback, the
result (succeeded, failed, skipped, rolled-back), who, how long it took and why
it failed.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outputFlag(cmd, output, "text", "json"); err != nil {
				return err
			}
			service := ""
			if len(args) == 1 {
				service = args[0]
			}
			ctx, cancel := ctxTimeout(cmd.Context())
			defer cancel()
			recs, err := a.apiClient(addr).History(ctx, service, limit)
			if err != nil {
				return apiErr(err)
			}
			if output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(recs)
			}
			if len(recs) == 0 {
				fmt.Fprintln(a.stdout, "no deployments recorded")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "RELEASE\tWHEN\tSERVICE\tVERSION\tPREVIOUS\tACTION\tRESULT\tWHO\tDURATION\tREASON")
			for _, r := range recs {
				reason := r.Reason
				if i := strings.IndexByte(reason, '\n'); i >= 0 {
					reason = reason[:i] + " …"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%v\t%s\n", r.Release, r.Started.Local().Format("2006-01-02 15:04:05"),
					r.Service, short(r.Version), dash(short(r.Previous)), r.Action, r.Result, r.Who, r.Duration.Round(time.Millisecond), reason)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVarP(&limit, "limit", "n", 50, "at most this many records")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	apiFlag(cmd, &addr)
	return cmd
}
