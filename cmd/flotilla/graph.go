package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/graph"
)

// shortLived turns the garbage collector off (below a 512 MiB soft limit)
// for a command that reads a graph, answers and exits: on a 10,000-service
// graph, collecting would be half the CPU spent. It returns the function
// that restores the previous settings (tests run commands in-process).
func shortLived() (restore func()) {
	limit := debug.SetMemoryLimit(-1)
	percent := debug.SetGCPercent(-1)
	debug.SetMemoryLimit(512 << 20)
	return func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	}
}

// loadManifest reads the manifest named by -f, or the nearest flotilla.yaml
// upwards from the working directory. Its errors are bad input (exit 2).
func (a *app) loadManifest() (*graph.Manifest, []graph.Warning, error) {
	file := a.manifest
	if file == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, nil, usageErr(fmt.Errorf("find manifest: %w", err))
		}
		if file, err = graph.Find(wd); err != nil {
			return nil, nil, usageErr(err)
		}
		// Name it as the user would: relative to where they stand.
		if rel, err := filepath.Rel(wd, file); err == nil && !strings.HasPrefix(rel, "..") {
			file = rel
		}
	}
	m, warns, err := graph.Load(file)
	if err != nil {
		return nil, nil, usageErr(err)
	}
	return m, warns, nil
}

// loadValidGraph loads the manifest and refuses a graph with problems
// (exit 2 like any unusable input, every problem on stderr); warnings go to
// stderr too.
func (a *app) loadValidGraph() (*graph.Graph, error) {
	m, warns, err := a.loadManifest()
	if err != nil {
		return nil, err
	}
	for _, w := range warns {
		fmt.Fprintf(a.stderr, "warning: %s\n", w)
	}
	g := graph.New(m)
	if probs := g.Validate(); len(probs) > 0 {
		for _, p := range probs {
			fmt.Fprintln(a.stderr, p)
		}
		return nil, usageErr(fmt.Errorf("%s has %d problem(s); run 'flotilla graph check' after fixing them", m.File, len(probs)))
	}
	return g, nil
}

func (a *app) graphCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "graph",
		Short: "The service graph: check it, order deploys by it, draw it, find what depends on a service",
		Long: `The service graph comes from flotilla.yaml (the nearest one upwards, or -f FILE;
a scenario dependency-graph .json is read too): services, their synchronous
dependencies (depends_on) and the events they publish and subscribe to.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.graphCheckCmd(), a.graphOrderCmd(), a.graphShowCmd(), a.graphImpactCmd())
	cmd.AddCommand(a.graphDriftCmd())
	return cmd
}

func (a *app) graphCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Validate the graph and report every problem at once",
		Long: `check reports every problem at once: unknown dependencies, self-dependencies,
every dependency cycle as a full path (overlapping ones each; the first 20
named, the rest counted), subscriptions to events nobody publishes,
and (for a scenario .json) consumer lists that disagree with the dependencies.
Problems in the manifest itself come first, each with its line: syntax,
unknown fields, and canary policies (a service's canary block over
defaults.canary) with a value out of range, a malformed PromQL query, or a
setting that would not take effect.

Exit status: 0 valid (warnings allowed); 1 problems found, a syntax error in
the manifest included (the manifest is what check examines); 2 no manifest to
check (missing or unreadable) or a bad flag.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			defer shortLived()()
			m, warns, err := a.loadManifest()
			if err != nil && !errors.Is(err, graph.ErrRead) && !errors.Is(err, graph.ErrNotFound) {
				var ex *exitError
				if errors.As(err, &ex) && ex.err != nil {
					err = ex.err
				}
				lines := strings.Split(err.Error(), "\n")
				for _, l := range lines {
					fmt.Fprintf(a.stdout, "error: %s\n", l)
				}
				fmt.Fprintf(a.stdout, "%d problem(s) reading the manifest; fix them, then check again\n", len(lines))
				return failed()
			}
			if err != nil {
				return err
			}
			g := graph.New(m)
			probs := g.Validate()
			for _, p := range probs {
				fmt.Fprintf(a.stdout, "error: %s\n", p)
			}
			for _, w := range warns {
				fmt.Fprintf(a.stdout, "warning: %s\n", w)
			}
			deps := len(g.SyncEdges())
			summary := fmt.Sprintf("%s: %d services, %d dependencies, %d events", m.File, len(m.Services), deps, len(m.Events()))
			if len(probs) > 0 {
				fmt.Fprintf(a.stdout, "%s: %d problem(s), %d warning(s)\n", summary, len(probs), len(warns))
				return failed()
			}
			fmt.Fprintf(a.stdout, "%s: valid, %d warning(s)\n", summary, len(warns))
			return nil
		},
	}
}

// outputFlag validates -o against the formats a command knows.
func outputFlag(cmd *cobra.Command, got string, known ...string) error {
	for _, k := range known {
		if got == k {
			return nil
		}
	}
	return usageErr(fmt.Errorf("%s: unknown output format %q (known: %s)", cmd.CommandPath(), got, strings.Join(known, ", ")))
}

func (a *app) graphOrderCmd() *cobra.Command {
	var only []string
	var output string
	var reverse bool
	cmd := &cobra.Command{
		Use:   "order",
		Short: "Print the deploy order in waves (dependencies first)",
		Long: `order prints the deploy order: dependencies before their dependents, in waves.
Wave k holds every service whose longest dependency chain has length k, so the
services of one wave can deploy in parallel; ties are broken by name.

--only restricts the order to some services but still respects dependencies
that run through the others (if a→b→c and only a and c are chosen, c comes
first). --reverse prints the rollback order (last wave first).

Output: text (default); json: {"order": [...], "waves": [[...], ...]}; github:
one line, the order as a JSON array for a GitHub Actions matrix.`,
		Example: `  flotilla graph order
  flotilla graph order --only order-service,user-service -o json
  flotilla graph order --reverse -o github`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			defer shortLived()()
			if err := outputFlag(cmd, output, "text", "json", "github"); err != nil {
				return err
			}
			g, err := a.loadValidGraph()
			if err != nil {
				return err
			}
			names := splitList(only)
			var waves [][]string
			if reverse {
				waves, err = g.Reverse(names)
			} else {
				waves, err = g.Waves(names)
			}
			if errors.Is(err, graph.ErrCycle) {
				return usageErr(err)
			}
			if err != nil {
				return usageErr(fmt.Errorf("--only: %w", err))
			}
			return writeOrder(a.stdout, output, waves)
		},
	}
	cmd.Flags().StringSliceVar(&only, "only", nil, "restrict to these services (comma-separated, or the flag repeated)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or github")
	cmd.Flags().BoolVar(&reverse, "reverse", false, "print the rollback order: dependents before their dependencies")
	return cmd
}

func splitList(in []string) []string {
	var out []string
	for _, s := range in {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func writeOrder(w io.Writer, format string, waves [][]string) error {
	order := graph.Flatten(waves)
	if order == nil {
		order = []string{}
	}
	if waves == nil {
		waves = [][]string{}
	}
	switch format {
	case "json":
		// One line per field keeps the waves readable and the output small.
		o, err := json.Marshal(order)
		if err != nil {
			return err
		}
		wv, err := json.Marshal(waves)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "{\n  \"order\": %s,\n  \"waves\": %s\n}\n", o, wv)
		return err
	case "github":
		b, err := json.Marshal(order)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	for i, wave := range waves {
		fmt.Fprintf(w, "wave %d: %s\n", i+1, strings.Join(wave, " "))
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *app) graphShowCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print the graph: a summary, Graphviz DOT, Mermaid or JSON",
		Long: `show prints the graph. Synchronous dependencies are solid arrows from a
service to what it calls; event edges are dashed arrows from a publisher to a
subscriber, labelled with the events. The summary gives each service's rollout
policy as resolved from its canary block and the manifest's defaults. -o json
gives tools every service with its folders, dependencies, dependents, events,
health path and policy, the edges, and the defaults.

  flotilla graph show -o dot | dot -Tsvg > graph.svg`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			defer shortLived()()
			if err := outputFlag(cmd, output, "text", "dot", "mermaid", "json"); err != nil {
				return err
			}
			m, warns, err := a.loadManifest()
			if err != nil {
				return err
			}
			for _, w := range warns {
				fmt.Fprintf(a.stderr, "warning: %s\n", w)
			}
			g := graph.New(m)
			switch output {
			case "dot":
				writeDOT(a.stdout, g)
			case "mermaid":
				writeMermaid(a.stdout, g)
			case "json":
				return writeGraphJSON(a.stdout, g)
			default:
				writeSummary(a.stdout, g)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, dot, mermaid or json")
	return cmd
}

// eventGroups merges the event edges between one publisher and one
// subscriber into one labelled edge.
func eventGroups(g *graph.Graph) (pairs [][2]string, labels map[[2]string][]string) {
	labels = map[[2]string][]string{}
	for _, e := range g.EventEdges() {
		k := [2]string{e.Publisher, e.Subscriber}
		if _, ok := labels[k]; !ok {
			pairs = append(pairs, k)
		}
		labels[k] = append(labels[k], e.Event)
	}
	return pairs, labels
}

func writeDOT(w io.Writer, g *graph.Graph) {
	fmt.Fprintln(w, "digraph flotilla {")
	fmt.Fprintln(w, "  rankdir=LR;")
	fmt.Fprintln(w, `  node [shape=box, style=rounded, fontname="Helvetica"];`)
	fmt.Fprintln(w, `  edge [fontname="Helvetica", fontsize=10];`)
	for _, s := range g.Manifest().Services {
		fmt.Fprintf(w, "  %q;\n", s.Name)
	}
	fmt.Fprintln(w, "  // synchronous dependencies: caller -> provider")
	for _, e := range g.SyncEdges() {
		fmt.Fprintf(w, "  %q -> %q;\n", e.Consumer, e.Provider)
	}
	fmt.Fprintln(w, "  // events: publisher -> subscriber")
	pairs, labels := eventGroups(g)
	for _, p := range pairs {
		fmt.Fprintf(w, "  %q -> %q [style=dashed, color=gray45, fontcolor=gray35, label=%q];\n", p[0], p[1], strings.Join(labels[p], "\n"))
	}
	fmt.Fprintln(w, "}")
}

// graphJSON is `graph show -o json`.
type graphJSON struct {
	Manifest string        `json:"manifest"`
	Shared   []string      `json:"shared"`
	Defaults graph.Policy  `json:"defaults"`
	Services []serviceJSON `json:"services"`
	Edges    []edgeJSON    `json:"edges"`
}

type serviceJSON struct {
	Name       string       `json:"name"`
	Paths      []string     `json:"paths"`
	DependsOn  []string     `json:"depends_on"`
	Dependents []string     `json:"dependents"`
	Publishes  []string     `json:"publishes"`
	Subscribes []string     `json:"subscribes"`
	Health     string       `json:"health,omitempty"`
	Policy     graph.Policy `json:"policy"`
}

type edgeJSON struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Kind  string `json:"kind"` // "http": from calls to; "event": from publishes to to
	Event string `json:"event,omitempty"`
}

func writeGraphJSON(w io.Writer, g *graph.Graph) error {
	m := g.Manifest()
	out := graphJSON{Manifest: m.File, Shared: nonNil(m.Shared), Defaults: m.Defaults, Services: []serviceJSON{}, Edges: []edgeJSON{}}
	for _, s := range m.Services {
		out.Services = append(out.Services, serviceJSON{
			Name: s.Name, Paths: nonNil(s.Paths), DependsOn: nonNil(g.DependsOn(s.Name)), Dependents: nonNil(g.Dependents(s.Name)),
			Publishes: nonNil(s.Publishes), Subscribes: nonNil(s.Subscribes), Health: s.Health, Policy: s.Policy,
		})
	}
	for _, e := range g.SyncEdges() {
		out.Edges = append(out.Edges, edgeJSON{From: e.Consumer, To: e.Provider, Kind: "http"})
	}
	for _, e := range g.EventEdges() {
		out.Edges = append(out.Edges, edgeJSON{From: e.Publisher, To: e.Subscriber, Kind: "event", Event: e.Event})
	}
	return writeJSON(w, out)
}

func mermaidID(name string) string { return strings.ReplaceAll(name, "-", "_") }

func writeMermaid(w io.Writer, g *graph.Graph) {
	fmt.Fprintln(w, "flowchart LR")
	for _, s := range g.Manifest().Services {
		fmt.Fprintf(w, "  %s[\"%s\"]\n", mermaidID(s.Name), s.Name)
	}
	for _, e := range g.SyncEdges() {
		fmt.Fprintf(w, "  %s --> %s\n", mermaidID(e.Consumer), mermaidID(e.Provider))
	}
	pairs, labels := eventGroups(g)
	for _, p := range pairs {
		fmt.Fprintf(w, "  %s -. \"%s\" .-> %s\n", mermaidID(p[0]), strings.Join(labels[p], ", "), mermaidID(p[1]))
	}
}

func writeSummary(w io.Writer, g *graph.Graph) {
	m := g.Manifest()
	fmt.Fprintf(w, "%s: %d services\n", m.File, len(m.Services))
	dash := func(list []string) string {
		if len(list) == 0 {
			return "-"
		}
		return strings.Join(list, ", ")
	}
	for _, s := range m.Services {
		fmt.Fprintf(w, "\n%s  (%s)\n", s.Name, dash(s.Paths))
		fmt.Fprintf(w, "  depends on:  %s\n", dash(g.DependsOn(s.Name)))
		fmt.Fprintf(w, "  used by:     %s\n", dash(g.Dependents(s.Name)))
		if len(s.Publishes) > 0 {
			fmt.Fprintf(w, "  publishes:   %s\n", dash(s.Publishes))
		}
		if len(s.Subscribes) > 0 {
			fmt.Fprintf(w, "  subscribes:  %s\n", dash(s.Subscribes))
		}
		fmt.Fprintf(w, "  rollout:     %s\n", s.Policy.Summary())
	}
}

func (a *app) graphImpactCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "impact SERVICE",
		Short: "List every service that depends on SERVICE, directly or transitively",
		Long: `impact lists every service that depends on SERVICE, directly or through
others, in deploy order, and the subscribers of the events it publishes.

Output: text (default) or json.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			defer shortLived()()
			if err := outputFlag(cmd, output, "text", "json"); err != nil {
				return err
			}
			g, err := a.loadValidGraph()
			if err != nil {
				return err
			}
			name := args[0]
			all, err := g.Impact(name)
			if err != nil {
				return usageErr(err)
			}
			// Deploy order reads better than alphabetical for a chain.
			ordered := all
			if len(all) > 0 {
				if ordered, err = g.Order(all); err != nil {
					return usageErr(err)
				}
			}
			direct := g.Dependents(name)
			subs := map[string][]string{}
			for _, e := range g.EventEdges() {
				if e.Publisher == name && e.Subscriber != name {
					subs[e.Subscriber] = append(subs[e.Subscriber], e.Event)
				}
			}
			if output == "json" {
				type sub struct {
					Service string   `json:"service"`
					Events  []string `json:"events"`
				}
				out := struct {
					Service     string   `json:"service"`
					Direct      []string `json:"direct"`
					Impact      []string `json:"impact"`
					Subscribers []sub    `json:"subscribers"`
				}{Service: name, Direct: nonNil(direct), Impact: nonNil(ordered), Subscribers: []sub{}}
				for _, s := range sortedMapKeys(subs) {
					out.Subscribers = append(out.Subscribers, sub{s, subs[s]})
				}
				return writeJSON(a.stdout, out)
			}
			if len(ordered) == 0 {
				fmt.Fprintf(a.stdout, "no service depends on %s\n", name)
			} else {
				fmt.Fprintf(a.stdout, "%d service(s) depend on %s:\n", len(ordered), name)
				for _, s := range ordered {
					how := "transitively"
					for _, d := range direct {
						if d == s {
							how = "directly"
						}
					}
					fmt.Fprintf(a.stdout, "  %-24s %s\n", s, how)
				}
			}
			if len(subs) > 0 {
				fmt.Fprintf(a.stdout, "subscribers of its events:\n")
				for _, s := range sortedMapKeys(subs) {
					fmt.Fprintf(a.stdout, "  %-24s %s\n", s, strings.Join(subs[s], ", "))
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func sortedMapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
