package schema

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/hamba/avro/v2"
)

// checkDefaults validates every field default in the schema against the
// field's type, as the specification defines defaults: JSON null for null,
// true/false for boolean, an integer within range for int and long, a
// number for float and double, a string for string and enum (a symbol),
// a string of code points 0-255 for bytes (and of exactly the size for
// fixed), arrays, maps and records recursively, and for a union a value
// of its first branch.
func checkDefaults(raw any, s avro.Schema, path string, seen map[avro.Schema]bool) error {
	s = deref(s)
	switch x := raw.(type) {
	case []any: // a union
		u, ok := s.(*avro.UnionSchema)
		if !ok {
			return nil
		}
		for i, b := range x {
			if i < len(u.Types()) {
				if err := checkDefaults(b, u.Types()[i], fmt.Sprintf("%s/%d", path, i), seen); err != nil {
					return err
				}
			}
		}
	case map[string]any:
		if inner, ok := x["type"].(map[string]any); ok {
			return checkDefaults(inner, s, path+"/type", seen)
		}
		if inner, ok := x["type"].([]any); ok {
			return checkDefaults(inner, s, path+"/type", seen)
		}
		if seen[s] {
			return nil
		}
		seen[s] = true
		switch t := s.(type) {
		case *avro.RecordSchema:
			fields, _ := x["fields"].([]any)
			for i, f := range fields {
				fm, _ := f.(map[string]any)
				if i >= len(t.Fields()) || fm == nil {
					break
				}
				fp := fmt.Sprintf("%s/fields/%d", path, i)
				if d, ok := fm["default"]; ok {
					if err := validDefault(d, t.Fields()[i].Type()); err != nil {
						return fmt.Errorf("at %s: default of field %q: %w", fp, t.Fields()[i].Name(), err)
					}
				}
				if err := checkDefaults(fm["type"], t.Fields()[i].Type(), fp+"/type", seen); err != nil {
					return err
				}
			}
		case *avro.ArraySchema:
			return checkDefaults(x["items"], t.Items(), path+"/items", seen)
		case *avro.MapSchema:
			return checkDefaults(x["values"], t.Values(), path+"/values", seen)
		}
	}
	return nil
}

func validDefault(v any, s avro.Schema) error {
	s = deref(s)
	bad := func(want string) error {
		return fmt.Errorf("%s is not %s", jsonText(v), want)
	}
	switch t := s.(type) {
	case *avro.NullSchema:
		if v != nil {
			return bad("null (write null, unquoted)")
		}
	case *avro.PrimitiveSchema:
		switch t.Type() {
		case avro.Boolean:
			if _, ok := v.(bool); !ok {
				return bad("a boolean")
			}
		case avro.Int, avro.Long:
			n, ok := v.(json.Number)
			if !ok {
				return bad("an integer")
			}
			bits := 32
			if t.Type() == avro.Long {
				bits = 64
			}
			if _, err := strconv.ParseInt(n.String(), 10, bits); err != nil {
				return bad(fmt.Sprintf("an integer that fits in %s (%d bits)", t.Type(), bits))
			}
		case avro.Float, avro.Double:
			n, ok := v.(json.Number)
			if !ok {
				return bad("a number")
			}
			if f, err := n.Float64(); err != nil || (t.Type() == avro.Float && math.Abs(f) > math.MaxFloat32) {
				return bad("a number in range of " + string(t.Type()))
			}
		case avro.String:
			if _, ok := v.(string); !ok {
				return bad("a string")
			}
		case avro.Bytes:
			if err := byteString(v, -1); err != nil {
				return err
			}
		}
	case *avro.FixedSchema:
		return byteString(v, t.Size())
	case *avro.EnumSchema:
		str, ok := v.(string)
		if !ok {
			return bad("a symbol of enum " + t.FullName())
		}
		for _, sym := range t.Symbols() {
			if sym == str {
				return nil
			}
		}
		return bad("a symbol of enum " + t.FullName() + " (" + strings.Join(t.Symbols(), ", ") + ")")
	case *avro.ArraySchema:
		items, ok := v.([]any)
		if !ok {
			return bad("an array")
		}
		for i, it := range items {
			if err := validDefault(it, t.Items()); err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
		}
	case *avro.MapSchema:
		m, ok := v.(map[string]any)
		if !ok {
			return bad("an object (a map)")
		}
		for k, val := range m {
			if err := validDefault(val, t.Values()); err != nil {
				return fmt.Errorf("value %q: %w", k, err)
			}
		}
	case *avro.RecordSchema:
		m, ok := v.(map[string]any)
		if !ok {
			return bad("an object (record " + t.FullName() + ")")
		}
		for _, f := range t.Fields() {
			val, ok := m[f.Name()]
			if !ok {
				if f.HasDefault() {
					continue
				}
				return fmt.Errorf("record %s value lacks field %q, which has no default", t.FullName(), f.Name())
			}
			if err := validDefault(val, f.Type()); err != nil {
				return fmt.Errorf("field %q: %w", f.Name(), err)
			}
		}
	case *avro.UnionSchema:
		if len(t.Types()) == 0 {
			return bad("allowed: the union is empty")
		}
		if err := validDefault(v, t.Types()[0]); err != nil {
			return fmt.Errorf("a union's default must be a value of its first branch (%s): %w", typeName(t.Types()[0]), err)
		}
	}
	return nil
}

// byteString checks a bytes (size < 0) or fixed default: a string of code
// points 0-255, of exactly size of them for fixed.
func byteString(v any, size int) error {
	str, ok := v.(string)
	if !ok {
		return fmt.Errorf("%s is not a string of bytes (code points 0-255)", jsonText(v))
	}
	n := 0
	for _, r := range str {
		if r > 255 {
			return fmt.Errorf("%s has code point %U; bytes defaults use code points 0-255", jsonText(v), r)
		}
		n++
	}
	if size >= 0 && n != size {
		return fmt.Errorf("%s is %d bytes; the fixed type is %d", jsonText(v), n, size)
	}
	return nil
}
