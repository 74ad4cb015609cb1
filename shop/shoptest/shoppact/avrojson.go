package shoppact

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/flotilla-ci/flotilla/contract"
)

// ToJSON renders a decoded Avro value (as hamba/avro decodes into any) in
// the Avro JSON encoding of schema avsc: timestamp-millis as epoch
// milliseconds, unions as {"type": value}.
func ToJSON(avsc string, native any) (any, error) {
	s, err := avro.Parse(avsc)
	if err != nil {
		return nil, err
	}
	return toJSON(s, native, "$")
}

func toJSON(s avro.Schema, v any, at string) (any, error) {
	switch s := s.(type) {
	case *avro.RefSchema:
		return toJSON(s.Schema(), v, at)
	case *avro.RecordSchema:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: want a record, got %T", at, v)
		}
		out := map[string]any{}
		for _, f := range s.Fields() {
			j, err := toJSON(f.Type(), m[f.Name()], at+"."+f.Name())
			if err != nil {
				return nil, err
			}
			out[f.Name()] = j
		}
		return out, nil
	case *avro.ArraySchema:
		a, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%s: want an array, got %T", at, v)
		}
		out := make([]any, len(a))
		for i, x := range a {
			j, err := toJSON(s.Items(), x, fmt.Sprintf("%s[%d]", at, i))
			if err != nil {
				return nil, err
			}
			out[i] = j
		}
		return out, nil
	case *avro.MapSchema:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: want a map, got %T", at, v)
		}
		out := map[string]any{}
		for k, x := range m {
			j, err := toJSON(s.Values(), x, at+"."+k)
			if err != nil {
				return nil, err
			}
			out[k] = j
		}
		return out, nil
	case *avro.UnionSchema:
		if v == nil {
			return nil, nil
		}
		if m, ok := v.(map[string]any); ok && len(m) == 1 {
			for name, x := range m {
				for _, t := range s.Types() {
					if unionName(t) == name {
						j, err := toJSON(t, x, at)
						return map[string]any{name: j}, err
					}
				}
			}
		}
		return nil, fmt.Errorf("%s: union value %T", at, v)
	case *avro.PrimitiveSchema:
		if t, ok := v.(time.Time); ok {
			if l := s.Logical(); l != nil && l.Type() == avro.TimestampMicros {
				return t.UnixMicro(), nil
			}
			return t.UnixMilli(), nil
		}
		if b, ok := v.([]byte); ok {
			return string(b), nil
		}
		return v, nil
	case *avro.EnumSchema:
		return v, nil
	}
	return nil, fmt.Errorf("%s: unsupported schema %s", at, s.Type())
}

// FromJSON reads a value in the Avro JSON encoding of avsc into what
// hamba/avro encodes: a field the schema requires (no default) but the
// JSON lacks, or a value of the wrong type, is an error naming its path.
func FromJSON(avsc string, j any) (any, error) {
	s, err := avro.Parse(avsc)
	if err != nil {
		return nil, err
	}
	return fromJSON(s, j, "$")
}

func fromJSON(s avro.Schema, v any, at string) (any, error) {
	switch s := s.(type) {
	case *avro.RefSchema:
		return fromJSON(s.Schema(), v, at)
	case *avro.RecordSchema:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: want an object for record %s, got %T", at, s.Name(), v)
		}
		out := map[string]any{}
		for _, f := range s.Fields() {
			x, present := m[f.Name()]
			if !present {
				if !f.HasDefault() {
					return nil, fmt.Errorf("%s.%s: missing, and the schema gives no default", at, f.Name())
				}
				x = f.Default()
				if x == nil {
					out[f.Name()] = nil
					continue
				}
				if _, isUnion := f.Type().(*avro.UnionSchema); !isUnion {
					out[f.Name()] = x
					continue
				}
			}
			n, err := fromJSON(f.Type(), x, at+"."+f.Name())
			if err != nil {
				return nil, err
			}
			out[f.Name()] = n
		}
		return out, nil
	case *avro.ArraySchema:
		a, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%s: want an array, got %T", at, v)
		}
		out := make([]any, len(a))
		for i, x := range a {
			n, err := fromJSON(s.Items(), x, fmt.Sprintf("%s[%d]", at, i))
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case *avro.MapSchema:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: want an object, got %T", at, v)
		}
		out := map[string]any{}
		for k, x := range m {
			n, err := fromJSON(s.Values(), x, at+"."+k)
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	case *avro.UnionSchema:
		if v == nil {
			return nil, nil
		}
		if m, ok := v.(map[string]any); ok && len(m) == 1 {
			for name, x := range m {
				for _, t := range s.Types() {
					if unionName(t) == name {
						n, err := fromJSON(t, x, at)
						return map[string]any{name: n}, err
					}
				}
			}
		}
		return nil, fmt.Errorf("%s: want null or {\"type\": value} for a union, got %T", at, v)
	case *avro.EnumSchema:
		str, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s: want a symbol of %s, got %T", at, s.Name(), v)
		}
		return str, nil
	case *avro.PrimitiveSchema:
		return primitive(s, v, at)
	}
	return nil, fmt.Errorf("%s: unsupported schema %s", at, s.Type())
}

func primitive(s *avro.PrimitiveSchema, v any, at string) (any, error) {
	num := func() (float64, error) {
		switch n := v.(type) {
		case float64:
			return n, nil
		case json.Number:
			return n.Float64()
		case int:
			return float64(n), nil
		case int64:
			return float64(n), nil
		}
		return 0, fmt.Errorf("%s: want a number (%s), got %T", at, s.Type(), v)
	}
	integral := func(bits int) (int64, error) {
		f, err := num()
		if err != nil {
			return 0, err
		}
		if f != math.Trunc(f) || math.Abs(f) > math.Pow(2, float64(bits-1)) {
			return 0, fmt.Errorf("%s: want an integer (%s), got %v", at, s.Type(), f)
		}
		return int64(f), nil
	}
	switch s.Type() {
	case avro.String:
		if str, ok := v.(string); ok {
			return str, nil
		}
		return nil, fmt.Errorf("%s: want a string, got %T", at, v)
	case avro.Boolean:
		if b, ok := v.(bool); ok {
			return b, nil
		}
		return nil, fmt.Errorf("%s: want a boolean, got %T", at, v)
	case avro.Int:
		n, err := integral(32)
		return int(n), err
	case avro.Long:
		n, err := integral(64)
		if err != nil {
			return nil, err
		}
		if l := s.Logical(); l != nil {
			switch l.Type() {
			case avro.TimestampMillis:
				return time.UnixMilli(n).UTC(), nil
			case avro.TimestampMicros:
				return time.UnixMicro(n).UTC(), nil
			}
		}
		return n, nil
	case avro.Float:
		f, err := num()
		return float32(f), err
	case avro.Double:
		return num()
	case avro.Bytes:
		if str, ok := v.(string); ok {
			return []byte(str), nil
		}
		return nil, fmt.Errorf("%s: want bytes as a string, got %T", at, v)
	case avro.Null:
		if v == nil {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: want null, got %T", at, v)
	}
	return nil, fmt.Errorf("%s: unsupported type %s", at, s.Type())
}

func unionName(s avro.Schema) string {
	if n, ok := s.(avro.NamedSchema); ok {
		return n.FullName()
	}
	return string(s.Type())
}

// Content is a message pact's content for an event read with schema avsc:
// every field the reader schema has, matched by type (strings by type,
// longs and ints as integers, timestamps as epoch milliseconds, arrays
// with at least one element). examples gives a field's example, or a
// Term to match it more closely, by field name.
func Content(avsc string, examples map[string]any) (map[string]any, error) {
	s, err := avro.Parse(avsc)
	if err != nil {
		return nil, err
	}
	rec, ok := s.(*avro.RecordSchema)
	if !ok {
		return nil, fmt.Errorf("content: %s is not a record", s.Type())
	}
	c, err := content(rec, examples)
	if err != nil {
		return nil, err
	}
	return c.(map[string]any), nil
}

func content(s avro.Schema, examples map[string]any) (any, error) {
	switch s := s.(type) {
	case *avro.RefSchema:
		return content(s.Schema(), examples)
	case *avro.RecordSchema:
		out := map[string]any{}
		for _, f := range s.Fields() {
			if ex, ok := examples[f.Name()]; ok {
				if t, isTerm := ex.(contract.Term); isTerm {
					out[f.Name()] = t
					continue
				}
				out[f.Name()] = likeOf(f.Type(), ex)
				continue
			}
			c, err := content(f.Type(), examples)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.Name(), err)
			}
			out[f.Name()] = c
		}
		return out, nil
	case *avro.ArraySchema:
		c, err := content(s.Items(), examples)
		if err != nil {
			return nil, err
		}
		return contract.EachLike(c, 1, 0), nil
	case *avro.PrimitiveSchema:
		return likeOf(s, nil), nil
	}
	return nil, fmt.Errorf("no example for %s", s.Type())
}

func likeOf(s avro.Schema, ex any) any {
	p, ok := s.(*avro.PrimitiveSchema)
	if !ok {
		return contract.Like(ex)
	}
	switch p.Type() {
	case avro.String:
		if ex == nil {
			ex = "text"
		}
		return contract.Like(ex)
	case avro.Int, avro.Long:
		n, _ := ex.(int)
		if ex == nil {
			n = 1
			if l := p.Logical(); l != nil && l.Type() == avro.TimestampMillis {
				n = 1767225600000
			}
		}
		return contract.Integer(int64(n))
	case avro.Double, avro.Float:
		f, _ := ex.(float64)
		return contract.Decimal(f + 0.5)
	case avro.Boolean:
		b, _ := ex.(bool)
		return contract.Boolean(b)
	}
	return contract.Like(ex)
}
