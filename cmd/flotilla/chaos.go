package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/chaos"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/shop/audit"
)

func (a *app) chaosCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Run chaos experiments against the running platform; list and stop the faults in force",
	}
	cmd.AddCommand(a.chaosRunCmd(), a.chaosListCmd(), a.chaosStopCmd())
	return cmd
}

func (a *app) chaosRunCmd() *cobra.Command {
	var addr, gateway, output, data string
	var dryRun bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "run EXPERIMENT.yaml",
		Short: "Run an experiment: steady state, load, faults, the hypothesis again, and a report with each fault's MTTR",
		Long: `run reads the experiment (see chaos/*.yaml), checks it against the graph, and
runs it against the platform of 'flotilla up': the load and the probes start,
the hypothesis must hold before any fault, the faults are injected on their
schedule by the control plane under a lease this command renews, then each
fault's recovery is measured (MTTR: from its end, or a kill's injection, until
the hypothesis held again) and the shop is audited. Ctrl-C, --timeout or a
crash of this command removes every fault. Exit status 1 when the hypothesis
did not hold again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outputFlag(cmd, output, "text", "json"); err != nil {
				return err
			}
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return usageErr(err)
			}
			e, err := chaos.Parse(args[0], raw)
			if err != nil {
				return usageErr(err)
			}
			if m, _, err := a.loadManifest(); err == nil {
				deps := map[string][]string{}
				for _, s := range m.Services {
					deps[s.Name] = append([]string{}, s.DependsOn...)
				}
				if err := e.Check(deps); err != nil {
					return usageErr(err)
				}
			}
			if dryRun {
				fmt.Fprintf(a.stdout, "experiment %q (at most %v), nothing injected (--dry-run):\n", e.Name, e.Duration.D())
				fmt.Fprintf(a.stdout, "  steady state: probes %v every %v; over %v: errors <= %v%%, p99 <= %v\n", e.Hypothesis.Probes, e.Hypothesis.Interval.D(), e.Hypothesis.Window.D(), e.Hypothesis.MaxErrorRate, e.Hypothesis.MaxP99.D())
				if e.Load != nil {
					fmt.Fprintf(a.stdout, "  load: %v requests/s, flows %v\n", e.Load.Rate, e.Load.Flows)
				}
				for _, f := range e.Faults {
					fmt.Fprintf(a.stdout, "  at +%v: %s %s", f.Start.D(), f.Kind, describeFault(f))
					if f.Duration > 0 {
						fmt.Fprintf(a.stdout, " for %v", f.Duration.D())
					}
					fmt.Fprintln(a.stdout)
				}
				fmt.Fprintf(a.stdout, "  then: the hypothesis again within %v", e.Hypothesis.RecoverWithin.D())
				if e.Hypothesis.OrdersFinalWithin > 0 {
					fmt.Fprintf(a.stdout, ", and the shop's audit (orders final within %v)", e.Hypothesis.OrdersFinalWithin.D())
				}
				fmt.Fprintln(a.stdout)
				return nil
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			client := a.apiClient(addr)
			if gateway == "" || data == "" {
				pctx, cancel := ctxTimeout(ctx)
				pi, err := client.Platform(pctx)
				cancel()
				if err != nil {
					return apiErr(err)
				}
				if gateway == "" {
					gateway = pi.Gateway
				}
				if data == "" {
					data = pi.Data
				}
			}
			r := &chaos.Runner{API: client, Gateway: gateway, Progress: a.stderr,
				Audit: func(ctx context.Context, timeout time.Duration) (*audit.Report, error) {
					return auditShop(ctx, data, timeout)
				}}
			rep, err := r.Run(ctx, e)
			if err != nil {
				if errors.Is(err, deploy.ErrBusy) {
					return &exitError{code: exitNoAnswer, err: err}
				}
				if ctx.Err() != nil {
					fmt.Fprintln(a.stderr, "chaos: stopped; every fault of the experiment was removed")
					if errors.Is(ctx.Err(), context.DeadlineExceeded) {
						return problem(fmt.Errorf("the experiment outlasted --timeout %v", timeout))
					}
					return ctx.Err()
				}
				return apiErr(err)
			}
			if output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				rep.Write(a.stdout)
			}
			if !rep.Held || !rep.SteadyBefore {
				return failed()
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what the experiment would do; inject nothing")
	cmd.Flags().StringVar(&gateway, "gateway", "", "the shop's gateway (default: the platform's)")
	cmd.Flags().StringVar(&data, "data", "", "the data directory whose databases the audit reads (default: the platform's)")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "stop the experiment (removing its faults) after this long; 0: none")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	apiFlag(cmd, &addr)
	return cmd
}

func describeFault(f chaos.Fault) string {
	switch f.Kind {
	case "kill":
		if f.All {
			return "every instance of " + f.Service
		}
		return "one instance of " + f.Service
	case "partition":
		return f.Source + " / " + f.Destination
	case "delay", "abort":
		src := f.Source
		if src == "" {
			src = "*"
		}
		s := src + " -> " + f.Destination
		if f.Kind == "delay" {
			s += fmt.Sprintf(" +%v", f.Delay.D())
			if f.Jitter > 0 {
				s += fmt.Sprintf(" (jitter %v)", f.Jitter.D())
			}
		} else if f.Status != 0 {
			s += fmt.Sprintf(" status %d", f.Status)
		}
		if f.Percent > 0 && f.Percent < 100 {
			s += fmt.Sprintf(" on %v%% of calls", f.Percent)
		}
		return s
	case "bus-slow":
		return fmt.Sprintf("paused %v of every second", f.Delay.D())
	}
	return ""
}

func (a *app) chaosListCmd() *cobra.Command {
	var addr, output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Show the experiment that runs and the faults in force",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFlag(cmd, output, "text", "json"); err != nil {
				return err
			}
			ctx, cancel := ctxTimeout(cmd.Context())
			defer cancel()
			l, err := a.apiClient(addr).Faults(ctx)
			if err != nil {
				return apiErr(err)
			}
			if output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(l)
			}
			if l.Experiment == nil {
				fmt.Fprintln(a.stdout, "no experiment runs")
			} else {
				fmt.Fprintf(a.stdout, "experiment %q (%s), started %s, lease until %s\n", l.Experiment.Name, l.Experiment.ID, l.Experiment.Started.Local().Format("15:04:05"), l.Experiment.LeaseUntil.Local().Format("15:04:05"))
			}
			if len(l.Faults) == 0 {
				fmt.Fprintln(a.stdout, "no fault in force")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tFAULT\tSTARTED\tENDS")
			for _, f := range l.Faults {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.ID, f.Kind, f.Name, f.Started.Local().Format("15:04:05"), f.Ends.Local().Format("15:04:05"))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	apiFlag(cmd, &addr)
	return cmd
}

func (a *app) chaosStopCmd() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "stop",
		Short: "Remove every fault in force and end the experiment",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := ctxTimeout(cmd.Context())
			defer cancel()
			removed, err := a.apiClient(addr).StopFaults(ctx)
			if err != nil {
				return apiErr(err)
			}
			fmt.Fprintf(a.stdout, "removed %d fault(s)\n", len(removed))
			for _, f := range removed {
				fmt.Fprintf(a.stdout, "  %s %s\n", f.ID, f.Name)
			}
			return nil
		},
	}
	apiFlag(cmd, &addr)
	return cmd
}
