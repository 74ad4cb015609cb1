package jsonschema

import (
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/flotilla-ci/flotilla/schema"
)

// Type names a difference as Confluent's Difference.Type does.
type Type string

// Difference is one change from the original schema to the update, at a
// JSON path ("#/properties/total").
type Difference struct {
	Type Type
	Path string
}

func (d Difference) String() string { return string(d.Type) + " " + d.Path }

// Compatible reports whether the change is in Confluent's
// COMPATIBLE_CHANGES_STRICT: the update still accepts what the original
// accepted.
func (d Difference) Compatible() bool { return compatible[d.Type] }

var compatible = map[Type]bool{}

func init() {
	for _, t := range strings.Fields(`ID_CHANGED DESCRIPTION_CHANGED TITLE_CHANGED DEFAULT_CHANGED SCHEMA_REMOVED TYPE_EXTENDED
		MAX_LENGTH_INCREASED MAX_LENGTH_REMOVED MIN_LENGTH_DECREASED MIN_LENGTH_REMOVED PATTERN_REMOVED
		MAXIMUM_INCREASED MAXIMUM_REMOVED MINIMUM_DECREASED MINIMUM_REMOVED EXCLUSIVE_MAXIMUM_INCREASED EXCLUSIVE_MAXIMUM_REMOVED
		EXCLUSIVE_MINIMUM_DECREASED EXCLUSIVE_MINIMUM_REMOVED MULTIPLE_OF_REDUCED MULTIPLE_OF_REMOVED
		REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED REQUIRED_ATTRIBUTE_REMOVED DEPENDENCY_ARRAY_NARROWED DEPENDENCY_ARRAY_REMOVED
		DEPENDENCY_SCHEMA_REMOVED MAX_PROPERTIES_INCREASED MAX_PROPERTIES_REMOVED MIN_PROPERTIES_DECREASED MIN_PROPERTIES_REMOVED
		ADDITIONAL_PROPERTIES_ADDED ADDITIONAL_PROPERTIES_EXTENDED PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL
		REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL
		PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL
		PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
		MAX_ITEMS_INCREASED MAX_ITEMS_REMOVED MIN_ITEMS_DECREASED MIN_ITEMS_REMOVED UNIQUE_ITEMS_REMOVED
		ADDITIONAL_ITEMS_ADDED ADDITIONAL_ITEMS_EXTENDED ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL
		ITEM_ADDED_TO_CLOSED_CONTENT_MODEL ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL
		ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
		ENUM_ARRAY_EXTENDED COMBINED_TYPE_EXTENDED PRODUCT_TYPE_NARROWED SUM_TYPE_EXTENDED NOT_TYPE_NARROWED`) {
		compatible[Type(t)] = true
	}
}

// Diff returns every difference from original to update, in Confluent's
// terms, compatible ones included.
func Diff(original, update *Schema) []Difference {
	c := &differ{roots: [2]any{original.compared(), update.compared()}, seen: map[[2]string]bool{}, steps: new(int)}
	c.compare("#", original.compared(), update.compared(), "", "")
	return c.out
}

// Incompatible returns the differences from original to update that are
// not compatible: none means a reader with update reads what was written
// under original.
func Incompatible(original, update *Schema) []Difference {
	var out []Difference
	for _, d := range Diff(original, update) {
		if !d.Compatible() {
			out = append(out, d)
		}
	}
	return out
}

// Description renders a difference as Confluent's messages do, for the
// direction it was found in ("new"/"old" schema).
func (d Difference) Description(update, original string) string {
	switch {
	case strings.HasSuffix(string(d.Type), "_ADDED") && !strings.Contains(string(d.Type), "PROPERTY") && !strings.Contains(string(d.Type), "ITEM"):
		return fmt.Sprintf("The keyword at path '%s' in the %s schema is not present in the %s schema", d.Path, update, original)
	case strings.Contains(string(d.Type), "TYPE_NARROWED") || d.Type == "ENUM_ARRAY_NARROWED":
		return fmt.Sprintf("An array or combined type at path '%s' has fewer elements in the %s schema than the %s schema", d.Path, update, original)
	case strings.Contains(string(d.Type), "TYPE_EXTENDED"):
		return fmt.Sprintf("An array or combined type at path '%s' has more elements in the %s schema than the %s schema", d.Path, update, original)
	case strings.HasSuffix(string(d.Type), "_CHANGED") && strings.Contains(string(d.Type), "TYPE"):
		return fmt.Sprintf("A type at path '%s' is different between the %s schema and the %s schema", d.Path, update, original)
	case strings.HasSuffix(string(d.Type), "_INCREASED") || d.Type == "MULTIPLE_OF_EXPANDED":
		return fmt.Sprintf("The value at path '%s' in the %s schema is more than its value in the %s schema", d.Path, update, original)
	case strings.HasSuffix(string(d.Type), "_DECREASED"):
		return fmt.Sprintf("The value at path '%s' in the %s schema is less than its value in the %s schema", d.Path, update, original)
	case d.Type == "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL" || d.Type == "ITEM_ADDED_TO_OPEN_CONTENT_MODEL":
		return fmt.Sprintf("The %s schema has an open content model and has a property or item at path '%s' which is missing in the %s schema", update, d.Path, original)
	case d.Type == "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL":
		return fmt.Sprintf("The %s schema has an unopen content model and has a required property at path '%s' which is missing in the %s schema", update, d.Path, original)
	case d.Type == "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL" || d.Type == "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL":
		return fmt.Sprintf("The %s has a closed content model and is missing a property or item present at path '%s' in the %s schema", update, d.Path, original)
	case strings.Contains(string(d.Type), "REMOVED_NOT_COVERED"):
		return fmt.Sprintf("A property or item is missing in the %s schema but present at path '%s' in the %s schema and is not covered by its partially open content model", update, d.Path, original)
	case strings.Contains(string(d.Type), "ADDED_NOT_COVERED"):
		return fmt.Sprintf("The %s schema has a property or item at path '%s' which is missing in the %s schema and is not covered by its partially open content model", update, d.Path, original)
	}
	return fmt.Sprintf("The value at path '%s' is different between the %s and %s schema", d.Path, update, original)
}

type differ struct {
	roots [2]any
	out   []Difference
	seen  map[[2]string]bool // $ref pairs being compared (recursive schemas)
	steps *int               // comparisons made, shared with sub-differs
}

// maxSteps bounds the work one Diff may do: nested combined types compare
// every pair of subschemas, which adversarial input can make explosive.
// Past it, what is left is reported as one TYPE_CHANGED (incompatible).
const maxSteps = 200_000

func (c *differ) add(t Type, path string) { c.out = append(c.out, Difference{Type: t, Path: path}) }

// sub compares in a scratch differ and returns its differences.
func (c *differ) sub(path string, o, u any) []Difference {
	s := &differ{roots: c.roots, seen: c.seen, steps: c.steps}
	s.compare(path, o, u, "", "")
	return s.out
}

func allCompatible(ds []Difference) bool {
	for _, d := range ds {
		if !d.Compatible() {
			return false
		}
	}
	return true
}

// resolve follows a local $ref ("#/definitions/x", "#/$defs/x").
func (c *differ) resolve(s any, root int) (any, string) {
	for i := 0; i < 32; i++ {
		m, ok := s.(map[string]any)
		if !ok {
			return s, ""
		}
		ref, ok := m["$ref"].(string)
		if !ok || !strings.HasPrefix(ref, "#") {
			return s, ""
		}
		t := c.roots[root]
		for _, seg := range strings.Split(strings.TrimPrefix(strings.TrimPrefix(ref, "#"), "/"), "/") {
			if seg == "" {
				continue
			}
			seg = strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~")
			mm, ok := t.(map[string]any)
			if !ok {
				return map[string]any{}, ref
			}
			t = mm[seg]
		}
		if t == nil {
			return map[string]any{}, ref
		}
		if _, more := t.(map[string]any)["$ref"]; !more {
			return t, ref
		}
		s = t
	}
	return map[string]any{}, ""
}

// kind classifies a schema the way Confluent's loader (Everit) builds it.
func kind(s any) string {
	switch v := s.(type) {
	case bool:
		if v {
			return "empty"
		}
		return "false"
	case map[string]any:
		for _, k := range []string{"allOf", "anyOf", "oneOf"} {
			if _, ok := v[k]; ok {
				return "combined"
			}
		}
		if _, ok := v["not"]; ok {
			return "not"
		}
		if _, ok := v["enum"]; ok {
			return "enum"
		}
		if _, ok := v["const"]; ok {
			return "const"
		}
		switch t := v["type"].(type) {
		case string:
			if t == "integer" {
				return "number"
			}
			return t
		case []any:
			if len(t) == 1 {
				if s, ok := t[0].(string); ok {
					if s == "integer" {
						return "number"
					}
					return s
				}
			}
			return "combined"
		}
		for _, k := range []string{"properties", "required", "additionalProperties", "patternProperties", "minProperties", "maxProperties", "dependencies"} {
			if _, ok := v[k]; ok {
				return "object"
			}
		}
		for _, k := range []string{"items", "minItems", "maxItems", "uniqueItems", "additionalItems", "prefixItems"} {
			if _, ok := v[k]; ok {
				return "array"
			}
		}
		for _, k := range []string{"minLength", "maxLength", "pattern"} {
			if _, ok := v[k]; ok {
				return "string"
			}
		}
		for _, k := range []string{"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"} {
			if _, ok := v[k]; ok {
				return "number"
			}
		}
		return "empty"
	}
	return "empty"
}

// combined returns a combined schema's criterion and subschemas; a type
// list is an anyOf of one schema per type.
func combined(s any) (string, []any) {
	m, _ := s.(map[string]any)
	for _, k := range []string{"allOf", "anyOf", "oneOf"} {
		if subs, ok := m[k].([]any); ok {
			return k, subs
		}
	}
	if ts, ok := m["type"].([]any); ok {
		subs := make([]any, 0, len(ts))
		for _, t := range ts {
			one := map[string]any{}
			for k, v := range m {
				one[k] = v
			}
			one["type"] = t
			subs = append(subs, one)
		}
		return "anyOf", subs
	}
	return "", nil
}

func (c *differ) compare(path string, o, u any, oref, uref string) {
	if *c.steps++; *c.steps > maxSteps {
		if *c.steps == maxSteps+1 {
			c.add("TYPE_CHANGED", path)
		}
		return
	}
	if o == nil && u == nil {
		return
	}
	if o == nil {
		c.add("SCHEMA_ADDED", path)
		return
	}
	if u == nil {
		c.add("SCHEMA_REMOVED", path)
		return
	}
	o, or := c.resolve(o, 0)
	u, ur := c.resolve(u, 1)
	if or != "" || ur != "" {
		key := [2]string{or + "|" + oref, ur + "|" + uref}
		if c.seen[key] {
			return
		}
		c.seen[key] = true
		defer delete(c.seen, key)
	}
	ok, uk := kind(o), kind(u)
	if ok != "combined" && uk == "combined" {
		crit, subs := combined(u)
		if len(subs) == 1 {
			if ds := c.sub(path, o, subs[0]); allCompatible(ds) {
				c.out = append(c.out, ds...)
				return
			}
		} else if crit == "anyOf" || crit == "oneOf" {
			for _, s := range subs {
				if ds := c.sub(path, o, s); allCompatible(ds) {
					c.out = append(c.out, ds...)
					c.add("SUM_TYPE_EXTENDED", path)
					return
				}
			}
		}
	} else if ok == "combined" && uk != "combined" {
		crit, subs := combined(o)
		if len(subs) == 1 {
			if ds := c.sub(path, subs[0], u); allCompatible(ds) {
				c.out = append(c.out, ds...)
				return
			}
		}
		if crit == "allOf" {
			for _, s := range subs {
				if ds := c.sub(path, s, u); allCompatible(ds) {
					c.out = append(c.out, ds...)
					c.add("PRODUCT_TYPE_NARROWED", path)
					return
				}
			}
		}
	}
	if ok != uk {
		if ok == "false" || uk == "empty" {
			return
		}
		c.add("TYPE_CHANGED", path)
		return
	}
	om, _ := o.(map[string]any)
	um, _ := u.(map[string]any)
	if om == nil || um == nil {
		return
	}
	for _, k := range [][2]string{{"$id", "ID_CHANGED"}, {"title", "TITLE_CHANGED"}, {"description", "DESCRIPTION_CHANGED"}, {"default", "DEFAULT_CHANGED"}} {
		if !reflect.DeepEqual(om[k[0]], um[k[0]]) {
			c.add(Type(k[1]), path)
		}
	}
	switch ok {
	case "string":
		c.limit(path, om, um, "maxLength", "MAX_LENGTH", true)
		c.limit(path, om, um, "minLength", "MIN_LENGTH", false)
		c.keyword(path, om, um, "pattern", "PATTERN")
	case "number":
		oi, ui := om["type"] == "integer" || slices.Contains(anySlice(om["type"]), any("integer")), um["type"] == "integer" || slices.Contains(anySlice(um["type"]), any("integer"))
		switch {
		case oi && !ui:
			c.add("TYPE_EXTENDED", path)
		case !oi && ui:
			c.add("TYPE_NARROWED", path)
		}
		c.limit(path, om, um, "maximum", "MAXIMUM", true)
		c.limit(path, om, um, "minimum", "MINIMUM", false)
		c.limit(path, om, um, "exclusiveMaximum", "EXCLUSIVE_MAXIMUM", true)
		c.limit(path, om, um, "exclusiveMinimum", "EXCLUSIVE_MINIMUM", false)
		c.multipleOf(path, om, um)
	case "enum", "const":
		c.enum(path, om, um)
	case "combined":
		c.combined(path, o, u)
	case "not":
		// The not of the update must exclude less: compared reversed.
		ds := c.sub(path+"/not", um["not"], om["not"])
		if len(ds) > 0 {
			if allCompatible(ds) {
				c.add("NOT_TYPE_NARROWED", path)
			} else {
				c.add("NOT_TYPE_EXTENDED", path)
			}
		}
	case "object":
		c.object(path, om, um)
	case "array":
		c.array(path, om, um)
	}
}

func anySlice(v any) []any { s, _ := v.([]any); return s }

func num(v any) (*big.Rat, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return nil, false
	}
	r, ok := new(big.Rat).SetString(n.String())
	return r, ok
}

// limit compares a numeric bound; upper says a larger value accepts more.
func (c *differ) limit(path string, om, um map[string]any, key, name string, upper bool) {
	ov, oOK := num(om[key])
	uv, uOK := num(um[key])
	switch {
	case !oOK && uOK:
		c.add(Type(name+"_ADDED"), path)
	case oOK && !uOK:
		c.add(Type(name+"_REMOVED"), path)
	case oOK && uOK:
		switch ov.Cmp(uv) {
		case -1:
			c.add(Type(name+"_INCREASED"), path)
		case 1:
			c.add(Type(name+"_DECREASED"), path)
		}
	}
	_ = upper
}

func (c *differ) keyword(path string, om, um map[string]any, key, name string) {
	ov, oOK := om[key]
	uv, uOK := um[key]
	switch {
	case !oOK && uOK:
		c.add(Type(name+"_ADDED"), path)
	case oOK && !uOK:
		c.add(Type(name+"_REMOVED"), path)
	case oOK && uOK && !reflect.DeepEqual(ov, uv):
		c.add(Type(name+"_CHANGED"), path)
	}
}

func (c *differ) multipleOf(path string, om, um map[string]any) {
	ov, oOK := num(om["multipleOf"])
	uv, uOK := num(um["multipleOf"])
	switch {
	case !oOK && uOK:
		c.add("MULTIPLE_OF_ADDED", path)
	case oOK && !uOK:
		c.add("MULTIPLE_OF_REMOVED", path)
	case oOK && uOK && ov.Cmp(uv) != 0:
		if uv.Sign() != 0 && new(big.Rat).Quo(ov, uv).IsInt() {
			c.add("MULTIPLE_OF_REDUCED", path) // every old value is still a multiple
		} else if ov.Sign() != 0 && new(big.Rat).Quo(uv, ov).IsInt() {
			c.add("MULTIPLE_OF_EXPANDED", path)
		} else {
			c.add("MULTIPLE_OF_CHANGED", path)
		}
	}
}

func (c *differ) enum(path string, om, um map[string]any) {
	values := func(m map[string]any) []string {
		var vs []any
		if e, ok := m["enum"].([]any); ok {
			vs = e
		} else if v, ok := m["const"]; ok {
			vs = []any{v}
		}
		out := make([]string, 0, len(vs))
		for _, v := range vs {
			b, _ := json.Marshal(v)
			out = append(out, string(b))
		}
		return out
	}
	ov, uv := values(om), values(um)
	subset := func(a, b []string) bool {
		for _, x := range a {
			if !slices.Contains(b, x) {
				return false
			}
		}
		return true
	}
	switch {
	case subset(ov, uv) && subset(uv, ov):
	case subset(ov, uv):
		c.add("ENUM_ARRAY_EXTENDED", path)
	case subset(uv, ov):
		c.add("ENUM_ARRAY_NARROWED", path)
	default:
		c.add("ENUM_ARRAY_CHANGED", path)
	}
}

func (c *differ) combined(path string, o, u any) {
	oc, os := combined(o)
	uc, us := combined(u)
	if oc != uc {
		c.add("COMBINED_TYPE_CHANGED", path)
		return
	}
	switch {
	case len(us) > len(os) && oc == "allOf":
		c.add("PRODUCT_TYPE_EXTENDED", path)
	case len(us) > len(os):
		c.add("SUM_TYPE_EXTENDED", path)
	case len(us) < len(os) && oc == "allOf":
		c.add("PRODUCT_TYPE_NARROWED", path)
	case len(us) < len(os):
		c.add("SUM_TYPE_NARROWED", path)
	}
	// Match each original subschema with a compatible update subschema.
	used := make([]bool, len(us))
	for i, s := range os {
		matched := false
		for j, t := range us {
			if used[j] {
				continue
			}
			if ds := c.sub(fmt.Sprintf("%s/%s/%d", path, oc, i), s, t); allCompatible(ds) {
				used[j] = true
				matched = true
				c.out = append(c.out, ds...)
				break
			}
		}
		if !matched && len(os) <= len(us) {
			c.add("COMBINED_TYPE_SUBSCHEMAS_CHANGED", path)
			return
		}
	}
}

// open says how an object admits properties it does not list: "open" (no
// additionalProperties, or true), "closed" (false) or "partial" (a schema).
func open(m map[string]any) (string, any) {
	switch v := m["additionalProperties"].(type) {
	case nil:
		return "open", nil
	case bool:
		if v {
			return "open", nil
		}
		return "closed", nil
	default:
		if kind(v) == "empty" {
			return "open", nil
		}
		return "partial", v
	}
}

func props(m map[string]any) map[string]any { p, _ := m["properties"].(map[string]any); return p }

func required(m map[string]any) []string {
	var out []string
	for _, r := range anySlice(m["required"]) {
		if s, ok := r.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func hasDefault(s any) bool {
	m, ok := s.(map[string]any)
	if !ok {
		return false
	}
	_, d := m["default"]
	return d
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (c *differ) object(path string, om, um map[string]any) {
	c.limit(path, om, um, "maxProperties", "MAX_PROPERTIES", true)
	c.limit(path, om, um, "minProperties", "MIN_PROPERTIES", false)
	oOpen, oAdd := open(om)
	uOpen, uAdd := open(um)
	switch {
	case oOpen != "closed" && uOpen == "closed":
		c.add("ADDITIONAL_PROPERTIES_REMOVED", path)
	case oOpen == "closed" && uOpen != "closed":
		c.add("ADDITIONAL_PROPERTIES_ADDED", path)
	case oOpen == "partial" && uOpen == "open":
		c.add("ADDITIONAL_PROPERTIES_EXTENDED", path)
	case oOpen == "open" && uOpen == "partial":
		c.add("ADDITIONAL_PROPERTIES_NARROWED", path)
	case oOpen == "partial" && uOpen == "partial":
		if ds := c.sub(path+"/additionalProperties", oAdd, uAdd); len(ds) > 0 {
			if allCompatible(ds) {
				c.add("ADDITIONAL_PROPERTIES_EXTENDED", path)
			} else {
				c.add("ADDITIONAL_PROPERTIES_NARROWED", path)
			}
		}
	}
	op, up := props(om), props(um)
	oreq, ureq := required(om), required(um)
	for _, k := range sortedKeys(up) {
		if _, ok := op[k]; ok {
			continue
		}
		pp := path + "/properties/" + k
		switch oOpen {
		case "closed":
			switch {
			case slices.Contains(ureq, k) && hasDefault(up[k]):
				c.add("REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL", pp)
			case slices.Contains(ureq, k):
				c.add("REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", pp)
			default:
				c.add("OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", pp)
			}
		case "open":
			if kind(up[k]) == "empty" {
				c.add("PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL", pp)
			} else {
				c.add("PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", pp)
			}
		default:
			if allCompatible(c.sub(pp, oAdd, up[k])) {
				c.add("PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", pp)
			} else {
				c.add("PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", pp)
			}
		}
	}
	for _, k := range sortedKeys(op) {
		pp := path + "/properties/" + k
		if _, ok := up[k]; ok {
			c.compare(pp, op[k], up[k], "", "")
			continue
		}
		switch uOpen {
		case "closed":
			if kind(op[k]) == "false" {
				c.add("PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL", pp)
			} else {
				c.add("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", pp)
			}
		case "open":
			c.add("PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL", pp)
		default:
			if allCompatible(c.sub(pp, op[k], uAdd)) {
				c.add("PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", pp)
			} else {
				c.add("PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", pp)
			}
		}
	}
	for _, k := range ureq {
		if slices.Contains(oreq, k) {
			continue
		}
		if _, inO := op[k]; !inO {
			continue // reported as a property added
		}
		if hasDefault(up[k]) {
			c.add("REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED", path+"/required/"+k)
		} else {
			c.add("REQUIRED_ATTRIBUTE_ADDED", path+"/required/"+k)
		}
	}
	for _, k := range oreq {
		if !slices.Contains(ureq, k) {
			c.add("REQUIRED_ATTRIBUTE_REMOVED", path+"/required/"+k)
		}
	}
}

func (c *differ) array(path string, om, um map[string]any) {
	c.limit(path, om, um, "maxItems", "MAX_ITEMS", true)
	c.limit(path, om, um, "minItems", "MIN_ITEMS", false)
	ou, _ := om["uniqueItems"].(bool)
	uu, _ := um["uniqueItems"].(bool)
	switch {
	case !ou && uu:
		c.add("UNIQUE_ITEMS_ADDED", path)
	case ou && !uu:
		c.add("UNIQUE_ITEMS_REMOVED", path)
	}
	oi, ui := om["items"], um["items"]
	_, oTuple := oi.([]any)
	_, uTuple := ui.([]any)
	if !oTuple && !uTuple {
		if oi == nil {
			oi = true
		}
		if ui == nil {
			ui = true
		}
		c.compare(path+"/items", oi, ui, "", "")
		return
	}
	// Tuples: positions compared in turn; additionalItems is the rest.
	ot, ut := anySlice(oi), anySlice(ui)
	for i := 0; i < len(ot) || i < len(ut); i++ {
		ip := fmt.Sprintf("%s/items/%d", path, i)
		switch {
		case i < len(ot) && i < len(ut):
			c.compare(ip, ot[i], ut[i], "", "")
		case i < len(ut):
			if closed, _ := om["additionalItems"].(bool); om["additionalItems"] != nil && !closed {
				c.add("ITEM_ADDED_TO_CLOSED_CONTENT_MODEL", ip)
			} else if kind(ut[i]) == "empty" {
				c.add("ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL", ip)
			} else {
				c.add("ITEM_ADDED_TO_OPEN_CONTENT_MODEL", ip)
			}
		default:
			if open, _ := um["additionalItems"].(bool); um["additionalItems"] != nil && !open {
				c.add("ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL", ip)
			} else {
				c.add("ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL", ip)
			}
		}
	}
}

// Problem is one incompatibility of a candidate with an earlier version.
type Problem struct {
	Version   int              // the earlier version's number
	Direction schema.Direction // which schema reads which
	Difference
}

// Check checks candidate against the earlier versions (oldest first) under
// a compatibility level, as the registry does for Avro: the latest only or
// every version when transitive, newest first, stopping at the first with
// problems. BACKWARD compares the earlier version (original) with the
// candidate (update); FORWARD the candidate with the earlier version.
func Check(m schema.Mode, candidate *Schema, previous []*Schema) []Problem {
	if m == schema.None || len(previous) == 0 {
		return nil
	}
	from := len(previous) - 1
	if m.Transitive() {
		from = 0
	}
	backward := m != schema.Forward && m != schema.ForwardTransitive
	forward := m != schema.Backward && m != schema.BackwardTransitive
	for i := len(previous) - 1; i >= from; i-- {
		var out []Problem
		if backward {
			for _, d := range Incompatible(previous[i], candidate) {
				out = append(out, Problem{Version: i + 1, Direction: schema.NewReadsOld, Difference: d})
			}
		}
		if forward {
			for _, d := range Incompatible(candidate, previous[i]) {
				out = append(out, Problem{Version: i + 1, Direction: schema.OldReadsNew, Difference: d})
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	return nil
}
