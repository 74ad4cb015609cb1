package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/flotilla-ci/flotilla/broker"
	"github.com/flotilla-ci/flotilla/broker/client"
	svcversion "github.com/flotilla-ci/flotilla/internal/version"
)

// contractBrokerCmds returns the `flotilla contract` subcommands that talk
// to a contract broker (publish, can-i-deploy, record-deployment, ...).
func (a *app) contractBrokerCmds() []*cobra.Command {
	return []*cobra.Command{
		a.contractPublishCmd(),
		a.canIDeployCmd(),
		a.recordDeploymentCmd(false),
		a.recordDeploymentCmd(true),
		a.recordUndeploymentCmd(),
		a.serviceVersionCmd(),
	}
}

func (a *app) serviceVersionCmd() *cobra.Command {
	var (
		repo    string
		service string
	)
	cmd := &cobra.Command{
		Use:   "version (--service NAME | PATH...)",
		Short: "Print a service's version: the content hash of its paths and the shared paths",
		Long: `Print the version flotilla gives a service: the first 12 hex digits of a
SHA-256 over the files under its paths and the manifest's shared paths (or
the PATHs given, relative to --repo): those git tracks plus untracked files
it does not ignore, as in the working tree. A change outside them leaves the
version unchanged, so verification results and can-i-deploy answers for an
untouched service stay valid.

  flotilla contract version --service order-service
  flotilla contract version shop/order shop/kit go.mod go.sum`,
		RunE: func(cmd *cobra.Command, args []string) error {
			paths := args
			switch {
			case service != "" && len(args) > 0:
				return usageErr(fmt.Errorf("%s: give --service or PATHs, not both", cmd.CommandPath()))
			case service != "":
				m, _, err := a.loadManifest()
				if err != nil {
					return err
				}
				svc := m.Service(service)
				if svc == nil {
					return usageErr(fmt.Errorf("%s: no service %q in %s (it has: %s)", cmd.CommandPath(), service, m.File, strings.Join(m.Names(), ", ")))
				}
				paths = append(append([]string{}, svc.Paths...), m.Shared...)
				repo = m.Root
			case len(args) == 0:
				return usageErr(fmt.Errorf("%s: give --service NAME or the PATHs to hash", cmd.CommandPath()))
			}
			v, err := svcversion.Of(cmd.Context(), repo, paths...)
			if err != nil {
				return usageErr(err)
			}
			fmt.Fprintln(a.stdout, v)
			return nil
		},
	}
	cmd.Flags().StringVar(&repo, "repo", ".", "the repository root the PATHs are relative to")
	cmd.Flags().StringVar(&service, "service", "", "a service of the manifest (-f): its paths and the shared paths")
	return cmd
}

// brokerFlags are the flags every broker command takes; environment
// variables fill what the flags leave empty.
type brokerFlags struct {
	url, token, user, password string
}

func (b *brokerFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&b.url, "broker-url", "b", "", "the broker's base URL (env FLOTILLA_BROKER_URL or PACT_BROKER_BASE_URL)")
	f.StringVarP(&b.token, "broker-token", "k", "", "a bearer token (env FLOTILLA_BROKER_TOKEN or PACT_BROKER_TOKEN)")
	f.StringVarP(&b.user, "broker-username", "u", "", "basic-auth user (env PACT_BROKER_USERNAME)")
	f.StringVarP(&b.password, "broker-password", "p", "", "basic-auth password (env PACT_BROKER_PASSWORD)")
}

func firstEnv(flag string, names ...string) string {
	if flag != "" {
		return flag
	}
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func (b *brokerFlags) client(cmdPath string) (*client.Client, error) {
	u := firstEnv(b.url, "FLOTILLA_BROKER_URL", "PACT_BROKER_BASE_URL")
	if u == "" {
		return nil, usageErr(fmt.Errorf("%s: --broker-url is required (or set FLOTILLA_BROKER_URL)", cmdPath))
	}
	var opts []client.Option
	if t := firstEnv(b.token, "FLOTILLA_BROKER_TOKEN", "PACT_BROKER_TOKEN"); t != "" {
		opts = append(opts, client.WithToken(t))
	} else if user := firstEnv(b.user, "PACT_BROKER_USERNAME"); user != "" {
		opts = append(opts, client.WithBasicAuth(user, firstEnv(b.password, "PACT_BROKER_PASSWORD")))
	}
	c, err := client.New(u, opts...)
	if err != nil {
		return nil, usageErr(fmt.Errorf("%s: %w", cmdPath, err))
	}
	return c, nil
}

func (a *app) contractPublishCmd() *cobra.Command {
	var (
		bf              brokerFlags
		version, branch string
		buildURL        string
		tags            []string
		merge           bool
	)
	cmd := &cobra.Command{
		Use:   "publish DIR|FILE...",
		Short: "Publish pacts to the broker for a consumer version",
		Long: `Publish the pact files (*.json) in each DIR, or each FILE, to the broker as
the pacts of --consumer-app-version of their consumer. Use the version
'flotilla contract version' derives from the service's paths, and --branch
the git branch.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if version == "" {
				return usageErr(fmt.Errorf("%s: --consumer-app-version is required", cmd.CommandPath()))
			}
			c, err := bf.client(cmd.CommandPath())
			if err != nil {
				return err
			}
			byConsumer, order, err := readPacts(args)
			if err != nil {
				return usageErr(err)
			}
			onConflict := "overwrite"
			if merge {
				onConflict = "merge"
			}
			for _, consumer := range order {
				req := broker.PublishRequest{PacticipantName: consumer, PacticipantVersionNumber: version, Branch: branch, Tags: tags, BuildURL: buildURL}
				for _, p := range byConsumer[consumer] {
					req.Contracts = append(req.Contracts, broker.PublishContract{
						ConsumerName: consumer, ProviderName: p.provider, Specification: "pact", ContentType: "application/json",
						Content: base64.StdEncoding.EncodeToString(p.content), OnConflict: onConflict,
					})
				}
				res, err := c.Publish(cmd.Context(), req)
				if err != nil {
					return remoteErr(fmt.Errorf("publish pacts of %s %s: %w", consumer, version, err))
				}
				for _, n := range res.Notices {
					fmt.Fprintln(a.stdout, n.Text)
				}
			}
			return nil
		},
	}
	bf.add(cmd)
	f := cmd.Flags()
	f.StringVarP(&version, "consumer-app-version", "a", "", "the consumer version the pacts belong to (required)")
	f.StringVar(&branch, "branch", "", "the git branch of the consumer version")
	f.StringArrayVarP(&tags, "tag", "t", nil, "a tag for the consumer version (repeatable)")
	f.StringVar(&buildURL, "build-url", "", "the CI build that produced the pacts")
	f.BoolVar(&merge, "merge", false, "merge the interactions into pacts already published for this version")
	return cmd
}

type pactFile struct {
	path     string
	provider string
	content  []byte
}

// readPacts reads the pact files named by args (files, or directories of
// *.json files) and groups them by consumer.
func readPacts(args []string) (map[string][]pactFile, []string, error) {
	var files []string
	for _, arg := range args {
		st, err := os.Stat(arg)
		if err != nil {
			return nil, nil, fmt.Errorf("publish %s: %w", arg, err)
		}
		if !st.IsDir() {
			files = append(files, arg)
			continue
		}
		found, err := filepath.Glob(filepath.Join(arg, "*.json"))
		if err != nil {
			return nil, nil, err
		}
		if len(found) == 0 {
			return nil, nil, fmt.Errorf("publish %s: no pact files (*.json) in this directory", arg)
		}
		files = append(files, found...)
	}
	sort.Strings(files)
	out := map[string][]pactFile{}
	var order []string
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, fmt.Errorf("publish: %w", err)
		}
		var doc struct {
			Consumer struct{ Name string } `json:"consumer"`
			Provider struct{ Name string } `json:"provider"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			return nil, nil, fmt.Errorf("publish %s: not a pact file: %w", jsonErrorPlace(path, data, err), err)
		}
		if doc.Consumer.Name == "" || doc.Provider.Name == "" {
			return nil, nil, fmt.Errorf("publish %s: not a pact file: consumer.name and provider.name are required", path)
		}
		if _, ok := out[doc.Consumer.Name]; !ok {
			order = append(order, doc.Consumer.Name)
		}
		out[doc.Consumer.Name] = append(out[doc.Consumer.Name], pactFile{path: path, provider: doc.Provider.Name, content: data})
	}
	return out, order, nil
}

// jsonErrorPlace names the file, and the line and column of a JSON syntax
// error in it.
func jsonErrorPlace(path string, data []byte, err error) string {
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		return path
	}
	off := min(int(se.Offset), len(data))
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := off - bytes.LastIndexByte(data[:off], '\n')
	return fmt.Sprintf("%s:%d:%d", path, line, col)
}

// releaseFile lists the services shipped together and their versions.
type releaseFile struct {
	Services map[string]string `yaml:"services"`
}

func readRelease(path string) ([]broker.Selector, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--release: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var rf releaseFile
	if err := dec.Decode(&rf); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w (want `services:` mapping each service to its version)", path, err)
	}
	if len(rf.Services) == 0 {
		return nil, fmt.Errorf("%s: no services: want `services:` mapping each service to its version", path)
	}
	var out []broker.Selector
	for name, v := range rf.Services {
		if strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("%s: services.%s: the version is empty", path, name)
		}
		out = append(out, broker.Selector{Pacticipant: name, Version: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pacticipant < out[j].Pacticipant })
	return out, nil
}

func (a *app) canIDeployCmd() *cobra.Command {
	var (
		bf            brokerFlags
		pacticipants  []string
		versions      []string
		release       string
		services      []string
		env, toTag    string
		toMain        bool
		ignore        []string
		output        string
		retries       int
		retryInterval time.Duration
		dryRun        bool
	)
	cmd := &cobra.Command{
		Use:   "can-i-deploy",
		Short: "Ask the broker whether versions can be deployed to an environment",
		Long: `Ask the broker's matrix whether the given versions are compatible with
everything in the target (--to-environment, or the latest versions with tag
--to). Pair each --pacticipant with a --version, or name a --release file
(services: {name: version}) or --service NAME (repeatable: each at the
version its source has in this checkout) to ask for a set of services
shipped together: the set is checked against itself and against the
environment in one question.

Exit status: 0 only when deployable, 1 when not (or still unknown), also
with -o json; 3 when the broker could not be asked (unreachable, failing).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := cmd.CommandPath()
			if output != "text" && output != "json" {
				return usageErr(fmt.Errorf("%s: -o %q: want text or json", path, output))
			}
			var sels []broker.Selector
			forms := 0
			for _, used := range []bool{release != "", len(pacticipants) > 0, len(services) > 0} {
				if used {
					forms++
				}
			}
			switch {
			case forms > 1:
				return usageErr(fmt.Errorf("%s: use one of --release, --service, or --pacticipant/--version", path))
			case release != "":
				var err error
				if sels, err = readRelease(release); err != nil {
					return usageErr(err)
				}
			case len(services) > 0:
				// Each service at the version its source has here.
				m, _, err := a.loadManifest()
				if err != nil {
					return err
				}
				for _, name := range services {
					svc := m.Service(name)
					if svc == nil {
						return usageErr(fmt.Errorf("%s: --service %s: no such service in %s (it has: %s)", path, name, m.File, strings.Join(m.Names(), ", ")))
					}
					v, err := svcversion.Of(cmd.Context(), m.Root, append(append([]string{}, svc.Paths...), m.Shared...)...)
					if err != nil {
						return usageErr(fmt.Errorf("%s: --service %s: %w", path, name, err))
					}
					sels = append(sels, broker.Selector{Pacticipant: name, Version: v})
				}
			default:
				if len(pacticipants) == 0 {
					return usageErr(fmt.Errorf("%s: name at least one --pacticipant with its --version, a --service, or a --release file", path))
				}
				if len(versions) != len(pacticipants) {
					return usageErr(fmt.Errorf("%s: give one --version for each --pacticipant (%d pacticipants, %d versions)", path, len(pacticipants), len(versions)))
				}
				for i, p := range pacticipants {
					sels = append(sels, broker.Selector{Pacticipant: p, Version: versions[i]})
				}
			}
			targets := 0
			for _, set := range []bool{env != "", toTag != "", toMain} {
				if set {
					targets++
				}
			}
			if targets != 1 {
				return usageErr(fmt.Errorf("%s: give one of --to-environment ENV, --to TAG or --to-main-branch", path))
			}
			c, err := bf.client(path)
			if err != nil {
				return err
			}
			q := broker.MatrixQuery{Selectors: sels, LatestBy: "cvpv", Target: broker.Target{Environment: env, Tag: toTag, MainBranch: toMain}}
			if toTag != "" || toMain {
				q.LatestBy = "cvp"
			}
			for _, ig := range ignore {
				q.Ignore = append(q.Ignore, broker.Selector{Pacticipant: ig})
			}
			var m client.Matrix
			for attempt := 0; ; attempt++ {
				m, err = c.Matrix(cmd.Context(), q)
				if err != nil {
					return remoteErr(fmt.Errorf("can-i-deploy: %w", err))
				}
				if m.Summary.Deployable != nil || attempt >= retries {
					break
				}
				fmt.Fprintf(a.stderr, "deployable is unknown (%s); asking again in %s (%d/%d)\n", firstLine(m.Summary.Reason), retryInterval, attempt+1, retries)
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(retryInterval):
				}
			}
			failures := a.failedInteractions(cmd.Context(), c, m)
			if output == "json" {
				out := map[string]any{"summary": m.Summary, "notices": m.Notices, "matrix": m.Rows, "failedInteractions": failures}
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(out); err != nil {
					return err
				}
			} else {
				printMatrix(a.stdout, m, failures)
			}
			if (m.Summary.Deployable != nil && *m.Summary.Deployable) || dryRun {
				return nil
			}
			return failed()
		},
	}
	bf.add(cmd)
	f := cmd.Flags()
	f.StringArrayVar(&pacticipants, "pacticipant", nil, "a service to deploy (repeatable; pair each with a --version)")
	f.StringArrayVarP(&versions, "version", "e", nil, "the version of the preceding --pacticipant")
	f.StringVar(&release, "release", "", "a YAML file `services: {name: version}` of services shipped together")
	f.StringArrayVar(&services, "service", nil, "a service of the manifest at the version of its source here (repeatable; see 'contract version')")
	f.StringVar(&env, "to-environment", "", "the environment to deploy to")
	f.StringVar(&toTag, "to", "", "check against the latest versions with this tag instead of an environment")
	f.BoolVar(&toMain, "to-main-branch", false, "check against the head of every main branch (can-i-merge)")
	f.StringArrayVar(&ignore, "ignore", nil, "a pacticipant whose integrations do not count (repeatable)")
	f.StringVarP(&output, "output", "o", "text", "text or json")
	f.IntVar(&retries, "retry-while-unknown", 0, "ask again this many times while the answer is unknown (a verification is pending)")
	f.DurationVar(&retryInterval, "retry-interval", 10*time.Second, "the wait between --retry-while-unknown attempts")
	f.BoolVar(&dryRun, "dry-run", false, "print the answer but always exit 0")
	return cmd
}

// failedInteraction is an interaction whose verification failed.
type failedInteraction struct {
	Consumer        string            `json:"consumer"`
	ConsumerVersion string            `json:"consumerVersion"`
	Provider        string            `json:"provider"`
	ProviderVersion string            `json:"providerVersion"`
	InteractionID   string            `json:"interactionId,omitempty"`
	Description     string            `json:"description"`
	Mismatches      []client.Mismatch `json:"mismatches"`
}

// failedInteractions reads the failed verification results the matrix
// points at, to name the interactions that break.
func (a *app) failedInteractions(ctx context.Context, c *client.Client, m client.Matrix) []failedInteraction {
	out := []failedInteraction{}
	for _, r := range m.Rows {
		if r.Ignored || r.VerificationResult == nil || r.VerificationResult.Success || r.VerificationResult.Links.Self.Href == "" {
			continue
		}
		v, err := c.Verification(ctx, r.VerificationResult.Links.Self.Href)
		if err != nil {
			fmt.Fprintf(a.stderr, "flotilla: could not read the failed verification of %s by %s: %v\n", r.Consumer.Name, r.Provider.Name, err)
			continue
		}
		for _, tr := range v.TestResults {
			if tr.Success {
				continue
			}
			out = append(out, failedInteraction{
				Consumer: r.Consumer.Name, ConsumerVersion: r.Consumer.VersionNumber(),
				Provider: r.Provider.Name, ProviderVersion: r.Provider.VersionNumber(),
				InteractionID: tr.InteractionID, Description: tr.InteractionDescription, Mismatches: tr.Mismatches,
			})
		}
	}
	return out
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func printMatrix(w io.Writer, m client.Matrix, failures []failedInteraction) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONSUMER\tC.VERSION\tPROVIDER\tP.VERSION\tSUCCESS?\tREASON")
	for _, r := range m.Rows {
		pv := r.Provider.VersionNumber()
		if pv == "" {
			pv = "-"
		}
		res, why := "unknown", "not verified by this provider version yet"
		switch {
		case r.Provider.Version == nil:
			why = "no version of " + r.Provider.Name + " to check against"
		case r.VerificationResult != nil && r.VerificationResult.Success:
			res, why = "true", "verified"
		case r.VerificationResult != nil:
			res, why = "false", "verification failed"
		}
		if r.Ignored {
			res += " (ignored)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Consumer.Name, r.Consumer.VersionNumber(), r.Provider.Name, pv, res, why)
	}
	_ = tw.Flush()
	if len(m.Rows) == 0 {
		fmt.Fprintln(w, "(no integrations)")
	}
	fmt.Fprintln(w)
	for _, f := range failures {
		fmt.Fprintf(w, "✗ %s → %s: interaction %q failed against %s %s\n", f.Consumer, f.Provider, f.Description, f.Provider, f.ProviderVersion)
		for _, mm := range f.Mismatches {
			where := mm.Attribute
			if mm.Identifier != "" {
				where += " " + mm.Identifier
			}
			fmt.Fprintf(w, "    %s: %s\n", where, mm.Description)
		}
	}
	if len(failures) > 0 {
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, m.Summary.Reason)
	switch d := m.Summary.Deployable; {
	case d == nil:
		fmt.Fprintln(w, "deployable: unknown")
	case *d:
		fmt.Fprintln(w, "deployable: yes")
	default:
		fmt.Fprintln(w, "deployable: no")
	}
}

func (a *app) recordUndeploymentCmd() *cobra.Command {
	var (
		bf                   brokerFlags
		pacticipant, env, ai string
	)
	cmd := &cobra.Command{
		Use:   "record-undeployment",
		Short: "Record that a service is no longer deployed to an environment",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := cmd.CommandPath()
			if pacticipant == "" || env == "" {
				return usageErr(fmt.Errorf("%s: --pacticipant and --environment are required", path))
			}
			c, err := bf.client(path)
			if err != nil {
				return err
			}
			versions, err := c.RecordUndeployment(cmd.Context(), pacticipant, env, ai)
			if err != nil {
				return remoteErr(fmt.Errorf("record-undeployment: %w", err))
			}
			fmt.Fprintf(a.stdout, "recorded undeployment of %s %s from %s\n", pacticipant, strings.Join(versions, ", "), env)
			return nil
		},
	}
	bf.add(cmd)
	f := cmd.Flags()
	f.StringVar(&pacticipant, "pacticipant", "", "the service")
	f.StringVar(&env, "environment", "", "the environment")
	f.StringVar(&ai, "application-instance", "", "only this instance of the service")
	return cmd
}

func (a *app) recordDeploymentCmd(release bool) *cobra.Command {
	var (
		bf                            brokerFlags
		pacticipant, version, env, ai string
	)
	use, short, verb := "record-deployment", "Record that a version is deployed to an environment", "deployment"
	if release {
		use, short, verb = "record-release", "Record that a version is released (and supported) in an environment", "release"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := cmd.CommandPath()
			if pacticipant == "" || version == "" || env == "" {
				return usageErr(fmt.Errorf("%s: --pacticipant, --version and --environment are required", path))
			}
			c, err := bf.client(path)
			if err != nil {
				return err
			}
			if err := c.RecordDeployment(cmd.Context(), pacticipant, version, env, ai, release); err != nil {
				return remoteErr(fmt.Errorf("%s: %w", use, err))
			}
			fmt.Fprintf(a.stdout, "recorded %s of %s %s to %s\n", verb, pacticipant, version, env)
			return nil
		},
	}
	bf.add(cmd)
	f := cmd.Flags()
	f.StringVar(&pacticipant, "pacticipant", "", "the service")
	f.StringVarP(&version, "version", "e", "", "its version")
	f.StringVar(&env, "environment", "", "the environment")
	if !release {
		f.StringVar(&ai, "application-instance", "", "the instance, when several of the service run side by side in the environment")
	}
	return cmd
}
