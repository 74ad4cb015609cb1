package contract

import (
	"errors"
	"fmt"
	"hash/maphash"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

type tokKind uint8

const (
	tokRoot tokKind = iota
	tokField
	tokIndex
	tokStar // * as a field or [*] as an index
)

type pathToken struct {
	kind  tokKind
	name  string
	index int
}

// parsePath parses a matcher path: $, .name, ['name'], [0], [*], .*
func parsePath(s string) ([]pathToken, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty matcher path")
	}
	toks := []pathToken{{kind: tokRoot}}
	i := 0
	if s[0] == '$' {
		i = 1
	} else {
		// A bare name is relative to the root (pact-jvm accepts "name").
		j := i
		for j < len(s) && s[j] != '.' && s[j] != '[' {
			j++
		}
		toks = append(toks, fieldTok(s[:j]))
		i = j
	}
	for i < len(s) {
		switch s[i] {
		case '.':
			i++
			j := i
			for j < len(s) && s[j] != '.' && s[j] != '[' {
				j++
			}
			if j == i {
				return nil, fmt.Errorf("matcher path %q: empty name at offset %d", s, i)
			}
			toks = append(toks, fieldTok(s[i:j]))
			i = j
		case '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("matcher path %q: unclosed [ at offset %d", s, i)
			}
			inner := s[i+1 : i+end]
			if len(inner) >= 1 && (inner[0] == '\'' || inner[0] == '"') {
				// a quoted name, with \\ and \' (or \") escapes; it may contain ']'
				q := inner[0]
				var name strings.Builder
				j := i + 2
				closed := false
				for j < len(s) {
					if s[j] == '\\' && j+1 < len(s) {
						name.WriteByte(s[j+1])
						j += 2
						continue
					}
					if s[j] == q {
						closed = true
						break
					}
					name.WriteByte(s[j])
					j++
				}
				if !closed || j+1 >= len(s) || s[j+1] != ']' {
					return nil, fmt.Errorf("matcher path %q: unterminated quoted name at offset %d", s, i)
				}
				toks = append(toks, pathToken{kind: tokField, name: name.String()})
				i = j + 2
				continue
			}
			switch inner {
			case "*":
				toks = append(toks, pathToken{kind: tokStar})
			default:
				n, err := strconv.Atoi(inner)
				if err != nil || n < 0 {
					return nil, fmt.Errorf("matcher path %q: %q is not an index, * or a quoted name", s, inner)
				}
				toks = append(toks, pathToken{kind: tokIndex, index: n})
			}
			i += end + 1
		default:
			return nil, fmt.Errorf("matcher path %q: unexpected %q at offset %d", s, s[i], i)
		}
	}
	return toks, nil
}

func fieldTok(name string) pathToken {
	if name == "*" {
		return pathToken{kind: tokStar}
	}
	return pathToken{kind: tokField, name: name}
}

// weight is the V3 path weighting: the product over the rule path's tokens
// of 2 for an exact match and 1 for a wildcard; 0 when the rule does not
// apply to the actual path (a token differs, or the rule path is longer).
func weight(rule, actual []pathToken) int {
	if len(rule) > len(actual) {
		return 0
	}
	w := 1
	for i, rt := range rule {
		at := actual[i]
		switch rt.kind {
		case tokRoot:
			if at.kind != tokRoot {
				return 0
			}
			w *= 2
		case tokField:
			if at.kind != tokField || at.name != rt.name {
				return 0
			}
			w *= 2
		case tokIndex:
			if at.kind != tokIndex || at.index != rt.index {
				return 0
			}
			w *= 2
		case tokStar:
			if at.kind != tokField && at.kind != tokIndex {
				return 0
			}
		}
	}
	return w
}

func renderTokens(toks []pathToken) string {
	var b strings.Builder
	for _, t := range toks {
		switch t.kind {
		case tokRoot:
			b.WriteByte('$')
		case tokField:
			if isIdent(t.name) {
				b.WriteByte('.')
				b.WriteString(t.name)
			} else {
				b.WriteString("['")
				b.WriteString(strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(t.name))
				b.WriteString("']")
			}
		case tokIndex:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(t.index))
			b.WriteByte(']')
		case tokStar:
			b.WriteString("[*]")
		}
	}
	return b.String()
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r != '_' && r != '-' && (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// ruleTrie is one category's rules, compiled for matching: a trie over
// the rule paths' tokens, so finding the rule for a value costs a walk down
// its path rather than a comparison with every rule.
type ruleTrie struct {
	rules  *RuleList
	fields map[string]*ruleTrie
	index  map[int]*ruleTrie
	star   *ruleTrie
}

// ruleSet is a compiled category; nil has no rules.
type ruleSet struct{ root *ruleTrie }

type ruleSetKey struct {
	m  unsafe.Pointer
	n  int
	fp uint64
}

var (
	ruleSetCache sync.Map // ruleSetKey -> ruleSet
	ruleSetCount atomic.Int64
	ruleSetSeed  = maphash.MakeSeed()
)

// compileCategory compiles a category's rules, cached by the map's identity
// and a fingerprint of its entries (so a changed or reused map recompiles).
func compileCategory(c map[string]*RuleList) ruleSet {
	if len(c) == 0 {
		return ruleSet{}
	}
	key := ruleSetKey{m: reflect.ValueOf(c).UnsafePointer(), n: len(c)}
	for k, rl := range c {
		key.fp += maphash.String(ruleSetSeed, k) ^ uint64(uintptr(unsafe.Pointer(rl)))
	}
	if rs, ok := ruleSetCache.Load(key); ok {
		return rs.(ruleSet)
	}
	rs := buildRuleSet(c)
	if ruleSetCount.Add(1) > 4096 {
		ruleSetCache.Clear()
		ruleSetCount.Store(0)
	}
	ruleSetCache.Store(key, rs)
	return rs
}

func buildRuleSet(c map[string]*RuleList) ruleSet {
	root := &ruleTrie{}
	for _, k := range sortedKeys(c) {
		toks, err := parsePath(k)
		if err != nil {
			continue // validated at parse time; a bad path never applies
		}
		n := root
		for _, t := range toks[1:] {
			switch t.kind {
			case tokField:
				if n.fields == nil {
					n.fields = map[string]*ruleTrie{}
				}
				if n.fields[t.name] == nil {
					n.fields[t.name] = &ruleTrie{}
				}
				n = n.fields[t.name]
			case tokIndex:
				if n.index == nil {
					n.index = map[int]*ruleTrie{}
				}
				if n.index[t.index] == nil {
					n.index[t.index] = &ruleTrie{}
				}
				n = n.index[t.index]
			case tokStar:
				if n.star == nil {
					n.star = &ruleTrie{}
				}
				n = n.star
			}
		}
		if n.rules == nil {
			n.rules = c[k]
		} else { // "$.a.*" and "$.a[*]" are the same path
			merged := *n.rules
			merged.Matchers = append(append([]Matcher(nil), n.rules.Matchers...), c[k].Matchers...)
			n.rules = &merged
		}
	}
	return ruleSet{root: root}
}

type trieCursor struct {
	n *ruleTrie
	w int
}

// best returns the rule list that applies at path: the highest V3 path
// weight (see weight), then the longest (most specific) rule path; direct
// reports whether the rule is for the path itself rather than an ancestor.
func (rs ruleSet) best(path []pathToken) (rl *RuleList, direct bool) {
	if rs.root == nil || len(path) == 0 || path[0].kind != tokRoot {
		return nil, false
	}
	var b1, b2 [8]trieCursor
	cur, next := append(b1[:0], trieCursor{rs.root, 2}), b2[:0]
	bestW, bestLen := 0, -1
	for depth := 0; ; depth++ {
		for _, c := range cur {
			if c.n.rules != nil && (c.w > bestW || (c.w == bestW && depth+1 > bestLen)) {
				bestW, bestLen, rl = c.w, depth+1, c.n.rules
				direct = depth+1 == len(path)
			}
		}
		if depth+1 >= len(path) {
			return rl, direct
		}
		t := path[depth+1]
		next = next[:0]
		for _, c := range cur {
			switch t.kind {
			case tokField:
				if x := c.n.fields[t.name]; x != nil {
					next = append(next, trieCursor{x, c.w * 2})
				}
			case tokIndex:
				if x := c.n.index[t.index]; x != nil {
					next = append(next, trieCursor{x, c.w * 2})
				}
			}
			if c.n.star != nil && (t.kind == tokField || t.kind == tokIndex) {
				next = append(next, trieCursor{c.n.star, c.w})
			}
		}
		if len(next) == 0 {
			return rl, direct
		}
		cur, next = next, cur
	}
}
