// Command envreport prints one line for each FLOTILLA_TEST_* variable that
// some package of the module reads and that is unset, naming the packages
// whose suites will skip (`make` runs it as env-report). The list comes
// from the code (testenv.Readers), so a variable nothing reads is never
// announced, and a new suite's variable is announced at once.
package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/flotilla-ci/flotilla/internal/testenv"
)

func main() {
	root, err := testenv.ModuleRoot(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "env-report:", err)
		os.Exit(1)
	}
	readers, err := testenv.Readers(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "env-report:", err)
		os.Exit(1)
	}
	report(os.Stdout, readers, os.Getenv)
}

func report(w io.Writer, readers map[string][]string, getenv func(string) string) {
	var vars []string
	for v := range readers {
		vars = append(vars, v)
	}
	slices.Sort(vars)
	for _, v := range vars {
		if strings.TrimSpace(getenv(v)) == "" {
			fmt.Fprintf(w, "note: %s not set: suites that need it are skipped (read in %s)\n", v, strings.Join(readers[v], ", "))
		}
	}
}
