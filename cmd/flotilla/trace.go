package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/tracing/store"
	"github.com/flotilla-ci/flotilla/tracing/store/jaeger"
)

// traceSource is where `flotilla trace` reads traces: the control plane's
// store, or Jaeger's query API.
type traceSource interface {
	List(ctx context.Context, q store.Query) ([]store.Summary, error)
	Get(ctx context.Context, id string) (*store.Trace, error)
}

type cpTraces struct{ c *controlplane.Client }

func (s cpTraces) List(ctx context.Context, q store.Query) ([]store.Summary, error) {
	return s.c.Traces(ctx, q)
}

func (s cpTraces) Get(ctx context.Context, id string) (*store.Trace, error) {
	r, err := s.c.Trace(ctx, id)
	if err != nil {
		return nil, err
	}
	return r.Trace, nil
}

type traceFlags struct {
	addr, output, from, jaegerURL string
}

func (f *traceFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "text or json")
	cmd.Flags().StringVar(&f.from, "from", "flotilla", "where to read traces: flotilla (the control plane's store) or jaeger")
	def := os.Getenv("FLOTILLA_JAEGER_URL")
	if def == "" {
		def = jaeger.DefaultQueryURL
	}
	cmd.Flags().StringVar(&f.jaegerURL, "jaeger-url", def, "Jaeger's query address, with --from jaeger (FLOTILLA_JAEGER_URL)")
	apiFlag(cmd, &f.addr)
}

func (a *app) traceSource(cmd *cobra.Command, f *traceFlags) (traceSource, error) {
	if err := outputFlag(cmd, f.output, "text", "json"); err != nil {
		return nil, err
	}
	switch f.from {
	case "flotilla":
		return cpTraces{a.apiClient(f.addr)}, nil
	case "jaeger":
		return jaeger.NewClient(f.jaegerURL), nil
	}
	return nil, usageErr(fmt.Errorf("%s --from %q: want flotilla or jaeger", cmd.CommandPath(), f.from))
}

// traceErr classifies a trace source's error: a trace not found is a
// negative answer (1), as is an id that is not one.
func traceErr(err error) error {
	var ae *controlplane.APIError
	switch {
	case errors.As(err, &ae) && ae.Status == 404, errors.Is(err, store.ErrNotFound):
		return problem(err)
	case errors.Is(err, jaeger.ErrUnreachable):
		return noAnswer(err)
	}
	return apiErr(err)
}

func (a *app) traceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Follow requests across services: list recent traces, show one as a waterfall",
		Long: `The services, the gateway, the mesh and the bus export their spans over OTLP to
the control plane 'flotilla up' runs (or to the collector OTEL_EXPORTER_OTLP_ENDPOINT
names, or to Jaeger with 'flotilla up --jaeger'). The control plane keeps the most
recent traces in memory; 'trace list' finds them, 'trace show' draws one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.traceListCmd(), a.traceShowCmd())
	return cmd
}

func (a *app) traceListCmd() *cobra.Command {
	var f traceFlags
	var q store.Query
	var since string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List recent traces, newest first",
		Long: `list shows recent traces, newest first: the trace id, when it started, the root
span's duration, its spans and errors, the root's service and operation, and
the services it crossed.

--service and --version select traces with a span of that service at that
version (service.version: what 'flotilla status' shows), so a canary's failing
requests are '--version V --errors'; --min-duration compares with the root
span's duration; --since takes a time (RFC 3339) or a duration back from now.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := a.traceSource(cmd, &f)
			if err != nil {
				return err
			}
			if since != "" {
				if q.Since, err = store.ParseSince(since, time.Now()); err != nil {
					return usageErr(fmt.Errorf("%s --since: %w", cmd.CommandPath(), err))
				}
			}
			if q.MinDuration < 0 || q.Limit < 0 {
				return usageErr(fmt.Errorf("%s: --min-duration and --limit must not be negative", cmd.CommandPath()))
			}
			ctx, cancel := ctxTimeout(cmd.Context())
			defer cancel()
			list, err := src.List(ctx, q)
			if err != nil {
				return traceErr(err)
			}
			if f.output == "json" {
				if list == nil {
					list = []store.Summary{}
				}
				return writeJSONOut(a.stdout, list)
			}
			return renderTraceList(a.stdout, list, time.Local)
		},
	}
	cmd.Flags().StringVar(&q.Service, "service", "", "traces with a span of this service")
	cmd.Flags().StringVar(&q.Version, "version", "", "traces with a span of this version (service.version)")
	cmd.Flags().DurationVar(&q.MinDuration, "min-duration", 0, "traces whose root span took at least this long")
	cmd.Flags().BoolVar(&q.Errors, "errors", false, "traces with an error span")
	cmd.Flags().StringVar(&since, "since", "", "traces started since this time (RFC 3339) or this long ago (15m)")
	cmd.Flags().IntVarP(&q.Limit, "limit", "n", store.DefaultLimit, "at most this many traces")
	f.register(cmd)
	return cmd
}

func (a *app) traceShowCmd() *cobra.Command {
	var f traceFlags
	cmd := &cobra.Command{
		Use:   "show TRACE_ID",
		Short: "Show a trace as a waterfall, its critical path and each service's self-time",
		Long: `show draws a trace as a waterfall: each span's service, operation, start
offset, duration and status, children indented under their parent, and the
work a span caused through the bus (a consumer linked to its producer) as
async branches under it. Then the critical path (the chain of work the
request waited on, the slowest hop named) and each service's self-time (time
in its spans not spent waiting on their children).

Exit status: 0 shown; 1 no such trace (never received, or evicted); 2 an id
that is not 32 hex digits; 3 no answer from the control plane or Jaeger.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := a.traceSource(cmd, &f)
			if err != nil {
				return err
			}
			ctx, cancel := ctxTimeout(cmd.Context())
			defer cancel()
			tr, err := src.Get(ctx, args[0])
			if err != nil {
				return traceErr(err)
			}
			an := store.Analyze(tr)
			if f.output == "json" {
				return writeJSONOut(a.stdout, controlplane.TraceResponse{Trace: tr, Analysis: an})
			}
			return renderTrace(a.stdout, an, time.Local)
		},
	}
	f.register(cmd)
	return cmd
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// fmtDur is a duration to three significant digits or so.
func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < 10*time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

func renderTraceList(w io.Writer, list []store.Summary, loc *time.Location) error {
	if len(list) == 0 {
		fmt.Fprintln(w, "no traces match (the control plane keeps the most recent ones; check the filters, or that the services export to it)")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TRACE\tSTARTED\tDURATION\tSPANS\tERRORS\tROOT\tSERVICES")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s %s\t%s\n", s.TraceID, s.Start.In(loc).Format("2006-01-02 15:04:05.000"),
			fmtDur(s.Duration), s.Spans, s.Errors, s.Service, s.Name, strings.Join(s.Services, ","))
	}
	return tw.Flush()
}

const barWidth = 30

// bar draws a span's place in the trace: [   ████      ].
func bar(off, d, total time.Duration) string {
	if total <= 0 {
		return "[" + strings.Repeat(" ", barWidth) + "]"
	}
	start := int(float64(off) / float64(total) * barWidth)
	n := int(float64(d)/float64(total)*barWidth + 0.5)
	start = min(max(start, 0), barWidth-1)
	n = min(max(n, 1), barWidth-start)
	return "[" + strings.Repeat(" ", start) + strings.Repeat("█", n) + strings.Repeat(" ", barWidth-start-n) + "]"
}

func renderTrace(w io.Writer, a *store.Analysis, loc *time.Location) error {
	if len(a.Roots) == 0 {
		fmt.Fprintf(w, "trace %s has no spans\n", a.TraceID)
		return nil
	}
	root := a.Roots[0].Span
	fmt.Fprintf(w, "trace %s: %s %s, %s (%s with async work), %d spans, %d errors, started %s\n\n",
		a.TraceID, root.Service, root.Name, fmtDur(a.Duration), fmtDur(a.Extent), a.Spans, a.Errors, a.Start.In(loc).Format("2006-01-02 15:04:05.000"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tOPERATION\tSTART\tDURATION\tSTATUS\tWATERFALL")
	var walk func(n *store.Node, prefix string)
	walk = func(n *store.Node, prefix string) {
		sp := n.Span
		name := prefix + sp.Service
		if n.Async {
			name = prefix + "↳ " + sp.Service
		}
		status := "ok" // unset: no error recorded
		if sp.Error() {
			status = "error"
		}
		if sp.Error() && sp.StatusMessage != "" {
			status = "error: " + sp.StatusMessage
		}
		var notes []string
		if n.Async {
			notes = append(notes, "async")
		}
		if n.Linked {
			notes = append(notes, "linked")
		}
		if n.Orphan {
			notes = append(notes, "parent missing")
		}
		if len(notes) > 0 {
			status += " (" + strings.Join(notes, ", ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t+%s\t%s\t%s\t%s\n", name, sp.Name, fmtDur(n.Offset), fmtDur(sp.Duration()), status, bar(n.Offset, sp.Duration(), a.Extent))
		for _, c := range n.Children {
			walk(c, prefix+"  ")
		}
	}
	for _, r := range a.Roots {
		walk(r, "")
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\ncritical path (%s, the root's duration):\n", fmtDur(a.Duration))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// Adjacent stretches of one span are one line.
	var merged []store.Segment
	for _, s := range a.CriticalPath {
		if k := len(merged) - 1; k >= 0 && merged[k].SpanID == s.SpanID && merged[k].End == s.Start {
			merged[k].End = s.End
			continue
		}
		merged = append(merged, s)
	}
	for _, s := range merged {
		fmt.Fprintf(tw, "  %s\t%s\t+%s\t%s\n", s.Service, s.Name, fmtDur(s.Start), fmtDur(s.Duration()))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if h := a.SlowestHop; h != nil {
		fmt.Fprintf(w, "slowest hop: %s %s, %s of the critical path (%.0f%%)\n", h.Service, h.Name, fmtDur(h.Critical), h.Share*100)
	}

	fmt.Fprintln(w, "\nself-time by service (time in its spans not waiting on their children):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  SERVICE\tSELF\tCRITICAL PATH\tSPANS")
	for _, s := range a.Services {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\n", s.Service, fmtDur(s.Self), fmtDur(s.Critical), s.Spans)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if a.Errors > 0 {
		fmt.Fprintln(w, "\nerrors:")
		var walkErr func(n *store.Node)
		walkErr = func(n *store.Node) {
			if sp := n.Span; sp.Error() {
				fmt.Fprintf(w, "  %s %s (span %s): %s\n", sp.Service, sp.Name, sp.SpanID, dash(sp.StatusMessage))
			}
			for _, c := range n.Children {
				walkErr(c)
			}
		}
		for _, r := range a.Roots {
			walkErr(r)
		}
	}
	return nil
}

func (a *app) graphDriftCmd() *cobra.Command {
	var addr, output, since string
	cmd := &cobra.Command{
		Use:   "drift",
		Short: "Compare the calls and events seen in recent traces with the graph",
		Long: `drift compares the service-to-service calls (a server span and the span of
another service that caused it, through the gateway's and the mesh's hops) and
event flows (a consumer span and the producer it is linked to) seen in the
traces the control plane keeps with flotilla.yaml, and lists the calls that
happen but are not declared (depends_on, publishes/subscribes), and declared
dependencies and event flows never seen.

Exit status: 0 nothing undeclared seen; 1 undeclared calls or events seen;
2 a bad flag or manifest; 3 no answer from the control plane.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFlag(cmd, output, "text", "json"); err != nil {
				return err
			}
			m, _, err := a.loadManifest()
			if err != nil {
				return usageErr(err)
			}
			var q store.Query
			if since != "" {
				if q.Since, err = store.ParseSince(since, time.Now()); err != nil {
					return usageErr(fmt.Errorf("%s --since: %w", cmd.CommandPath(), err))
				}
			}
			ctx, cancel := ctxTimeout(cmd.Context())
			defer cancel()
			got, err := a.apiClient(addr).TraceEdges(ctx, q, m.Names())
			if err != nil {
				return apiErr(err)
			}
			d := store.DriftOf(m, got.Edges, got.Traces)
			if output == "json" {
				if err := writeJSONOut(a.stdout, d); err != nil {
					return err
				}
			} else {
				renderDrift(a.stdout, d, m.File)
			}
			if len(d.Undeclared) > 0 {
				return failed()
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "only traces started since this time (RFC 3339) or this long ago (15m)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	apiFlag(cmd, &addr)
	return cmd
}

func renderDrift(w io.Writer, d *store.Drift, manifest string) {
	fmt.Fprintf(w, "%d traces, %d interactions between services seen\n", d.Traces, len(d.Observed))
	if len(d.Undeclared) == 0 {
		fmt.Fprintf(w, "\nno undeclared calls or events: everything seen is in %s\n", manifest)
	} else {
		fmt.Fprintf(w, "\nundeclared (seen, not in %s):\n", manifest)
		for _, e := range d.Undeclared {
			fix := fmt.Sprintf("add %s to %s's depends_on", e.To, e.From)
			if e.Kind == store.EdgeEvent {
				fix = fmt.Sprintf("declare %s in %s's publishes and %s's subscribes", dash(e.Event), e.From, e.To)
			}
			fmt.Fprintf(w, "  %-4s %s  seen %d times, e.g. trace %s: %s\n", e.Kind, e.String(), e.Count, e.Example, fix)
		}
	}
	if len(d.Unused) > 0 {
		fmt.Fprintln(w, "\ndeclared, never seen in these traces:")
		for _, e := range d.Unused {
			fmt.Fprintf(w, "  %-5s %s\n", e.Kind, e.String())
		}
	}
}
