package repocheck

import (
	"context"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"

	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/schema"
	"github.com/flotilla-ci/flotilla/schema/serde"
)

// ReaderSubject is the registry subject a consumer's reader schema is
// registered under: "<Event>-reader-<service>". Its level is FORWARD, so
// the registry's compatibility endpoint answers, for a writer schema
// posted to it, whether this consumer's reader (the latest version) can
// read data written with it.
func ReaderSubject(event, service string) string { return event + "-reader-" + service }

// DiscoverReaders returns every reader schema the manifest's services
// keep (<service path>/…/readers/<Event>.avsc), sorted by path: the schema
// each consumer decodes an event with.
func DiscoverReaders(m *graph.Manifest) ([]File, error) {
	return discover(m, IsReaderPath)
}

// ReaderProblem is one reason a consumer's reader cannot read a writer
// version, located in the reader file.
type ReaderProblem struct {
	schema.Incompatibility
	Field string // the reader's field the problem is in ("coupon", "lines.sku"); "" at the top level
	Line  int    // the line of that field in the reader file (1 when not found)
}

// ReaderCheck is one reader schema checked against one writer version.
type ReaderCheck struct {
	// Writer says which version: "shop/order/schemas/OrderCreated.avsc"
	// (the change), "main:shop/order/schemas/OrderCreated.avsc" (deployed),
	// "registry OrderCreated-value version 3" (retained in the topic).
	Writer   string
	Problems []ReaderProblem
}

// ReaderResult is a consumer's reader schema and what it was checked
// against.
type ReaderResult struct {
	File   // the reader file; File.Service is the consumer
	Checks []ReaderCheck
	Note   string // "no writer schema for OrderShipped": nothing to check against
}

// Failed reports whether the reader is invalid or cannot read a writer
// version it may receive.
func (r ReaderResult) Failed() bool {
	if r.Err != nil {
		return true
	}
	for _, c := range r.Checks {
		if len(c.Problems) > 0 {
			return true
		}
	}
	return false
}

// ReaderBreak is one consumer's reader that cannot read the version of a
// writer schema in the change.
type ReaderBreak struct {
	Consumer string
	Reader   string // the reader file
	Problem  ReaderProblem
}

func (b ReaderBreak) String() string {
	field := ""
	if b.Problem.Field != "" {
		field = ", field " + b.Problem.Field
	}
	return fmt.Sprintf("%s cannot read it: %s:%d%s: %s (%s)", b.Consumer, b.Reader, b.Problem.Line, field, b.Problem.Reason, readerDescription(b.Problem))
}

// writerVersion is one writer schema a reader may receive.
type writerVersion struct {
	label  string
	schema *schema.Schema
	change *Result // the writer file of the change, for ReaderBreak
}

// checkReaders checks every consumer's reader schema against every writer
// version of its event that may be in flight: the version in the change,
// the version at Base, and the retained registered versions; and records
// where subscribes and the reader files disagree.
func checkReaders(ctx context.Context, m *graph.Manifest, rep *Report, readers []File, opts Options) error {
	rep.Findings, rep.Notes = append(rep.Findings, readerFindings(m, readers)...), append(rep.Notes, readerNotes(m, readers)...)
	if len(readers) == 0 {
		return nil
	}
	writers := map[string][]writerVersion{} // by event
	seen := map[string]map[string]bool{}    // event -> normalized forms
	add := func(event string, w writerVersion) {
		if seen[event] == nil {
			seen[event] = map[string]bool{}
		}
		n := w.schema.Normalized()
		if seen[event][n] {
			return
		}
		seen[event][n] = true
		writers[event] = append(writers[event], w)
	}
	for i := range rep.Results {
		res := &rep.Results[i]
		if res.Schema != nil && !res.Removed {
			add(res.Event(), writerVersion{label: res.Path, schema: res.Schema, change: res})
		}
	}
	for i := range rep.Results {
		res := &rep.Results[i]
		switch {
		case res.Removed && res.Schema != nil:
			add(res.Event(), writerVersion{label: rep.Base + ":" + res.Path, schema: res.Schema})
		case res.base != nil:
			ev := res.base.Name()
			add(ev[strings.LastIndexByte(ev, '.')+1:], writerVersion{label: rep.Base + ":" + res.Path, schema: res.base})
		}
	}
	if opts.Registry != nil {
		events := map[string]bool{}
		for _, r := range readers {
			events[r.Event()] = true
		}
		for _, ev := range slices.Sorted(mapsKeys(events)) {
			subject := serde.SubjectFor(ev)
			vs, err := opts.Registry.Versions(ctx, subject)
			if err != nil {
				return fmt.Errorf("registry: versions of %s: %w", subject, err)
			}
			if opts.Retained > 0 && len(vs) > opts.Retained {
				vs = vs[len(vs)-opts.Retained:]
			}
			for j := len(vs) - 1; j >= 0; j-- { // newest first
				v := vs[j]
				sc, err := schema.ParseWithReferences(v.Schema, v.Refs)
				if err != nil {
					return fmt.Errorf("registry: version %d of %s: %w", v.Version, subject, err)
				}
				add(ev, writerVersion{label: fmt.Sprintf("registry %s version %d", subject, v.Version), schema: sc})
			}
		}
	}
	for _, r := range readers {
		rr := ReaderResult{File: r}
		if r.Err == nil {
			ws := writers[r.Event()]
			if len(ws) == 0 {
				rr.Note = "no writer schema of " + r.Event() + " here or in the registry: nothing to check it against"
			}
			for _, w := range ws {
				c := ReaderCheck{Writer: w.label}
				for _, inc := range schema.ReaderCanRead(r.Schema, w.schema) {
					p := locate(r, inc)
					c.Problems = append(c.Problems, p)
					if w.change != nil {
						w.change.BrokenReaders = append(w.change.BrokenReaders, ReaderBreak{Consumer: r.Service, Reader: r.Path, Problem: p})
					}
				}
				rr.Checks = append(rr.Checks, c)
			}
		}
		rep.Readers = append(rep.Readers, rr)
	}
	return nil
}

func mapsKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// readerFindings: a consumer that keeps reader schemas must keep one for
// every event it subscribes to, and none for an event it does not.
func readerFindings(m *graph.Manifest, readers []File) []string {
	var out []string
	has := map[string]map[string]bool{} // service -> events read
	dirs := map[string]string{}         // service -> its readers directory
	for _, r := range readers {
		if has[r.Service] == nil {
			has[r.Service] = map[string]bool{}
			dirs[r.Service] = path.Dir(r.Path)
		}
		has[r.Service][r.Event()] = true
		s := m.Service(r.Service)
		if s != nil && !slices.Contains(s.Subscribes, r.Event()) {
			out = append(out, fmt.Sprintf("%s: %s keeps a reader for %s but does not subscribe to it (add %s to its subscribes in %s, or delete the file)",
				r.Path, r.Service, r.Event(), r.Event(), manifestName(m)))
		}
	}
	for _, s := range m.Services {
		if has[s.Name] == nil {
			continue
		}
		for _, e := range s.Subscribes {
			if !has[s.Name][e] {
				out = append(out, fmt.Sprintf("%s subscribes to %s but keeps no reader schema for it (want %s/%s.avsc, the record it decodes %s with)",
					s.Name, e, dirs[s.Name], e, e))
			}
		}
	}
	return out
}

// readerNotes: a consumer with no reader schemas at all decodes each event
// with the schema it was written with, so there is nothing of its own to
// check.
func readerNotes(m *graph.Manifest, readers []File) []string {
	keeps := map[string]bool{}
	for _, r := range readers {
		keeps[r.Service] = true
	}
	var out []string
	for _, s := range m.Services {
		if len(s.Subscribes) > 0 && !keeps[s.Name] {
			out = append(out, fmt.Sprintf("%s keeps no reader schemas (readers/<Event>.avsc) for the %d event(s) it subscribes to: no reader check applies to it",
				s.Name, len(s.Subscribes)))
		}
	}
	return out
}

func manifestName(m *graph.Manifest) string {
	if m.File != "" {
		return path.Base(m.File)
	}
	return "flotilla.yaml"
}

// locate finds the reader field an incompatibility is in, and its line.
func locate(f File, inc schema.Incompatibility) ReaderProblem {
	p := ReaderProblem{Incompatibility: inc, Line: 1}
	names := fieldPath(f.Schema.Avro(), inc.Location)
	if inc.Reason == schema.ReaderFieldMissingDefaultValue && len(names) > 0 {
		names[len(names)-1] = inc.Detail
	}
	p.Field = strings.Join(names, ".")
	if len(names) > 0 {
		p.Line = lineOf(f.Text, names)
	}
	return p
}

// fieldPath walks a location (/fields/2/type/items/fields/0/type) through
// the schema and returns the names of the fields it passes.
func fieldPath(s avro.Schema, loc string) []string {
	var names []string
	segs := strings.Split(strings.Trim(loc, "/"), "/")
	for i := 0; i < len(segs); i++ {
		s = deref(s)
		switch segs[i] {
		case "fields":
			rec, ok := s.(*avro.RecordSchema)
			if !ok || i+1 >= len(segs) {
				return names
			}
			n, err := strconv.Atoi(segs[i+1])
			if err != nil || n < 0 || n >= len(rec.Fields()) {
				return names
			}
			names = append(names, rec.Fields()[n].Name())
			i++
			if i+1 < len(segs) && segs[i+1] == "type" {
				s = rec.Fields()[n].Type()
				i++
			}
		case "items":
			if a, ok := s.(*avro.ArraySchema); ok {
				s = a.Items()
			}
		case "values":
			if mp, ok := s.(*avro.MapSchema); ok {
				s = mp.Values()
			}
		default:
			n, err := strconv.Atoi(segs[i])
			u, ok := s.(*avro.UnionSchema)
			if err != nil || !ok || n < 0 || n >= len(u.Types()) {
				return names
			}
			s = u.Types()[n]
		}
	}
	return names
}

func deref(s avro.Schema) avro.Schema {
	if r, ok := s.(*avro.RefSchema); ok {
		return r.Schema()
	}
	return s
}

// lineOf finds the line declaring the innermost named field, searching
// after the line of each enclosing one.
func lineOf(text string, names []string) int {
	lines := strings.Split(text, "\n")
	at := 0
	for _, n := range names {
		found := -1
		for i := at; i < len(lines); i++ {
			if strings.Contains(lines[i], `"name"`) && (strings.Contains(lines[i], `"`+n+`"`)) {
				found = i
				break
			}
		}
		if found < 0 {
			break
		}
		at = found
	}
	return at + 1
}

func readerDescription(p ReaderProblem) string {
	switch p.Reason {
	case schema.ReaderFieldMissingDefaultValue:
		return fmt.Sprintf("the reader's field %s has no default and the writer does not write it", p.Detail)
	case schema.TypeMismatch:
		return "the reader's type does not match the writer's: " + p.Detail
	case schema.NameMismatch:
		return "the reader's name does not match the writer's (" + p.Detail + ")"
	case schema.FixedSizeMismatch:
		return "the reader's fixed size differs from the writer's: " + p.Detail
	case schema.MissingEnumSymbols:
		return "the writer may send enum symbols the reader lacks: " + p.Detail
	case schema.MissingUnionBranch:
		return "the reader's union lacks a branch the writer may send: " + p.Detail
	}
	return p.Detail
}

// writeReaders renders the reader checks: one line per reader, every
// problem with the writer version, file, line, field and rule.
func (r *Report) writeReaders(w io.Writer) int {
	failed := 0
	for _, rr := range r.Readers {
		status := "ok  "
		if rr.Failed() {
			status = "FAIL"
			failed++
		}
		fmt.Fprintf(w, "%s %s  (%s reader of %s)\n", status, rr.Path, rr.Service, rr.Event())
		if rr.Err != nil {
			fmt.Fprintf(w, "     invalid schema: %v\n", rr.Err)
		}
		if rr.Note != "" {
			fmt.Fprintf(w, "     %s\n", rr.Note)
		}
		for _, c := range rr.Checks {
			if len(c.Problems) == 0 {
				fmt.Fprintf(w, "     reads %s\n", c.Writer)
				continue
			}
			fmt.Fprintf(w, "     cannot read %s:\n", c.Writer)
			for _, p := range c.Problems {
				field := ""
				if p.Field != "" {
					field = " field " + p.Field
				}
				fmt.Fprintf(w, "       %s:%d%s: %s at %s: %s\n", rr.Path, p.Line, field, p.Reason, p.Location, readerDescription(p))
			}
		}
	}
	return failed
}

// memoRegistry asks the registry once per subject.
type memoRegistry struct {
	Registry
	mu       sync.Mutex
	versions map[string][]serde.Version
	levels   map[string]string
}

func (m *memoRegistry) Versions(ctx context.Context, subject string) ([]serde.Version, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if vs, ok := m.versions[subject]; ok {
		return vs, nil
	}
	vs, err := m.Registry.Versions(ctx, subject)
	if err != nil {
		return nil, err
	}
	if m.versions == nil {
		m.versions = map[string][]serde.Version{}
	}
	m.versions[subject] = vs
	return vs, nil
}

func (m *memoRegistry) Level(ctx context.Context, subject string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.levels[subject]; ok {
		return l, nil
	}
	l, err := m.Registry.Level(ctx, subject)
	if err != nil {
		return "", err
	}
	if m.levels == nil {
		m.levels = map[string]string{}
	}
	m.levels[subject] = l
	return l, nil
}
