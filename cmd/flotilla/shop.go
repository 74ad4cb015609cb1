package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/deploy/local"
	"github.com/flotilla-ci/flotilla/shop/audit"
)

func (a *app) shopCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "shop",
		Short: "Tools for the reference shop as it runs",
	}
	cmd.AddCommand(a.shopAuditCmd())
	return cmd
}

func (a *app) shopAuditCmd() *cobra.Command {
	var data, output string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Check the running shop's invariants: orders final, stock and money balanced, one shipment and one mail per order",
		Long: `audit reads the shop's databases in the data directory of 'flotilla up' (the
local target's data/<service>.db) and checks that every order is final
(CONFIRMED or CANCELLED) or younger than --timeout, that stock balances
(available + reserved + committed = received, committed = units sold), that
captured minus refunded equals the confirmed orders' total, and that every
confirmed order has one shipment and one confirmation mail. It exits 1 and
names each order or SKU when an invariant is broken.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFlag(cmd, output, "text", "json"); err != nil {
				return err
			}
			if data == "" {
				data = a.dataDir()
			}
			rep, err := auditShop(cmd.Context(), data, timeout)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(a.stdout, rep)
				for _, p := range rep.Problems {
					fmt.Fprintln(a.stdout, "  "+p)
				}
				for _, s := range rep.Skipped {
					fmt.Fprintln(a.stdout, "  not checked: "+s)
				}
			}
			if !rep.OK() {
				return failed()
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "the data directory of 'flotilla up' (default: FLOTILLA_DATA, or .flotilla beside the manifest)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long an order may take to become final")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

// dataDir is the data directory of 'flotilla up': FLOTILLA_DATA, else
// .flotilla beside the manifest.
func (a *app) dataDir() string {
	if d := os.Getenv("FLOTILLA_DATA"); d != "" {
		return d
	}
	m, _, err := a.loadManifest()
	if err != nil || m == nil {
		return ".flotilla"
	}
	return filepath.Join(m.Root, ".flotilla")
}

// auditShop audits the shop whose databases are in data.
func auditShop(ctx context.Context, data string, timeout time.Duration) (*audit.Report, error) {
	rep, err := audit.RunDir(ctx, filepath.Join(local.DirIn(data), "data"), audit.Config{Timeout: timeout})
	if errors.Is(err, audit.ErrNoDatabase) {
		return nil, usageErr(fmt.Errorf("shop %w (is the shop deployed with 'flotilla up' on this data directory? --data names another)", err))
	}
	return rep, err
}
