package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/canary/prometheus"
	"github.com/flotilla-ci/flotilla/controlplane"
)

func (a *app) canaryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "canary",
		Short: "Show the canaries' analyses; promote or abort one by hand",
		Long: `canary shows where each service's canary stands (its step and weight, the
failed analyses against the threshold, the last decisions with their figures),
and overrides the analysis by hand, as 'kubectl argo rollouts promote/abort' do.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(a.canaryStatusCmd(), a.canaryOverrideCmd(true), a.canaryOverrideCmd(false))
	return cmd
}

// canaryErr makes "no canary of that service" a no (exit 1).
func canaryErr(err error) error {
	var ae *controlplane.APIError
	if errors.As(err, &ae) && (ae.Status == http.StatusNotFound || ae.Status == http.StatusUnprocessableEntity) {
		return problem(err)
	}
	return apiErr(err)
}

func (a *app) canaryStatusCmd() *cobra.Command {
	var addr, output string
	var last int
	cmd := &cobra.Command{
		Use:   "status [SERVICE]",
		Short: "Show where each canary stands, and its last decisions",
		Long: `status shows every service's canary (the one in progress or baking, else the
last one): its phase, weight and step, the failed analyses against the
threshold, and the last decisions with what the judges measured. With SERVICE,
that service's alone (exit status 1 when it has had no canary).`,
		Example: `  flotilla canary status
  flotilla canary status payment-service -o json`,
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
			sts, err := a.apiClient(addr).Canaries(ctx, service)
			if err != nil {
				return canaryErr(err)
			}
			if output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				if service != "" && len(sts) == 1 {
					return enc.Encode(sts[0])
				}
				return enc.Encode(sts)
			}
			if len(sts) == 0 {
				fmt.Fprintln(a.stdout, "no canary yet")
				return nil
			}
			for i, st := range sts {
				if i > 0 {
					fmt.Fprintln(a.stdout)
				}
				writeCanary(a, st, last)
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&last, "decisions", "n", 5, "show this many of the last decisions (text output)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	apiFlag(cmd, &addr)
	return cmd
}

func writeCanary(a *app, st canary.State, last int) {
	fmt.Fprintln(a.stdout, st.Summary())
	ds := st.Decisions
	if last >= 0 && len(ds) > last {
		ds = ds[len(ds)-last:]
	}
	for _, d := range ds {
		fmt.Fprintf(a.stdout, "  %s %s\n", d.Time.Local().Format("15:04:05"), controlplane.DecisionLine(d))
	}
}

func (a *app) canaryOverrideCmd(promote bool) *cobra.Command {
	var addr, reason string
	use, short, long, done := "abort SERVICE", "Roll a service's canary back now",
		`abort rolls the service's canary (or its bake) back now: the old weights are put
back, the new version is removed, and the history records who aborted it and
why. Exit status 1 when the service has no canary in progress.`, "aborted"
	if promote {
		use, short, long, done = "promote SERVICE", "Promote a service's canary now",
			`promote gives the service's canary all the traffic now, skipping its remaining
steps and confirm-promotion webhooks (a held canary goes on), or ends its bake
as passed. Exit status 1 when the service has no canary in progress.`, "promoted"
	}
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Long:    long,
		Example: "  flotilla canary " + strings.Fields(use)[0] + ` payment-service --reason "checked by hand"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := ctxTimeout(cmd.Context())
			defer cancel()
			c := a.apiClient(addr)
			req := controlplane.CanaryOverride{Who: who(), Reason: reason}
			var (
				st  canary.State
				err error
			)
			if promote {
				st, err = c.PromoteCanary(ctx, args[0], req)
			} else {
				st, err = c.AbortCanary(ctx, args[0], req)
			}
			if err != nil {
				return canaryErr(err)
			}
			fmt.Fprintf(a.stdout, "%s@%s: %s (the analysis acts on it at once; 'flotilla canary status %s' shows it)\n", st.Service, st.Version, done, st.Service)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the history")
	apiFlag(cmd, &addr)
	return cmd
}

// The canary analysis's metrics providers (`up --metrics-provider`).
const (
	providerMesh       = "mesh"
	providerPrometheus = "prometheus"
)

// metricsProvider is the one place that picks where the canaries read
// their figures: the data plane's own measurements (mesh), or a
// Prometheus at promURL that scrapes the control plane's /metrics
// (prometheus, as Flagger's metricsServer), which also answers the
// policies' custom PromQL judges. An unknown name, or a URL without the
// provider that reads it, is an error.
func metricsProvider(name, promURL string) (controlplane.MetricsProvider, error) {
	switch name {
	case providerMesh:
		if promURL != "" {
			return controlplane.MetricsProvider{}, fmt.Errorf("--prometheus-url %s: the mesh provider reads the data plane's own figures; add --metrics-provider prometheus to read them from Prometheus", promURL)
		}
		return controlplane.MetricsProvider{}, nil
	case providerPrometheus:
		if promURL == "" {
			return controlplane.MetricsProvider{}, errors.New("--metrics-provider prometheus needs --prometheus-url: the base URL of a Prometheus scraping the control plane's /metrics (e.g. http://127.0.0.1:9090)")
		}
		p, err := prometheus.New(prometheus.Config{URL: promURL, Flavor: prometheus.FlavorMesh})
		if err != nil {
			return controlplane.MetricsProvider{}, fmt.Errorf("--prometheus-url: %w", err)
		}
		return controlplane.MetricsProvider{Name: "prometheus at " + promURL, Metrics: p, Querier: p.Instant()}, nil
	default:
		return controlplane.MetricsProvider{}, fmt.Errorf("--metrics-provider %q: want %s (the data plane's own figures) or %s (with --prometheus-url)", name, providerMesh, providerPrometheus)
	}
}
