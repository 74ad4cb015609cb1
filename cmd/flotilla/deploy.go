package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/graph"
)

// apiFlag adds --api (the control plane's address) to a command.
func apiFlag(cmd *cobra.Command, addr *string) {
	def := os.Getenv("FLOTILLA_API")
	if def == "" {
		def = controlplane.DefaultAddr
	}
	cmd.Flags().StringVar(addr, "api", def, "the control plane's address, as 'flotilla up' prints it (FLOTILLA_API)")
}

// who names the person deploying, for the history.
func who() string {
	for _, k := range []string{"FLOTILLA_USER", "USER", "USERNAME"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username // CI runners and services often have no USER set
	}
	return "unknown"
}

// apiErr turns a control plane client error into the CLI's exit codes: a
// request it refused is 2, busy or unreachable is 3 (remoteErr); callers
// check for a failed release (1) first.
func apiErr(err error) error { return remoteErr(err) }

func (a *app) deployCmd() *cobra.Command {
	var (
		req             deploy.Request
		dryRun          bool
		onFailure, addr string
		output          string
		wait            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "deploy [SERVICE...]",
		Short: "Deploy services in dependency order, each verified before traffic moves",
		Long: `deploy works out the plan (the services and their waves: dependencies first) and,
unless --dry-run, has the control plane ('flotilla up') carry it out. Per wave,
services deploy in parallel up to --max-parallel; per service: the gates,
the build, the new version started beside the old one as the canary at 0%,
readiness, the manifest's smoke checks through the header lane, then the
traffic moved by the service's canary policy (flotilla.yaml's canary block,
else its defaults): in steps, each judged on the mesh's metrics, promoted
after the last or rolled back when too many fail; or all at once (strategy
direct). The canary's decisions are shown as they are taken ("analysis"
lines). A bake then watches the new version in the background, the old one
on standby: the release does not wait for it; it drains and stops the old
version once it passes, and rolls back on its own if it fails ('flotilla
canary status', 'flotilla history').

A service that fails is rolled back at once (the old version never stopped
serving); the rest of its wave finishes and what depends on it is skipped.
--on-failure=rollback-release rolls the whole release back, last wave first.

Choose the services by name, with --all, or with --changed --base REF (what
changed in the working tree since REF). A service whose version (a hash of
its files, the shared files and its deploy config) already serves is left
alone.

One release runs at a time. Another deploy is refused with the release
that runs, who started it and when; with --wait it waits for that release
(and any that start before its turn) up to the duration, then deploys.

Exit status: 0 deployed (or planned), 1 a service failed (the report says
which and what was rolled back), 2 bad input or a request the control plane
refused, 3 the control plane is unreachable or busy with another release.`,
		Example: `  flotilla deploy --all --dry-run
  flotilla deploy order-service cart-service
  flotilla deploy --changed --base origin/main --on-failure=rollback-release`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outputFlag(cmd, output, "text", "json"); err != nil {
				return err
			}
			req.Services = splitList(args)
			req.Who = who()
			of, err := deploy.ParseOnFailure(onFailure)
			if err != nil {
				return usageErr(err)
			}
			req.OnFailure = of
			if err := req.Validate(); err != nil {
				return usageErr(err)
			}
			g, err := a.loadValidGraph()
			if err != nil {
				return err
			}
			if err := checkEnvironment(g.Manifest(), req.Environment); err != nil {
				return usageErr(err)
			}
			if _, err := g.Waves(req.Services); err != nil {
				return usageErr(err)
			}
			ctx := cmd.Context()
			cl := a.apiClient(addr)
			if dryRun {
				plan, err := cl.Plan(ctx, req)
				if errors.Is(err, controlplane.ErrUnreachable) {
					fmt.Fprintf(a.stderr, "note: no control plane at %s: the plan cannot say what serves now\n", cl.BaseURL)
					plan, err = deploy.MakePlan(ctx, g, req, nil, nil)
					if err != nil {
						return usageErr(err)
					}
				} else if err != nil {
					return apiErr(err)
				}
				return writePlan(a.stdout, output, plan)
			}
			r := newRenderer(a.stdout, isTerminal(a.stdout))
			rep, err := deployWaiting(ctx, a.stderr, wait, func() (*deploy.Report, error) { return cl.Deploy(ctx, req, r.event) })
			if output == "json" && rep != nil {
				_ = json.NewEncoder(a.stdout).Encode(rep)
			} else if rep != nil {
				r.report(rep)
			}
			if err != nil {
				if errors.Is(err, deploy.ErrReleaseFailed) {
					return failed() // the report said why
				}
				return apiErr(err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&req.All, "all", false, "deploy every service")
	f.BoolVar(&req.Changed, "changed", false, "deploy the services changed since --base")
	f.StringVar(&req.Base, "base", "", "the git ref --changed measures from (a branch, tag or commit)")
	f.StringVar(&req.Environment, "env", "local", "the environment to deploy to")
	f.IntVar(&req.MaxParallel, "max-parallel", 0, "services of a wave deployed at once (default 4)")
	f.StringVar(&onFailure, "on-failure", string(deploy.SkipDependents), "skip-dependents, or rollback-release")
	f.BoolVar(&dryRun, "dry-run", false, "print the plan and stop")
	f.StringVarP(&output, "output", "o", "text", "text or json")
	f.DurationVar(&wait, "wait", 0, "when another deploy runs, wait for it up to this long (e.g. 10m) instead of refusing")
	apiFlag(cmd, &addr)
	return cmd
}

// deployWaiting runs try, and while the control plane refuses it because
// another release runs, tries again every second until wait has passed.
// It says once what it waits for.
func deployWaiting(ctx context.Context, stderr io.Writer, wait time.Duration, try func() (*deploy.Report, error)) (*deploy.Report, error) {
	deadline := time.Now().Add(wait)
	told := false
	for {
		rep, err := try()
		if wait <= 0 || !errors.Is(err, deploy.ErrBusy) {
			return rep, err
		}
		if !time.Now().Before(deadline) {
			return rep, fmt.Errorf("%w (waited %v: --wait)", err, wait)
		}
		if !told {
			fmt.Fprintf(stderr, "%v; waiting up to %v for it (--wait)\n", err, wait)
			told = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// checkEnvironment refuses an environment the manifest does not declare
// (local is always known).
func checkEnvironment(m *graph.Manifest, env string) error {
	if env == "" || env == "local" || m.Environment(env) != nil {
		return nil
	}
	names := []string{"local"}
	for _, e := range m.Environments {
		if e.Name != "local" {
			names = append(names, e.Name)
		}
	}
	return fmt.Errorf("unknown environment %q (known: %s)", env, strings.Join(names, ", "))
}

func writePlan(w io.Writer, format string, plan *deploy.Plan) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(plan)
	}
	n := len(plan.Services())
	fmt.Fprintf(w, "plan: %s (%d service(s) in %d wave(s))\n", plan.Why, n, len(plan.Waves))
	width, vwidth := 0, 12
	for _, wave := range plan.Waves {
		for _, it := range wave {
			width = max(width, len(it.Service))
			vwidth = max(vwidth, len(short(it.Version)), len(short(it.Current)))
		}
	}
	for i, wave := range plan.Waves {
		fmt.Fprintf(w, "wave %d\n", i+1)
		for _, it := range wave {
			cur := it.Current
			if cur == "" {
				cur = "-"
			}
			fmt.Fprintf(w, "  %-*s  %-*s  %-9s  now %-*s  %s\n", width, it.Service, vwidth, short(it.Version), it.Action, vwidth, short(cur), it.Spec.Build.Package)
		}
	}
	return nil
}

// renderer prints a release's progress: every step on a terminal, only
// each service's outcome otherwise.
type renderer struct {
	w       io.Writer
	verbose bool
	wave    int
}

func newRenderer(w io.Writer, terminal bool) *renderer { return &renderer{w: w, verbose: terminal} }

func (r *renderer) event(e deploy.Event) {
	if e.Service == "" {
		if e.Step == deploy.StepBuild {
			// The release's build phase, before its first wave.
			fmt.Fprintf(r.w, "build  %s\n", e.Msg)
		}
		return // the release's own summary: report() prints it
	}
	// A canary's decisions are shown as they are taken: they say why a
	// release waits, and why a version was rolled back.
	if !r.verbose && !e.Step.Final() && e.Step != deploy.StepAnalysis {
		return
	}
	if e.Wave != r.wave {
		r.wave = e.Wave
		fmt.Fprintf(r.w, "wave %d\n", e.Wave)
	}
	msg := e.Msg
	if i := strings.IndexByte(msg, '\n'); i >= 0 && !r.verbose && e.Step != deploy.StepFailed {
		msg = msg[:i]
	}
	fmt.Fprintf(r.w, "  %-24s %-19s %-11s %s\n", e.Service, short(e.Version), e.Step, msg)
}

func (r *renderer) report(rep *deploy.Report) {
	var parts []string
	count := map[deploy.Result]int{}
	for _, oc := range rep.Outcomes {
		count[oc.Result]++
	}
	for _, res := range []deploy.Result{deploy.Succeeded, deploy.Unchanged, deploy.Failed, deploy.Skipped, deploy.RolledBack} {
		if count[res] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[res], res))
		}
	}
	if len(parts) == 0 {
		parts = []string{"nothing to do"}
	}
	took := rep.Duration.Round(time.Millisecond).String()
	if rep.Build > 0 {
		took += fmt.Sprintf(" (%v of it building)", rep.Build.Round(time.Millisecond))
	}
	fmt.Fprintf(r.w, "release %d: %s in %s\n", rep.Release, strings.Join(parts, ", "), took)
	for _, oc := range rep.Outcomes {
		if oc.Result == deploy.Failed {
			fmt.Fprintf(r.w, "failed: %s@%s: %s\n", oc.Service, oc.Version, oc.Reason)
		}
		for _, w := range oc.Warnings {
			fmt.Fprintf(r.w, "warning: %s@%s %s: %s\n", oc.Service, oc.Version, oc.Result, w)
		}
	}
}

// short bounds a version for a column: a source version (12 digits) and
// a config suffix fit; anything longer is cut.
func short(v string) string {
	if len(v) > 19 {
		return v[:19]
	}
	return v
}

// isTerminal reports whether w is a terminal (progress is verbose there).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// ctxTimeout bounds a short API call.
func ctxTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 30*time.Second)
}
