// Package graph is flotilla's service manifest (flotilla.yaml, or the
// scenario's dependency-graph .json) and the service graph built from it:
// validation with every problem located, cycles as full paths, the deploy
// order in waves, rollback order, impact, and the event edges between
// publishers and subscribers.
//
// A manifest is loaded with [Load] (found with [Find]); [New] builds the
// [Graph]. Each service carries its rollout [Policy] (strategy, steps,
// judges, bake, webhooks), resolved from its canary block over the
// manifest's defaults. Everything a user wrote is decoded strictly: an unknown field, a
// duplicate service or a value of the wrong type is an error naming the
// file, the line and the field.
package graph

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
)

// FileName is the manifest's name, looked for in the working directory and
// its parents.
const FileName = "flotilla.yaml"

// ErrNotFound is returned by Find when no flotilla.yaml exists in the
// directory or any of its parents.
var ErrNotFound = errors.New("no " + FileName + " here or in any parent directory (pass -f FILE)")

// ErrRead is wrapped by Load's errors that are about reaching the file
// (missing, unreadable, a directory, too large) rather than its content.
var ErrRead = errors.New("read manifest")

// Manifest is a loaded service manifest.
type Manifest struct {
	File string // the path it was read from
	// Root is the repository root the service paths are relative to: the
	// manifest's directory.
	Root string
	// Shared holds globs (with ** for any depth) over repo-relative paths
	// whose change affects every service.
	Shared       []string
	Environments []*Environment // sorted by name
	Services     []*Service     // sorted by name
	// Defaults is the policy a service without a canary block gets: the
	// manifest's defaults.canary over the built-in defaults.
	Defaults Policy

	byName map[string]*Service
}

// Environment is a place the services are deployed to.
type Environment struct {
	Name string
	// Target names the deploy target: "local" (processes behind the
	// built-in mesh) or "kubernetes". Empty means local.
	Target string
	// Namespace and Context address a Kubernetes cluster (Context is the
	// kubeconfig context; empty means the current one).
	Namespace string
	Context   string
	// URL is the environment's public base URL, used by smoke checks run
	// from outside (empty for local: the gateway's address is used).
	URL  string
	Line int // where it is defined in the manifest (0 for .json)
}

// Service is one deployable service of the manifest.
type Service struct {
	Name string
	// Paths are the repo-relative folders the service owns (`path:` or
	// `paths:`), cleaned, with forward slashes.
	Paths []string
	// DependsOn names the services it calls synchronously: they deploy
	// before it, and it is their consumer.
	DependsOn []string
	// Publishes and Subscribes name events.
	Publishes  []string
	Subscribes []string
	// Health is the readiness path probed after a start (e.g. /ready).
	Health string
	// Deploy and Smoke are the settings the deploy orchestrator uses; both
	// optional.
	Deploy Deploy
	Smoke  []SmokeCheck
	// Routes are what the edge gateway exposes of the service (`routes:`);
	// every other path is internal: the gateway answers it 404, and only
	// the services that depends_on this one reach it, through the mesh.
	Routes []Route
	// Policy is how a new version takes the traffic and is judged: its
	// canary block over the manifest's defaults, resolved and checked
	// (DefaultPolicy's values where neither says).
	Policy Policy
	// Consumers is the scenario format's redundant list of dependents
	// (only set when loaded from .json; flotilla.yaml derives it).
	Consumers []string

	Line int // where it is defined (0 when unknown)
	// refLines maps "depends_on/NAME", "subscribes/NAME", "publishes/NAME",
	// "paths/PATH" to the line the reference is written on.
	refLines map[string]int
	// canary is the service's canary block as written (nil when absent).
	canary *policyBlock
	// From the JSON scanner: the index in Manifest.Services of each of
	// DependsOn and Consumers (-1 when unknown), once indexed is set.
	sym             int32
	depIdx, consIdx []int32
	indexed         bool
}

// resolve maps names to service indexes (-1 for unknown ones).
func (m *Manifest) resolve(names []string) []int32 {
	if m.byName == nil {
		m.index()
	}
	out := make([]int32, len(names))
	for k, v := range names {
		out[k] = -1
		if s, ok := m.byName[v]; ok {
			out[k] = int32(m.position(s))
		}
	}
	return out
}

// position is a service's index in Services.
func (m *Manifest) position(s *Service) int {
	i, _ := slices.BinarySearchFunc(m.Services, s.Name, func(x *Service, name string) int { return strings.Compare(x.Name, name) })
	return i
}

// Deploy holds how a service is built and run.
type Deploy struct {
	// Port is the port the service listens on (0: chosen by the target).
	Port int
	// Package is the Go package of its main, e.g. ./shop/cmd/user
	// (default: the first of Paths that is under a cmd/ folder).
	Package string
	// Image is the container image repository (kubernetes targets).
	Image string
	// Replicas is the number of instances (default 1).
	Replicas int
	// Env is extra environment for the process or container.
	Env map[string]string
	// Timeout bounds how long the service may take to become ready.
	Timeout Duration
}

// Route is one public route of a service: a method and a path of the
// service's own API (segments in braces, "{id}", match any one segment),
// and who may call it at the edge.
type Route struct {
	Method string // GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS; GET takes HEAD too
	Path   string // "/orders/{id}"
	Auth   string // RoutePublic, RouteUser or RouteAdmin
	Line   int
}

// Who may call a route at the edge.
const (
	RoutePublic = "public" // anyone, no token
	RouteUser   = "user"   // a signed-in user: a valid bearer token
	RouteAdmin  = "admin"  // a token whose role claim is admin
)

// SmokeCheck is one request made against a freshly started service: it
// passes when the response has Status and, if JSONField is set, the
// top-level (or dotted-path) JSON field equals JSONValue.
type SmokeCheck struct {
	Name   string
	Method string // default GET
	Path   string
	Body   string // request body (JSON), optional
	Status int    // expected status (default 200)
	// JSONField is a dotted path into the response body (e.g. "status" or
	// "data.count"); JSONValue is the expected value, compared as text.
	JSONField string
	JSONValue string
	Line      int
}

// Duration is a time.Duration written as "30s", "2m".
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the duration as Go does ("1m30s").
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a duration written as Go does.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Warning is a non-fatal finding about a manifest.
type Warning struct {
	File    string
	Line    int
	Service string
	Msg     string
}

func (w Warning) String() string { return locate(w.File, w.Line) + w.Msg }

// Service returns the named service, or nil if it is unknown.
func (m *Manifest) Service(name string) *Service {
	if m.byName == nil {
		m.index()
	}
	return m.byName[name]
}

// Names returns the service names, sorted.
func (m *Manifest) Names() []string {
	out := make([]string, len(m.Services))
	for i, s := range m.Services {
		out[i] = s.Name
	}
	return out
}

// Environment returns the named environment, or nil.
func (m *Manifest) Environment(name string) *Environment {
	for _, e := range m.Environments {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// Owner returns the service whose path is the longest prefix of relPath (a
// repo-relative path with forward slashes), or nil when none owns it.
func (m *Manifest) Owner(relPath string) *Service {
	p := path.Clean(filepath.ToSlash(relPath))
	var best *Service
	bestLen := -1
	for _, s := range m.Services {
		for _, sp := range s.Paths {
			if (sp == "." || p == sp || strings.HasPrefix(p, sp+"/")) && len(sp) > bestLen {
				best, bestLen = s, len(sp)
			}
		}
	}
	return best
}

// IsShared reports whether relPath matches one of the shared globs, and
// which.
func (m *Manifest) IsShared(relPath string) (string, bool) {
	p := path.Clean(filepath.ToSlash(relPath))
	for _, g := range m.Shared {
		if ok, _ := doublestar.Match(g, p); ok {
			return g, true
		}
		// A glob naming a folder covers everything in it.
		if !strings.ContainsAny(g, "*?[{") && strings.HasPrefix(p, strings.TrimSuffix(g, "/")+"/") {
			return g, true
		}
	}
	return "", false
}

// Publishers returns the services that publish event, sorted by name.
func (m *Manifest) Publishers(event string) []*Service {
	var out []*Service
	for _, s := range m.Services {
		if contains(s.Publishes, event) {
			out = append(out, s)
		}
	}
	return out
}

// Subscribers returns the services that subscribe to event, sorted by name.
func (m *Manifest) Subscribers(event string) []*Service {
	var out []*Service
	for _, s := range m.Services {
		if contains(s.Subscribes, event) {
			out = append(out, s)
		}
	}
	return out
}

// Dependents returns the services that depend on name directly (its sync
// consumers), sorted by name.
func (m *Manifest) Dependents(name string) []*Service {
	var out []*Service
	for _, s := range m.Services {
		if contains(s.DependsOn, name) {
			out = append(out, s)
		}
	}
	return out
}

// Events returns every event name published or subscribed to, sorted.
func (m *Manifest) Events() []string {
	set := map[string]bool{}
	for _, s := range m.Services {
		for _, e := range s.Publishes {
			set[e] = true
		}
		for _, e := range s.Subscribes {
			set[e] = true
		}
	}
	return sortedKeys(set)
}

// MainPackage is the Go package of the service's main: Deploy.Package
// when set, otherwise the first of its paths inside a cmd/ folder, as a
// ./-relative package path ("" when neither exists).
func (s *Service) MainPackage() string {
	if s.Deploy.Package != "" {
		return s.Deploy.Package
	}
	for _, p := range s.Paths {
		if p == "cmd" || strings.HasPrefix(p, "cmd/") || strings.Contains(p, "/cmd/") {
			return "./" + p
		}
	}
	return ""
}

// SameSettings reports whether two services are written the same, apart
// from where in their manifests they are (lines): `affected` uses it to
// tell which services a manifest edit changes. Policies are compared as
// resolved, so an edit of the manifest's defaults changes every service
// whose policy it changes.
func (s *Service) SameSettings(o *Service) bool {
	settings := func(s *Service) any {
		smoke := slices.Clone(s.Smoke)
		for i := range smoke {
			smoke[i].Line = 0
		}
		routes := slices.Clone(s.Routes)
		for i := range routes {
			routes[i].Line = 0
		}
		return struct {
			Name                                        string
			Paths, DependsOn, Publishes, Subscribes, Cs []string
			Health                                      string
			Deploy                                      Deploy
			Smoke                                       []SmokeCheck
			Routes                                      []Route
			Policy                                      Policy
		}{s.Name, s.Paths, s.DependsOn, s.Publishes, s.Subscribes, s.Consumers, s.Health, s.Deploy, smoke, routes, s.Policy}
	}
	return reflect.DeepEqual(settings(s), settings(o))
}

// RefLine returns the manifest line a reference is written on: kind is
// "depends_on", "publishes", "subscribes" or "paths". 0 when unknown.
func (s *Service) RefLine(kind, name string) int {
	if l := s.refLines[kind+"/"+name]; l != 0 {
		return l
	}
	return s.Line
}

func (m *Manifest) index() {
	m.byName = make(map[string]*Service, len(m.Services))
	for _, s := range m.Services {
		m.byName[s.Name] = s
	}
}

// Find walks up from dir to the nearest flotilla.yaml and returns its path.
func Find(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("find manifest: %w", err)
	}
	for {
		p := filepath.Join(abs, FileName)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
		parent := filepath.Dir(abs)
		if parent == abs {
			return "", ErrNotFound
		}
		abs = parent
	}
}

// maxManifestSize bounds what Load reads: a manifest is text a person
// wrote or a generated graph; anything larger is a mistake.
const maxManifestSize = 64 << 20

// Load reads a flotilla.yaml, or a scenario dependency-graph .json (chosen
// by the extension). Warnings are non-fatal findings (the scenario format's
// consumer lists disagreeing with its dependencies). A structural problem
// (syntax, unknown field, wrong type, duplicate or empty service name, a
// path outside the repository, two services owning one path) is an error
// naming the file and line. Graph-level problems (unknown dependencies,
// cycles) are found by Graph.Validate, not here.
//
// An error reading the file (missing, a directory, too large) wraps ErrRead;
// every other error is about its content.
func Load(file string) (*Manifest, []Warning, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrRead, err)
	}
	if st.IsDir() {
		return nil, nil, fmt.Errorf("%w: %s is a directory, not a %s or .json file", ErrRead, file, FileName)
	}
	if st.Size() > maxManifestSize {
		return nil, nil, fmt.Errorf("%w: %s is %d bytes, larger than the %d a manifest may be", ErrRead, file, st.Size(), maxManifestSize)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrRead, err)
	}
	root, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrRead, err)
	}
	if strings.EqualFold(filepath.Ext(file), ".json") {
		return ParseScenarioJSON(file, root, data)
	}
	m, err := ParseYAML(file, root, data)
	return m, nil, err
}

// finish sorts, indexes and checks what both formats share.
func (m *Manifest) finish() error {
	sort.Slice(m.Services, func(i, j int) bool { return m.Services[i].Name < m.Services[j].Name })
	sort.Slice(m.Environments, func(i, j int) bool { return m.Environments[i].Name < m.Environments[j].Name })
	m.index()
	// A format without policies (the scenario's .json) gets the defaults.
	if m.Defaults.Strategy == "" {
		m.Defaults = DefaultPolicy()
	}
	for _, s := range m.Services {
		if s.Policy.Strategy == "" {
			s.Policy = m.Defaults.clone()
		}
	}
	var errs []error
	owner := map[string]*Service{}
	for _, s := range m.Services {
		for _, p := range s.Paths {
			if o, dup := owner[p]; dup && o != s {
				errs = append(errs, fmt.Errorf("%sservice %q: path %q is already owned by %q (line %d); give each folder one owner", locate(m.File, s.RefLine("paths", p)), s.Name, p, o.Name, o.RefLine("paths", p)))
				continue
			}
			owner[p] = s
		}
	}
	return errors.Join(errs...)
}

// cleanRepoPath validates a service path: relative, inside the repository.
func cleanRepoPath(p string) (string, error) {
	if strings.TrimSpace(p) == "" {
		return "", errors.New("is empty")
	}
	if strings.ContainsRune(p, 0) {
		return "", errors.New("contains a NUL byte")
	}
	s := filepath.ToSlash(p)
	if path.IsAbs(s) || filepath.IsAbs(p) || (len(s) > 1 && s[1] == ':') {
		return "", fmt.Errorf("%q is absolute; write it relative to the manifest's folder", p)
	}
	c := path.Clean(s)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%q is outside the repository; paths are relative to the manifest's folder", p)
	}
	return c, nil
}

func locate(file string, line int) string {
	switch {
	case file == "":
		return ""
	case line > 0:
		return fmt.Sprintf("%s:%d: ", file, line)
	default:
		return file + ": "
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
