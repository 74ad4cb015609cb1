package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/hamba/avro/v2"
)

// canonical renders s in Parsing Canonical Form: [PRIMITIVES] simple form,
// [FULLNAMES], [STRIP] only type/name/fields/symbols/items/values/size,
// [ORDER] name, type, fields, symbols, items, values, size, no whitespace;
// a named type is written in full once and by name afterwards.
func canonical(s avro.Schema) string {
	var b strings.Builder
	writeCanonical(&b, s, map[string]bool{})
	return b.String()
}

func writeCanonical(b *strings.Builder, s avro.Schema, seen map[string]bool) {
	s = deref(s)
	if n, ok := s.(avro.NamedSchema); ok {
		if seen[n.FullName()] {
			b.WriteString(jsonQuote(n.FullName()))
			return
		}
		seen[n.FullName()] = true
	}
	switch x := s.(type) {
	case *avro.NullSchema:
		b.WriteString(`"null"`)
	case *avro.PrimitiveSchema:
		b.WriteString(jsonQuote(string(x.Type())))
	case *avro.RecordSchema:
		typ := "record"
		if x.IsError() {
			typ = "error"
		}
		fmt.Fprintf(b, `{"name":%s,"type":"%s","fields":[`, jsonQuote(x.FullName()), typ)
		for i, f := range x.Fields() {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(b, `{"name":%s,"type":`, jsonQuote(f.Name()))
			writeCanonical(b, f.Type(), seen)
			b.WriteByte('}')
		}
		b.WriteString("]}")
	case *avro.EnumSchema:
		fmt.Fprintf(b, `{"name":%s,"type":"enum","symbols":[`, jsonQuote(x.FullName()))
		for i, sym := range x.Symbols() {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(jsonQuote(sym))
		}
		b.WriteString("]}")
	case *avro.FixedSchema:
		fmt.Fprintf(b, `{"name":%s,"type":"fixed","size":%d}`, jsonQuote(x.FullName()), x.Size())
	case *avro.ArraySchema:
		b.WriteString(`{"type":"array","items":`)
		writeCanonical(b, x.Items(), seen)
		b.WriteByte('}')
	case *avro.MapSchema:
		b.WriteString(`{"type":"map","values":`)
		writeCanonical(b, x.Values(), seen)
		b.WriteByte('}')
	case *avro.UnionSchema:
		b.WriteByte('[')
		for i, t := range x.Types() {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCanonical(b, t, seen)
		}
		b.WriteByte(']')
	default:
		b.WriteString(jsonQuote(string(s.Type())))
	}
}

// The CRC-64-AVRO polynomial's empty value, from the specification.
const rabinEmpty uint64 = 0xc15d213aa4d7a795

var rabinTable = func() (t [256]uint64) {
	for i := range t {
		fp := uint64(i)
		for range 8 {
			fp = (fp >> 1) ^ (rabinEmpty & -(fp & 1))
		}
		t[i] = fp
	}
	return t
}()

// Rabin returns the CRC-64-AVRO fingerprint of b, as the Avro
// specification defines it for schema fingerprints.
func Rabin(b []byte) uint64 {
	fp := rabinEmpty
	for _, c := range b {
		fp = (fp >> 8) ^ rabinTable[byte(fp)^c]
	}
	return fp
}

var primitives = map[string]bool{
	"null": true, "boolean": true, "int": true, "long": true,
	"float": true, "double": true, "bytes": true, "string": true,
}

// normalize renders the decoded JSON of a (valid) schema in the registry's
// normalised form; see Schema.Normalized.
func normalize(raw any) (string, error) {
	var b strings.Builder
	n := normalizer{b: &b}
	if err := n.write(raw, ""); err != nil {
		return "", err
	}
	return b.String(), nil
}

type normalizer struct{ b *strings.Builder }

func fullName(name, ns string) string {
	if strings.Contains(name, ".") || ns == "" {
		return name
	}
	return ns + "." + name
}

func namespaceOf(full string) string {
	if i := strings.LastIndexByte(full, '.'); i >= 0 {
		return full[:i]
	}
	return ""
}

func (n normalizer) write(v any, ns string) error {
	switch x := v.(type) {
	case nil:
		n.b.WriteString(`"null"`)
	case string:
		if primitives[x] {
			n.b.WriteString(jsonQuote(x))
		} else {
			n.b.WriteString(jsonQuote(fullName(x, ns)))
		}
	case []any:
		n.b.WriteByte('[')
		for i, t := range x {
			if i > 0 {
				n.b.WriteByte(',')
			}
			if err := n.write(t, ns); err != nil {
				return err
			}
		}
		n.b.WriteByte(']')
	case map[string]any:
		return n.object(x, ns)
	default:
		return fmt.Errorf("not a schema: %v", v)
	}
	return nil
}

func (n normalizer) object(m map[string]any, ns string) error {
	t, _ := m["type"].(string)
	if t == "" {
		return n.write(m["type"], ns)
	}
	o := &objWriter{b: n.b}
	done := map[string]bool{"type": true}
	switch t {
	case "record", "error", "enum", "fixed":
		name, _ := m["name"].(string)
		if nsv, ok := m["namespace"].(string); ok && !strings.Contains(name, ".") {
			ns = nsv
		}
		full := fullName(name, ns)
		inner := namespaceOf(full)
		o.key("type")
		o.raw(jsonQuote(t))
		o.key("name")
		o.raw(jsonQuote(full))
		done["name"], done["namespace"] = true, true
		if al, ok := m["aliases"].([]any); ok {
			names := make([]string, 0, len(al))
			for _, a := range al {
				if s, ok := a.(string); ok {
					names = append(names, fullName(s, inner))
				}
			}
			sort.Strings(names)
			o.key("aliases")
			o.value(names)
			done["aliases"] = true
		}
		switch t {
		case "record", "error":
			fs, _ := m["fields"].([]any)
			o.key("fields")
			n.b.WriteByte('[')
			for i, f := range fs {
				if i > 0 {
					n.b.WriteByte(',')
				}
				if err := n.field(f, inner); err != nil {
					return err
				}
			}
			n.b.WriteByte(']')
			done["fields"] = true
		case "enum":
			o.key("symbols")
			o.value(m["symbols"])
			done["symbols"] = true
		case "fixed":
			o.key("size")
			o.value(m["size"])
			done["size"] = true
		}
	case "array":
		o.key("type")
		o.raw(`"array"`)
		o.key("items")
		if err := n.write(m["items"], ns); err != nil {
			return err
		}
		done["items"] = true
	case "map":
		o.key("type")
		o.raw(`"map"`)
		o.key("values")
		if err := n.write(m["values"], ns); err != nil {
			return err
		}
		done["values"] = true
	default:
		if len(m) == 1 {
			return n.write(t, ns)
		}
		o.key("type")
		if primitives[t] {
			o.raw(jsonQuote(t))
		} else {
			o.raw(jsonQuote(fullName(t, ns)))
		}
	}
	o.rest(m, done)
	n.b.WriteByte('}')
	return nil
}

func (n normalizer) field(f any, ns string) error {
	m, _ := f.(map[string]any)
	o := &objWriter{b: n.b}
	o.key("name")
	o.value(m["name"])
	o.key("type")
	if err := n.write(m["type"], ns); err != nil {
		return err
	}
	done := map[string]bool{"name": true, "type": true}
	if al, ok := m["aliases"].([]any); ok {
		names := make([]string, 0, len(al))
		for _, a := range al {
			if s, ok := a.(string); ok {
				names = append(names, s)
			}
		}
		sort.Strings(names)
		o.key("aliases")
		o.value(names)
		done["aliases"] = true
	}
	if ord, ok := m["order"].(string); ok && ord == "ascending" {
		done["order"] = true
	}
	o.rest(m, done)
	n.b.WriteByte('}')
	return nil
}

// objWriter writes one JSON object's members in a chosen order.
type objWriter struct {
	b     *strings.Builder
	count int
}

func (o *objWriter) key(k string) {
	if o.count == 0 {
		o.b.WriteByte('{')
	} else {
		o.b.WriteByte(',')
	}
	o.count++
	o.b.WriteString(jsonQuote(k))
	o.b.WriteByte(':')
}

func (o *objWriter) raw(s string) { o.b.WriteString(s) }

func (o *objWriter) value(v any) {
	b, err := json.Marshal(v) // maps marshal with sorted keys
	if err != nil {
		b = []byte("null")
	}
	o.b.Write(b)
}

// rest writes every member not yet written, sorted by key.
func (o *objWriter) rest(m map[string]any, done map[string]bool) {
	keys := make([]string, 0, len(m))
	for k := range m {
		if !done[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		o.key(k)
		o.value(m[k])
	}
	if o.count == 0 {
		o.b.WriteByte('{')
	}
}

// jsonQuote writes s as a JSON string, escaping what JSON requires and
// nothing HTML-specific (strconv.Quote's \x and \a escapes are not JSON).
func jsonQuote(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}
