package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/controlplane"
)

func (a *app) certsCmd() *cobra.Command {
	var addr, output string
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "List the workloads' identities (SPIFFE IDs), their certificates' serials and expiries",
		Long: `certs asks the control plane ('flotilla up'), which is the platform's certificate
authority, for every workload identity it issued: each service, the mesh, the
gateway, the readiness probes and the smoke checks, with the serial number and
expiry of its current X.509-SVID (renewed when half its life has passed), and
the root. 'flotilla certs rotate' gives every identity a new certificate now;
--ca makes a new root first (the old one stays trusted).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFlag(cmd, output, "text", "json"); err != nil {
				return err
			}
			ctx, cancel := ctxTimeout(cmd.Context())
			defer cancel()
			resp, err := a.apiClient(addr).Identities(ctx)
			if err != nil {
				return apiErr(err)
			}
			return printIdentities(a.stdout, resp, output)
		},
	}
	apiFlag(cmd, &addr)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	var newRoot bool
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Give every identity a new certificate now (--ca: from a new root)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			resp, err := a.apiClient(addr).RotateIdentities(ctx, newRoot)
			if err != nil {
				return apiErr(err)
			}
			fmt.Fprintf(a.stdout, "rotated %d certificate(s)\n", len(resp.Rotated))
			return printIdentities(a.stdout, resp, "text")
		},
	}
	apiFlag(rotate, &addr)
	rotate.Flags().BoolVar(&newRoot, "ca", false, "make a new root first; the old one stays trusted until the next --ca rotation")
	cmd.AddCommand(rotate)
	return cmd
}

func printIdentities(w io.Writer, resp controlplane.IdentitiesResponse, output string) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(resp)
	}
	fmt.Fprintf(w, "trust domain %s, mtls %s, root serial %s, expires %s\n\n", resp.TrustDomain, resp.Mode, resp.Root.Serial, resp.Root.NotAfter.Format("2006-01-02"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTITY\tSERIAL\tEXPIRES")
	for _, e := range resp.Identities {
		fmt.Fprintf(tw, "%s\t%s\t%s (in %s)\n", e.ID, e.Serial, e.NotAfter.Format(time.RFC3339), time.Until(e.NotAfter).Round(time.Minute))
	}
	return tw.Flush()
}
