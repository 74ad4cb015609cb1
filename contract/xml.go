package contract

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// XML bodies are matched as the V3 specification and pact_matching do:
// element by element from the root, by name (a namespaced name is its
// namespace URI and local name, whatever prefix either document uses).
// Each element's attributes are compared by name, its child elements in
// groups of the same name, and its text (the trimmed text nodes joined) as
// one value. Rule paths name elements, '@' attributes and '#text':
// $.animals.alligator['@name'], $.animals.alligator['#text'].
//
// A rule on an element applies to the element: type (or equality) wants
// the same name, regex matches the local name, notEmpty wants content; a
// type rule on a child's path compares every actual child of that name
// with the first expected one; min and max on an element bound its own
// child nodes, as pact_matching reads them. Requests are strict: unexpected attributes and children are
// mismatches; in responses and messages they are allowed.

// maxXMLDepth bounds nesting, so a hostile body cannot exhaust the stack.
const maxXMLDepth = 512

type xmlName struct {
	space, local, prefix string
}

// id is the name that takes part in comparisons.
func (n xmlName) id() string {
	if n.space != "" {
		return n.space + ":" + n.local
	}
	return n.local
}

// path is the name as rule paths write it.
func (n xmlName) path() string {
	if n.prefix != "" {
		return n.prefix + ":" + n.local
	}
	return n.local
}

type xmlAttr struct {
	name  xmlName
	value string
}

type xmlElem struct {
	name     xmlName
	attrs    []xmlAttr
	children []*xmlElem
	text     strings.Builder
	nodes    int // child nodes: elements, text (blank too), comments
}

func isXMLType(ct string) bool {
	mt := baseType(ct)
	return mt == "application/xml" || mt == "text/xml" || strings.HasSuffix(mt, "+xml")
}

// parseXML reads a document's root element with encoding/xml, resolving
// namespace prefixes itself so that paths keep the prefixes written.
func parseXML(data []byte) (*xmlElem, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	type scope map[string]string
	var stack []*xmlElem
	var scopes []scope
	lookup := func(prefix string) (string, bool) {
		for i := len(scopes) - 1; i >= 0; i-- {
			if u, ok := scopes[i][prefix]; ok {
				return u, true
			}
		}
		return "", false
	}
	var root *xmlElem
	for {
		tok, err := d.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) >= maxXMLDepth {
				return nil, fmt.Errorf("elements nested deeper than %d", maxXMLDepth)
			}
			if root != nil && len(stack) == 0 {
				return nil, errors.New("more than one root element")
			}
			sc := scope{}
			for _, a := range t.Attr {
				switch {
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					sc[""] = a.Value
				case a.Name.Space == "xmlns":
					sc[a.Name.Local] = a.Value
				}
			}
			scopes = append(scopes, sc)
			e := &xmlElem{name: xmlName{local: t.Name.Local, prefix: t.Name.Space}}
			if u, ok := lookup(t.Name.Space); ok {
				e.name.space = u
			} else if t.Name.Space != "" {
				return nil, fmt.Errorf("element <%s:%s>: namespace prefix %q is not declared", t.Name.Space, t.Name.Local, t.Name.Space)
			}
			for _, a := range t.Attr {
				if (a.Name.Space == "" && a.Name.Local == "xmlns") || a.Name.Space == "xmlns" {
					continue // a declaration, not an attribute
				}
				n := xmlName{local: a.Name.Local, prefix: a.Name.Space}
				if a.Name.Space != "" { // unprefixed attributes have no namespace
					if u, ok := lookup(a.Name.Space); ok {
						n.space = u
					} else if a.Name.Space != "xml" {
						return nil, fmt.Errorf("attribute %s:%s: namespace prefix %q is not declared", a.Name.Space, a.Name.Local, a.Name.Space)
					}
				}
				e.attrs = append(e.attrs, xmlAttr{name: n, value: a.Value})
			}
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.children = append(p.children, e)
				p.nodes++
			} else {
				root = e
			}
			stack = append(stack, e)
		case xml.EndElement:
			if len(stack) == 0 {
				return nil, fmt.Errorf("unexpected </%s>", t.Name.Local)
			}
			stack = stack[:len(stack)-1]
			scopes = scopes[:len(scopes)-1]
		case xml.CharData:
			txt := strings.TrimSpace(string(t))
			if len(stack) == 0 {
				if txt != "" {
					return nil, errors.New("text outside the root element")
				}
				continue
			}
			e := stack[len(stack)-1]
			e.text.WriteString(txt)
			if len(t) > 0 {
				e.nodes++
			}
		case xml.Comment, xml.ProcInst:
			if len(stack) > 0 {
				stack[len(stack)-1].nodes++
			}
		}
	}
	if root == nil {
		return nil, errors.New("no root element")
	}
	if len(stack) > 0 {
		return nil, fmt.Errorf("element <%s> is not closed", stack[len(stack)-1].name.path())
	}
	return root, nil
}

// xmlMatcher walks an expected and an actual document together.
type xmlMatcher struct {
	rules  ruleSet
	strict bool
	part   string
	out    []Mismatch
}

func matchXML(part string, exp, act []byte, rs ruleSet, strict bool) []Mismatch {
	e, err := parseXML(exp)
	if err != nil {
		return []Mismatch{{Part: part, Path: "$", Expected: "valid XML in the pact", Actual: err.Error()}}
	}
	a, err := parseXML(act)
	if err != nil {
		return []Mismatch{{Part: part, Path: "$", Expected: "an XML body", Actual: "invalid XML: " + err.Error()}}
	}
	m := &xmlMatcher{rules: rs, strict: strict, part: part}
	m.element([]pathToken{{kind: tokRoot}, {kind: tokField, name: e.name.path()}}, e, a)
	return m.out
}

func (m *xmlMatcher) add(path []pathToken, expected, actual string) {
	m.out = append(m.out, Mismatch{Part: m.part, Path: renderTokens(path), Expected: expected, Actual: actual})
}

// rulesAt is the rule list that applies at path and whether it is the
// path's own; inherited lists keep only the matchers that cascade.
func (m *xmlMatcher) rulesAt(path []pathToken) (*RuleList, bool) {
	rl, direct := m.rules.best(path)
	if rl == nil || direct {
		return rl, direct
	}
	var keep []Matcher
	for _, x := range rl.Matchers {
		if cascades(x.Type()) {
			keep = append(keep, x)
		}
	}
	if len(keep) == 0 {
		return nil, false
	}
	return &RuleList{Combine: rl.Combine, Matchers: keep}, false
}

// typeRuled reports whether a type rule (with or without min and max)
// applies at path.
func (m *xmlMatcher) typeRuled(path []pathToken) bool {
	rl, _ := m.rulesAt(path)
	if rl == nil {
		return false
	}
	for _, x := range rl.Matchers {
		switch x.Type() {
		case "type", "min", "max":
			return true
		}
	}
	return false
}

func (m *xmlMatcher) element(path []pathToken, e, a *xmlElem) {
	if rl, direct := m.rulesAt(path); rl != nil {
		if ok, why := applyElement(rl, e, a, direct); !ok {
			m.add(path, why, "<"+a.name.path()+">")
			return
		}
	} else if e.name.id() != a.name.id() {
		m.add(path, "element <"+e.name.path()+">", "<"+a.name.path()+">")
		return
	}
	m.attributes(path, e, a)
	m.children(path, e, a)
	m.text(path, e, a)
}

func applyElement(rl *RuleList, e, a *xmlElem, direct bool) (bool, string) {
	var whys []string
	for _, x := range rl.Matchers {
		ok, why := elementMatcher(x, e, a, direct)
		if rl.Combine == "OR" {
			if ok {
				return true, ""
			}
			whys = append(whys, why)
			continue
		}
		if !ok {
			return false, why
		}
	}
	if rl.Combine == "OR" && len(whys) > 0 {
		return false, strings.Join(whys, " or ")
	}
	return true, ""
}

func elementMatcher(x Matcher, e, a *xmlElem, direct bool) (bool, string) {
	switch t := x.Type(); t {
	case "type", "min", "max", "equality", "values":
		if e.name.id() != a.name.id() {
			return false, fmt.Sprintf("element <%s> (matcher %s)", e.name.path(), t)
		}
		// As pact_matching reads min and max on an element: bounds on its
		// own child nodes (an element's repeats are not counted).
		if !direct || t == "equality" || t == "values" {
			return true, ""
		}
		if n, has := x.intAttr("min"); has && a.nodes < n {
			return false, fmt.Sprintf("element <%s> with at least %d child nodes (matcher %s, min %d)", e.name.path(), n, t, n)
		}
		if n, has := x.intAttr("max"); has && a.nodes > n {
			return false, fmt.Sprintf("element <%s> with at most %d child nodes (matcher %s, max %d)", e.name.path(), n, t, n)
		}
		return true, ""
	case "regex":
		re, err := compileRegex(x.str("regex"))
		if err != nil {
			return false, err.Error()
		}
		if !re.MatchString(a.name.local) {
			return false, fmt.Sprintf("an element whose name matches %q (matcher regex)", x.str("regex"))
		}
		return true, ""
	case "notEmpty":
		if a.nodes == 0 {
			return false, fmt.Sprintf("element <%s> with content (matcher notEmpty)", e.name.path())
		}
		return true, ""
	default:
		return false, fmt.Sprintf("a matcher that applies to an element, not %q (put text rules on ['#text'] and attribute rules on ['@name'])", t)
	}
}

func (m *xmlMatcher) attributes(path []pathToken, e, a *xmlElem) {
	actual := map[string]xmlAttr{}
	for _, x := range a.attrs {
		actual[x.name.id()] = x
	}
	expected := map[string]bool{}
	for _, x := range e.attrs {
		expected[x.name.id()] = true
		p := child(path, pathToken{kind: tokField, name: "@" + x.name.path()})
		got, ok := actual[x.name.id()]
		if !ok {
			m.add(p, fmt.Sprintf("attribute %s=%q", x.name.path(), x.value), "no such attribute")
			continue
		}
		m.value(p, x.value, got.value)
	}
	if m.strict {
		var extra []string
		for _, x := range a.attrs {
			if !expected[x.name.id()] {
				extra = append(extra, fmt.Sprintf("%s=%q", x.name.path(), x.value))
			}
		}
		if len(extra) > 0 {
			sort.Strings(extra)
			m.add(path, "no attributes but those of the pact (requests are matched strictly)", "unexpected attribute "+strings.Join(extra, " "))
		}
	}
}

func (m *xmlMatcher) value(path []pathToken, exp, act string) {
	if rl, direct := m.rulesAt(path); rl != nil {
		if ok, why := applyList(rl, exp, act, direct); !ok {
			m.add(path, why, strconv.Quote(act))
		}
		return
	}
	if exp != act {
		m.add(path, strconv.Quote(exp), strconv.Quote(act))
	}
}

func (m *xmlMatcher) text(path []pathToken, e, a *xmlElem) {
	m.value(child(path, pathToken{kind: tokField, name: "#text"}), e.text.String(), a.text.String())
}

func (m *xmlMatcher) children(path []pathToken, e, a *xmlElem) {
	type group struct {
		name  xmlName
		elems []*xmlElem
	}
	byName := func(list []*xmlElem) (map[string]*group, []string) {
		out := map[string]*group{}
		var order []string
		for _, c := range list {
			g := out[c.name.id()]
			if g == nil {
				g = &group{name: c.name}
				out[c.name.id()] = g
				order = append(order, c.name.id())
			}
			g.elems = append(g.elems, c)
		}
		return out, order
	}
	exp, expOrder := byName(e.children)
	act, actOrder := byName(a.children)
	for _, id := range expOrder {
		eg := exp[id]
		p := child(path, pathToken{kind: tokField, name: eg.name.path()})
		ag := act[id]
		if ag == nil {
			m.add(p, "a child element <"+eg.name.path()+">", "no such element")
			continue
		}
		if m.typeRuled(p) {
			for _, x := range ag.elems {
				m.element(p, eg.elems[0], x)
			}
			continue
		}
		for i := 0; i < len(eg.elems) || i < len(ag.elems); i++ {
			switch {
			case i >= len(ag.elems):
				m.add(p, fmt.Sprintf("%d <%s> elements", len(eg.elems), eg.name.path()), strconv.Itoa(len(ag.elems)))
				i = len(eg.elems)
			case i >= len(eg.elems):
				if m.strict {
					m.add(p, fmt.Sprintf("%d <%s> elements (requests are matched strictly)", len(eg.elems), eg.name.path()), strconv.Itoa(len(ag.elems)))
				}
				i = len(ag.elems)
			default:
				m.element(p, eg.elems[i], ag.elems[i])
			}
		}
	}
	for _, id := range actOrder {
		if exp[id] != nil {
			continue
		}
		ag := act[id]
		p := child(path, pathToken{kind: tokField, name: ag.name.path()})
		if m.strict || m.typeRuled(p) {
			m.add(path, "no child element <"+ag.name.path()+">", fmt.Sprintf("%d unexpected <%s> elements", len(ag.elems), ag.name.path()))
		}
	}
}
