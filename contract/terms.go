package contract

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// Term is an example value with the matching rules (and optionally a
// generator) that say what else the other side may send. Build them with
// Like, EachLike, Regex, Integer, Decimal, Timestamp, Includes, ...; they
// nest: Like(map[string]any{"id": Integer(7)}).
type Term struct {
	Example   any
	Matchers  []Matcher
	Combine   string // "AND" (default) or "OR"
	Generator Generator
	// children: an EachLike's element template is the first example.
	eachLike bool
	min      int
}

// Like matches any value of the same JSON type as example (the type
// matcher; it cascades to nested values).
func Like(example any) Term { return Term{Example: example, Matchers: []Matcher{{"match": "type"}}} }

// EachLike matches an array whose every element is like example, with at
// least min elements and (when max > 0) at most max.
func EachLike(example any, minLen, maxLen int) Term {
	m := Matcher{"match": "type"}
	if minLen > 0 {
		m["min"] = minLen
	}
	if maxLen > 0 {
		m["max"] = maxLen
	}
	return Term{Example: example, Matchers: []Matcher{m}, eachLike: true, min: minLen}
}

// Regex matches a value (rendered as text) against the regex, which must
// match all of it. The example must match too.
func Regex(example, regex string) Term {
	return Term{Example: example, Matchers: []Matcher{{"match": "regex", "regex": regex}}}
}

// Equality matches exactly the example, even under a Like.
func Equality(example any) Term {
	return Term{Example: example, Matchers: []Matcher{{"match": "equality"}}}
}

// Includes matches a string containing substr.
func Includes(example, substr string) Term {
	return Term{Example: example, Matchers: []Matcher{{"match": "include", "value": substr}}}
}

// Integer matches an integer number.
func Integer(example int64) Term {
	return Term{Example: json.Number(strconv.FormatInt(example, 10)), Matchers: []Matcher{{"match": "integer"}}}
}

// Decimal matches a number with a fractional part.
func Decimal(example float64) Term {
	s := strconv.FormatFloat(example, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return Term{Example: json.Number(s), Matchers: []Matcher{{"match": "decimal"}}}
}

// Number matches any number.
func Number(example float64) Term {
	return Term{Example: json.Number(strconv.FormatFloat(example, 'f', -1, 64)), Matchers: []Matcher{{"match": "number"}}}
}

// Boolean matches true or false.
func Boolean(example bool) Term {
	return Term{Example: example, Matchers: []Matcher{{"match": "boolean"}}}
}

// Null matches null.
func Null() Term { return Term{Example: nil, Matchers: []Matcher{{"match": "null"}}} }

// Date matches a date in the Java-style format ("yyyy-MM-dd"; empty for ISO 8601).
func Date(format, example string) Term { return timeTerm("date", format, example) }

// Time matches a time of day in the format ("HH:mm:ss"; empty for ISO 8601).
func Time(format, example string) Term { return timeTerm("time", format, example) }

// Timestamp matches a date and time in the format
// ("yyyy-MM-dd'T'HH:mm:ssXXX"; empty for ISO 8601).
func Timestamp(format, example string) Term { return timeTerm("timestamp", format, example) }

func timeTerm(kind, format, example string) Term {
	m := Matcher{"match": kind}
	if format != "" {
		m["format"] = format
	}
	return Term{Example: example, Matchers: []Matcher{m}}
}

// UUID matches a lower-case hyphenated UUID and generates a fresh one.
func UUID(example string) Term {
	t := Regex(example, `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	t.Generator = Generator{"type": "Uuid"}
	return t
}

// ContentType matches a body whose content is of the given media type.
func ContentType(contentType string, example any) Term {
	return Term{Example: example, Matchers: []Matcher{{"match": "contentType", "value": contentType}}}
}

// Values matches an object ignoring its keys: every value like the example's.
func Values(example any) Term {
	return Term{Example: example, Matchers: []Matcher{{"match": "values"}}}
}

// EachKey matches an object whose every key satisfies the key terms
// (e.g. Regex("a", `[a-z]+`)); its values are compared with the example.
func EachKey(example any, keyRules ...Term) Term {
	return Term{Example: example, Matchers: []Matcher{{"match": "eachKey", "rules": termRules(keyRules), "value": example}}}
}

// EachValue matches an object or array whose every value satisfies the terms.
func EachValue(example any, valueRules ...Term) Term {
	return Term{Example: example, Matchers: []Matcher{{"match": "eachValue", "rules": termRules(valueRules), "value": example}}}
}

func termRules(ts []Term) []any {
	var out []any
	for _, t := range ts {
		for _, m := range t.Matchers {
			out = append(out, map[string]any(m))
		}
	}
	return out
}

// ArrayContaining matches an array that contains, in any order, an
// element matching each variant (each variant may itself hold terms).
func ArrayContaining(variants ...any) Term {
	var vs []any
	var examples []any
	for i, v := range variants {
		rules := Rules{}
		gens := Generators{}
		ex := buildExample(v, []pathToken{{kind: tokRoot}}, rules, gens, "body")
		examples = append(examples, ex)
		vm := map[string]any{"index": i, "rules": rules.toJSON(V4, false)["body"]}
		if vm["rules"] == nil {
			vm["rules"] = map[string]any{}
		}
		if g := gens.toJSON(V4, false)["body"]; g != nil {
			vm["generators"] = g
		}
		vs = append(vs, vm)
	}
	return Term{Example: examples, Matchers: []Matcher{{"match": "arrayContains", "variants": vs}}}
}

// NotEmpty matches a non-empty value of the example's type.
func NotEmpty(example any) Term {
	return Term{Example: example, Matchers: []Matcher{{"match": "notEmpty"}}}
}

// Semver matches a semantic version string.
func Semver(example string) Term {
	return Term{Example: example, Matchers: []Matcher{{"match": "semver"}}}
}

// FromProviderState uses example in the consumer test, and has the
// verifier substitute the expression (e.g. "/orders/${id}") with the values
// the provider-state handler returned.
func FromProviderState(expression string, example any) Term {
	return Term{Example: example, Matchers: []Matcher{{"match": "type"}}, Generator: Generator{"type": "ProviderState", "expression": expression}}
}

// MockServerURL matches a URL whose path the regex captures, and rewrites
// the example's base to the mock server's URL in the consumer test.
func MockServerURL(regex, example string) Term {
	return Term{Example: example, Matchers: []Matcher{{"match": "regex", "regex": regex}}, Generator: Generator{"type": "MockServerURL", "regex": regex, "example": example}}
}

// Generated attaches a generator to a term (RandomInt, RandomString, ...).
func Generated(t Term, g Generator) Term { t.Generator = g; return t }

// AnyOf combines terms with OR: the value must satisfy one of them.
func AnyOf(example any, terms ...Term) Term {
	t := Term{Example: example, Combine: "OR"}
	for _, x := range terms {
		t.Matchers = append(t.Matchers, x.Matchers...)
	}
	return t
}

// AllOf combines terms with AND.
func AllOf(example any, terms ...Term) Term {
	t := Term{Example: example, Combine: "AND"}
	for _, x := range terms {
		t.Matchers = append(t.Matchers, x.Matchers...)
	}
	return t
}

// buildExample walks a template, recording the terms' rules and generators
// by path in category, and returns the plain example value.
func buildExample(v any, path []pathToken, rules Rules, gens Generators, category string) any {
	switch x := v.(type) {
	case Term:
		key := renderTokens(path)
		if len(x.Matchers) > 0 {
			rules.Add(category, key, x.Matchers...)
			if x.Combine != "" {
				rules[category][key].Combine = x.Combine
			}
		}
		if x.Generator != nil {
			gens.Add(category, key, x.Generator)
		}
		if x.eachLike {
			n := max(x.min, 1)
			elem := buildExample(x.Example, child(path, pathToken{kind: tokStar}), rules, gens, category)
			out := make([]any, n)
			for i := range out {
				out[i] = elem
			}
			return out
		}
		if isArrayContains(x) {
			return x.Example
		}
		return buildExample(x.Example, path, rules, gens, category)
	case *Term:
		return buildExample(*x, path, rules, gens, category)
	case map[string]any:
		out := make(map[string]any, len(x))
		for _, k := range sortedKeys(x) {
			out[k] = buildExample(x[k], child(path, pathToken{kind: tokField, name: k}), rules, gens, category)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = buildExample(e, child(path, pathToken{kind: tokIndex, index: i}), rules, gens, category)
		}
		return out
	case nil, string, bool, json.Number, float64, float32, int, int64, int32, uint, uint64:
		return x
	}
	// typed maps and slices are walked (they may hold terms); structs go
	// through encoding/json.
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Map:
		if rv.Type().Key().Kind() == reflect.String {
			m := make(map[string]any, rv.Len())
			iter := rv.MapRange()
			for iter.Next() {
				m[iter.Key().String()] = iter.Value().Interface()
			}
			return buildExample(m, path, rules, gens, category)
		}
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
			break
		}
		l := make([]any, rv.Len())
		for i := range l {
			l[i] = rv.Index(i).Interface()
		}
		return buildExample(l, path, rules, gens, category)
	}
	b, err := json.Marshal(v)
	if err == nil {
		if d, err := decodeJSON(b); err == nil {
			return d
		}
	}
	return v
}

func isArrayContains(t Term) bool {
	return len(t.Matchers) == 1 && t.Matchers[0].Type() == "arrayContains"
}

// scalarTemplate resolves a path/header/query template: a string or a Term.
func scalarTemplate(v any, category, key string, rules Rules, gens Generators) string {
	switch x := v.(type) {
	case Term:
		if len(x.Matchers) > 0 {
			rules.Add(category, key, x.Matchers...)
			if x.Combine != "" {
				rules[category][key].Combine = x.Combine
			}
		}
		if x.Generator != nil {
			gens.Add(category, key, x.Generator)
		}
		s, _ := scalarString(x.Example)
		return s
	case string:
		return x
	case nil:
		return ""
	}
	s, ok := scalarString(v)
	if !ok {
		s = fmt.Sprint(v)
	}
	return s
}
