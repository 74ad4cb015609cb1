package contract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Mismatch is one difference between what a pact expects and what
// happened: the part (method, path, query, header, body, status, metadata,
// content), where in it (a JSON path such as $.items[0].price, or a header
// or parameter name), what was expected and what was seen.
type Mismatch struct {
	Part     string `json:"attribute"`
	Path     string `json:"identifier,omitempty"`
	Expected string `json:"expected"`
	Actual   string `json:"actual"`
}

func (m Mismatch) String() string {
	where := m.Part
	if m.Path != "" {
		where += " " + m.Path
	}
	return fmt.Sprintf("%s: expected %s, got %s", where, m.Expected, m.Actual)
}

// Description is the mismatch without its part, as pact reports word it.
func (m Mismatch) Description() string {
	return fmt.Sprintf("expected %s, got %s", m.Expected, m.Actual)
}

// HTTPRequest is an actual request as the matcher sees it.
type HTTPRequest struct {
	Method  string
	Path    string
	Query   url.Values
	Headers http.Header
	Body    []byte
}

// HTTPResponse is an actual response as the matcher sees it.
type HTTPResponse struct {
	Status  int
	Headers http.Header
	Body    []byte
}

// MatchRequest compares an actual request with an expected one. Requests
// are matched strictly: unexpected query parameters and unexpected body
// keys are mismatches.
func MatchRequest(exp Request, act HTTPRequest) []Mismatch {
	var out []Mismatch
	if !strings.EqualFold(exp.Method, act.Method) {
		out = append(out, Mismatch{Part: "method", Expected: strconv.Quote(strings.ToUpper(exp.Method)), Actual: strconv.Quote(act.Method)})
	}
	out = append(out, matchPath(exp, act.Path)...)
	out = append(out, matchQuery(exp.Query, act.Query, exp.Rules["query"])...)
	out = append(out, matchHeaders(exp.Headers, act.Headers, exp.Rules["header"])...)
	out = append(out, matchBody("body", exp.Body, act.Headers.Get("Content-Type"), act.Body, exp.Rules["body"], true)...)
	return out
}

// MatchResponse compares an actual response with an expected one,
// leniently: extra headers and extra keys in JSON objects are allowed.
func MatchResponse(exp Response, act HTTPResponse) []Mismatch {
	var out []Mismatch
	if rl := exp.Rules["status"][""]; rl != nil {
		if ok, why := applyList(rl, json.Number(strconv.Itoa(exp.Status)), json.Number(strconv.Itoa(act.Status)), true); !ok {
			out = append(out, Mismatch{Part: "status", Expected: why, Actual: strconv.Itoa(act.Status)})
		}
	} else if exp.Status != act.Status {
		out = append(out, Mismatch{Part: "status", Expected: strconv.Itoa(exp.Status), Actual: strconv.Itoa(act.Status)})
	}
	out = append(out, matchHeaders(exp.Headers, act.Headers, exp.Rules["header"])...)
	out = append(out, matchBody("body", exp.Body, act.Headers.Get("Content-Type"), act.Body, exp.Rules["body"], false)...)
	return out
}

// MatchMessage compares an actual message with an expected one: contents
// leniently, and every expected metadata entry.
func MatchMessage(exp, act Message) []Mismatch {
	out := matchBody("content", exp.Contents, act.Contents.ContentType, act.Contents.Content, exp.Rules["content"], false)
	mrules := exp.Rules["metadata"]
	for _, k := range sortedKeys(exp.Metadata) {
		if k == "contentType" || k == "content-type" || k == "contentType " {
			continue // compared through the contents
		}
		ev := exp.Metadata[k]
		av, ok := act.Metadata[k]
		if !ok {
			out = append(out, Mismatch{Part: "metadata", Path: k, Expected: "a value " + show(ev), Actual: "no such key"})
			continue
		}
		if rl := mrules[k]; rl != nil {
			if ok, why := applyList(rl, ev, av, true); !ok {
				out = append(out, Mismatch{Part: "metadata", Path: k, Expected: why, Actual: show(av)})
			}
			continue
		}
		if !jsonEqual(ev, av) && fmt.Sprint(ev) != fmt.Sprint(av) {
			out = append(out, Mismatch{Part: "metadata", Path: k, Expected: show(ev), Actual: show(av)})
		}
	}
	return out
}

func matchPath(exp Request, act string) []Mismatch {
	if rl := exp.Rules["path"][""]; rl != nil {
		if ok, why := applyList(rl, exp.Path, act, true); !ok {
			return []Mismatch{{Part: "path", Expected: why, Actual: strconv.Quote(act)}}
		}
		return nil
	}
	if exp.Path != act {
		return []Mismatch{{Part: "path", Expected: strconv.Quote(exp.Path), Actual: strconv.Quote(act)}}
	}
	return nil
}

func lookupFold[V any](m map[string]V, name string) (V, bool) {
	if v, ok := m[name]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	var zero V
	return zero, false
}

func matchQuery(exp, act url.Values, rules map[string]*RuleList) []Mismatch {
	var out []Mismatch
	for _, k := range sortedKeys(exp) {
		ev := exp[k]
		av, ok := act[k]
		if !ok {
			out = append(out, Mismatch{Part: "query", Path: k, Expected: fmt.Sprintf("parameter %s=%s", k, strings.Join(ev, ",")), Actual: "no such parameter"})
			continue
		}
		if rl := rules[k]; rl != nil {
			for i, a := range av {
				e := ""
				if len(ev) > 0 {
					e = ev[min(i, len(ev)-1)]
				}
				if ok, why := applyList(rl, e, a, true); !ok {
					out = append(out, Mismatch{Part: "query", Path: k, Expected: why, Actual: strconv.Quote(a)})
				}
			}
			continue
		}
		if strings.Join(ev, "\x00") != strings.Join(av, "\x00") {
			out = append(out, Mismatch{Part: "query", Path: k, Expected: show(ev), Actual: show(av)})
		}
	}
	for _, k := range sortedKeys(act) {
		if _, ok := exp[k]; !ok {
			out = append(out, Mismatch{Part: "query", Path: k, Expected: "no parameter " + k, Actual: fmt.Sprintf("%s=%s", k, strings.Join(act[k], ","))})
		}
	}
	return out
}

func matchHeaders(exp map[string][]string, act http.Header, rules map[string]*RuleList) []Mismatch {
	var out []Mismatch
	for _, k := range sortedKeys(exp) {
		ev := strings.Join(exp[k], ", ")
		avs := act.Values(k)
		if len(avs) == 0 {
			avs, _ = lookupFold(map[string][]string(act), k)
		}
		if len(avs) == 0 {
			out = append(out, Mismatch{Part: "header", Path: k, Expected: strconv.Quote(ev), Actual: "no such header"})
			continue
		}
		av := strings.Join(avs, ", ")
		if rl, ok := lookupFold(rules, k); ok && rl != nil {
			if ok, why := applyList(rl, ev, av, true); !ok {
				out = append(out, Mismatch{Part: "header", Path: k, Expected: why, Actual: strconv.Quote(av)})
			}
			continue
		}
		if strings.EqualFold(k, "Content-Type") {
			if !contentTypeEqual(ev, av) {
				out = append(out, Mismatch{Part: "header", Path: k, Expected: strconv.Quote(ev), Actual: strconv.Quote(av)})
			}
			continue
		}
		if !headerListEqual(ev, av) {
			out = append(out, Mismatch{Part: "header", Path: k, Expected: strconv.Quote(ev), Actual: strconv.Quote(av)})
		}
	}
	return out
}

func headerListEqual(e, a string) bool {
	es, as := strings.Split(e, ","), strings.Split(a, ",")
	if len(es) != len(as) {
		return strings.TrimSpace(e) == strings.TrimSpace(a)
	}
	for i := range es {
		if strings.TrimSpace(es[i]) != strings.TrimSpace(as[i]) {
			return false
		}
	}
	return true
}

// contentTypeEqual compares media types: the same type, and every expected
// parameter present with the same value (charset case-insensitively).
func contentTypeEqual(e, a string) bool {
	if baseType(e) != baseType(a) {
		return false
	}
	ep := mimeParams(e)
	ap := mimeParams(a)
	for k, v := range ep {
		got, ok := ap[k]
		switch {
		case !ok:
			return false
		case k == "charset": // charset names are case-insensitive (RFC 2046)
			if !strings.EqualFold(got, v) {
				return false
			}
		case got != v:
			return false
		}
	}
	return true
}

func mimeParams(ct string) map[string]string {
	out := map[string]string{}
	parts := strings.Split(ct, ";")
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, "=")
		out[strings.ToLower(strings.TrimSpace(k))] = strings.Trim(strings.TrimSpace(v), `"`)
	}
	return out
}

// matchBody compares a body by its content type. strict forbids keys in
// actual JSON objects that the expected ones lack (requests).
func matchBody(part string, exp Body, actCT string, act []byte, rules map[string]*RuleList, strict bool) []Mismatch {
	if !exp.Present {
		return nil
	}
	rs := compileCategory(rules)
	root := []pathToken{{kind: tokRoot}}
	if rl, _ := rs.best(root); rl != nil {
		for _, m := range rl.Matchers {
			if m.Type() == "contentType" {
				want := m.str("value")
				got := detectContentType("", act) // from the content itself, not what the header claims
				if baseType(want) != baseType(got) {
					return []Mismatch{{Part: part, Path: "$", Expected: fmt.Sprintf("content of type %s (matcher contentType)", want), Actual: "content of type " + got}}
				}
				return nil
			}
		}
	}
	if len(exp.Content) == 0 {
		// An empty or null expected body matches only no body at all.
		if len(act) != 0 {
			want := "an empty body"
			if exp.Null {
				want = "no body (the pact's body is null)"
			}
			return []Mismatch{{Part: part, Expected: want, Actual: fmt.Sprintf("%d bytes %s", len(act), abbreviate(string(act)))}}
		}
		return nil
	}
	if len(act) == 0 {
		return []Mismatch{{Part: part, Expected: "a body " + abbreviate(string(exp.Content)), Actual: "an empty body"}}
	}
	expCT := exp.ContentType
	if actCT == "" {
		actCT = detectContentType("", act)
	}
	switch {
	case isJSONType(expCT):
		if expCT != "" && actCT != "" && !isJSONType(actCT) {
			return []Mismatch{{Part: part, Expected: "a body of type " + baseType(expCT), Actual: "a body of type " + baseType(actCT)}}
		}
		ev, err := decodeExpected(exp.Content)
		if err != nil {
			return []Mismatch{{Part: part, Expected: "valid JSON in the pact", Actual: err.Error()}}
		}
		av, err := decodeJSON(act)
		if err != nil {
			return []Mismatch{{Part: part, Expected: "a JSON body", Actual: "invalid JSON: " + err.Error()}}
		}
		c := &comparer{rules: rs, strict: strict, part: part}
		c.start()
		c.compare(ev, av)
		return c.sorted()
	case baseType(expCT) == "application/x-www-form-urlencoded":
		ev, err1 := url.ParseQuery(string(exp.Content))
		av, err2 := url.ParseQuery(string(act))
		if err1 != nil || err2 != nil {
			return textCompare(part, exp.Content, act, rs)
		}
		var out []Mismatch
		for _, m := range matchForm(ev, av, rs, strict) {
			m.Part = part
			out = append(out, m)
		}
		return out
	case isXMLType(expCT):
		if actCT != "" && !isXMLType(actCT) {
			return []Mismatch{{Part: part, Expected: "a body of type " + baseType(expCT), Actual: "a body of type " + baseType(actCT)}}
		}
		return matchXML(part, exp.Content, act, rs, strict)
	case strings.HasPrefix(baseType(expCT), "text/") || expCT == "":
		return textCompare(part, exp.Content, act, rs)
	default:
		if rl, _ := rs.best(root); rl != nil {
			return textCompare(part, exp.Content, act, rs)
		}
		if !bytes.Equal(exp.Content, act) {
			return []Mismatch{{Part: part, Expected: fmt.Sprintf("%d bytes of %s", len(exp.Content), expCT), Actual: fmt.Sprintf("%d different bytes", len(act))}}
		}
	}
	return nil
}

func matchForm(ev, av url.Values, rs ruleSet, strict bool) []Mismatch {
	var out []Mismatch
	for _, k := range sortedKeys(ev) {
		a, ok := av[k]
		if !ok {
			out = append(out, Mismatch{Path: "$." + k, Expected: "form field " + k, Actual: "no such field"})
			continue
		}
		path := []pathToken{{kind: tokRoot}, {kind: tokField, name: k}}
		if rl, _ := rs.best(path); rl != nil {
			for i, x := range a {
				if ok, why := applyList(rl, ev[k][min(i, len(ev[k])-1)], x, true); !ok {
					out = append(out, Mismatch{Path: renderTokens(path), Expected: why, Actual: strconv.Quote(x)})
				}
			}
			continue
		}
		if strings.Join(ev[k], "\x00") != strings.Join(a, "\x00") {
			out = append(out, Mismatch{Path: renderTokens(path), Expected: show(ev[k]), Actual: show(a)})
		}
	}
	if strict {
		for _, k := range sortedKeys(av) {
			if _, ok := ev[k]; !ok {
				out = append(out, Mismatch{Path: "$." + k, Expected: "no form field " + k, Actual: show(av[k])})
			}
		}
	}
	return out
}

func textCompare(part string, exp, act []byte, rs ruleSet) []Mismatch {
	if rl, _ := rs.best([]pathToken{{kind: tokRoot}}); rl != nil {
		if ok, why := applyList(rl, string(exp), string(act), true); !ok {
			return []Mismatch{{Part: part, Path: "$", Expected: why, Actual: abbreviate(string(act))}}
		}
		return nil
	}
	if !bytes.Equal(exp, act) {
		return []Mismatch{{Part: part, Expected: abbreviate(string(exp)), Actual: abbreviate(string(act))}}
	}
	return nil
}

func abbreviate(s string) string {
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return strconv.Quote(s)
}

func detectContentType(header string, body []byte) string {
	if header != "" {
		return header
	}
	t := bytes.TrimSpace(body)
	if len(t) > 0 && (t[0] == '{' || t[0] == '[') && json.Valid(t) {
		return "application/json"
	}
	if bytes.HasPrefix(t, []byte("<?xml")) {
		return "application/xml"
	}
	return http.DetectContentType(body)
}

var (
	expectedCache sync.Map // string(JSON) -> decoded value, never mutated
	expectedCount atomic.Int64
)

// decodeExpected decodes an expected body, caching it: a verifier or mock
// server matches the same expectation many times.
func decodeExpected(b []byte) (any, error) {
	if v, ok := expectedCache.Load(string(b)); ok {
		return v, nil
	}
	v, err := decodeJSON(b)
	if err != nil {
		return nil, err
	}
	if expectedCount.Add(1) > 4096 {
		expectedCache.Clear()
		expectedCount.Store(0)
	}
	expectedCache.Store(string(b), v)
	return v, nil
}

// comparer walks an expected and an actual JSON value together; path is
// the current position, pushed and popped as it descends.
type comparer struct {
	rules  ruleSet
	strict bool
	part   string
	path   []pathToken
	levels []ruleLevel // one per path token: the rule-trie walk so far
	out    []Mismatch
	at     [][]pathToken // the path of each mismatch, for sorting
}

// ruleLevel is the rule-trie state at one depth of the walk: the trie
// nodes the path reaches, and the best rule at this depth or above.
type ruleLevel struct {
	cur    []trieCursor
	best   *RuleList
	bestW  int
	bestL  int
	direct bool // best is at this depth
}

// start begins a walk at the root.
func (c *comparer) start() {
	c.path = append(c.path[:0], pathToken{kind: tokRoot})
	c.levels = c.levels[:0]
	lv := ruleLevel{bestL: -1}
	if c.rules.root != nil {
		lv.cur = append(lv.cur, trieCursor{c.rules.root, 2})
	}
	c.levels = append(c.levels, lv.settle(1, nil))
}

// settle picks the level's best rule: its own nodes' rules against the
// best inherited from above.
func (lv ruleLevel) settle(depth int, parent *ruleLevel) ruleLevel {
	if parent != nil {
		lv.best, lv.bestW, lv.bestL = parent.best, parent.bestW, parent.bestL
	}
	lv.direct = false
	for _, cu := range lv.cur {
		if cu.n.rules != nil && (cu.w > lv.bestW || (cu.w == lv.bestW && depth > lv.bestL)) {
			lv.best, lv.bestW, lv.bestL, lv.direct = cu.n.rules, cu.w, depth, true
		}
	}
	return lv
}

// current is the rule list at the current path and whether it is direct.
func (c *comparer) current() (*RuleList, bool) {
	lv := &c.levels[len(c.levels)-1]
	return lv.best, lv.direct
}

func (c *comparer) add(expected, actual string) {
	c.out = append(c.out, Mismatch{Part: c.part, Path: renderTokens(c.path), Expected: expected, Actual: actual})
	c.at = append(c.at, append([]pathToken(nil), c.path...))
}

// sorted returns the mismatches in document order of their paths (objects
// are walked in map order, which is random).
func (c *comparer) sorted() []Mismatch {
	if len(c.out) < 2 {
		return c.out
	}
	idx := make([]int, len(c.out))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(i, j int) bool { return pathLess(c.at[idx[i]], c.at[idx[j]]) })
	out := make([]Mismatch, len(c.out))
	for i, k := range idx {
		out[i] = c.out[k]
	}
	return out
}

func pathLess(a, b []pathToken) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := a[i], b[i]
		if x.kind != y.kind {
			return x.kind < y.kind
		}
		if x.kind == tokField && x.name != y.name {
			return x.name < y.name
		}
		if x.kind == tokIndex && x.index != y.index {
			return x.index < y.index
		}
	}
	return len(a) < len(b)
}

func (c *comparer) push(t pathToken) {
	c.path = append(c.path, t)
	parent := &c.levels[len(c.levels)-1]
	var next ruleLevel
	if n := len(c.levels); n < cap(c.levels) {
		next.cur = c.levels[:n+1][n].cur[:0] // reuse the array of an earlier walk
	}
	for _, cu := range parent.cur {
		switch t.kind {
		case tokField:
			if x := cu.n.fields[t.name]; x != nil {
				next.cur = append(next.cur, trieCursor{x, cu.w * 2})
			}
		case tokIndex:
			if x := cu.n.index[t.index]; x != nil {
				next.cur = append(next.cur, trieCursor{x, cu.w * 2})
			}
		}
		if cu.n.star != nil {
			next.cur = append(next.cur, trieCursor{cu.n.star, cu.w})
		}
	}
	c.levels = append(c.levels, next.settle(len(c.path), parent))
}

func (c *comparer) pop() {
	c.path = c.path[:len(c.path)-1]
	c.levels = c.levels[:len(c.levels)-1]
}

// child returns path extended by t, without sharing path's array.
func child(path []pathToken, t pathToken) []pathToken {
	out := make([]pathToken, len(path), len(path)+1)
	copy(out, path)
	return append(out, t)
}

// cascades reports whether a matcher applies to the children of the value
// it is defined on.
func cascades(t string) bool {
	switch t {
	case "values", "arrayContains", "eachKey", "eachValue", "notEmpty", "contentType", "include", "min", "max":
		return false
	}
	return true
}

var typeRules = &RuleList{Combine: "AND", Matchers: []Matcher{{"match": "type"}}}

func (c *comparer) compare(exp, act any) { c.compareFB(exp, act, nil) }

// compareFB compares with fallback rules applying where no rule does (the
// children of a values/eachKey/eachValue collection).
func (c *comparer) compareFB(exp, act any, fallback *RuleList) {
	rl, direct := c.current()
	if rl != nil && !direct {
		inherit := true
		for _, m := range rl.Matchers {
			if !cascades(m.Type()) {
				inherit = false
			}
		}
		if !inherit {
			var keep []Matcher
			for _, m := range rl.Matchers {
				if cascades(m.Type()) {
					keep = append(keep, m)
				}
			}
			if len(keep) == 0 {
				rl = nil
			} else {
				rl = &RuleList{Combine: rl.Combine, Matchers: keep}
			}
		}
	}
	if rl == nil && fallback != nil {
		rl, direct = fallback, true
	}
	if rl == nil {
		c.compareDefault(exp, act)
		return
	}
	if ok, why := applyList(rl, exp, act, direct); !ok {
		c.add(why, show(act))
		return
	}
	// Collections: how the children are compared depends on the matchers.
	mode := ""
	var childRules *RuleList // where no rule applies to a child: nil compares with the example
	for _, m := range rl.Matchers {
		switch m.Type() {
		case "equality", "arrayContains":
			return // fully decided by applyList
		case "eachValue":
			mode = "values"
			childRules = subRules(m)
		case "values":
			mode = "values"
		case "eachKey":
			mode = "values"
			if childRules == nil {
				childRules = typeRules // the keys are checked, the values only by type
			}
		case "type", "min", "max", "notEmpty":
			if mode == "" {
				mode = "type"
			}
		}
	}
	switch e := exp.(type) {
	case map[string]any:
		a, ok := act.(map[string]any)
		if !ok {
			return
		}
		if mode == "values" {
			var example any
			if len(e) > 0 {
				example = e[sortedKeys(e)[0]]
			}
			for _, k := range sortedKeys(a) {
				ev, has := e[k]
				if !has {
					ev = example
				}
				if ev != nil || has {
					c.push(pathToken{kind: tokField, name: k})
					c.compareFB(ev, a[k], childRules)
					c.pop()
				}
			}
			return
		}
		c.compareObject(e, a)
	case []any:
		a, ok := act.([]any)
		if !ok {
			return
		}
		if mode != "" {
			if len(e) == 0 {
				return
			}
			for i, x := range a {
				c.push(pathToken{kind: tokIndex, index: i})
				if mode == "values" {
					c.compareFB(e[0], x, childRules)
				} else {
					c.compareFB(e[0], x, typeRules) // elements are like the example
				}
				c.pop()
			}
			return
		}
		c.compareArray(e, a)
	}
}

func (c *comparer) compareObject(e, a map[string]any) {
	for k, ev := range e {
		av, ok := a[k]
		c.push(pathToken{kind: tokField, name: k})
		if !ok {
			c.add("a key "+strconv.Quote(k)+" with "+show(ev), "no such key")
		} else {
			c.compare(ev, av)
		}
		c.pop()
	}
	if c.strict {
		for k := range a {
			if _, ok := e[k]; !ok {
				c.push(pathToken{kind: tokField, name: k})
				c.add("no key "+strconv.Quote(k)+" (requests are matched strictly)", show(a[k]))
				c.pop()
			}
		}
	}
}

func (c *comparer) compareArray(e, a []any) {
	if len(e) != len(a) {
		c.add(fmt.Sprintf("an array of %d elements %s", len(e), show(e)), fmt.Sprintf("%d elements %s", len(a), show(a)))
	}
	for i := 0; i < len(e) && i < len(a); i++ {
		c.push(pathToken{kind: tokIndex, index: i})
		c.compare(e[i], a[i])
		c.pop()
	}
}

func (c *comparer) compareDefault(exp, act any) {
	switch e := exp.(type) {
	case map[string]any:
		a, ok := act.(map[string]any)
		if !ok {
			c.add("an object", show(act))
			return
		}
		c.compareObject(e, a)
	case []any:
		a, ok := act.([]any)
		if !ok {
			c.add("an array", show(act))
			return
		}
		c.compareArray(e, a)
	default:
		if !jsonEqual(exp, act) {
			c.add(show(exp), show(act))
		}
	}
}

// show renders a value for a report, shortened.
func show(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return abbreviate(x)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	s := string(b)
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		// As pact's models compare them: an integer never equals a
		// number written with a fraction or exponent (1 != 1.0).
		xi, yi := !strings.ContainsAny(string(x), ".eE"), !strings.ContainsAny(string(y), ".eE")
		if xi != yi {
			return false
		}
		if xi {
			bx, okx := new(big.Int).SetString(string(x), 10)
			by, oky := new(big.Int).SetString(string(y), 10)
			return okx && oky && bx.Cmp(by) == 0
		}
		fx, errx := strconv.ParseFloat(string(x), 64)
		fy, erry := strconv.ParseFloat(string(y), 64)
		return errx == nil && erry == nil && fx == fy
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !jsonEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case float64:
		if y, ok := b.(json.Number); ok {
			return jsonEqual(json.Number(strconv.FormatFloat(x, 'g', -1, 64)), y)
		}
	}
	return a == b
}

// applyList applies a rule list to one value, combining with AND or OR.
// direct is false when the rules are inherited from an ancestor path, in
// which case collection-length checks do not apply. why describes the
// expectation that failed.
func applyList(rl *RuleList, exp, act any, direct bool) (ok bool, why string) {
	if len(rl.Matchers) == 0 {
		return true, ""
	}
	var whys []string
	for _, m := range rl.Matchers {
		good, w := applyMatcher(m, exp, act, direct)
		if rl.Combine == "OR" {
			if good {
				return true, ""
			}
			whys = append(whys, w)
			continue
		}
		if !good {
			return false, w
		}
	}
	if rl.Combine == "OR" {
		return false, strings.Join(whys, " or ")
	}
	return true, ""
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number, float64, int:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// scalarString is a primitive rendered as text, for regex and friends.
func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	}
	return "", false
}

var semverRe = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

func applyMatcher(m Matcher, exp, act any, direct bool) (bool, string) {
	t := m.Type()
	switch t {
	case "type", "min", "max":
		desc := "a value of type " + jsonType(exp)
		if jsonType(exp) != jsonType(act) {
			return false, desc + " (matcher type)"
		}
		if direct {
			if a, ok := act.([]any); ok {
				if n, has := m.intAttr("min"); has && len(a) < n {
					return false, fmt.Sprintf("an array of at least %d elements (matcher type, min %d)", n, n)
				}
				if n, has := m.intAttr("max"); has && len(a) > n {
					return false, fmt.Sprintf("an array of at most %d elements (matcher type, max %d)", n, n)
				}
			}
		}
		return true, ""
	case "regex":
		re, err := compileRegex(m.str("regex"))
		if err != nil {
			return false, err.Error()
		}
		s, ok := scalarString(act)
		if !ok || !re.MatchString(s) {
			return false, fmt.Sprintf("a value matching %q (matcher regex)", m.str("regex"))
		}
		return true, ""
	case "equality":
		if !jsonEqual(exp, act) {
			return false, show(exp) + " (matcher equality)"
		}
		return true, ""
	case "include":
		want, _ := scalarString(m["value"])
		s, ok := scalarString(act)
		if !ok || !strings.Contains(s, want) {
			return false, fmt.Sprintf("a value including %q (matcher include)", want)
		}
		return true, ""
	case "integer":
		if isInteger(act) && textOK(exp, act) {
			return true, ""
		}
		return false, "an integer (matcher integer)"
	case "decimal":
		if isDecimal(act) && textOK(exp, act) {
			return true, ""
		}
		return false, "a decimal number (matcher decimal)"
	case "number":
		if isNumber(act) && textOK(exp, act) {
			return true, ""
		}
		return false, "a number (matcher number)"
	case "boolean":
		// pact_models: "booleans and the string values true and false"
		switch x := act.(type) {
		case bool:
			return true, ""
		case string:
			if x == "true" || x == "false" {
				return true, ""
			}
		}
		return false, "a boolean (matcher boolean)"
	case "null":
		if act == nil {
			return true, ""
		}
		return false, "null (matcher null)"
	case "date", "time", "timestamp", "datetime":
		format := dateFormat(m, t)
		s, ok := act.(string)
		if !ok {
			return false, fmt.Sprintf("a %s string in format %q (matcher %s)", t, format, t)
		}
		if err := parseJavaTime(format, t, s); err != nil {
			return false, fmt.Sprintf("a %s in format %q (matcher %s)", t, format, t)
		}
		return true, ""
	case "contentType":
		want := m.str("value")
		s, _ := scalarString(act)
		if baseType(detectContentType("", []byte(s))) != baseType(want) {
			return false, "content of type " + want + " (matcher contentType)"
		}
		return true, ""
	case "values":
		if jsonType(exp) != jsonType(act) {
			return false, "a value of type " + jsonType(exp) + " (matcher values)"
		}
		return true, ""
	case "arrayContains":
		return arrayContains(m, exp, act)
	case "eachKey":
		a, ok := act.(map[string]any)
		if !ok {
			return false, "an object (matcher eachKey)"
		}
		rl := subRules(m)
		for _, k := range sortedKeys(a) {
			if ok, why := applyList(rl, k, k, true); !ok {
				return false, fmt.Sprintf("every key to be %s, but key %q is not (matcher eachKey)", why, k)
			}
		}
		return true, ""
	case "eachValue":
		rl := subRules(m)
		check := func(label string, v any) (bool, string) {
			e := v
			if val, has := m["value"]; has {
				e = exampleElem(val)
			}
			if ok, why := applyList(rl, e, v, true); !ok {
				return false, fmt.Sprintf("every value to be %s, but %s is %s (matcher eachValue)", why, label, show(v))
			}
			return true, ""
		}
		switch a := act.(type) {
		case map[string]any:
			for _, k := range sortedKeys(a) {
				if ok, why := check("key "+strconv.Quote(k), a[k]); !ok {
					return false, why
				}
			}
		case []any:
			for i, v := range a {
				if ok, why := check(fmt.Sprintf("element %d", i), v); !ok {
					return false, why
				}
			}
		default:
			return false, "an object or array (matcher eachValue)"
		}
		return true, ""
	case "notEmpty":
		switch a := act.(type) {
		case nil:
		case string:
			if a != "" {
				return true, ""
			}
		case []any:
			if len(a) > 0 {
				return true, ""
			}
		case map[string]any:
			if len(a) > 0 {
				return true, ""
			}
		default:
			return jsonType(exp) == jsonType(act), "a non-empty " + jsonType(exp) + " (matcher notEmpty)"
		}
		return false, "a non-empty value (matcher notEmpty)"
	case "semver":
		s, ok := act.(string)
		if !ok || !semverRe.MatchString(s) {
			return false, "a semantic version (matcher semver)"
		}
		return true, ""
	case "statusCode":
		return statusMatches(m, act)
	}
	return false, fmt.Sprintf("a known matcher, not %q", t)
}

func exampleElem(v any) any {
	if a, ok := v.([]any); ok && len(a) > 0 {
		return a[0]
	}
	if o, ok := v.(map[string]any); ok && len(o) > 0 {
		return o[sortedKeys(o)[0]]
	}
	return v
}

func subRules(m Matcher) *RuleList {
	rl := &RuleList{Combine: "AND"}
	rs, _ := m["rules"].([]any)
	for _, r := range rs {
		if rm, ok := r.(map[string]any); ok {
			rl.Matchers = append(rl.Matchers, Matcher(rm))
		}
	}
	return rl
}

// arrayContains: every variant (an expected element with its own rules)
// must match at least one actual element, in any order.
func arrayContains(m Matcher, exp, act any) (bool, string) {
	a, ok := act.([]any)
	if !ok {
		return false, "an array (matcher arrayContains)"
	}
	e, _ := exp.([]any)
	vs, _ := m["variants"].([]any)
	for vi, v := range vs {
		vm, _ := v.(map[string]any)
		idx := vi
		if n, ok := Matcher(vm).intAttr("index"); ok {
			idx = n
		}
		if idx < 0 || idx >= len(e) {
			return false, fmt.Sprintf("variant %d to have an expected element (matcher arrayContains)", vi)
		}
		cat, _ := parseCategory(vm["rules"], "", true)
		c := compileCategory(cat)
		found := false
		for _, x := range a {
			cm := &comparer{rules: c, part: "body"}
			cm.start()
			cm.compare(e[idx], x)
			if len(cm.out) == 0 {
				found = true
				break
			}
		}
		if !found {
			return false, fmt.Sprintf("an array containing an element like %s (matcher arrayContains, variant %d)", show(e[idx]), vi)
		}
	}
	return true, ""
}

func isInteger(v any) bool {
	switch x := v.(type) {
	case json.Number:
		return !strings.ContainsAny(x.String(), ".eE")
	case string:
		_, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			_, ok := new(big.Int).SetString(x, 10)
			return ok
		}
		return true
	case int:
		return true
	case float64:
		return x == float64(int64(x))
	}
	return false
}

func isDecimal(v any) bool {
	switch x := v.(type) {
	case json.Number:
		return strings.Contains(x.String(), ".")
	case string:
		_, err := strconv.ParseFloat(x, 64)
		return err == nil && strings.Contains(x, ".")
	case float64:
		return true
	}
	return false
}

func isNumber(v any) bool {
	switch x := v.(type) {
	case json.Number, int, float64:
		return true
	case string:
		_, err := strconv.ParseFloat(x, 64)
		return err == nil
	}
	return false
}

func statusMatches(m Matcher, act any) (bool, string) {
	s, _ := scalarString(act)
	code, err := strconv.Atoi(s)
	if err != nil {
		return false, "an HTTP status (matcher statusCode)"
	}
	switch st := m["status"].(type) {
	case string:
		lo, hi := 0, 0
		switch st {
		case "info", "information":
			lo, hi = 100, 199
		case "success":
			lo, hi = 200, 299
		case "redirect":
			lo, hi = 300, 399
		case "clientError":
			lo, hi = 400, 499
		case "serverError":
			lo, hi = 500, 599
		case "nonError":
			lo, hi = 100, 399
		case "error":
			lo, hi = 400, 599
		default:
			return false, fmt.Sprintf("a status of unknown class %q", st)
		}
		if code < lo || code > hi {
			return false, fmt.Sprintf("a %s status %d-%d (matcher statusCode)", st, lo, hi)
		}
		return true, ""
	case []any:
		var want []string
		for _, x := range st {
			w, _ := scalarString(x)
			if w == s {
				return true, ""
			}
			want = append(want, w)
		}
		sort.Strings(want)
		return false, "one of the statuses " + strings.Join(want, ", ") + " (matcher statusCode)"
	}
	return false, "a statusCode matcher with a status"
}

// textOK: a string stands for a number or boolean only where every value
// is text (headers, query, path, metadata), i.e. the example is text too.
func textOK(exp, act any) bool {
	if _, ok := act.(string); !ok {
		return true
	}
	_, ok := exp.(string)
	return ok
}

// distance ranks how far a request is from an interaction, to name the
// nearest one in a report: a different method or path counts for more
// than differences in headers, query or body.
func distance(mm []Mismatch) int {
	d := 0
	for _, m := range mm {
		if m.Part == "method" || m.Part == "path" {
			d += 100
		} else {
			d++
		}
	}
	return d
}
