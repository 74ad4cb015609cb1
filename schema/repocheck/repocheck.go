// Package repocheck finds the event schemas (Avro .avsc, Protobuf .proto,
// JSON Schema .schema.json) a repository's services
// own and checks each against its version at a git ref and, optionally,
// against every version registered for its subject in a schema registry,
// naming for every incompatibility the file, the location, the reason and
// the subscribing services that would break. It is `flotilla schema check`
// and `flotilla schema register` without the CLI.
package repocheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/hamba/avro/v2"

	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/schema"
	"github.com/flotilla-ci/flotilla/schema/serde"
)

// File is one event schema owned by a service: Avro (.avsc), Protobuf
// (.proto) or JSON Schema (.schema.json).
type File struct {
	Path    string // relative to the manifest root, forward slashes
	Service string
	Text    string
	Type    string         // Avro, Protobuf or JSON
	Schema  *schema.Schema // the Avro schema; nil when Err is set or for another type
	Err     error          // the schema does not parse

	typed typed // the Protobuf or JSON Schema, when it parses
}

// Event is the event the schema describes: the record's unqualified name
// for Avro; the file's name for a Protobuf or JSON Schema file
// (<Event>.proto, <Event>.schema.json) and for a reader schema
// (readers/<Event>.avsc), so a reader whose record has another name is a
// reader of that event that cannot read it.
func (f File) Event() string {
	if f.Schema == nil || IsReaderPath(f.Path) {
		return baseEvent(f.Path)
	}
	n := f.Schema.Name()
	return n[strings.LastIndexByte(n, '.')+1:]
}

// Subject is the registry subject of the file's event (serde.SubjectFor).
func (f File) Subject() string { return serde.SubjectFor(f.Event()) }

// Discover returns every writer schema (.avsc) under the paths of the
// manifest's services, sorted by path: every .avsc but the reader schemas
// in a readers/ directory (DiscoverReaders). Files that do not parse are
// returned with Err set.
func Discover(m *graph.Manifest) ([]File, error) {
	return discover(m, func(rel string) bool { return !IsReaderPath(rel) })
}

// IsReaderPath reports whether a schema file is a consumer's reader schema:
// a .avsc in a directory named readers (shop/<service>/readers/<Event>.avsc).
func IsReaderPath(rel string) bool { return path.Base(path.Dir(rel)) == "readers" }

func discover(m *graph.Manifest, keep func(rel string) bool) ([]File, error) {
	var out []File
	seen := map[string]bool{}
	for _, s := range m.Services {
		for _, p := range s.Paths {
			root := filepath.Join(m.Root, filepath.FromSlash(p))
			err := filepath.WalkDir(root, func(file string, d fs.DirEntry, err error) error {
				if err != nil {
					if errors.Is(err, fs.ErrNotExist) {
						return nil
					}
					return err
				}
				typ := TypeOf(d.Name())
				if d.IsDir() || typ == "" {
					return nil
				}
				rel, err := filepath.Rel(m.Root, file)
				if err != nil {
					return err
				}
				rel = filepath.ToSlash(rel)
				owner := m.Owner(rel)
				if seen[rel] || owner == nil || owner.Name != s.Name || !keep(rel) || (typ != Avro && IsReaderPath(rel)) {
					return nil // reader schemas are Avro
				}
				seen[rel] = true
				b, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				f := File{Path: rel, Service: s.Name, Text: string(b), Type: typ}
				if typ == Avro {
					f.Schema, f.Err = schema.Parse(f.Text)
				}
				out = append(out, f)
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("find schemas of %s: %w", s.Name, err)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	// Protobuf files import each other: by the path from the manifest
	// root, from their own directory, or by base name.
	imports := map[string]string{}
	for _, f := range out {
		if f.Type == Protobuf {
			imports[f.Path] = f.Text
			if _, dup := imports[path.Base(f.Path)]; !dup {
				imports[path.Base(f.Path)] = f.Text
			}
		}
	}
	for i := range out {
		f := &out[i]
		if f.Type == Avro {
			continue
		}
		local := map[string]string{}
		for k, v := range imports {
			local[k] = v
		}
		for _, g := range out {
			if g.Type == Protobuf && path.Dir(g.Path) == path.Dir(f.Path) {
				local[path.Base(g.Path)] = g.Text
			}
		}
		f.typed, f.Err = parseTyped(f.Type, f.Text, local)
	}
	return out, nil
}

// Registry is what the check needs from a schema registry; *serde.Client
// implements it.
type Registry interface {
	Versions(ctx context.Context, subject string) ([]serde.Version, error)
	Level(ctx context.Context, subject string) (string, error)
}

// Options says what to check against.
type Options struct {
	// Base is a git ref (origin/main, HEAD~1, a commit); "" skips the git
	// comparison.
	Base string
	// Registry, when set, checks each schema against its subject's
	// registered versions.
	Registry Registry
	// Mode overrides the level: for the git comparison it defaults to
	// FULL (a producer deploys before its consumers upgrade, so they read
	// its new events with the old schema, and upgraded consumers still
	// replay events written with the old one: both directions must hold);
	// for the registry, to the subject's configured level.
	Mode schema.Mode
	// Retained is how many of the latest registered versions of an
	// event's writer subject may still be in its topic, so that every
	// consumer's reader schema must read them; 0 means every registered
	// version (the default: nothing says the topic has been compacted or
	// expired).
	Retained int
	// SkipReaders leaves the consumers' reader schemas unchecked (what
	// schema check did before it knew them; for measurements).
	SkipReaders bool
}

// Comparison is the outcome of checking one file against one baseline.
type Comparison struct {
	Against  string // "origin/main", "registry"
	Mode     schema.Mode
	Note     string // "new schema", "unchanged", "no versions registered"
	Problems []schema.Problem
}

// Result is everything found about one file.
type Result struct {
	File
	Comparisons []Comparison
	Consumers   []string // subscribers of the event (old and new names)
	Removed     bool     // present at Base, gone now
	Err         error    // the check itself failed (git, registry)

	// BrokenReaders are the consumers' reader schemas that cannot read
	// data written with this file: the producer's change is refused
	// because of them.
	BrokenReaders []ReaderBreak

	renamedFrom string         // the event name at Base when the record was renamed
	base        *schema.Schema // the version at Base, when it parsed
}

// Failed reports whether the file blocks the change.
func (r Result) Failed() bool {
	if r.File.Err != nil || r.Err != nil || (r.Removed && len(r.Consumers) > 0) || len(r.BrokenReaders) > 0 {
		return true
	}
	for _, c := range r.Comparisons {
		if len(c.Problems) > 0 {
			return true
		}
	}
	return false
}

// breaking returns the consumers the failure breaks: every subscriber
// when the writer itself is invalid, incompatible with its history or
// removed; only those whose readers cannot read it when that is all.
func (r Result) breaking() []string {
	writerFails := r.File.Err != nil || r.Removed
	for _, c := range r.Comparisons {
		writerFails = writerFails || len(c.Problems) > 0
	}
	if writerFails || len(r.BrokenReaders) == 0 {
		return r.Consumers
	}
	var out []string
	for _, b := range r.BrokenReaders {
		if !slices.Contains(out, b.Consumer) {
			out = append(out, b.Consumer)
		}
	}
	sort.Strings(out)
	return out
}

// Report is the outcome of Check.
type Report struct {
	Base    string
	Results []Result
	// Readers are the consumers' reader schemas, each checked against
	// every writer version it may receive.
	Readers []ReaderResult
	// Findings are disagreements between a service's subscribes and its
	// reader files (a subscribed event without a reader, a reader for an
	// event not subscribed to); they fail the check.
	Findings []string
	// Notes are mismatches between the manifest and the schema files that
	// do not fail the check: a published event without a schema, a schema
	// whose record is not among its service's publishes.
	Notes []string
}

// Failed reports whether any file failed.
func (r *Report) Failed() bool {
	for _, res := range r.Results {
		if res.Failed() {
			return true
		}
	}
	for _, rr := range r.Readers {
		if rr.Failed() {
			return true
		}
	}
	return len(r.Findings) > 0
}

// Check checks every schema the manifest's services own.
func Check(ctx context.Context, m *graph.Manifest, opts Options) (*Report, error) {
	all, err := discover(m, func(string) bool { return true }) // one walk for writers and readers
	if err != nil {
		return nil, err
	}
	var files, readers []File
	for _, f := range all {
		if IsReaderPath(f.Path) {
			readers = append(readers, f)
		} else {
			files = append(files, f)
		}
	}
	rep := &Report{Base: opts.Base}
	if opts.Registry != nil {
		opts.Registry = &memoRegistry{Registry: opts.Registry}
	}
	var git *gitRepo
	if opts.Base != "" {
		if git, err = openGit(ctx, m.Root, opts.Base); err != nil {
			return nil, err
		}
	}
	rep.Notes = notes(m, files)
	present := map[string]bool{}
	for _, f := range files {
		present[f.Path] = true
		res := Result{File: f}
		if f.Err == nil {
			if git != nil {
				res.Comparisons = append(res.Comparisons, git.compare(ctx, f, opts.Mode, &res))
			}
			if opts.Registry != nil && res.Err == nil {
				c, err := compareRegistry(ctx, opts.Registry, f, opts.Mode)
				if err != nil {
					// A registry that cannot answer is no answer at
					// all, never a report of what it could not check.
					return nil, err
				}
				res.Comparisons = append(res.Comparisons, c)
			}
		}
		res.Consumers = consumers(m, f.Service, f.Event(), res.renamedFrom)
		rep.Results = append(rep.Results, res)
	}
	if git != nil {
		removed, err := git.removed(ctx, m, present)
		if err != nil {
			return nil, err
		}
		rep.Results = append(rep.Results, git.moved(m, rep.Results, removed, opts.Mode)...)
		sort.SliceStable(rep.Results, func(i, j int) bool { return rep.Results[i].Path < rep.Results[j].Path })
	}
	if !opts.SkipReaders {
		if err := checkReaders(ctx, m, rep, readers, opts); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

func notes(m *graph.Manifest, files []File) []string {
	var out []string
	has := map[string]bool{}
	for _, f := range files {
		has[f.Service+"/"+f.Event()] = true
		if f.Err != nil {
			continue
		}
		if s := m.Service(f.Service); s != nil && !slices.Contains(s.Publishes, f.Event()) {
			out = append(out, fmt.Sprintf("%s: record %s is not in %s's publishes, so no subscriber is known for it", f.Path, f.Event(), f.Service))
		}
	}
	for _, s := range m.Services {
		for _, e := range s.Publishes {
			if !has[s.Name+"/"+e] {
				out = append(out, fmt.Sprintf("%s publishes %s but owns no schema for it (want a record named %s in a .avsc under %s)", s.Name, e, e, strings.Join(s.Paths, " or ")))
			}
		}
	}
	return out
}

// consumers returns the services other than owner subscribing to any of
// the events.
func consumers(m *graph.Manifest, owner string, events ...string) []string {
	set := map[string]bool{}
	for _, e := range events {
		if e == "" {
			continue
		}
		for _, s := range m.Subscribers(e) {
			if s.Name != owner {
				set[s.Name] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func compareRegistry(ctx context.Context, reg Registry, f File, mode schema.Mode) (Comparison, error) {
	if f.Type != Avro {
		return compareRegistryTyped(ctx, reg, f, mode)
	}
	c := Comparison{Against: "registry " + f.Subject(), Mode: mode}
	vs, err := reg.Versions(ctx, f.Subject())
	if err != nil {
		return c, fmt.Errorf("registry: %w", err)
	}
	if c.Mode == "" {
		l, err := reg.Level(ctx, f.Subject())
		if err != nil {
			return c, fmt.Errorf("registry: level of %s: %w", f.Subject(), err)
		}
		if c.Mode, err = schema.ParseMode(l); err != nil {
			return c, fmt.Errorf("registry: level of %s: %w", f.Subject(), err)
		}
	}
	if len(vs) == 0 {
		c.Note = "no versions registered"
		return c, nil
	}
	prev := make([]schema.Version, 0, len(vs))
	for _, v := range vs {
		sc, err := schema.ParseWithReferences(v.Schema, v.Refs)
		if err != nil {
			return c, fmt.Errorf("registry: version %d of %s: %w", v.Version, f.Subject(), err)
		}
		if sc.Normalized() == f.Schema.Normalized() {
			c.Note = fmt.Sprintf("registered as version %d (id %d)", v.Version, v.ID)
			return c, nil
		}
		prev = append(prev, schema.Version{Version: v.Version, Schema: sc})
	}
	c.Problems = c.Mode.Check(f.Schema, prev)
	return c, nil
}

// gitRepo reads files at a ref.
type gitRepo struct {
	top    string // the repository's top level
	prefix string // the manifest root relative to top ("" or "dir/")
	ref    string
}

func runGit(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = err.Error()
		}
		return "", fmt.Errorf("git %s: %s", strings.Join(args, " "), firstLine(msg))
	}
	return out.String(), nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func openGit(ctx context.Context, root, ref string) (*gitRepo, error) {
	top, err := runGit(ctx, root, "rev-parse", "--show-toplevel")
	if err != nil {
		return nil, fmt.Errorf("--base %s: %s is not in a git repository: %w", ref, root, err)
	}
	top = strings.TrimSpace(top)
	if _, err := runGit(ctx, root, "rev-parse", "--verify", "--quiet", ref+"^{commit}"); err != nil {
		return nil, fmt.Errorf("--base %s: no such commit or branch here (fetch it first, e.g. git fetch origin main)", ref)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	realTop, err := filepath.EvalSymlinks(top)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(realTop, realRoot)
	if err != nil {
		return nil, err
	}
	prefix := ""
	if rel != "." {
		prefix = filepath.ToSlash(rel) + "/"
	}
	return &gitRepo{top: top, prefix: prefix, ref: ref}, nil
}

// show returns the file at the ref, and false when it did not exist there.
func (g *gitRepo) show(ctx context.Context, rel string) (string, bool, error) {
	spec := g.ref + ":" + g.prefix + rel
	if _, err := runGit(ctx, g.top, "cat-file", "-e", spec); err != nil {
		return "", false, nil
	}
	out, err := runGit(ctx, g.top, "show", spec)
	if err != nil {
		return "", false, err
	}
	return out, true, nil
}

func (g *gitRepo) compare(ctx context.Context, f File, mode schema.Mode, res *Result) Comparison {
	old, ok, err := g.show(ctx, f.Path)
	if err != nil {
		res.Err = err
		return Comparison{Against: g.ref, Mode: mode}
	}
	if !ok {
		if mode == "" {
			mode = schema.Full
		}
		return Comparison{Against: g.ref, Mode: mode, Note: "new schema"}
	}
	return g.compareText(f, old, g.ref, mode, res)
}

// compareText checks f against old, the text of its version at the ref.
func (g *gitRepo) compareText(f File, old, against string, mode schema.Mode, res *Result) Comparison {
	if mode == "" {
		mode = schema.Full
	}
	c := Comparison{Against: against, Mode: mode}
	if f.Type != Avro {
		prev, err := parseTyped(f.Type, old, g.importsAt(f))
		if err != nil {
			c.Note = "the version at " + g.ref + " does not parse; nothing to compare"
			return c
		}
		if prev.Normalized() == f.typed.Normalized() {
			c.Note = "unchanged"
			return c
		}
		c.Problems = checkTyped(mode, f.typed, f.Text, []typed{prev}, []string{old}, []int{0})
		return c
	}
	prev, err := schema.Parse(old)
	if err != nil {
		c.Note = "the version at " + g.ref + " does not parse; nothing to compare"
		return c
	}
	res.base = prev
	if prev.Normalized() == f.Schema.Normalized() {
		c.Note = "unchanged"
		return c
	}
	if n := prev.Name(); n != f.Schema.Name() {
		res.renamedFrom = n[strings.LastIndexByte(n, '.')+1:]
	}
	c.Problems = mode.Check(f.Schema, []schema.Version{{Version: 0, Schema: prev}})
	return c
}

// moved pairs schema files gone since the ref with new files holding the
// same record (a file moved or renamed), compares each such pair, and
// returns the removals that remain.
func (g *gitRepo) moved(m *graph.Manifest, results []Result, removed []Result, mode schema.Mode) []Result {
	var left []Result
	for _, gone := range removed {
		matched := false
		for i := range results {
			cur := &results[i]
			if gone.Schema == nil || cur.Schema == nil || cur.Schema.Name() != gone.Schema.Name() {
				continue
			}
			for j, c := range cur.Comparisons {
				if c.Against == g.ref && c.Note == "new schema" {
					cur.Comparisons[j] = g.compareText(cur.File, gone.Text, g.ref+" (as "+gone.Path+")", mode, cur)
					cur.Consumers = consumers(m, cur.Service, cur.Event(), cur.renamedFrom)
					matched = true
				}
			}
		}
		if !matched {
			left = append(left, gone)
		}
	}
	return left
}

// removed reports schemas owned by a service at the ref that are gone now.
func (g *gitRepo) removed(ctx context.Context, m *graph.Manifest, present map[string]bool) ([]Result, error) {
	args := []string{"ls-tree", "-r", "--name-only", g.ref}
	if g.prefix != "" {
		args = append(args, "--", g.prefix)
	}
	list, err := runGit(ctx, g.top, args...)
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		rel := strings.TrimPrefix(line, g.prefix)
		if TypeOf(rel) == "" || present[rel] || !strings.HasPrefix(line, g.prefix) || IsReaderPath(rel) {
			continue
		}
		owner := m.Owner(rel)
		if owner == nil {
			continue
		}
		text, _, err := g.show(ctx, rel)
		if err != nil {
			return nil, err
		}
		f := File{Path: rel, Service: owner.Name, Text: text, Type: TypeOf(rel)}
		if f.Type == Avro {
			f.Schema, _ = schema.Parse(text)
		}
		out = append(out, Result{File: f, Removed: true, Consumers: consumers(m, owner.Name, f.Event())})
	}
	return out, nil
}

// Write renders the report.
func (r *Report) Write(w io.Writer) {
	failed := 0
	for _, res := range r.Results {
		status := "ok  "
		if res.Failed() {
			status = "FAIL"
			failed++
		}
		fmt.Fprintf(w, "%s %s  (%s, %s)\n", status, res.Path, res.Event(), res.Service)
		switch {
		case res.File.Err != nil:
			fmt.Fprintf(w, "     invalid schema: %v\n", res.File.Err)
		case res.Removed:
			fmt.Fprintf(w, "     removed since %s\n", r.Base)
		}
		if res.Err != nil {
			fmt.Fprintf(w, "     could not check: %v\n", res.Err)
		}
		for _, c := range res.Comparisons {
			if c.Note != "" {
				fmt.Fprintf(w, "     vs %s: %s\n", c.Against, c.Note)
				continue
			}
			if len(c.Problems) == 0 {
				fmt.Fprintf(w, "     vs %s: compatible (%s)\n", c.Against, c.Mode)
				continue
			}
			fmt.Fprintf(w, "     vs %s: incompatible (%s)\n", c.Against, c.Mode)
			for _, p := range c.Problems {
				against := ""
				if p.Version > 0 {
					against = fmt.Sprintf("version %d, ", p.Version)
				}
				fmt.Fprintf(w, "       %s at %s: %s (%s%s)\n", p.Reason, p.Location, p.Description(), against, p.Direction)
			}
		}
		for _, b := range res.BrokenReaders {
			fmt.Fprintf(w, "     refused: %s\n", b)
		}
		if breaking := res.breaking(); res.Failed() && len(breaking) > 0 {
			fmt.Fprintf(w, "     consumers that would break: %s\n", strings.Join(breaking, ", "))
		}
	}
	readersFailed := r.writeReaders(w)
	for _, f := range r.Findings {
		fmt.Fprintf(w, "FAIL %s\n", f)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "%d schemas checked, %d incompatible; %d reader schemas checked, %d cannot read what they may receive", len(r.Results), failed, len(r.Readers), readersFailed)
	if len(r.Findings) > 0 {
		fmt.Fprintf(w, "; %d reader files disagree with subscribes", len(r.Findings))
	}
	fmt.Fprintln(w)
}

// Registrar registers schemas; *serde.Client implements it.
type Registrar interface {
	Register(ctx context.Context, subject, schema string) (int, error)
	SetLevel(ctx context.Context, subject, level string) error
}

// TypedRegistrar registers Protobuf and JSON Schema files too;
// *serde.Client implements it.
type TypedRegistrar interface {
	RegisterTyped(ctx context.Context, subject, schemaType, schema string) (int, error)
}

// Registered is the outcome of registering one file.
type Registered struct {
	File
	ID     int
	Err    error
	Reader bool // a consumer's reader schema, under ReaderSubject
}

// Subject is the subject the file was registered under.
func (r Registered) Subject() string {
	if r.Reader {
		return ReaderSubject(r.Event(), r.Service)
	}
	return r.File.Subject()
}

// Register registers every schema the manifest's services own under its
// event's subject, first setting the subject's level when level is not
// empty. Every file is tried and reported.
//
// Each consumer's reader schema is registered too, under its own subject
// (ReaderSubject) at level FORWARD: a writer schema posted to that
// subject's compatibility endpoint is then checked as data this consumer
// must read. (The level is NONE while the reader registers: a new reader
// need not read an old reader's data.)
func Register(ctx context.Context, m *graph.Manifest, reg Registrar, level schema.Mode) ([]Registered, error) {
	files, err := Discover(m)
	if err != nil {
		return nil, err
	}
	readers, err := DiscoverReaders(m)
	if err != nil {
		return nil, err
	}
	out := make([]Registered, 0, len(files)+len(readers))
	for _, f := range files {
		r := Registered{File: f, Err: f.Err}
		if r.Err == nil && level != "" {
			if err := reg.SetLevel(ctx, f.Subject(), string(level)); err != nil {
				r.Err = fmt.Errorf("set level of %s: %w", f.Subject(), err)
			}
		}
		switch {
		case r.Err != nil:
		case f.Type == Avro:
			r.ID, r.Err = reg.Register(ctx, f.Subject(), f.Text)
		default:
			tr, ok := reg.(TypedRegistrar)
			if !ok {
				r.Err = fmt.Errorf("%s: this registrar registers Avro only", f.Type)
				break
			}
			r.ID, r.Err = tr.RegisterTyped(ctx, f.Subject(), f.Type, f.Text)
		}
		out = append(out, r)
	}
	for _, f := range readers {
		r := Registered{File: f, Err: f.Err, Reader: true}
		subject := r.Subject()
		if r.Err == nil {
			r.Err = reg.SetLevel(ctx, subject, string(schema.None))
		}
		if r.Err == nil {
			r.ID, r.Err = reg.Register(ctx, subject, f.Text)
		}
		if r.Err == nil {
			r.Err = reg.SetLevel(ctx, subject, string(schema.Forward))
		}
		out = append(out, r)
	}
	return out, nil
}

// WriteGitHub writes a GitHub Actions error annotation for every problem,
// on the line of the field it concerns where it can be found, so a pull
// request shows each incompatibility on the schema file itself.
func (r *Report) WriteGitHub(w io.Writer) {
	for _, res := range r.Results {
		if !res.Failed() {
			continue
		}
		breaks := ""
		if len(res.Consumers) > 0 {
			breaks = " Consumers that would break: " + strings.Join(res.Consumers, ", ") + "."
		}
		switch {
		case res.File.Err != nil:
			annotate(w, res.Path, 1, "invalid "+res.Type+" schema", res.File.Err.Error())
		case res.Removed:
			annotate(w, res.Path, 1, "event schema removed", "This schema existed at "+r.Base+"."+breaks)
		case res.Err != nil:
			annotate(w, res.Path, 1, "schema check failed", res.Err.Error())
		}
		for _, c := range res.Comparisons {
			for _, p := range c.Problems {
				annotate(w, res.Path, fieldLine(res, p), fmt.Sprintf("%s (%s vs %s)", p.Reason, c.Mode, c.Against), p.Description()+"."+breaks)
			}
		}
		for _, b := range res.BrokenReaders {
			annotate(w, res.Path, 1, "a consumer's reader cannot read this schema", b.String())
		}
	}
	for _, rr := range r.Readers {
		if rr.Err != nil {
			annotate(w, rr.Path, 1, "invalid Avro reader schema", rr.Err.Error())
		}
		for _, c := range rr.Checks {
			for _, p := range c.Problems {
				annotate(w, rr.Path, p.Line, fmt.Sprintf("%s (%s cannot read %s)", p.Reason, rr.Service, c.Writer), readerDescription(p)+".")
			}
		}
	}
}

// annotate writes one ::error workflow command, escaped as GitHub requires.
func annotate(w io.Writer, file string, line int, title, msg string) {
	prop := strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C")
	data := strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A")
	fmt.Fprintf(w, "::error file=%s,line=%d,title=%s::%s\n", prop.Replace(file), line, prop.Replace(title), data.Replace(msg))
}

// fieldLine finds the line of the field a problem's location names
// (/fields/N/...) when the location is in the new schema (the file); else 1.
func fieldLine(res Result, p schema.Problem) int {
	if res.Type == Protobuf {
		if n := protoProblemLine(p.Detail); n > 0 {
			return n
		}
		return 1
	}
	if p.Direction != schema.NewReadsOld || res.Schema == nil {
		return 1
	}
	var n int
	if _, err := fmt.Sscanf(p.Location, "/fields/%d", &n); err != nil {
		return 1
	}
	rec, ok := res.Schema.Avro().(*avro.RecordSchema)
	if !ok || n >= len(rec.Fields()) {
		return 1
	}
	name := rec.Fields()[n].Name()
	for i, line := range strings.Split(res.Text, "\n") {
		if strings.Contains(line, `"`+name+`"`) && strings.Contains(line, `"name"`) {
			return i + 1
		}
	}
	return 1
}

// importsAt returns the .proto files beside f at the ref, by base name, for
// the version at the ref to import (nil for other types or when git
// cannot list them).
func (g *gitRepo) importsAt(f File) map[string]string {
	if f.Type != Protobuf {
		return nil
	}
	dir := path.Dir(f.Path)
	list, err := runGit(context.Background(), g.top, "ls-tree", "--name-only", g.ref, "--", g.prefix+dir+"/")
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		rel := strings.TrimPrefix(line, g.prefix)
		if TypeOf(rel) != Protobuf || rel == f.Path {
			continue
		}
		if text, ok, err := g.show(context.Background(), rel); err == nil && ok {
			out[path.Base(rel)] = text
			out[rel] = text
		}
	}
	return out
}

// compareRegistryTyped checks a Protobuf or JSON Schema file against its
// subject's registered versions, at the subject's level unless mode says
// otherwise. Versions of another schema type are incompatible, as the
// registry answers.
func compareRegistryTyped(ctx context.Context, reg Registry, f File, mode schema.Mode) (Comparison, error) {
	c := Comparison{Against: "registry " + f.Subject(), Mode: mode}
	vs, err := reg.Versions(ctx, f.Subject())
	if err != nil {
		return c, fmt.Errorf("registry: %w", err)
	}
	if c.Mode == "" {
		l, err := reg.Level(ctx, f.Subject())
		if err != nil {
			return c, fmt.Errorf("registry: level of %s: %w", f.Subject(), err)
		}
		if c.Mode, err = schema.ParseMode(l); err != nil {
			return c, fmt.Errorf("registry: level of %s: %w", f.Subject(), err)
		}
	}
	if len(vs) == 0 {
		c.Note = "no versions registered"
		return c, nil
	}
	prev := make([]typed, 0, len(vs))
	texts := make([]string, 0, len(vs))
	nums := make([]int, 0, len(vs))
	for _, v := range vs {
		typ := v.SchemaType
		if typ == "" {
			typ = Avro
		}
		if typ != f.Type {
			c.Problems = []schema.Problem{{Version: v.Version, Direction: schema.NewReadsOld, Incompatibility: schema.Incompatibility{
				Reason: "TYPE_CHANGED", Location: "/", Detail: fmt.Sprintf("Incompatible because of different schema type: %s, version %d is %s", f.Type, v.Version, typ)}}}
			return c, nil
		}
		if len(v.Refs) > 0 {
			return c, fmt.Errorf("registry: version %d of %s has references, which schema check reads for Avro only", v.Version, f.Subject())
		}
		sc, err := parseTyped(typ, v.Schema, nil)
		if err != nil {
			return c, fmt.Errorf("registry: version %d of %s: %w", v.Version, f.Subject(), err)
		}
		if sc.Normalized() == f.typed.Normalized() {
			c.Note = fmt.Sprintf("registered as version %d (id %d)", v.Version, v.ID)
			return c, nil
		}
		prev, texts, nums = append(prev, sc), append(texts, v.Schema), append(nums, v.Version)
	}
	c.Problems = checkTyped(c.Mode, f.typed, f.Text, prev, texts, nums)
	return c, nil
}
