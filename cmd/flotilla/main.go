// Command flotilla takes a microservices monorepo from commit to production:
// the service graph, affected detection, contracts, event schemas, ordered
// deploys with canaries, and traces. Run `flotilla --help` for the commands.
//
// This is the only place that reads flags and environment variables and the
// only place that picks backends.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/flotilla-ci/flotilla/broker/client"
	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/schema/serde"
)

// version may be set at build time with -ldflags "-X main.version=...";
// otherwise flotilla version reads the module version and VCS stamp Go
// records in the binary.
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// app holds what every command shares: the streams and the global flags.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	manifest       string // -f: the manifest path; empty means search upwards
}

// Exit codes, the same meaning for every command (exitCodesHelp says it to
// users; the README repeats it).
const (
	exitOK       = 0 // done: the answer is yes
	exitNo       = 1 // the answer is no: a check found a problem, an action failed
	exitUsage    = 2 // bad flags, arguments or input files: nothing was checked or changed
	exitNoAnswer = 3 // a server, git or the disk failed: the answer is unknown
	// exitInterrupted is a shell's code for a process stopped by SIGINT.
	exitInterrupted = 130
)

const exitCodesHelp = `Exit status, for every command:
  0  done; the answer is yes (valid, compatible, deployable, deployed)
  1  the answer is no: a check found a problem in what it examines (graph check:
     the manifest, syntax included; schema check/compare: the schemas; contract
     verify: the provider; can-i-deploy: the matrix), or an action failed (a
     deploy or rollback that rolled back, up that could not start the platform)
  2  usage or input error: a bad flag or argument, an unknown service, or an
     input that is missing, unreadable, unparsable or invalid (the manifest for
     every command but graph check, a pact, a config); nothing was done
  3  no answer: a server flotilla talks to (control plane, broker, registry) is
     unreachable, busy or failing, or git or the disk failed; retry
  130  interrupted (Ctrl-C or SIGTERM) before the command finished`

// run executes the CLI and returns the process exit code (exitCodesHelp).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "flotilla: interrupted")
		return exitInterrupted
	}
	var ex *exitError
	if errors.As(err, &ex) {
		if ex.err != nil {
			fmt.Fprintln(stderr, "flotilla:", ex.err)
		}
		return ex.code
	}
	fmt.Fprintln(stderr, "flotilla:", err)
	// Errors a command returns are classified (classify); what is left
	// comes from cobra itself (unknown command, bad flag): usage.
	return exitUsage
}

// classify gives every command's errors an exit code: an argument count
// cobra rejects is usage (2); an error a command returns without saying
// what it means is one it did not expect: no answer (3).
func classify(c *cobra.Command) {
	if args := c.Args; args != nil {
		c.Args = func(cmd *cobra.Command, a []string) error {
			if err := args(cmd, a); err != nil {
				return usageErr(fmt.Errorf("%s: %w (see '%s --help')", cmd.CommandPath(), err, cmd.CommandPath()))
			}
			return nil
		}
	}
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, a []string) error {
			err := run(cmd, a)
			var ex *exitError
			if err == nil || errors.As(err, &ex) {
				return err
			}
			return &exitError{code: exitNoAnswer, err: err}
		}
	}
	for _, sub := range c.Commands() {
		classify(sub)
	}
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "flotilla",
		Short: "Take a microservices monorepo from commit to production",
		Long: `flotilla knows your service graph, tests only what a change affects, proves
every API and event contract compatible before anything ships, deploys in
dependency order with canaries, and traces every request across services.

` + exitCodesHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&a.manifest, "file", "f", "", "the manifest (flotilla.yaml, or a scenario dependency-graph .json); default: the nearest flotilla.yaml upwards")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: 2, err: fmt.Errorf("%s: %w (see '%s --help')", c.CommandPath(), err, c.CommandPath())}
	})
	root.AddCommand(
		a.versionCmd(),
		a.brokerCmd(),
		a.graphCmd(),
		a.affectedCmd(),
		a.registryCmd(),
		a.schemaCmd(),
		a.contractCmd(),
		a.upCmd(), a.deployCmd(), a.statusCmd(), a.historyCmd(), a.rollbackCmd(), a.canaryCmd(), a.logsCmd(), a.gcCmd(), a.certsCmd(),
		a.loadCmd(),
		a.busCmd(),
		a.dataplaneCmd(),
		a.renderCmd(),
		a.chaosCmd(), a.shopCmd(),
		a.traceCmd(),
	)
	classify(root)
	return root
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print flotilla's version",
		Args:  cobra.NoArgs,
		Long: `version prints the module version flotilla was built as (a tag when
installed with 'go install ...@v1.2.3', "(devel)" when built in a checkout),
the VCS commit, whether the tree had uncommitted changes, the commit time, and
the Go version and platform.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, _ := debug.ReadBuildInfo()
			fmt.Fprintln(a.stdout, versionLine(version, info))
			return nil
		},
	}
}

// versionLine describes the build: "flotilla v1.2.3 (commit 3f2a1b9c0d1e,
// dirty, 2026-12-07T10:00:00Z) go1.25.0 linux/amd64". set is -X main.version
// ("dev" when not set); info is nil when the binary has no build info.
func versionLine(set string, info *debug.BuildInfo) string {
	v := set
	if info == nil {
		return "flotilla " + v + " (no build information)"
	}
	if v == "dev" && info.Main.Version != "" {
		v = info.Main.Version
	}
	var rev, when, goos, goarch string
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	var parts []string
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		parts = append(parts, "commit "+rev)
		if dirty {
			parts = append(parts, "dirty")
		}
		if when != "" {
			parts = append(parts, when)
		}
	} else {
		parts = append(parts, "no VCS information")
	}
	line := fmt.Sprintf("flotilla %s (%s) %s", v, strings.Join(parts, ", "), info.GoVersion)
	if goos != "" {
		line += " " + goos + "/" + goarch
	}
	return line
}

// exitError carries a process exit code with the error to print (nil when
// the command already said everything, as a failed check does).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageErr is an error in what the user handed us: exit code 2.
func usageErr(err error) error { return &exitError{code: exitUsage, err: err} }

// failed is a negative answer already reported on stdout: exit code 1.
func failed() error { return &exitError{code: exitNo} }

// problem is a negative answer with the error that says why: exit code 1.
func problem(err error) error { return &exitError{code: exitNo, err: err} }

// noAnswer is a failure to get an answer (a server, git, the disk): exit
// code 3.
func noAnswer(err error) error { return &exitError{code: exitNoAnswer, err: err} }

// remoteErr classifies an error from a server flotilla talks to (the control
// plane, the broker, the registry). The answer is unknown (3) when the server
// could not be reached, timed out, throttled, failed (5xx) or is busy (a
// release running, 409 from the control plane). Any other answer refused
// what the user sent (a 4xx, bad credentials, a version or environment it
// does not know): usage (2).
func remoteErr(err error) error {
	status := 0
	var cp *controlplane.APIError
	var br *client.Error
	var se *serde.APIError
	var kr *sr.ResponseError
	var ue *url.Error
	var ne net.Error
	switch {
	case errors.As(err, &cp):
		status = cp.Status
		if status == http.StatusConflict {
			return noAnswer(err) // busy with another release
		}
	case errors.As(err, &br):
		status = br.Status
	case errors.As(err, &se):
		status = se.Status
	case errors.As(err, &kr):
		status = kr.StatusCode
	case errors.Is(err, controlplane.ErrUnreachable), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ue), errors.As(err, &ne):
		return noAnswer(err)
	}
	if status >= 500 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests {
		return noAnswer(err)
	}
	return usageErr(err)
}
