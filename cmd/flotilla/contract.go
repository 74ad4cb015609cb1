package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/flotilla-ci/flotilla/contract"
	"github.com/flotilla-ci/flotilla/graph"
)

func (a *app) contractCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "contract",
		Short: "Consumer-driven contracts: verify providers, serve stubs, measure coverage",
		Long: `Pact-compatible contract testing. Consumer tests (Go, with the contract
package) write pact files to pacts/ at the repository root; providers are
verified against them; the stub server stands in for a provider; coverage
checks that every edge of the service graph has a contract.`,
	}
	cmd.AddCommand(a.contractVerifyCmd(a.brokerVerifyHook()), a.contractStubCmd(), a.contractCoverageCmd())
	cmd.AddCommand(a.contractBrokerCmds()...)
	return cmd
}

// verifyHook extends `contract verify` from another command file (the
// broker's: --broker-url, selectors, pending, WIP, --publish): it adds its
// flags, and when the command runs it may contribute pact sources and a
// publisher for the results. Pass hooks to contractVerifyCmd in contractCmd.
type verifyHook interface {
	AddFlags(fs *pflag.FlagSet)
	// Prepare is called once the flags are parsed; it returns extra sources
	// (nil when the hook is not in use) and a publisher (or nil).
	Prepare(ctx context.Context) ([]contract.Source, contract.ResultPublisher, error)
}

// verifyOptions are the flags of `contract verify`, named like pact verifier's.
type verifyOptions struct {
	pacts               []string
	baseURL             string
	provider            string
	stateChangeURL      string
	stateChangeTeardown bool
	stateChangeAsQuery  bool
	filterDescription   string
	filterState         string
	filterNoState       bool
	filterConsumers     []string
	headers             []string
	output              string
	requestTimeout      time.Duration
	// pact verifier's way of naming the provider, instead of --provider-base-url
	hostname, transport, basePath string
	port                          int
}

func (o *verifyOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&o.pacts, "pact", nil, "a pact FILE, a DIR of *.json pacts, or a URL (repeatable)")
	fs.StringVar(&o.baseURL, "provider-base-url", "", "the running provider's base URL, e.g. http://127.0.0.1:8081")
	fs.StringVarP(&o.provider, "provider-name", "n", "", "verify only pacts with this provider")
	fs.StringVarP(&o.stateChangeURL, "state-change-url", "s", "", "POST {state, params, action: setup|teardown} here before (and after) each interaction")
	fs.BoolVar(&o.stateChangeTeardown, "state-change-teardown", true, "also POST action teardown after each interaction")
	fs.BoolVar(&o.stateChangeAsQuery, "state-change-as-query", false, "send state, action and params as query parameters instead of a JSON body")
	fs.StringVar(&o.filterDescription, "filter-description", "", "only interactions whose description matches this regex")
	fs.StringVar(&o.filterState, "filter-state", "", "only interactions with a provider state matching this regex")
	fs.BoolVar(&o.filterNoState, "filter-no-state", false, "only interactions without a provider state")
	fs.StringArrayVarP(&o.filterConsumers, "filter-consumer", "c", nil, "only pacts of this consumer (repeatable)")
	fs.StringArrayVarP(&o.headers, "header", "H", nil, "add header K=V to every request to the provider (repeatable)")
	fs.StringVarP(&o.output, "output", "o", "text", "report format: text, json or junit")
	fs.DurationVar(&o.requestTimeout, "request-timeout", 30*time.Second, "timeout of each request to the provider")
	fs.StringVar(&o.hostname, "hostname", "localhost", "with --port instead of --provider-base-url: the provider's host")
	fs.IntVar(&o.port, "port", 0, "with --hostname instead of --provider-base-url: the provider's port")
	fs.StringVar(&o.transport, "transport", "http", "with --port: http or https")
	fs.StringVar(&o.basePath, "base-path", "", "a path prefix added to every request (and where messages are asked for)")
}

// providerURL is --provider-base-url, or the URL --transport, --hostname and
// --port name, with --base-path appended.
func (o *verifyOptions) providerURL() (string, error) {
	base := o.baseURL
	if base == "" && o.port != 0 {
		if o.transport != "http" && o.transport != "https" {
			return "", fmt.Errorf("--transport %q: want http or https", o.transport)
		}
		base = fmt.Sprintf("%s://%s", o.transport, net.JoinHostPort(o.hostname, strconv.Itoa(o.port)))
	}
	if base == "" {
		return "", nil
	}
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return "", fmt.Errorf("--provider-base-url %q: want an http:// or https:// URL", base)
	}
	if o.basePath != "" {
		base = strings.TrimRight(base, "/") + "/" + strings.TrimLeft(o.basePath, "/")
	}
	return base, nil
}

func (a *app) contractVerifyCmd(hooks ...verifyHook) *cobra.Command {
	var o verifyOptions
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Verify a running provider against pacts",
		Long: `Replays every interaction of the pacts against a running provider and
checks its responses with the pacts' matching rules; message interactions
are fetched by POSTing {description, providerStates} to the base URL.
Exit status: 0 all passed, 1 a mismatch, 2 bad input (flags, unparsable
pacts), 3 the broker could not be reached to fetch pacts or publish results.`,
		Example: `  flotilla contract verify --pact pacts/ --provider-name order-service \
      --provider-base-url http://127.0.0.1:8083 --state-change-url http://127.0.0.1:8083/_pact/state`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runVerify(cmd.Context(), o, hooks)
		},
	}
	o.addFlags(cmd.Flags())
	for _, h := range hooks {
		h.AddFlags(cmd.Flags())
	}
	return cmd
}

func (a *app) runVerify(ctx context.Context, o verifyOptions, hooks []verifyHook) error {
	switch o.output {
	case "text", "json", "junit":
	default:
		return usageErr(fmt.Errorf("contract verify: -o %q: want text, json or junit", o.output))
	}
	base, err := o.providerURL()
	if err != nil {
		return usageErr(fmt.Errorf("contract verify: %w", err))
	}
	v := contract.Verifier{
		Provider:          o.provider,
		BaseURL:           base,
		StateChangeURL:    o.stateChangeURL,
		FilterDescription: o.filterDescription,
		FilterState:       o.filterState,
		FilterNoState:     o.filterNoState,
		FilterConsumers:   o.filterConsumers,
		Timeout:           o.requestTimeout,
		Headers:           http.Header{},
	}
	v.NoStateTeardown = !o.stateChangeTeardown
	v.StateChangeAsQuery = o.stateChangeAsQuery
	for _, h := range o.headers {
		k, val, ok := strings.Cut(h, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return usageErr(fmt.Errorf("contract verify: --header %q: want KEY=VALUE", h))
		}
		v.Headers.Add(strings.TrimSpace(k), val)
	}
	fsrc := contract.FileSource{Paths: o.pacts}
	for _, h := range hooks {
		if a, ok := h.(interface{ Authorize(*http.Request) }); ok {
			fsrc.Authorize = a.Authorize
		}
	}
	if len(o.pacts) > 0 {
		v.Sources = append(v.Sources, fsrc)
	}
	for _, h := range hooks {
		srcs, pub, err := h.Prepare(ctx)
		if err != nil {
			return usageErr(fmt.Errorf("contract verify: %w", err))
		}
		v.Sources = append(v.Sources, srcs...)
		if pub != nil {
			v.Publisher = pub
		}
	}
	if len(v.Sources) == 0 {
		return usageErr(errors.New("contract verify: no pacts: give --pact FILE|DIR|URL"))
	}
	if o.filterDescription != "" {
		if _, err := regexp.Compile(o.filterDescription); err != nil {
			return usageErr(fmt.Errorf("contract verify: --filter-description: %w", err))
		}
	}
	if o.filterState != "" {
		if _, err := regexp.Compile(o.filterState); err != nil {
			return usageErr(fmt.Errorf("contract verify: --filter-state: %w", err))
		}
	}
	rep, err := v.Run(ctx)
	if err != nil {
		var pe *contract.ParseError
		if errors.As(err, &pe) || errors.Is(err, fs.ErrNotExist) {
			return usageErr(fmt.Errorf("contract verify: %w", err))
		}
		var fe *contract.FetchError
		if errors.As(err, &fe) {
			return pactFetchErr(fmt.Errorf("contract verify: %w", err))
		}
		// Fetching pacts from, or publishing results to, the broker failed.
		return remoteErr(fmt.Errorf("contract verify: %w", err))
	}
	if len(rep.Pacts) == 0 {
		return usageErr(fmt.Errorf("contract verify: no pacts found for provider %q", o.provider))
	}
	switch o.output {
	case "json":
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	case "junit":
		if err := writeJUnit(a.stdout, rep); err != nil {
			return err
		}
	default:
		writeVerifyText(a.stdout, rep)
	}
	if !rep.OK() {
		return failed()
	}
	return nil
}

func writeVerifyText(w io.Writer, rep *contract.Report) {
	var failures []string
	total, bad := 0, 0
	for _, p := range rep.Pacts {
		pending := ""
		if p.Pending {
			pending = " [pending]"
		}
		fmt.Fprintf(w, "Verifying a pact between %s and %s (%s)%s\n", p.Consumer, p.Provider, p.Origin, pending)
		for _, n := range p.Notices {
			fmt.Fprintf(w, "  notice: %s\n", n)
		}
		for _, in := range p.Interactions {
			total++
			given := ""
			if len(in.States) > 0 {
				given = " given " + strings.Join(in.States, ", ")
			}
			status := "OK"
			if !in.OK() {
				status = "FAILED"
				bad++
				failures = append(failures, contract.FormatInteraction(p, in))
			}
			fmt.Fprintf(w, "  %s%s ... %s\n", in.Description, given, status)
		}
	}
	if len(failures) > 0 {
		fmt.Fprintln(w, "\nFailures:")
		for i, f := range failures {
			fmt.Fprintf(w, "%d) %s\n", i+1, f)
		}
	}
	fmt.Fprintf(w, "\n%d interactions, %d failed\n", total, bad)
}

type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	ClassName string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Body    string `xml:",chardata"`
}

func writeJUnit(w io.Writer, rep *contract.Report) error {
	var out junitSuites
	for _, p := range rep.Pacts {
		s := junitSuite{Name: p.Consumer + " -> " + p.Provider}
		for _, in := range p.Interactions {
			c := junitCase{Name: in.Description, ClassName: s.Name, Time: strconv.FormatFloat(in.Duration/1000, 'f', 3, 64)}
			if !in.OK() {
				s.Failures++
				msg := in.Error
				if msg == "" && len(in.Mismatches) > 0 {
					msg = in.Mismatches[0].String()
				}
				c.Failure = &junitFailure{Message: msg, Body: contract.FormatInteraction(p, in)}
			}
			s.Cases = append(s.Cases, c)
			s.Tests++
		}
		out.Suites = append(out.Suites, s)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func (a *app) contractStubCmd() *cobra.Command {
	var (
		pacts       []string
		host        string
		port        int
		state       string
		stateHeader string
		emptyState  bool
		cors        bool
	)
	cmd := &cobra.Command{
		Use:   "stub",
		Short: "Serve pacts' responses as a stand-in provider",
		Long: `Serves the responses of the pacts' HTTP interactions to requests that
match them, like pact stub. A request matching nothing gets 404 with a JSON
body describing the nearest interaction's mismatches. Runs until interrupted.`,
		Example: "  flotilla contract stub --pact pacts/web-order-service.json --port 9090",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(pacts) == 0 {
				return usageErr(errors.New("contract stub: no pacts: give --pact FILE|DIR|URL"))
			}
			loaded, err := contract.FileSource{Paths: pacts}.Pacts(cmd.Context())
			if err != nil {
				return pactFetchErr(fmt.Errorf("contract stub: %w", err))
			}
			var ps []*contract.Pact
			for _, lp := range loaded {
				ps = append(ps, lp.Pact)
			}
			stub := contract.NewStub(ps)
			stub.StateHeader = stateHeader
			stub.EmptyState = emptyState
			stub.CORS = cors
			if state != "" {
				re, err := regexp.Compile(state)
				if err != nil {
					return usageErr(fmt.Errorf("contract stub: --provider-state: %w", err))
				}
				stub.State = re
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				return usageErr(fmt.Errorf("contract stub: %w", err))
			}
			srv := &http.Server{Handler: stub, ReadHeaderTimeout: 10 * time.Second}
			fmt.Fprintf(a.stdout, "stub: serving %d interactions from %d pacts on http://%s\n", stub.Interactions(), len(ps), ln.Addr())
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case <-cmd.Context().Done():
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				return srv.Shutdown(sctx)
			case err := <-errc:
				return fmt.Errorf("contract stub: %w", err)
			}
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&pacts, "pact", nil, "a pact FILE, a DIR of *.json pacts, or a URL (repeatable)")
	f.StringVar(&host, "host", "127.0.0.1", "the address to listen on")
	f.IntVarP(&port, "port", "p", 0, "the port (0: any free port, printed)")
	f.StringVarP(&state, "provider-state", "s", "", "only interactions with a provider state matching this regex")
	f.StringVar(&stateHeader, "provider-state-header-name", "", "a request header naming the provider state to choose when several interactions match")
	f.BoolVar(&emptyState, "empty-provider-state", false, "with --provider-state, also keep interactions without a state")
	f.BoolVar(&cors, "cors", false, "answer OPTIONS pre-flight requests and add CORS headers")
	return cmd
}

// coverageRow is one edge of the graph, or one pact the graph lacks.
type coverageRow struct {
	Kind         string `json:"kind"` // http, message
	Consumer     string `json:"consumer"`
	Provider     string `json:"provider"`
	Event        string `json:"event,omitempty"`
	Status       string `json:"status"` // covered, missing, undeclared
	Interactions int    `json:"interactions"`
}

func (a *app) contractCoverageCmd() *cobra.Command {
	var dir, output string
	cmd := &cobra.Command{
		Use:   "coverage",
		Short: "Check that every edge of the service graph has a contract",
		Long: `Every depends_on edge needs a consumer pact with at least one HTTP
interaction; every subscription needs a message pact from the subscriber on
the publisher with a message naming the event (in its description or
metadata); every pact must be for an edge the manifest declares. Pacts are
read from --pacts (default: pacts/ beside the manifest). Exit 1 below 100%.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return usageErr(fmt.Errorf("contract coverage: -o %q: want text or json", output))
			}
			g, err := a.loadValidGraph()
			if err != nil {
				return err
			}
			if dir == "" {
				dir = filepath.Join(filepath.Dir(g.Manifest().File), contract.DefaultDir)
			}
			var pacts []*contract.Pact
			if _, err := os.Stat(dir); err == nil {
				loaded, err := contract.FileSource{Paths: []string{dir}}.Pacts(cmd.Context())
				if err != nil {
					return usageErr(fmt.Errorf("contract coverage: %w", err))
				}
				for _, lp := range loaded {
					pacts = append(pacts, lp.Pact)
				}
			} else if cmd.Flags().Changed("pacts") {
				return usageErr(fmt.Errorf("contract coverage: --pacts %s: %w", dir, err))
			}
			rows := coverage(g, pacts)
			covered, edges, undeclared := 0, 0, 0
			for _, r := range rows {
				switch r.Status {
				case "covered":
					covered++
					edges++
				case "missing":
					edges++
				case "undeclared":
					undeclared++
				}
			}
			pct := 100.0
			if edges > 0 {
				pct = 100 * float64(covered) / float64(edges)
			}
			if output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(map[string]any{"pacts": dir, "edges": edges, "covered": covered, "undeclared": undeclared, "percent": pct, "rows": rows}); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "KIND\tCONSUMER\tPROVIDER\tEVENT\tINTERACTIONS\tSTATUS")
				for _, r := range rows {
					ev := r.Event
					if ev == "" {
						ev = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", r.Kind, r.Consumer, r.Provider, ev, r.Interactions, r.Status)
				}
				_ = tw.Flush()
				fmt.Fprintf(a.stdout, "\ncontract coverage: %d of %d edges (%.0f%%), %d undeclared pact(s), pacts from %s\n", covered, edges, pct, undeclared, dir)
			}
			if covered < edges || undeclared > 0 {
				return failed()
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "pacts", "", "the directory of pact files (default: pacts/ beside the manifest)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

// coverage matches the graph's edges with the pacts' interactions.
func coverage(g *graph.Graph, pacts []*contract.Pact) []coverageRow {
	type pair struct{ c, p string }
	httpCount := map[pair]int{}
	msgs := map[pair][]*contract.Interaction{}
	for _, p := range pacts {
		k := pair{p.Consumer, p.Provider}
		for _, in := range p.Interactions {
			if in.Kind == contract.HTTP {
				httpCount[k]++
			} else {
				msgs[k] = append(msgs[k], in)
			}
		}
	}
	var rows []coverageRow
	declaredHTTP := map[pair]bool{}
	for _, e := range g.SyncEdges() {
		k := pair{e.Consumer, e.Provider}
		declaredHTTP[k] = true
		r := coverageRow{Kind: "http", Consumer: e.Consumer, Provider: e.Provider, Interactions: httpCount[k], Status: "missing"}
		if r.Interactions > 0 {
			r.Status = "covered"
		}
		rows = append(rows, r)
	}
	declaredMsg := map[pair]bool{}
	usedMsg := map[*contract.Interaction]bool{}
	for _, e := range g.EventEdges() {
		k := pair{e.Subscriber, e.Publisher}
		declaredMsg[k] = true
		r := coverageRow{Kind: "message", Consumer: e.Subscriber, Provider: e.Publisher, Event: e.Event, Status: "missing"}
		for _, in := range msgs[k] {
			if namesEvent(in, e.Event) {
				r.Interactions++
				usedMsg[in] = true
			}
		}
		if r.Interactions > 0 {
			r.Status = "covered"
		}
		rows = append(rows, r)
	}
	for k, n := range httpCount {
		if !declaredHTTP[k] {
			rows = append(rows, coverageRow{Kind: "http", Consumer: k.c, Provider: k.p, Interactions: n, Status: "undeclared"})
		}
	}
	for k, ins := range msgs {
		n := 0
		for _, in := range ins {
			if !usedMsg[in] {
				n++
			}
		}
		if n > 0 {
			rows = append(rows, coverageRow{Kind: "message", Consumer: k.c, Provider: k.p, Interactions: n, Status: "undeclared"})
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Consumer != b.Consumer {
			return a.Consumer < b.Consumer
		}
		if a.Provider != b.Provider {
			return a.Provider < b.Provider
		}
		return a.Event < b.Event
	})
	return rows
}

// namesEvent: a message interaction is for an event when its description
// or one of its metadata values names the event.
func namesEvent(in *contract.Interaction, event string) bool {
	ev := strings.ToLower(event)
	if containsWord(strings.ToLower(in.Description), ev) {
		return true
	}
	for _, v := range in.Message.Metadata {
		if s, ok := v.(string); ok && strings.EqualFold(s, event) {
			return true
		}
	}
	return false
}

func containsWord(s, w string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], w)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(w)
		before := start == 0 || !isWordChar(s[start-1])
		after := end == len(s) || !isWordChar(s[end])
		if before && after {
			return true
		}
		i = start + 1
	}
}

func isWordChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
}

// pactFetchErr gives an error loading pacts its exit code: a pact URL
// whose server failed, was busy or could not be reached is no answer (3);
// one it refused (4xx, credentials included), and a pact file that is
// missing or invalid, is input that cannot be used (2).
func pactFetchErr(err error) error {
	var fe *contract.FetchError
	var ue *url.Error
	var ne net.Error
	switch {
	case errors.As(err, &fe):
		if fe.Temporary() {
			return noAnswer(err)
		}
		return usageErr(err)
	case errors.As(err, &ue), errors.As(err, &ne):
		return noAnswer(err)
	}
	return usageErr(err)
}
