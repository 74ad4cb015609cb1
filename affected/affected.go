// Package affected turns a git change into the services it touches: the
// services whose files changed (every service when a shared file changed),
// the order to deploy them in, and the services and edges whose contracts
// must be verified again (the changed services' direct consumers and
// providers, and the subscribers of every event whose schema changed).
//
// It asks the git CLI for the changes (git diff --name-status -M, plus
// untracked files when comparing against the working tree).
package affected

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/flotilla-ci/flotilla/graph"
)

// Change is one changed file, with repo-relative (manifest-root-relative)
// forward-slash paths.
type Change struct {
	// Status is git's letter: A added, M modified, D deleted, R renamed,
	// C copied, T type changed; "?" for an untracked file.
	Status  string `json:"status"`
	Path    string `json:"path"`
	OldPath string `json:"old_path,omitempty"` // renames and copies
}

// ErrBadRef is wrapped when a ref does not name a commit.
var ErrBadRef = errors.New("unknown git ref")

// Options say what to compare.
type Options struct {
	// Base is the ref the change is measured from (required).
	Base string
	// Head is the ref it is measured to; empty means the working tree,
	// including uncommitted and untracked files.
	Head string
	// MergeBase compares Head with the merge base of Base and Head (what a
	// pull request changes) instead of with Base itself.
	MergeBase bool
}

// Diff lists the changes between opts.Base and opts.Head in the git
// repository that holds dir, limited to dir and with paths relative to it.
// Renames report both paths. A ref that doesn't exist is an error wrapping
// ErrBadRef that names it.
func Diff(ctx context.Context, dir string, opts Options) ([]Change, error) {
	if opts.Base == "" {
		return nil, errors.New("no base ref: pass --base REF (a branch, tag or commit)")
	}
	if _, err := git(ctx, dir, "rev-parse", "--show-toplevel"); err != nil {
		return nil, fmt.Errorf("%s is not inside a git repository: %w", dir, err)
	}
	for _, ref := range []string{opts.Base, opts.Head} {
		if ref == "" {
			continue
		}
		if strings.HasPrefix(ref, "-") {
			return nil, fmt.Errorf("%w %q: a ref cannot start with -", ErrBadRef, ref)
		}
		if _, err := git(ctx, dir, "rev-parse", "--verify", "--quiet", "--end-of-options", ref+"^{commit}"); err != nil {
			return nil, fmt.Errorf("%w %q: no such branch, tag or commit in this repository (in CI, fetch it first, e.g. actions/checkout with fetch-depth: 0)", ErrBadRef, ref)
		}
	}
	args := []string{"-c", "core.quotepath=off", "diff", "--name-status", "-M", "--relative", "-z", "--no-ext-diff"}
	if opts.MergeBase && opts.Head != "" {
		args = append(args, "--merge-base")
	}
	args = append(args, "--end-of-options", opts.Base)
	if opts.Head != "" {
		args = append(args, opts.Head)
	}
	args = append(args, "--")
	out, err := git(ctx, dir, args...)
	if err != nil {
		return nil, fmt.Errorf("git diff: %w", err)
	}
	changes, err := parseNameStatus(out)
	if err != nil {
		return nil, err
	}
	if opts.Head == "" {
		out, err := git(ctx, dir, "ls-files", "--others", "--exclude-standard", "-z")
		if err != nil {
			return nil, fmt.Errorf("git ls-files: %w", err)
		}
		for _, p := range bytes.Split(out, []byte{0}) {
			if len(p) > 0 {
				changes = append(changes, Change{Status: "?", Path: string(p)})
			}
		}
	}
	return changes, nil
}

// parseNameStatus reads `git diff --name-status -z`: a status field (a
// letter, with a similarity score for renames and copies: R087) then one
// path, or two for renames and copies, each NUL-terminated. Anything else
// (an unknown status, an empty path, a record cut short) is an error naming
// the record: a misread record would misplace every path after it.
func parseNameStatus(out []byte) ([]Change, error) {
	out = bytes.TrimSuffix(out, []byte{0})
	if len(out) == 0 {
		return nil, nil
	}
	fields := bytes.Split(out, []byte{0})
	var changes []Change
	for i := 0; i < len(fields); {
		st := string(fields[i])
		if !validStatus(st) {
			return nil, fmt.Errorf("git diff: record %d: unknown status %q", len(changes)+1, st)
		}
		letter := st[:1]
		paths := 1
		if letter == "R" || letter == "C" {
			paths = 2
		}
		if i+paths >= len(fields) {
			return nil, fmt.Errorf("git diff: record %d: truncated output after %q", len(changes)+1, st)
		}
		for _, f := range fields[i+1 : i+1+paths] {
			if len(f) == 0 {
				return nil, fmt.Errorf("git diff: record %d: empty path after %q", len(changes)+1, st)
			}
		}
		c := Change{Status: letter, Path: string(fields[i+paths])}
		if paths == 2 {
			c.OldPath = string(fields[i+1])
		}
		changes = append(changes, c)
		i += 1 + paths
	}
	return changes, nil
}

// validStatus: one of git's status letters (A C D M R T U X B), digits
// (a similarity score) only after R, C or M (a rewrite's dissimilarity).
func validStatus(st string) bool {
	if st == "" || !strings.Contains("ACDMRTUXB", st[:1]) {
		return false
	}
	if len(st) > 1 && !strings.Contains("RCM", st[:1]) {
		return false
	}
	for _, r := range st[1:] {
		if r < '0' || r > '9' {
			return false
		}
	}
	return len(st) <= 4
}

func git(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0", "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			msg := strings.TrimSpace(stderr.String())
			if msg == "" {
				msg = ee.String()
			}
			if i := strings.IndexByte(msg, '\n'); i >= 0 {
				msg = msg[:i]
			}
			return nil, errors.New(msg)
		}
		return nil, err
	}
	return out, nil
}

// Result is what a change affects.
type Result struct {
	Base string `json:"base"`
	Head string `json:"head"` // "" for the working tree

	// Changed are the services whose files changed, sorted; every service
	// when a shared file changed.
	Changed []string `json:"changed"`
	// Deploy is Changed in deploy order; Waves the same in waves.
	Deploy []string   `json:"deploy"`
	Waves  [][]string `json:"waves"`
	// Verify are the services whose contracts must be re-checked: the
	// changed ones, their direct consumers and providers (sync and event),
	// and the subscribers of each event whose schema changed. Sorted.
	Verify []string `json:"verify"`
	// Edges are the contracts to re-check.
	Edges []Edge `json:"edges"`
	// Schemas are the changed event schema files.
	Schemas []Schema `json:"schemas"`
	// Shared are the changed files that matched a shared glob.
	Shared []string `json:"shared"`
	// Unowned are the changed files no service owns (and not shared).
	Unowned []string `json:"unowned"`
	// Manifest lists the services whose entry in the manifest itself was
	// added, changed or removed; added and changed ones are in Changed.
	Manifest []ManifestChange `json:"manifest"`
	// Files is every change, with who owns it.
	Files []File `json:"files"`
}

// File is a change and what it was attributed to.
type File struct {
	Change
	Service    string `json:"service,omitempty"`     // owner of Path
	OldService string `json:"old_service,omitempty"` // owner of OldPath, when different
	Shared     string `json:"shared,omitempty"`      // the shared glob it matched
}

// Edge is a contract between two services to verify again.
type Edge struct {
	Consumer string `json:"consumer"`
	Provider string `json:"provider"`
	Kind     string `json:"kind"`            // "http" (depends_on) or "event"
	Event    string `json:"event,omitempty"` // for event edges
}

// ManifestChange is a service whose manifest entry changed.
type ManifestChange struct {
	Service string `json:"service"`
	Change  string `json:"change"` // "added", "changed" or "removed"
}

// Schema is a changed event schema (.avsc) and the services that read it.
type Schema struct {
	Path        string   `json:"path"`
	Event       string   `json:"event"`
	Publishers  []string `json:"publishers"`
	Subscribers []string `json:"subscribers"`
}

// Run diffs the repository at the manifest's root and computes what the
// change affects. The graph must be valid (no cycles).
func Run(ctx context.Context, g *graph.Graph, opts Options) (*Result, error) {
	root := g.Manifest().Root
	changes, err := Diff(ctx, root, opts)
	if err != nil {
		return nil, err
	}
	read := func(p string) ([]byte, error) {
		if opts.Head == "" {
			return os.ReadFile(filepath.Join(root, filepath.FromSlash(p)))
		}
		return git(ctx, root, "show", opts.Head+":./"+p)
	}
	var baseRef string
	readOld := func(p string) ([]byte, error) {
		if baseRef == "" {
			baseRef = opts.Base
			if opts.MergeBase && opts.Head != "" {
				out, err := git(ctx, root, "merge-base", "--end-of-options", opts.Base, opts.Head)
				if err != nil {
					return nil, fmt.Errorf("git merge-base: %w", err)
				}
				baseRef = strings.TrimSpace(string(out))
			}
		}
		return git(ctx, root, "show", baseRef+":./"+p)
	}
	mc, err := manifestChanges(ctx, g.Manifest(), changes, opts)
	if err != nil {
		return nil, err
	}
	r, err := compute(g, changes, read, readOld, mc)
	if err != nil {
		return nil, err
	}
	r.Base, r.Head = opts.Base, opts.Head
	return r, nil
}

// manifestChanges compares the manifest as it was at the base with the
// one loaded, when the change touches it: a service whose entry was added
// or edited is changed (its deploy or canary settings, say). A base
// manifest that is missing or unreadable makes every service changed.
func manifestChanges(ctx context.Context, m *graph.Manifest, changes []Change, opts Options) ([]ManifestChange, error) {
	name := filepath.Base(m.File)
	touched := false
	for _, c := range changes {
		if c.Path == name || c.OldPath == name {
			touched = true
		}
	}
	if !touched {
		return nil, nil
	}
	base := opts.Base
	if opts.MergeBase && opts.Head != "" {
		out, err := git(ctx, m.Root, "merge-base", "--end-of-options", opts.Base, opts.Head)
		if err != nil {
			return nil, fmt.Errorf("git merge-base: %w", err)
		}
		base = strings.TrimSpace(string(out))
	}
	var old *graph.Manifest
	if data, err := git(ctx, m.Root, "show", base+":./"+name); err == nil {
		if strings.EqualFold(filepath.Ext(name), ".json") {
			old, _, _ = graph.ParseScenarioJSON(name, m.Root, data)
		} else {
			old, _ = graph.ParseYAML(name, m.Root, data)
		}
	}
	var out []ManifestChange
	for _, s := range m.Services {
		var o *graph.Service
		if old != nil {
			o = old.Service(s.Name)
		}
		switch {
		case o == nil:
			out = append(out, ManifestChange{Service: s.Name, Change: "added"})
		case !o.SameSettings(s):
			out = append(out, ManifestChange{Service: s.Name, Change: "changed"})
		}
	}
	if old != nil {
		for _, s := range old.Services {
			if m.Service(s.Name) == nil {
				out = append(out, ManifestChange{Service: s.Name, Change: "removed"})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out, nil
}

// Compute attributes changes to services. read returns a changed file's
// new content (used for .avsc schemas: the event is the record's name; when
// the file can't be read or parsed, its base name).
func Compute(g *graph.Graph, changes []Change, read func(path string) ([]byte, error)) (*Result, error) {
	return compute(g, changes, read, nil, nil)
}

// ComputeWithBase is Compute that also reads each changed schema as it was
// before the change (readOld, by its old path): a record deleted or renamed
// still pulls in the subscribers of the event it was.
func ComputeWithBase(g *graph.Graph, changes []Change, read, readOld func(path string) ([]byte, error)) (*Result, error) {
	return compute(g, changes, read, readOld, nil)
}

func compute(g *graph.Graph, changes []Change, read, readOld func(path string) ([]byte, error), manifest []ManifestChange) (*Result, error) {
	m := g.Manifest()
	manifestName := ""
	if manifest != nil {
		manifestName = filepath.Base(m.File)
	}
	owners := newOwnerIndex(m)
	changed := map[string]bool{}
	unowned := map[string]bool{}
	shared := map[string]bool{}
	r := &Result{}
	schemaEvents := map[string]bool{}
	for _, c := range changes {
		f := File{Change: c}
		for i, p := range []string{c.Path, c.OldPath} {
			if p == "" {
				continue
			}
			if glob, ok := m.IsShared(p); ok {
				if i == 0 {
					f.Shared = glob
				}
				shared[p] = true
				continue
			}
			s := owners.owner(p)
			if s == "" {
				if p != manifestName { // the manifest's edits are attributed below
					unowned[p] = true
				}
				continue
			}
			changed[s] = true
			if i == 0 {
				f.Service = s
			} else if s != f.Service {
				f.OldService = s
			}
		}
		r.Files = append(r.Files, f)
		if strings.EqualFold(path.Ext(c.Path), ".avsc") || strings.EqualFold(path.Ext(c.OldPath), ".avsc") {
			p := c.Path
			var events []string
			if c.Status != "D" {
				var data []byte
				if read != nil {
					data, _ = read(p)
				}
				events = append(events, eventName(p, data))
			}
			if readOld != nil && c.Status != "A" && c.Status != "?" {
				old := c.Path
				if c.OldPath != "" {
					old = c.OldPath
				}
				// A file that did not exist at the base has no old name.
				if data, err := readOld(old); err == nil {
					events = append(events, eventName(old, data))
				}
			}
			if len(events) == 0 {
				events = append(events, eventName(p, nil))
			}
			for _, ev := range events {
				if schemaEvents[p+"\x00"+ev] {
					continue
				}
				schemaEvents[p+"\x00"+ev] = true
				sc := Schema{Path: p, Event: ev, Publishers: []string{}, Subscribers: []string{}}
				for _, s := range m.Publishers(ev) {
					sc.Publishers = append(sc.Publishers, s.Name)
				}
				for _, s := range m.Subscribers(ev) {
					sc.Subscribers = append(sc.Subscribers, s.Name)
				}
				r.Schemas = append(r.Schemas, sc)
			}
		}
	}
	if len(shared) > 0 {
		for _, s := range m.Services {
			changed[s.Name] = true
		}
	}
	r.Manifest = manifest
	for _, mc := range manifest {
		if mc.Change != "removed" {
			changed[mc.Service] = true
		}
	}
	r.Changed = sortedKeys(changed)
	r.Shared = sortedKeys(shared)
	r.Unowned = sortedKeys(unowned)
	if len(r.Changed) > 0 {
		waves, err := g.Waves(r.Changed)
		if err != nil {
			return nil, err
		}
		r.Waves = waves
		r.Deploy = graph.Flatten(waves)
	}

	// Contracts to re-check: every edge with a changed end, and every
	// event edge of a changed schema.
	edges := map[Edge]bool{}
	for _, e := range g.SyncEdges() {
		if changed[e.Consumer] || changed[e.Provider] {
			edges[Edge{Consumer: e.Consumer, Provider: e.Provider, Kind: "http"}] = true
		}
	}
	schemaChanged := map[string]bool{}
	for _, sc := range r.Schemas {
		schemaChanged[sc.Event] = true
	}
	for _, e := range g.EventEdges() {
		if changed[e.Publisher] || changed[e.Subscriber] || schemaChanged[e.Event] {
			edges[Edge{Consumer: e.Subscriber, Provider: e.Publisher, Kind: "event", Event: e.Event}] = true
		}
	}
	verify := map[string]bool{}
	for s := range changed {
		verify[s] = true
	}
	for e := range edges {
		verify[e.Consumer] = true
		verify[e.Provider] = true
	}
	for _, sc := range r.Schemas {
		for _, s := range sc.Subscribers {
			verify[s] = true
		}
	}
	r.Verify = sortedKeys(verify)
	for e := range edges {
		r.Edges = append(r.Edges, e)
	}
	sort.Slice(r.Edges, func(i, j int) bool {
		a, b := r.Edges[i], r.Edges[j]
		if a.Kind != b.Kind {
			return a.Kind > b.Kind // http before event
		}
		if a.Consumer != b.Consumer {
			return a.Consumer < b.Consumer
		}
		if a.Provider != b.Provider {
			return a.Provider < b.Provider
		}
		return a.Event < b.Event
	})
	r.fillEmpty()
	return r, nil
}

// fillEmpty makes empty lists [] rather than null in JSON.
func (r *Result) fillEmpty() {
	for _, p := range []*[]string{&r.Changed, &r.Deploy, &r.Verify, &r.Shared, &r.Unowned} {
		if *p == nil {
			*p = []string{}
		}
	}
	if r.Waves == nil {
		r.Waves = [][]string{}
	}
	if r.Edges == nil {
		r.Edges = []Edge{}
	}
	if r.Schemas == nil {
		r.Schemas = []Schema{}
	}
	if r.Manifest == nil {
		r.Manifest = []ManifestChange{}
	}
	if r.Files == nil {
		r.Files = []File{}
	}
}

// eventName is an Avro schema's record name without its namespace, or the
// file's base name when the content is not a named schema.
func eventName(p string, data []byte) string {
	var rec struct {
		Type any    `json:"type"`
		Name string `json:"name"`
	}
	if len(data) > 0 && json.Unmarshal(data, &rec) == nil && rec.Name != "" {
		n := rec.Name
		if i := strings.LastIndexByte(n, '.'); i >= 0 {
			n = n[i+1:]
		}
		if n != "" {
			return n
		}
	}
	return strings.TrimSuffix(path.Base(p), path.Ext(p))
}

// ownerIndex finds a path's owner in O(depth): it looks the path and each
// of its parent folders up among the service paths, longest first.
type ownerIndex struct {
	byPath map[string]string
	all    string // a service owning "." (the whole repository), if any
}

func newOwnerIndex(m *graph.Manifest) *ownerIndex {
	ix := &ownerIndex{byPath: map[string]string{}}
	for _, s := range m.Services {
		for _, p := range s.Paths {
			if p == "." {
				ix.all = s.Name
				continue
			}
			ix.byPath[p] = s.Name
		}
	}
	return ix
}

func (ix *ownerIndex) owner(p string) string {
	p = path.Clean(p)
	for {
		if s, ok := ix.byPath[p]; ok {
			return s
		}
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return ix.all
		}
		p = p[:i]
	}
}

func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
