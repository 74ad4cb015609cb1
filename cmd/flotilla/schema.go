package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/schema"
	"github.com/flotilla-ci/flotilla/schema/repocheck"
	"github.com/flotilla-ci/flotilla/schema/serde"
)

func (a *app) schemaCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schema",
		Short: "Check and register the event schemas (.avsc) the services own",
		Long: `Every event has an Avro schema in the repository, owned by the service that
publishes it (shop/<service>/schemas/<EventName>.avsc, the record named after
the event). Its registry subject is "<EventName>-value": Confluent's
TopicNameStrategy with one topic (or NATS subject) per event.`,
	}
	cmd.AddCommand(a.schemaCheckCmd(), a.schemaRegisterCmd(), a.schemaCompareCmd())
	return cmd
}

// schemaManifest loads the manifest, printing its warnings to stderr.
func (a *app) schemaManifest() (*graph.Manifest, error) {
	m, warnings, err := a.loadManifest()
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		fmt.Fprintln(a.stderr, "warning:", w)
	}
	return m, nil
}

func registryFlags(cmd *cobra.Command, url, user *string) {
	cmd.Flags().StringVar(url, "registry", os.Getenv("FLOTILLA_REGISTRY_URL"), "schema registry URL (default $FLOTILLA_REGISTRY_URL)")
	cmd.Flags().StringVar(user, "user", os.Getenv("FLOTILLA_REGISTRY_USER"), "registry basic auth as NAME:PASSWORD (default $FLOTILLA_REGISTRY_USER)")
}

func registryClient(url, user string) (*serde.Client, error) {
	name, pass := "", ""
	if user != "" {
		var ok bool
		if name, pass, ok = strings.Cut(user, ":"); !ok {
			return nil, usageErr(fmt.Errorf("--user: want NAME:PASSWORD"))
		}
	}
	return serde.NewClient(url, name, pass), nil
}

func (a *app) schemaCheckCmd() *cobra.Command {
	var base, url, user, mode, output string
	var retained int
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check every schema against its version at a git ref and in the registry",
		Long: `Check finds every .avsc owned by a service in the manifest and checks it
against its version at --base (default HEAD) and, with --registry, against
every version registered for its subject under the subject's level. Each
incompatibility is printed with the file, the location in the schema, the
reason (Confluent's names) and the subscribing services that would break.

Every consumer's reader schema (<service path>/readers/<Event>.avsc) is
checked against every writer version it may receive: the one in the change,
the one at --base, and the versions registered for the event (the latest
--retained, default all). A producer change a consumer's reader cannot read
is refused with the consumer, the reader file and line, the field and the
rule. A consumer that keeps reader schemas must keep one for each event it
subscribes to, and none for another.

Exit status 1 when any schema is invalid or incompatible, a reader cannot
read what it may receive, or reader files and subscribes disagree; 3 when
the registry is unreachable (nothing is reported then).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := a.schemaManifest()
			if err != nil {
				return err
			}
			if retained < 0 {
				return usageErr(fmt.Errorf("--retained %d: want 0 (every version) or more", retained))
			}
			opts := repocheck.Options{Base: base, Retained: retained}
			if mode != "" {
				if opts.Mode, err = schema.ParseMode(mode); err != nil {
					return usageErr(fmt.Errorf("--mode: %w", err))
				}
			}
			if url != "" {
				if opts.Registry, err = registryClient(url, user); err != nil {
					return err
				}
			}
			if output != "text" && output != "github" {
				return usageErr(fmt.Errorf("-o %q: want text or github", output))
			}
			rep, err := repocheck.Check(cmd.Context(), m, opts)
			if err != nil {
				return registryErr(url, err)
			}
			if output == "github" {
				rep.WriteGitHub(a.stdout)
			}
			rep.Write(a.stdout)
			return schemaCheckExit(rep)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text, or github (also error annotations on the schema files for GitHub Actions)")
	cmd.Flags().StringVar(&base, "base", "HEAD", "git ref to compare with (\"\" to skip)")
	cmd.Flags().StringVar(&mode, "mode", "", "compatibility level (default FULL against --base, the subject's level in the registry)")
	cmd.Flags().IntVar(&retained, "retained", 0, "how many of the latest registered writer versions may still be in a topic, so every reader must read them (0: all)")
	registryFlags(cmd, &url, &user)
	return cmd
}

// registryErr: a registry that could not be reached (or answered 5xx) is
// "registry unreachable", exit 3, and no report; anything else it refused
// is the remote error's usual class.
func registryErr(url string, err error) error {
	var ex *exitError
	if e := remoteErr(err); errors.As(e, &ex) && ex.code == exitNoAnswer && url != "" {
		return noAnswer(fmt.Errorf("registry unreachable at %s: %w", url, err))
	}
	return remoteErr(err)
}

func (a *app) schemaRegisterCmd() *cobra.Command {
	var url, user, level string
	cmd := &cobra.Command{
		Use:   "register",
		Short: "Register every schema under its event's subject (the main-branch CI step)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" {
				return usageErr(fmt.Errorf("schema register: --registry URL (or FLOTILLA_REGISTRY_URL) is required"))
			}
			m, err := a.schemaManifest()
			if err != nil {
				return err
			}
			var lvl schema.Mode
			if level != "" {
				if lvl, err = schema.ParseMode(level); err != nil {
					return usageErr(fmt.Errorf("--level: %w", err))
				}
			}
			cl, err := registryClient(url, user)
			if err != nil {
				return err
			}
			res, err := repocheck.Register(cmd.Context(), m, cl, lvl)
			if err != nil {
				return remoteErr(err)
			}
			bad := 0
			for _, r := range res {
				if r.Err != nil {
					bad++
					fmt.Fprintf(a.stdout, "FAIL %s  (%s): %v\n", r.Path, r.Subject(), r.Err)
					continue
				}
				fmt.Fprintf(a.stdout, "ok   %s  %s id %d\n", r.Path, r.Subject(), r.ID)
			}
			fmt.Fprintf(a.stdout, "%d schemas, %d failed\n", len(res), bad)
			if bad > 0 {
				return failed()
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&level, "level", "", "set each subject's compatibility level first (e.g. FULL, matching schema check's default)")
	registryFlags(cmd, &url, &user)
	return cmd
}

func (a *app) schemaCompareCmd() *cobra.Command {
	var mode string
	cmd := &cobra.Command{
		Use:   "compare OLD.avsc NEW.avsc",
		Short: "Check whether a new version of a schema is compatible with an old one",
		Long: `Compare checks NEW against OLD under a compatibility level (default FULL)
and prints every incompatibility with its location and reason. Exit status 1
when they are incompatible or either is not a valid schema, 2 when a file
cannot be read.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := schema.ParseMode(mode)
			if err != nil {
				return usageErr(fmt.Errorf("--mode: %w", err))
			}
			var parsed [2]*schema.Schema
			for i, file := range args {
				b, err := os.ReadFile(file)
				if err != nil {
					return usageErr(err)
				}
				if parsed[i], err = schema.Parse(string(b)); err != nil {
					// The schemas are what compare examines: an invalid one is
					// a "no" (1), as in schema check; a missing file is usage.
					return problem(fmt.Errorf("%s: %w", file, err))
				}
			}
			problems := m.Check(parsed[1], []schema.Version{{Version: 1, Schema: parsed[0]}})
			for _, p := range problems {
				fmt.Fprintf(a.stdout, "%s at %s: %s (%s)\n", p.Reason, p.Location, p.Description(), p.Direction)
			}
			if len(problems) > 0 {
				fmt.Fprintf(a.stdout, "%s is not %s compatible with %s: %d problems\n", args[1], m, args[0], len(problems))
				return failed()
			}
			fmt.Fprintf(a.stdout, "%s is %s compatible with %s\n", args[1], m, args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&mode, "mode", string(schema.Full), "compatibility level")
	return cmd
}

// schemaCheckExit: 1 when a schema is invalid, incompatible or removed
// while subscribed (the report says which); when the only failures are
// checks that could not run (a registry unreachable, git failing), the
// code of that error (3 for an unreachable registry); else 0.
func schemaCheckExit(rep *repocheck.Report) error {
	if len(rep.Findings) > 0 {
		return failed()
	}
	for _, rr := range rep.Readers {
		if rr.Failed() {
			return failed()
		}
	}
	var checkErr error
	for _, r := range rep.Results {
		if !r.Failed() {
			continue
		}
		finding := r.File.Err != nil || (r.Removed && len(r.Consumers) > 0) || len(r.BrokenReaders) > 0
		for _, c := range r.Comparisons {
			finding = finding || len(c.Problems) > 0
		}
		if finding {
			return failed()
		}
		if r.Err != nil && checkErr == nil {
			checkErr = r.Err
		}
	}
	if checkErr == nil {
		return nil
	}
	var ex *exitError
	if errors.As(remoteErr(checkErr), &ex) {
		return &exitError{code: ex.code} // the report printed the error
	}
	return failed()
}
