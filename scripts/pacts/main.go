// Command pacts keeps pacts/, the shop's committed pacts, equal to what the
// shop's consumer contract tests declare.
//
//	go run ./scripts/pacts          # make pacts: regenerate pacts/
//	go run ./scripts/pacts -check   # make pacts-check: fail when pacts/ differs (CI)
//
// Both run the consumer tests once, complete, with FLOTILLA_PACT_DIR naming
// an empty temporary directory: the tests of a consumer, in one package or
// in several running in parallel, merge their interactions into its pact
// with each provider there, and nothing from an earlier run is in it.
// Regenerating then replaces pacts/ with that directory, as Pact's
// "overwrite" write mode does: an interaction no test declares any more
// leaves its pact and a pact no test writes any more is removed, so a
// provider can drop an endpoint once its consumers stopped calling it.
//
// The consumer tests are the tests named TestContract… in ./shop/...,
// without the providers' TestContractProvider: those verify pacts/ and must
// not stand in the way of regenerating it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/flotilla-ci/flotilla/contract"
)

func main() {
	check := flag.Bool("check", false, "compare pacts/ with what the consumer tests write and fail when they differ; change nothing")
	pkgs := flag.String("pkg", "./shop/...", "the packages holding the consumer tests")
	runRE := flag.String("run", "^TestContract", "go test -run: the consumer tests")
	skipRE := flag.String("skip", "^TestContractProvider$", "go test -skip: tests matching -run that only verify pacts/")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pacts:", err)
		os.Exit(2)
	}
	err = run(ctx, options{
		root:   root,
		dir:    contract.DefaultDir,
		check:  *check,
		test:   goTest(root, strings.Fields(*pkgs), *runRE, *skipRE),
		stdout: os.Stdout,
		stderr: os.Stderr,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "pacts:", err)
		os.Exit(1)
	}
}

// options are one run of the command.
type options struct {
	root  string // the module root
	dir   string // the committed pacts, relative to root
	check bool
	// test runs the consumer tests, writing their pacts into out.
	test           func(ctx context.Context, out string) error
	stdout, stderr io.Writer
}

// regenerate is the command that brings pacts/ up to date.
const regenerate = "make pacts"

func run(ctx context.Context, o options) error {
	out, err := os.MkdirTemp("", "flotilla-pacts-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(out) }()
	if err := o.test(ctx, out); err != nil {
		return fmt.Errorf("the consumer tests failed (%w): %s/ is left as it was", err, o.dir)
	}
	fresh, err := readPacts(out)
	if err != nil {
		return err
	}
	if len(fresh) == 0 {
		return fmt.Errorf("no consumer test wrote a pact: %s/ is left as it was", o.dir)
	}
	committedDir := filepath.Join(o.root, o.dir)
	committed, err := readPacts(committedDir)
	if err != nil {
		return err
	}
	changes := compare(committed, fresh)
	report := o.stdout
	if o.check {
		report = o.stderr
	}
	for _, c := range changes {
		fmt.Fprint(report, c.describe(o.dir))
	}
	if o.check {
		if len(changes) > 0 {
			return fmt.Errorf("%s/ differs from what the consumer tests write (%d file(s) above): run `%s` and commit %s/", o.dir, len(changes), regenerate, o.dir)
		}
		fmt.Fprintf(o.stdout, "%s/: %d pact(s), as the consumer tests write them\n", o.dir, len(fresh))
		return nil
	}
	if err := apply(committedDir, changes); err != nil {
		return err
	}
	if len(changes) == 0 {
		fmt.Fprintf(o.stdout, "%s/ is up to date: %d pact(s)\n", o.dir, len(fresh))
	} else {
		fmt.Fprintf(o.stdout, "%s/: %d pact(s), %d file(s) written or removed: commit them\n", o.dir, len(fresh), len(changes))
	}
	return nil
}

// goTest runs the consumer tests of pkgs with FLOTILLA_PACT_DIR=out.
func goTest(root string, pkgs []string, runRE, skipRE string) func(context.Context, string) error {
	return func(ctx context.Context, out string) error {
		args := []string{"test", "-count=1", "-run", runRE}
		if skipRE != "" {
			args = append(args, "-skip", skipRE)
		}
		args = append(args, pkgs...)
		fmt.Fprintf(os.Stderr, "pacts: %s=%s go %s\n", contract.EnvPactDir, out, strings.Join(quoteAll(args), " "))
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), contract.EnvPactDir+"="+out)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		return cmd.Run()
	}
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " ^$*|") {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}

func moduleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("no go.mod above the working directory: run from the repository")
		}
	}
}

// readPacts is the *.json files of dir by name; a missing dir has none.
func readPacts(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return files, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		files[e.Name()] = b
	}
	return files, nil
}

// change is one file that differs: old is nil for a pact the tests write
// that pacts/ lacks, new is nil for one no test writes any more.
type change struct {
	name     string
	old, new []byte
}

func compare(committed, fresh map[string][]byte) []change {
	names := map[string]bool{}
	for n := range committed {
		names[n] = true
	}
	for n := range fresh {
		names[n] = true
	}
	var out []change
	for n := range names {
		if old, nw := committed[n], fresh[n]; !bytes.Equal(old, nw) || (old == nil) != (nw == nil) {
			out = append(out, change{name: n, old: old, new: nw})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// describe says what changed in the file, interaction by interaction
// where both sides parse.
func (c change) describe(dir string) string {
	var b strings.Builder
	path := dir + "/" + c.name
	switch {
	case c.old == nil:
		fmt.Fprintf(&b, "%s: missing; the consumer tests write it\n", path)
		return b.String()
	case c.new == nil:
		fmt.Fprintf(&b, "%s: no consumer test writes it any more\n", path)
		return b.String()
	}
	fmt.Fprintf(&b, "%s differs from what the consumer tests write:\n", path)
	lines := interactionChanges(c.old, c.new)
	if len(lines) == 0 {
		lines = []string{firstDifference(c.old, c.new)}
	}
	for _, l := range lines {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	return b.String()
}

// interactionChanges lists the interactions the tests no longer declare,
// declare anew, or declare differently; nothing when a side does not parse
// or only the rest of the file differs.
func interactionChanges(was, now []byte) []string {
	po, err1 := contract.Parse(was)
	pn, err2 := contract.Parse(now)
	if err1 != nil || err2 != nil {
		return nil
	}
	before, after := interactions(po), interactions(pn)
	keys := map[string]bool{}
	for k := range before {
		keys[k] = true
	}
	for k := range after {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var out []string
	for _, k := range sorted {
		o, n := before[k], after[k]
		switch {
		case n.in == nil:
			out = append(out, "- "+o.name+": no test declares it any more")
		case o.in == nil:
			out = append(out, "+ "+n.name+": declared by the tests, not in the file")
		case !bytes.Equal(render(o.in), render(n.in)):
			out = append(out, "~ "+n.name+": declared differently")
		}
	}
	return out
}

type named struct {
	name string
	in   *contract.Interaction
}

func interactions(p *contract.Pact) map[string]named {
	out := map[string]named{}
	for _, in := range p.Interactions {
		var states []string
		key := string(in.Kind) + "\x00" + in.Description
		for _, s := range in.States {
			states = append(states, strconv.Quote(s.Name))
			params, _ := json.Marshal(s.Params)
			key += "\x00" + s.Name + string(params)
		}
		name := fmt.Sprintf("interaction %q", in.Description)
		if len(states) > 0 {
			name += " (given " + strings.Join(states, ", ") + ")"
		}
		out[key] = named{name: name, in: in}
	}
	return out
}

// render is an interaction as a pact file holds it, its key aside.
func render(in *contract.Interaction) []byte {
	c := *in
	c.Key = ""
	b, _ := (&contract.Pact{Interactions: []*contract.Interaction{&c}}).Marshal(contract.V4)
	return b
}

func firstDifference(was, now []byte) string {
	a, b := strings.Split(string(was), "\n"), strings.Split(string(now), "\n")
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return fmt.Sprintf("line %d: the file has %q, the tests write %q", i+1, strings.TrimSpace(x), strings.TrimSpace(y))
		}
	}
	return "the files differ"
}

// apply makes dir hold the fresh pacts: changed and new files are written
// (through a temporary file and a rename), the others removed.
func apply(dir string, changes []change) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, c := range changes {
		path := filepath.Join(dir, c.name)
		if c.new == nil {
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("remove %s: %w", path, err)
			}
			continue
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, c.new, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}
