package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/deploy/local"
	"github.com/flotilla-ci/flotilla/deploy/sqlstore"
	"github.com/flotilla-ci/flotilla/graph"
)

func (a *app) logsCmd() *cobra.Command {
	var (
		data, version string
		follow        bool
		lines         int
	)
	cmd := &cobra.Command{
		Use:   "logs SERVICE",
		Short: "Print a service's output (stdout and stderr of its instances)",
		Long: `logs prints what a locally deployed service wrote: by default the log of the
version that serves (the history's; after a rollback, the version rolled back
to), or of the version written to most recently when none does, its last
--lines lines; --version picks
another version, --follow (-F) keeps printing what is appended until interrupted.
Restarts and crash loops are noted in the log by flotilla.

A log past its size limit (10 MiB by default) is rotated (VERSION.log.1, .2; the oldest dropped): logs
reads the rotated files and the live one in order, and --follow goes on
across a rotation.`,
		Example: `  flotilla logs order-service
  flotilla logs order-service --follow
  flotilla logs order-service --version 3f2a1b9c0d1e -n 500`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, _, err := a.loadManifest()
			if err != nil {
				return err
			}
			service := args[0]
			if m.Service(service) == nil {
				g := graph.New(m)
				_, err := g.Waves([]string{service})
				return usageErr(err)
			}
			if data == "" {
				data = filepath.Join(m.Root, ".flotilla")
			}
			dir := local.DirIn(data)
			files, err := local.Logs(dir, service)
			if err != nil {
				return noAnswer(err)
			}
			var file *local.LogFile
			for i := range files {
				if version == "" || files[i].Version == version || strings.HasPrefix(files[i].Version, version) {
					file = &files[i]
					break
				}
			}
			if version == "" && file != nil {
				// The version that serves, as the history says (after
				// a rollback the version rolled back from wrote last,
				// draining); the newest log when the history is silent.
				if v := servingVersion(cmd.Context(), data, service); v != "" && v != file.Version {
					for i := range files {
						if files[i].Version == v {
							fmt.Fprintf(a.stderr, "%s serves %s; %s wrote last (--version %s shows it)\n", service, v, files[0].Version, files[0].Version)
							file = &files[i]
							break
						}
					}
				}
			}
			if file == nil {
				if version != "" && len(files) > 0 {
					var vs []string
					for _, f := range files {
						vs = append(vs, f.Version)
					}
					return problem(fmt.Errorf("no log of %s version %s (it has: %s)", service, version, strings.Join(vs, ", ")))
				}
				return problem(fmt.Errorf("no logs of %s under %s: it has not run here ('flotilla up' or 'flotilla deploy %s' runs it)", service, dir, service))
			}
			r, err := local.OpenLog(file.Path)
			if err != nil {
				return noAnswer(err)
			}
			defer func() { _ = r.Close() }()
			if err := r.Tail(a.stdout, lines); err != nil {
				return noAnswer(err)
			}
			if follow {
				if err := r.Follow(cmd.Context(), a.stdout, 200*time.Millisecond); err != nil {
					return noAnswer(err)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", "", "the data directory 'flotilla up' uses (default: .flotilla beside the manifest)")
	f.StringVar(&version, "version", "", "the version whose log to print (a prefix is enough)")
	// -f is the global manifest flag, so following is -F.
	f.BoolVarP(&follow, "follow", "F", false, "keep printing what is appended")
	f.IntVarP(&lines, "lines", "n", 100, "print the last N lines (0: all)")
	return cmd
}

// servingVersion is the version of service the history in the data
// directory says serves ("" when there is no history or no record of it).
// The platform may be running: SQLite readers do not wait for it.
func servingVersion(ctx context.Context, data, service string) string {
	path := filepath.Join(data, "flotilla.db")
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	st, err := sqlstore.Open(ctx, path)
	if err != nil {
		return ""
	}
	defer func() { _ = st.Close() }()
	rec, err := st.Current(ctx, service)
	if err != nil {
		return ""
	}
	return rec.Version
}
