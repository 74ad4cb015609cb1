package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/affected"
	"github.com/flotilla-ci/flotilla/graph"
)

func (a *app) affectedCmd() *cobra.Command {
	var opts affected.Options
	var output string
	cmd := &cobra.Command{
		Use:   "affected --base REF [--head REF]",
		Short: "Which services a change touches: what to deploy, in what order, and what to verify",
		Long: `affected reads the change between --base and --head (default: the working
tree, including uncommitted and untracked files) with git, and attributes
each file to the service whose path is its longest prefix. A file matching a
shared glob affects every service; a changed event schema (.avsc) marks the
event's subscribers for verification.

  changed   services whose files changed
  deploy    those, in deploy order, in waves
  verify    changed services plus their direct consumers and providers (sync and
            event), whose contracts must be re-checked
  unowned   changed files no service owns

A service whose entry in the manifest itself was added or edited (its
dependencies, health path, deploy or canary settings) counts as changed.

Output: text (default); json (everything, with each file's owner); github:
key=value lines for $GITHUB_OUTPUT (changed, deploy, waves, verify, unowned
as JSON arrays; wave_count and wave_1..wave_N, one array per wave; any=true|false).

Exit status: 0 answered (even when nothing is affected); 2 a manifest that
is unreadable or invalid, or a ref that doesn't exist.`,
		Example: `  flotilla affected --base origin/main
  flotilla affected --base v1.4.0 --head HEAD -o json
  flotilla affected --base origin/main --head HEAD --merge-base -o github >> "$GITHUB_OUTPUT"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			defer shortLived()()
			if err := outputFlag(cmd, output, "text", "json", "github"); err != nil {
				return err
			}
			if opts.Base == "" {
				return usageErr(errors.New("affected: --base REF is required (the branch, tag or commit the change is measured from)"))
			}
			g, err := a.loadValidGraph()
			if err != nil {
				return err
			}
			res, err := affected.Run(cmd.Context(), g, opts)
			if errors.Is(err, graph.ErrCycle) {
				return usageErr(err)
			}
			if err != nil {
				return usageErr(fmt.Errorf("affected: %w", err))
			}
			switch output {
			case "json":
				return writeJSON(a.stdout, res)
			case "github":
				return writeAffectedGitHub(a.stdout, res)
			}
			writeAffectedText(a.stdout, res)
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.Base, "base", "", "the ref the change is measured from (required)")
	cmd.Flags().StringVar(&opts.Head, "head", "", "the ref it is measured to (default: the working tree, with uncommitted and untracked files)")
	cmd.Flags().BoolVar(&opts.MergeBase, "merge-base", false, "compare --head with the merge base of --base and --head (what a pull request changes)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or github")
	return cmd
}

func writeAffectedText(w io.Writer, r *affected.Result) {
	head := r.Head
	if head == "" {
		head = "the working tree"
	}
	fmt.Fprintf(w, "%d file(s) changed between %s and %s\n", len(r.Files), r.Base, head)
	if len(r.Changed) == 0 {
		fmt.Fprintln(w, "changed: none; nothing to deploy")
	} else {
		fmt.Fprintf(w, "changed: %s\n", strings.Join(r.Changed, " "))
		fmt.Fprintln(w, "deploy:")
		for i, wave := range r.Waves {
			fmt.Fprintf(w, "  wave %d: %s\n", i+1, strings.Join(wave, " "))
		}
	}
	if len(r.Verify) > 0 {
		fmt.Fprintf(w, "verify: %s\n", strings.Join(r.Verify, " "))
		for _, e := range r.Edges {
			if e.Kind == "event" {
				fmt.Fprintf(w, "  %s reads %s from %s\n", e.Consumer, e.Event, e.Provider)
			} else {
				fmt.Fprintf(w, "  %s calls %s\n", e.Consumer, e.Provider)
			}
		}
	}
	for _, s := range r.Schemas {
		subs := "no subscribers"
		if len(s.Subscribers) > 0 {
			subs = "subscribers: " + strings.Join(s.Subscribers, " ")
		}
		fmt.Fprintf(w, "schema: %s (event %s; %s)\n", s.Path, s.Event, subs)
	}
	if len(r.Manifest) > 0 {
		var parts []string
		for _, mc := range r.Manifest {
			parts = append(parts, mc.Service+" "+mc.Change)
		}
		fmt.Fprintf(w, "manifest: %s\n", strings.Join(parts, ", "))
	}
	if len(r.Shared) > 0 {
		fmt.Fprintf(w, "shared: %s (every service is affected)\n", strings.Join(r.Shared, " "))
	}
	if len(r.Unowned) > 0 {
		fmt.Fprintf(w, "unowned: %s\n", strings.Join(r.Unowned, " "))
	}
}

// writeAffectedGitHub prints key=value lines for $GITHUB_OUTPUT.
func writeAffectedGitHub(w io.Writer, r *affected.Result) error {
	for _, kv := range []struct {
		key string
		val any
	}{
		{"changed", r.Changed},
		{"deploy", r.Deploy},
		{"waves", r.Waves},
		{"verify", r.Verify},
		{"unowned", r.Unowned},
	} {
		b, err := json.Marshal(kv.val)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s=%s\n", kv.key, b)
	}
	// One key per wave, so a workflow can give each wave its own matrix
	// job (a missing key reads as '' there).
	fmt.Fprintf(w, "wave_count=%d\n", len(r.Waves))
	for i, wave := range r.Waves {
		b, err := json.Marshal(wave)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "wave_%d=%s\n", i+1, b)
	}
	fmt.Fprintf(w, "any=%t\n", len(r.Changed) > 0)
	return nil
}
