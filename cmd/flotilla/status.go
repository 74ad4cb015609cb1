package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/deploy"
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
			client := a.apiClient(addr)
			st, err := client.Status(ctx)
			if err != nil {
				return apiErr(err)
			}
			// The platform's own processes, when the control plane is a
			// platform's and it is up (not while it is starting).
			if pi, err := client.Platform(ctx); err == nil {
				st.Platform = pi.Processes
			}
			// Each canary's phase, for the CANARY column (a control
			// plane without canary analysis has none).
			canaries := map[string]canary.State{}
			if cs, err := client.Canaries(ctx, ""); err == nil {
				for _, c := range cs {
					if !c.Phase.Final() {
						canaries[c.Service] = c
					}
				}
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
			fmt.Fprintln(tw, "SERVICE\tSTABLE\tCANARY\tWEIGHTS\tHEALTH\tINSTANCES\tRESTARTS\tSINCE")
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
				stable, cv := s.Stable, s.Canary
				if c, ok := canaries[s.Service]; ok {
					// The analysis knows which is the canary, even at an
					// even split (where the most traffic names neither).
					cv = []string{c.Version}
					if stable == c.Version && c.Baseline != "" && c.Phase != canary.PhaseBaking {
						stable = c.Baseline
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", s.Service, dash(short(stable)), dash(canaryColumn(cv, canaries[s.Service])),
					dash(strings.Join(ws, " ")), s.Health, len(s.Instances), restartsColumn(s.Instances), since)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(st.Platform) > 0 {
				fmt.Fprintln(a.stdout)
				writePlatform(a.stdout, st.Platform, time.Now())
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	apiFlag(cmd, &addr)
	return cmd
}

// canaryColumn names a service's canary versions, the one under analysis
// with its phase and where it stands ("3f2a1b9c progressing 20% (1/3)",
// "3f2a1b9c baking"); a promoted version being baked is no longer a
// canary of the status, but its bake is named.
func canaryColumn(versions []string, st canary.State) string {
	var out []string
	seen := false
	for _, v := range versions {
		s := short(v)
		if v == st.Version {
			s += " " + canaryPhase(st)
			seen = true
		}
		out = append(out, s)
	}
	if !seen && st.Version != "" {
		out = append(out, short(st.Version)+" "+canaryPhase(st))
	}
	return strings.Join(out, ", ")
}

func canaryPhase(st canary.State) string {
	switch {
	case st.Phase == canary.PhaseBaking:
		return "baking"
	case len(st.Steps) > 0 && st.Step > 0:
		return fmt.Sprintf("%s %d%% (%d/%d)", st.Phase, st.Weight, st.Step, len(st.Steps))
	default:
		return fmt.Sprintf("%s %d%%", st.Phase, st.Weight)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writePlatform prints the platform's own processes: which runs, since
// when, how often it was restarted, whether this control plane adopted it,
// and the data plane's acknowledged configuration.
func writePlatform(w io.Writer, ps []controlplane.PlatformProcess, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PLATFORM\tPHASE\tPID\tVERSION\tUP\tRESTARTS\tNOTE")
	for _, p := range ps {
		up := "-"
		if !p.Started.IsZero() {
			up = now.Sub(p.Started).Round(time.Second).String()
		}
		var notes []string
		if p.Adopted {
			notes = append(notes, "adopted")
		}
		if p.HandedOver {
			notes = append(notes, "took over from "+p.HandedOverFrom)
		}
		if p.ConfigVersion > 0 {
			notes = append(notes, fmt.Sprintf("config %d acknowledged", p.ConfigVersion))
		}
		if r := p.ConfigRefused; r != nil {
			notes = append(notes, fmt.Sprintf("config %d REFUSED %s ago (serves %d): %s", r.Version, now.Sub(r.At).Round(time.Second), r.Acked, r.Reason))
		}
		if p.Sockets > 0 {
			notes = append(notes, fmt.Sprintf("%d listening sockets kept", p.Sockets))
		}
		if p.LastExit != "" {
			notes = append(notes, "last exit: "+p.LastExit)
		}
		version, _, _ := strings.Cut(p.Version, " go1.") // the toolchain is the same for all
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%s\n", p.Name, p.Phase, p.PID, dash(version), up, p.Restarts, dash(strings.Join(notes, ", ")))
	}
	_ = tw.Flush()
}

// restartsColumn is how often a service's instances were restarted after
// exiting, and whether one keeps crashing ("4, crash loop").
func restartsColumn(insts []deploy.Instance) string {
	n, looping := 0, false
	for _, in := range insts {
		n += in.Restarts
		looping = looping || in.State == deploy.StateCrashLoop
	}
	if looping {
		return fmt.Sprintf("%d, crash loop", n)
	}
	return fmt.Sprint(n)
}
