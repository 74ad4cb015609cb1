package contract

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rules are matching rules by category (body, header, query, path, status,
// content, metadata) and, within a category, by matcher path (body, content)
// or name (header, query, metadata). The path and status categories have a
// single entry under the key "".
type Rules map[string]map[string]*RuleList

// RuleList is the matchers at one path, combined with AND (default) or OR.
type RuleList struct {
	Combine  string // "AND" or "OR"
	Matchers []Matcher
}

// Matcher is one matching rule: its "match" type and its attributes
// (regex, min, max, format, value, variants, rules, status, ...).
type Matcher map[string]any

// Type is the matcher's kind ("type", "regex", "integer", ...).
func (m Matcher) Type() string {
	if s, ok := m["match"].(string); ok {
		return s
	}
	if s, ok := m["type"].(string); ok { // the V4 README's spelling
		return s
	}
	if _, ok := m["regex"]; ok {
		return "regex"
	}
	if _, ok := m["min"]; ok {
		return "type"
	}
	if _, ok := m["max"]; ok {
		return "type"
	}
	return ""
}

func (m Matcher) str(k string) string {
	s, _ := m[k].(string)
	return s
}

func (m Matcher) intAttr(k string) (int, bool) {
	switch v := m[k].(type) {
	case json.Number:
		n, err := strconv.Atoi(v.String())
		return n, err == nil
	case int:
		return v, true
	case float64:
		return int(v), true
	}
	return 0, false
}

// Add appends a matcher at path in category.
func (r Rules) Add(category, path string, m ...Matcher) {
	if r[category] == nil {
		r[category] = map[string]*RuleList{}
	}
	rl := r[category][path]
	if rl == nil {
		rl = &RuleList{Combine: "AND"}
		r[category][path] = rl
	}
	rl.Matchers = append(rl.Matchers, m...)
}

var knownMatchers = map[string]bool{
	"type": true, "regex": true, "equality": true, "include": true, "integer": true,
	"decimal": true, "number": true, "boolean": true, "null": true, "date": true,
	"time": true, "timestamp": true, "datetime": true, "contentType": true, "values": true,
	"arrayContains": true, "eachKey": true, "eachValue": true, "notEmpty": true,
	"semver": true, "statusCode": true, "min": true, "max": true,
}

// validate checks one matcher: a known type, and a regex that compiles.
func validateMatcher(m Matcher, where string) error {
	t := m.Type()
	if !knownMatchers[t] {
		return &ParseError{Where: where, Err: fmt.Errorf("unknown matcher %q", t)}
	}
	if t == "regex" {
		if _, err := compileRegex(m.str("regex")); err != nil {
			return &ParseError{Where: where + ".regex", Err: err}
		}
	}
	if t == "date" || t == "time" || t == "timestamp" || t == "datetime" {
		if f := m.str("format"); f != "" {
			if _, err := javaLayout(f); err != nil {
				return &ParseError{Where: where + ".format", Err: err}
			}
		}
	}
	if t == "arrayContains" {
		vs, _ := m["variants"].([]any)
		for i, v := range vs {
			vm, _ := v.(map[string]any)
			if vm == nil {
				return &ParseError{Where: fmt.Sprintf("%s.variants[%d]", where, i), Err: errors.New("must be an object")}
			}
			if _, err := parseCategory(vm["rules"], fmt.Sprintf("%s.variants[%d].rules", where, i), true); err != nil {
				return err
			}
		}
	}
	if t == "eachKey" || t == "eachValue" {
		rs, _ := m["rules"].([]any)
		for i, r := range rs {
			rm, _ := r.(map[string]any)
			if rm == nil {
				return &ParseError{Where: fmt.Sprintf("%s.rules[%d]", where, i), Err: errors.New("must be an object")}
			}
			if err := validateMatcher(Matcher(rm), fmt.Sprintf("%s.rules[%d]", where, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

var regexCache sync.Map // string -> *regexp.Regexp

// compileRegex compiles a pact regex, anchored to the whole value as Pact
// matchers are.
func compileRegex(s string) (*regexp.Regexp, error) {
	if v, ok := regexCache.Load(s); ok {
		return v.(*regexp.Regexp), nil
	}
	re, err := regexp.Compile(`^(?:` + s + `)$`)
	if err != nil {
		return nil, fmt.Errorf("invalid regex %q: %w", s, err)
	}
	regexCache.Store(s, re)
	return re, nil
}

// parseRules reads matchingRules in the v2 flat layout or the v3/v4
// categorised one. For messages, v3's "body" category becomes "content".
func parseRules(v any, spec Spec, message bool, where string) (Rules, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &ParseError{Where: where, Err: errors.New("must be an object")}
	}
	rules := Rules{}
	flat := spec == V2
	if !flat {
		for k := range m {
			if strings.HasPrefix(k, "$") {
				flat = true
			}
		}
	}
	if flat {
		keys := sortedKeys(m)
		for _, k := range keys {
			obj, ok := m[k].(map[string]any)
			if !ok {
				return nil, &ParseError{Where: where + "." + k, Err: errors.New("must be an object")}
			}
			cat, path, err := splitV2Path(k)
			if err != nil {
				return nil, &ParseError{Where: where + "[" + strconv.Quote(k) + "]", Err: err}
			}
			if message && cat == "body" {
				cat = "content"
			}
			mt := Matcher(obj)
			if err := validateMatcher(mt, where+"["+strconv.Quote(k)+"]"); err != nil {
				return nil, err
			}
			rules.Add(cat, path, mt)
		}
		return rules, nil
	}
	for _, cat := range sortedKeys(m) {
		name := cat
		if message && cat == "body" {
			name = "content"
		}
		if cat == "path" || cat == "status" {
			rl, err := parseRuleList(m[cat], where+"."+cat)
			if err != nil {
				return nil, err
			}
			if rl != nil {
				rules[name] = map[string]*RuleList{"": rl}
			}
			continue
		}
		c, err := parseCategory(m[cat], where+"."+cat, cat == "body" || cat == "content")
		if err != nil {
			return nil, err
		}
		if len(c) > 0 {
			if rules[name] == nil {
				rules[name] = c
			} else {
				for k, v := range c {
					rules[name][k] = v
				}
			}
		}
	}
	return rules, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func parseCategory(v any, where string, paths bool) (map[string]*RuleList, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &ParseError{Where: where, Err: errors.New("must be an object")}
	}
	// A header/query category written like a path category.
	if _, isList := m["matchers"]; isList && !paths {
		return nil, &ParseError{Where: where, Err: errors.New("rules here are keyed by name")}
	}
	out := map[string]*RuleList{}
	for _, k := range sortedKeys(m) {
		w := where + "[" + strconv.Quote(k) + "]"
		if paths {
			if _, err := parsePath(k); err != nil {
				return nil, &ParseError{Where: w, Err: err}
			}
		}
		rl, err := parseRuleList(m[k], w)
		if err != nil {
			return nil, err
		}
		if rl != nil {
			out[k] = rl
		}
	}
	return out, nil
}

func parseRuleList(v any, where string) (*RuleList, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &ParseError{Where: where, Err: errors.New("must be an object {matchers: [...]}")}
	}
	rl := &RuleList{Combine: "AND"}
	if c, ok := m["combine"].(string); ok {
		c = strings.ToUpper(c)
		if c != "AND" && c != "OR" {
			return nil, &ParseError{Where: where + ".combine", Err: fmt.Errorf("%q: want AND or OR", c)}
		}
		rl.Combine = c
	}
	list, ok := m["matchers"].([]any)
	if !ok {
		if _, has := m["match"]; has { // a bare matcher
			if err := validateMatcher(Matcher(m), where); err != nil {
				return nil, err
			}
			rl.Matchers = []Matcher{Matcher(m)}
			return rl, nil
		}
		return nil, &ParseError{Where: where + ".matchers", Err: errors.New("must be an array of matchers")}
	}
	for i, x := range list {
		mm, ok := x.(map[string]any)
		if !ok {
			return nil, &ParseError{Where: fmt.Sprintf("%s.matchers[%d]", where, i), Err: errors.New("must be an object")}
		}
		if err := validateMatcher(Matcher(mm), fmt.Sprintf("%s.matchers[%d]", where, i)); err != nil {
			return nil, err
		}
		rl.Matchers = append(rl.Matchers, Matcher(mm))
	}
	return rl, nil
}

// splitV2Path splits a v2 rule path ($.body.x, $.headers.Accept,
// $.query.q, $.path) into a category and the rest.
func splitV2Path(k string) (cat, path string, err error) {
	toks, err := parsePath(k)
	if err != nil {
		return "", "", err
	}
	if len(toks) < 2 || toks[1].kind != tokField {
		return "", "", fmt.Errorf("matcher path %q names no part ($.body, $.headers, $.query, $.path)", k)
	}
	switch toks[1].name {
	case "body":
		return "body", renderTokens(append([]pathToken{{kind: tokRoot}}, toks[2:]...)), nil
	case "headers", "header":
		if len(toks) < 3 {
			return "", "", fmt.Errorf("matcher path %q names no header", k)
		}
		return "header", toks[2].name, nil
	case "query":
		if len(toks) < 3 {
			return "", "", fmt.Errorf("matcher path %q names no query parameter", k)
		}
		return "query", toks[2].name, nil
	case "path":
		return "path", "", nil
	case "metadata", "metaData":
		if len(toks) < 3 {
			return "", "", fmt.Errorf("matcher path %q names no metadata key", k)
		}
		return "metadata", toks[2].name, nil
	case "contents", "content":
		return "content", renderTokens(append([]pathToken{{kind: tokRoot}}, toks[2:]...)), nil
	case "status":
		return "status", "", nil
	}
	return "", "", fmt.Errorf("matcher path %q: unknown part %q (want body, headers, query or path)", k, toks[1].name)
}

func (r Rules) toJSON(spec Spec, message bool) map[string]any {
	out := map[string]any{}
	for cat, paths := range r {
		name := cat
		if message && cat == "content" && spec == V3 {
			name = "body"
		}
		if cat == "path" || cat == "status" {
			if rl := paths[""]; rl != nil {
				out[name] = rl.toJSON()
			}
			continue
		}
		c := map[string]any{}
		for p, rl := range paths {
			c[p] = rl.toJSON()
		}
		out[name] = c
	}
	return out
}

func (rl *RuleList) toJSON() map[string]any {
	ms := make([]any, len(rl.Matchers))
	for i, m := range rl.Matchers {
		ms[i] = map[string]any(m)
	}
	c := rl.Combine
	if c == "" {
		c = "AND"
	}
	return map[string]any{"matchers": ms, "combine": c}
}

// --- generators --------------------------------------------------------------

// Generators are value generators by category (body, header, query, path,
// status, content, metadata) and path or name; path and status use "".
type Generators map[string]map[string]Generator

// Generator is one generator: its "type" and attributes.
type Generator map[string]any

// Type is the generator's kind (RandomInt, Uuid, ProviderState, ...).
func (g Generator) Type() string { s, _ := g["type"].(string); return s }

// Add sets the generator at path in category.
func (g Generators) Add(category, path string, gen Generator) {
	if g[category] == nil {
		g[category] = map[string]Generator{}
	}
	g[category][path] = gen
}

var knownGenerators = map[string]bool{
	"RandomInt": true, "RandomDecimal": true, "RandomHexadecimal": true, "RandomString": true,
	"RandomBoolean": true, "Regex": true, "Uuid": true, "Date": true, "Time": true, "DateTime": true,
	"ProviderState": true, "MockServerURL": true,
}

func parseGenerators(v any, message bool, where string) (Generators, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &ParseError{Where: where, Err: errors.New("must be an object")}
	}
	out := Generators{}
	for _, cat := range sortedKeys(m) {
		name := cat
		if message && cat == "body" {
			name = "content"
		}
		w := where + "." + cat
		cm, ok := m[cat].(map[string]any)
		if !ok {
			return nil, &ParseError{Where: w, Err: errors.New("must be an object")}
		}
		if cat == "path" || cat == "status" {
			g := Generator(cm)
			if err := validateGenerator(g, w); err != nil {
				return nil, err
			}
			out.Add(name, "", g)
			continue
		}
		for _, k := range sortedKeys(cm) {
			gm, ok := cm[k].(map[string]any)
			if !ok {
				return nil, &ParseError{Where: w + "[" + strconv.Quote(k) + "]", Err: errors.New("must be an object")}
			}
			if cat == "body" || cat == "content" {
				if _, err := parsePath(k); err != nil {
					return nil, &ParseError{Where: w + "[" + strconv.Quote(k) + "]", Err: err}
				}
			}
			g := Generator(gm)
			if err := validateGenerator(g, w+"["+strconv.Quote(k)+"]"); err != nil {
				return nil, err
			}
			out.Add(name, k, g)
		}
	}
	return out, nil
}

func validateGenerator(g Generator, where string) error {
	if !knownGenerators[g.Type()] {
		return &ParseError{Where: where, Err: fmt.Errorf("unknown generator %q", g.Type())}
	}
	if g.Type() == "Regex" {
		if _, err := compileRegex(g.str("regex")); err != nil {
			return &ParseError{Where: where + ".regex", Err: err}
		}
	}
	if f := g.str("format"); f != "" && (g.Type() == "Date" || g.Type() == "Time" || g.Type() == "DateTime") {
		if _, err := javaLayout(f); err != nil {
			return &ParseError{Where: where + ".format", Err: err}
		}
	}
	return nil
}

func (g Generator) str(k string) string { s, _ := g[k].(string); return s }

func (g Generators) toJSON(spec Spec, message bool) map[string]any {
	out := map[string]any{}
	for cat, paths := range g {
		name := cat
		if message && cat == "content" && spec == V3 {
			name = "body"
		}
		if cat == "path" || cat == "status" {
			out[name] = map[string]any(paths[""])
			continue
		}
		c := map[string]any{}
		for p, gen := range paths {
			c[p] = map[string]any(gen)
		}
		out[name] = c
	}
	return out
}

// --- file locking for merges ------------------------------------------------

var writeMu sync.Mutex

// lockFile takes an exclusive lock file, shared by processes writing the
// same pact (go test runs packages in parallel). A lock older than a minute
// is stale and taken over.
func lockFile(path string) (func(), error) {
	writeMu.Lock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			_ = f.Close()
			return func() { _ = os.Remove(path); writeMu.Unlock() }, nil
		}
		if st, serr := os.Stat(path); serr == nil && time.Since(st.ModTime()) > time.Minute {
			_ = os.Remove(path)
			continue
		}
		if time.Now().After(deadline) {
			writeMu.Unlock()
			return nil, fmt.Errorf("lock %s: held too long by another writer", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
