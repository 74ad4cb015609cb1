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
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
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

// run executes the CLI and returns the process exit code: 0 success, 1 a
// negative answer or failed check, 2 bad input or usage.
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
	var ex *exitError
	if errors.As(err, &ex) {
		if ex.err != nil {
			fmt.Fprintln(stderr, "flotilla:", ex.err)
		}
		return ex.code
	}
	fmt.Fprintln(stderr, "flotilla:", err)
	// Anything cobra itself rejects (unknown command, bad flag) is usage.
	return 2
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "flotilla",
		Short: "Take a microservices monorepo from commit to production",
		Long: `flotilla knows your service graph, tests only what a change affects, proves
every API and event contract compatible before anything ships, deploys in
dependency order with canaries, and traces every request across services.`,
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
		a.upCmd(), a.deployCmd(), a.statusCmd(), a.historyCmd(), a.rollbackCmd(), a.logsCmd(), a.gcCmd(),
		a.loadCmd(),
	)
	return root
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print flotilla's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(a.stdout, "flotilla %s\n", version)
			return nil
		},
	}
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
func usageErr(err error) error { return &exitError{code: 2, err: err} }

// failed is a negative answer already reported on stdout: exit code 1.
func failed() error { return &exitError{code: 1} }
