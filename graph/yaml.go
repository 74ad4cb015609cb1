package graph

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bmatcuk/doublestar/v4"
	"gopkg.in/yaml.v3"
)

// ParseYAML decodes a flotilla.yaml strictly. file names it in errors; root
// is the repository root the service paths are relative to.
//
// The shape:
//
//	shared: [go.mod, "shop/kit/**"]
//	environments:
//	  staging: {target: kubernetes, namespace: shop, url: https://staging.example.com}
//	defaults:
//	  canary: {interval: 15s, threshold: 2, max_error_rate: 0.01, bake: 1m}
//	services:
//	  user-service:
//	    paths: [shop/user, shop/cmd/user]   # or path: shop/user
//	    depends_on: []
//	    publishes: [UserRegistered]
//	    subscribes: []
//	    health: /ready
//	    deploy: {port: 0, package: ./shop/cmd/user, image: "", replicas: 1, env: {}, timeout: 60s}
//	    smoke:
//	      - {name: ready, method: GET, path: /ready, status: 200, json_field: status, json_value: ok}
//	    canary: {steps: [10, 50], interval: 30s, threshold: 2, max_error_rate: 0.01, max_p99: 500ms, min_requests: 20}
//
// The canary block and defaults.canary are described with [Policy]: each
// service's Policy is resolved from them, and a setting that would not take
// effect is an error.
func ParseYAML(file, root string, data []byte) (*Manifest, error) {
	d := &decoder{file: file}
	if !utf8.Valid(data) || bytes.IndexByte(data, 0) >= 0 {
		return nil, d.errf(0, "", "is not a text file (binary or not UTF-8); a manifest is YAML")
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, d.yamlErr(data, err)
	}
	// A second document would be silently ignored: refuse it (a trailing
	// '---' with nothing after it holds nothing to ignore).
	var more yaml.Node
	switch err := dec.Decode(&more); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, d.yamlErr(data, err)
	case !emptyDoc(&more):
		return nil, d.errf(secondDocLine(data, &more), "", "a second YAML document starts here; a manifest is one document: merge it into the first or remove the '---'")
	}
	m := &Manifest{File: file, Root: root}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, d.errf(0, "", "is empty; it needs at least a services: mapping")
	}
	top := doc.Content[0]
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" && top.Value == "" {
		// A lone '---' or only comments: yaml.v3 may place the empty node
		// past the last line.
		return nil, d.errf(0, "", "is empty; it needs at least a services: mapping")
	}
	if err := noAliases(d, top); err != nil {
		return nil, err
	}
	pairs, err := d.mapping(top, "")
	if err != nil {
		return nil, err
	}
	var errs []error
	var defaults *policyBlock
	sawServices := false
	for _, kv := range pairs {
		switch kv.key {
		case "shared":
			globs, err := d.strList(kv.val, "shared")
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for i, g := range globs {
				line := kv.val.Content[i].Line
				if _, err := cleanRepoPath(g); err != nil {
					errs = append(errs, d.errf(line, fmt.Sprintf("shared[%d]", i), "%v", err))
				} else if !doublestar.ValidatePattern(g) {
					errs = append(errs, d.errf(line, fmt.Sprintf("shared[%d]", i), "%q is not a valid glob (use *, ** and ? with balanced [ ] and { })", g))
				}
			}
			m.Shared = globs
		case "environments":
			envs, err := d.environments(kv.val)
			if err != nil {
				errs = append(errs, err)
			}
			m.Environments = envs
		case "defaults":
			fields, err := d.mapping(kv.val, "defaults")
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, f := range fields {
				switch f.key {
				case "canary":
					b, err := d.canaryBlock(f)
					if err != nil {
						errs = append(errs, err)
					}
					defaults = b
				default:
					errs = append(errs, d.unknown(f, "defaults", "canary"))
				}
			}
		case "services":
			sawServices = true
			svcs, err := d.services(kv.val)
			if err != nil {
				errs = append(errs, err)
			}
			m.Services = svcs
		default:
			errs = append(errs, d.unknown(kv, "", topFields))
		}
	}
	// Policies resolve once every block is read: the defaults may come
	// after the services.
	var perrs []error
	m.Defaults, perrs = (&policyScope{d: d, own: defaults, defaults: true}).resolve()
	errs = append(errs, perrs...)
	for _, s := range m.Services {
		sc := &policyScope{d: d, own: s.canary, inherited: defaults, path: "services." + s.Name, line: s.Line}
		if s.canary != nil {
			sc.path, sc.line = s.canary.path, s.canary.line
		}
		s.Policy, perrs = sc.resolve()
		errs = append(errs, perrs...)
	}
	if !sawServices && len(errs) == 0 {
		errs = append(errs, d.errf(top.Line, "", "has no services: mapping"))
	}
	if len(errs) > 0 {
		return nil, joinByLine(errs)
	}
	if err := m.finish(); err != nil {
		return nil, err
	}
	return m, nil
}

// topFields are the manifest's top-level fields.
const topFields = "shared, environments, defaults, services"

type decoder struct{ file string }

type pair struct {
	key      string
	keyNode  *yaml.Node
	val      *yaml.Node
	fullPath string
}

func (d *decoder) errf(line int, field, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if field != "" {
		msg = field + ": " + msg
	}
	return &lineError{line: line, msg: locate(d.file, line) + msg}
}

// lineError is a problem on a line of the manifest.
type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return e.msg }

// joinByLine joins errors (flattening joined ones) in the order of the
// lines they are on: the policies are checked after the whole file is
// read, and their problems belong among the others.
func joinByLine(errs []error) error {
	var flat []error
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if err != nil {
			flat = append(flat, err)
		}
	}
	for _, e := range errs {
		walk(e)
	}
	line := func(err error) int {
		var le *lineError
		if errors.As(err, &le) {
			return le.line
		}
		return 0
	}
	slices.SortStableFunc(flat, func(a, b error) int { return line(a) - line(b) })
	return errors.Join(flat...)
}

// yamlErr turns a yaml.v3 error into file:line: invalid YAML: .... yaml.v3
// names the line where the enclosing block starts (0-based for parser
// errors), not where the problem is: an indentation error on line 4 of a
// mapping that starts on line 2 says "line 1". So the line is found again:
// the problem is on the first line whose prefix of the file fails with the
// same message (the lines before it parse), searched from the line yaml.v3
// names, where the problem cannot be before.
func (d *decoder) yamlErr(data []byte, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ":"); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line, msg = n, strings.TrimSpace(rest[i+1:])
			}
		}
	}
	// Bisection parses the file about log2(lines) times: bounded to
	// manifests of a size people write by hand.
	if te == nil && len(data) <= 4<<20 {
		if l := problemLine(data, msg, max(line, 1)); l > 0 {
			line = l
		}
	}
	return d.errf(line, "", "invalid YAML: %s", msg)
}

// problemLine returns the smallest k >= from such that the first k lines of
// data fail to parse with msg, or 0. A prefix that ends before the problem
// parses (or fails otherwise); one that holds it fails the same way, so the
// answer is found by bisection.
func problemLine(data []byte, msg string, from int) int {
	ends := lineEnds(data)
	fails := func(k int) bool {
		var n yaml.Node
		dec := yaml.NewDecoder(bytes.NewReader(data[:ends[k-1]]))
		for {
			err := dec.Decode(&n)
			if errors.Is(err, io.EOF) {
				return false
			}
			if err != nil {
				m := strings.TrimPrefix(err.Error(), "yaml: ")
				if rest, ok := strings.CutPrefix(m, "line "); ok {
					if i := strings.Index(rest, ":"); i > 0 {
						m = strings.TrimSpace(rest[i+1:])
					}
				}
				return m == msg
			}
		}
	}
	lo, hi := from, len(ends)
	if lo > hi || !fails(hi) {
		return 0
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// lineEnds returns, for each line, the offset just past it.
func lineEnds(data []byte) []int {
	var ends []int
	for i, b := range data {
		if b == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		ends = append(ends, len(data))
	}
	return ends
}

// emptyDoc reports whether a document holds nothing (a lone '---').
func emptyDoc(doc *yaml.Node) bool {
	if len(doc.Content) == 0 {
		return true
	}
	c := doc.Content[0]
	return c.Kind == yaml.ScalarNode && c.Tag == "!!null" && c.Value == ""
}

// secondDocLine is the line of the '---' that starts the second document
// (its content's line when the marker cannot be found).
func secondDocLine(data []byte, doc *yaml.Node) int {
	line := doc.Line
	if len(doc.Content) > 0 {
		line = doc.Content[0].Line
	}
	ends := lineEnds(data)
	for l := min(line, len(ends)); l >= 2; l-- {
		start := ends[l-2]
		if bytes.HasPrefix(data[start:ends[l-1]], []byte("---")) {
			return l
		}
	}
	return line
}

func noAliases(d *decoder, n *yaml.Node) error {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return d.errf(n.Line, "", "YAML anchors and aliases are not supported in a manifest; write the value out")
	}
	for _, c := range n.Content {
		if err := noAliases(d, c); err != nil {
			return err
		}
	}
	return nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "nothing (null)"
		case "!!int", "!!float":
			return "a number (" + n.Value + ")"
		case "!!bool":
			return "a boolean (" + n.Value + ")"
		}
		return fmt.Sprintf("the text %q", n.Value)
	}
	return "an unsupported YAML node"
}

// mapping returns the key/value pairs of a mapping node, rejecting
// duplicate and non-text keys. A null node is an empty mapping.
func (d *decoder) mapping(n *yaml.Node, field string) ([]pair, error) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		what := "the manifest"
		if field != "" {
			what = "it"
		}
		return nil, d.errf(n.Line, field, "%s must be a mapping, got %s", what, kindName(n))
	}
	seen := map[string]int{}
	out := make([]pair, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!null" {
			return nil, d.errf(k.Line, field, "keys must be text, got %s", kindName(k))
		}
		if prev, dup := seen[k.Value]; dup {
			return nil, d.errf(k.Line, join(field, k.Value), "is defined twice (first on line %d)", prev)
		}
		seen[k.Value] = k.Line
		out = append(out, pair{key: k.Value, keyNode: k, val: v, fullPath: join(field, k.Value)})
	}
	return out, nil
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

func (d *decoder) unknown(kv pair, parent, known string) error {
	return d.errf(kv.keyNode.Line, kv.fullPath, "unknown field %q (known: %s)", kv.key, known)
}

func (d *decoder) str(n *yaml.Node, field string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return "", d.errf(n.Line, field, "must be text, got %s", kindName(n))
	}
	return n.Value, nil
}

// scalar accepts any non-null scalar as text (for values compared as text).
func (d *decoder) scalar(n *yaml.Node, field string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", d.errf(n.Line, field, "must be a single value, got %s", kindName(n))
	}
	return n.Value, nil
}

func (d *decoder) integer(n *yaml.Node, field string, min, max int) (int, error) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		return 0, d.errf(n.Line, field, "must be a whole number, got %s", kindName(n))
	}
	v, err := strconv.ParseInt(n.Value, 0, 64)
	if err != nil || v < int64(min) || v > int64(max) {
		return 0, d.errf(n.Line, field, "must be a whole number from %d to %d, got %s", min, max, n.Value)
	}
	return int(v), nil
}

func (d *decoder) float(n *yaml.Node, field string, min, max float64) (float64, error) {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!float" && n.Tag != "!!int") {
		return 0, d.errf(n.Line, field, "must be a number, got %s", kindName(n))
	}
	v, err := strconv.ParseFloat(n.Value, 64)
	if err != nil || v != v || v < min || v > max {
		return 0, d.errf(n.Line, field, "must be a number from %g to %g, got %s", min, max, n.Value)
	}
	return v, nil
}

func (d *decoder) duration(n *yaml.Node, field string) (Duration, error) {
	s, err := d.str(n, field)
	if err != nil {
		return 0, d.errf(n.Line, field, "must be a duration such as 30s or 2m, got %s", kindName(n))
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, d.errf(n.Line, field, "must be a duration such as 30s or 2m, got %q", s)
	}
	return Duration(v), nil
}

// strList decodes a list of non-empty, distinct texts, recording each
// entry's line into lines (keyed kind/value) when lines is not nil.
func (d *decoder) strList(n *yaml.Node, field string) ([]string, error) {
	out, _, err := d.strListLines(n, field)
	return out, err
}

func (d *decoder) strListLines(n *yaml.Node, field string) ([]string, []int, error) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, nil, d.errf(n.Line, field, "must be a list, got %s", kindName(n))
	}
	out := make([]string, 0, len(n.Content))
	lines := make([]int, 0, len(n.Content))
	seen := map[string]int{}
	for i, c := range n.Content {
		f := fmt.Sprintf("%s[%d]", field, i)
		s, err := d.str(c, f)
		if err != nil {
			return nil, nil, err
		}
		if strings.TrimSpace(s) == "" {
			return nil, nil, d.errf(c.Line, f, "is empty")
		}
		if prev, dup := seen[s]; dup {
			return nil, nil, d.errf(c.Line, f, "%q is listed twice (first on line %d)", s, prev)
		}
		seen[s] = c.Line
		out = append(out, s)
		lines = append(lines, c.Line)
	}
	return out, lines, nil
}

func (d *decoder) environments(n *yaml.Node) ([]*Environment, error) {
	pairs, err := d.mapping(n, "environments")
	if err != nil {
		return nil, err
	}
	var out []*Environment
	var errs []error
	for _, kv := range pairs {
		if err := checkName(kv.key); err != nil {
			errs = append(errs, d.errf(kv.keyNode.Line, "environments", "environment name %v", err))
			continue
		}
		e := &Environment{Name: kv.key, Line: kv.keyNode.Line}
		fields, err := d.mapping(kv.val, kv.fullPath)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range fields {
			var err error
			switch f.key {
			case "target":
				e.Target, err = d.str(f.val, f.fullPath)
				if err == nil && e.Target != "local" && e.Target != "kubernetes" {
					err = d.errf(f.val.Line, f.fullPath, "unknown target %q (known: local, kubernetes)", e.Target)
				}
			case "namespace":
				e.Namespace, err = d.str(f.val, f.fullPath)
			case "context":
				e.Context, err = d.str(f.val, f.fullPath)
			case "url":
				e.URL, err = d.str(f.val, f.fullPath)
			default:
				err = d.unknown(f, kv.fullPath, "target, namespace, context, url")
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
		out = append(out, e)
	}
	return out, errors.Join(errs...)
}

// checkName validates a service or environment name: what DNS labels,
// Kubernetes objects and file names all accept.
func checkName(name string) error {
	if name == "" {
		return errors.New("is empty")
	}
	if len(name) > 63 {
		return fmt.Errorf("%q is longer than 63 characters", name)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || (r == '-' && i > 0 && i < len(name)-1)
		if !ok {
			return fmt.Errorf("%q may hold only lowercase letters, digits and inner dashes", name)
		}
	}
	return nil
}

func (d *decoder) services(n *yaml.Node) ([]*Service, error) {
	pairs, err := d.mapping(n, "services")
	if err != nil {
		return nil, err
	}
	var out []*Service
	var errs []error
	for _, kv := range pairs {
		if err := checkName(kv.key); err != nil {
			errs = append(errs, d.errf(kv.keyNode.Line, "services", "service name %v", err))
			continue
		}
		s, err := d.service(kv)
		if err != nil {
			errs = append(errs, err)
		}
		// A service with problems is kept for its policy to be checked;
		// the manifest is refused all the same.
		if s != nil {
			out = append(out, s)
		}
	}
	return out, errors.Join(errs...)
}

const serviceFields = "path, paths, depends_on, publishes, subscribes, health, deploy, smoke, routes, canary"

func (d *decoder) service(kv pair) (*Service, error) {
	s := &Service{Name: kv.key, Line: kv.keyNode.Line, refLines: map[string]int{}}
	fields, err := d.mapping(kv.val, kv.fullPath)
	if err != nil {
		return nil, err
	}
	var errs []error
	refs := func(kind string, f pair) []string {
		list, lines, err := d.strListLines(f.val, f.fullPath)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		for i, v := range list {
			s.refLines[kind+"/"+v] = lines[i]
		}
		return list
	}
	sawPath := false
	addPath := func(p string, line int, field string) {
		c, err := cleanRepoPath(p)
		if err != nil {
			errs = append(errs, d.errf(line, field, "%v", err))
			return
		}
		if contains(s.Paths, c) {
			errs = append(errs, d.errf(line, field, "%q is listed twice", c))
			return
		}
		s.Paths = append(s.Paths, c)
		s.refLines["paths/"+c] = line
	}
	for _, f := range fields {
		switch f.key {
		case "path":
			if sawPath {
				errs = append(errs, d.errf(f.keyNode.Line, f.fullPath, "give either path or paths, not both"))
				continue
			}
			sawPath = true
			p, err := d.str(f.val, f.fullPath)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			addPath(p, f.val.Line, f.fullPath)
		case "paths":
			if sawPath {
				errs = append(errs, d.errf(f.keyNode.Line, f.fullPath, "give either path or paths, not both"))
				continue
			}
			sawPath = true
			if f.val.Kind != yaml.SequenceNode {
				errs = append(errs, d.errf(f.val.Line, f.fullPath, "must be a list of folders, got %s", kindName(f.val)))
				continue
			}
			for i, c := range f.val.Content {
				fp := fmt.Sprintf("%s[%d]", f.fullPath, i)
				p, err := d.str(c, fp)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				addPath(p, c.Line, fp)
			}
		case "depends_on":
			s.DependsOn = refs("depends_on", f)
		case "publishes":
			s.Publishes = refs("publishes", f)
		case "subscribes":
			s.Subscribes = refs("subscribes", f)
		case "health":
			h, err := d.str(f.val, f.fullPath)
			if err == nil && !strings.HasPrefix(h, "/") {
				err = d.errf(f.val.Line, f.fullPath, "must be an HTTP path starting with /, got %q", h)
			}
			if err != nil {
				errs = append(errs, err)
			}
			s.Health = h
		case "deploy":
			if err := d.deploy(f, &s.Deploy); err != nil {
				errs = append(errs, err)
			}
		case "smoke":
			checks, err := d.smoke(f)
			if err != nil {
				errs = append(errs, err)
			}
			s.Smoke = checks
		case "routes":
			routes, err := d.routes(f)
			if err != nil {
				errs = append(errs, err)
			}
			s.Routes = routes
		case "canary":
			b, err := d.canaryBlock(f)
			if err != nil {
				errs = append(errs, err)
			}
			s.canary = b
		default:
			errs = append(errs, d.unknown(f, kv.fullPath, serviceFields))
		}
	}
	if !sawPath && len(errs) == 0 {
		errs = append(errs, d.errf(s.Line, kv.fullPath, "has no path: name the folder it owns (path: or paths:)"))
	}
	return s, errors.Join(errs...)
}

func (d *decoder) deploy(kv pair, dep *Deploy) error {
	fields, err := d.mapping(kv.val, kv.fullPath)
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range fields {
		var err error
		switch f.key {
		case "port":
			dep.Port, err = d.integer(f.val, f.fullPath, 0, 65535)
		case "package":
			dep.Package, err = d.str(f.val, f.fullPath)
		case "image":
			dep.Image, err = d.str(f.val, f.fullPath)
		case "replicas":
			dep.Replicas, err = d.integer(f.val, f.fullPath, 1, 1000)
		case "timeout":
			dep.Timeout, err = d.duration(f.val, f.fullPath)
		case "env":
			var env []pair
			env, err = d.mapping(f.val, f.fullPath)
			if err == nil && len(env) > 0 {
				dep.Env = map[string]string{}
				for _, e := range env {
					v, err := d.scalar(e.val, e.fullPath)
					if err != nil {
						errs = append(errs, err)
						continue
					}
					dep.Env[e.key] = v
				}
			}
		default:
			err = d.unknown(f, kv.fullPath, "port, package, image, replicas, env, timeout")
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (d *decoder) smoke(kv pair) ([]SmokeCheck, error) {
	if kv.val.Kind != yaml.SequenceNode {
		return nil, d.errf(kv.val.Line, kv.fullPath, "must be a list of checks, got %s", kindName(kv.val))
	}
	var out []SmokeCheck
	var errs []error
	for i, item := range kv.val.Content {
		field := fmt.Sprintf("%s[%d]", kv.fullPath, i)
		fields, err := d.mapping(item, field)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c := SmokeCheck{Method: "GET", Status: 200, Line: item.Line}
		for _, f := range fields {
			var err error
			switch f.key {
			case "name":
				c.Name, err = d.str(f.val, f.fullPath)
			case "method":
				c.Method, err = d.str(f.val, f.fullPath)
				if err == nil {
					c.Method = strings.ToUpper(c.Method)
					switch c.Method {
					case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
					default:
						err = d.errf(f.val.Line, f.fullPath, "unknown HTTP method %q", c.Method)
					}
				}
			case "path":
				c.Path, err = d.str(f.val, f.fullPath)
				if err == nil && !strings.HasPrefix(c.Path, "/") {
					err = d.errf(f.val.Line, f.fullPath, "must start with /, got %q", c.Path)
				}
			case "body":
				c.Body, err = d.str(f.val, f.fullPath)
			case "status":
				c.Status, err = d.integer(f.val, f.fullPath, 100, 599)
			case "json_field":
				c.JSONField, err = d.str(f.val, f.fullPath)
			case "json_value":
				c.JSONValue, err = d.scalar(f.val, f.fullPath)
			default:
				err = d.unknown(f, field, "name, method, path, body, status, json_field, json_value")
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
		if c.Path == "" {
			errs = append(errs, d.errf(item.Line, field, "needs a path (the request path, e.g. /ready)"))
		}
		if c.Name == "" {
			c.Name = c.Method + " " + c.Path
		}
		out = append(out, c)
	}
	return out, errors.Join(errs...)
}

// routes decodes a service's public routes: each {method, path, auth},
// the path a template of literal segments and {name} segments, a method
// and path given once.
func (d *decoder) routes(kv pair) ([]Route, error) {
	if kv.val.Kind != yaml.SequenceNode {
		return nil, d.errf(kv.val.Line, kv.fullPath, "must be a list of routes like {method: GET, path: /orders/{id}, auth: user}, got %s", kindName(kv.val))
	}
	var out []Route
	var errs []error
	seen := map[string]int{}
	for i, item := range kv.val.Content {
		field := fmt.Sprintf("%s[%d]", kv.fullPath, i)
		fields, err := d.mapping(item, field)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r := Route{Line: item.Line}
		for _, f := range fields {
			var err error
			switch f.key {
			case "method":
				r.Method, err = d.str(f.val, f.fullPath)
				if err == nil {
					switch r.Method {
					case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
					default:
						err = d.errf(f.val.Line, f.fullPath, "%q: want one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS (upper case)", r.Method)
					}
				}
			case "path":
				r.Path, err = d.str(f.val, f.fullPath)
				if err == nil {
					if perr := CheckRoutePath(r.Path); perr != nil {
						err = d.errf(f.val.Line, f.fullPath, "%v", perr)
					}
				}
			case "auth":
				r.Auth, err = d.str(f.val, f.fullPath)
				if err == nil && r.Auth != RoutePublic && r.Auth != RouteUser && r.Auth != RouteAdmin {
					err = d.errf(f.val.Line, f.fullPath, "%q: want public (anyone), user (a signed-in user) or admin", r.Auth)
				}
			default:
				err = d.unknown(f, field, "method, path, auth")
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
		switch {
		case r.Method == "" || r.Path == "" || r.Auth == "":
			errs = append(errs, d.errf(item.Line, field, "needs method, path and auth (public, user or admin): a route says who may call it"))
			continue
		}
		key := r.Method + " " + routeShape(r.Path)
		if j, dup := seen[key]; dup {
			errs = append(errs, d.errf(item.Line, field, "%s %s is the same route as %s[%d]", r.Method, r.Path, kv.fullPath, j))
			continue
		}
		seen[key] = i
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

// CheckRoutePath checks a route's path template: it starts with /, and
// each segment is literal (letters, digits, '-', '_', '.') or one
// parameter in braces; no empty segment, no "." or "..".
func CheckRoutePath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q must start with /", p)
	}
	if p == "/" {
		return nil
	}
	for _, seg := range strings.Split(p[1:], "/") {
		switch {
		case seg == "":
			return fmt.Errorf("%q has an empty segment", p)
		case seg == "." || seg == "..":
			return fmt.Errorf("%q has a %q segment", p, seg)
		case strings.HasPrefix(seg, "{"):
			name, ok := strings.CutSuffix(seg[1:], "}")
			if !ok || name == "" || strings.ContainsAny(name, "{}") {
				return fmt.Errorf("%q: segment %q: a parameter is a whole segment like {id}", p, seg)
			}
		default:
			for _, c := range seg {
				if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '_' && c != '.' {
					return fmt.Errorf("%q: segment %q: want letters, digits, '-', '_' and '.', or a parameter like {id}", p, seg)
				}
			}
		}
	}
	return nil
}

// routeShape is a path template with its parameters' names dropped, so
// /users/{id} and /users/{user} are the same route.
func routeShape(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") {
			segs[i] = "{}"
		}
	}
	return strings.Join(segs, "/")
}
