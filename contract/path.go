package contract

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
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
			switch {
			case inner == "*":
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
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// compiledRule is a rule list with its parsed path.
type compiledRule struct {
	path  []pathToken
	rules *RuleList
}

// ruleSet is one category's rules, compiled for matching.
type ruleSet []compiledRule

func compileCategory(c map[string]*RuleList) ruleSet {
	if len(c) == 0 {
		return nil
	}
	out := make(ruleSet, 0, len(c))
	for _, k := range sortedKeys(c) {
		toks, err := parsePath(k)
		if err != nil {
			continue // validated at parse time; a bad path never applies
		}
		out = append(out, compiledRule{path: toks, rules: c[k]})
	}
	return out
}

// best returns the rule list that applies at path: the highest weight, then
// the longest (most specific) rule path; direct reports whether its path is
// exactly as long as the actual path.
func (rs ruleSet) best(path []pathToken) (rl *RuleList, direct bool) {
	bestW, bestLen := 0, -1
	for i := range rs {
		w := weight(rs[i].path, path)
		if w == 0 {
			continue
		}
		if w > bestW || (w == bestW && len(rs[i].path) > bestLen) {
			bestW, bestLen = w, len(rs[i].path)
			rl = rs[i].rules
			direct = len(rs[i].path) == len(path)
		}
	}
	return rl, direct
}
