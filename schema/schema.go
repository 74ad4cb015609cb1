package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/hamba/avro/v2"
)

// MaxSchemaBytes is the largest schema text Parse accepts.
const MaxSchemaBytes = 1 << 20

// Schema is a parsed Avro schema with its text, its Parsing Canonical Form
// and its normalised form. It is immutable and safe for concurrent use.
type Schema struct {
	text       string
	avro       avro.Schema
	canonical  string
	normalized string
}

// ParseError says why a schema text is not a valid Avro schema. Line and
// Column locate JSON syntax errors (1-based; 0 when not known).
type ParseError struct {
	Line, Column int
	Msg          string
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
	}
	return e.Msg
}

// Parse parses an Avro schema given as JSON text. Invalid input (bad JSON,
// an unknown type, a duplicate field, a default of the wrong type, a bad
// name) returns a *ParseError that names the problem.
func Parse(text string) (*Schema, error) {
	return ParseWithReferences(text, nil)
}

// ParseWithReferences parses a schema that uses named types defined in
// other schemas (Confluent schema references): refs holds their texts,
// each one's own references before it. The Schema's text, canonical and
// normalised forms are of text itself; its Avro form has the referenced
// types resolved.
func ParseWithReferences(text string, refs []string) (s *Schema, err error) {
	if len(text) > MaxSchemaBytes {
		return nil, &ParseError{Msg: fmt.Sprintf("schema is %d bytes; the limit is %d", len(text), MaxSchemaBytes)}
	}
	if !utf8.ValidString(text) {
		return nil, &ParseError{Msg: "schema is not valid UTF-8"}
	}
	trimmed := strings.TrimSpace(text)
	if trimmed == "" {
		return nil, &ParseError{Msg: "empty schema"}
	}
	var raw any
	// Decode the text as given, so positions count the lines and spaces
	// before the schema.
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, jsonError(text, err)
	}
	if dec.More() {
		off := int(dec.InputOffset())
		for off < len(text) && strings.IndexByte(" \t\r\n", text[off]) >= 0 {
			off++
		}
		line, col := position(text, off)
		return nil, &ParseError{Line: line, Column: col, Msg: "unexpected text after the schema"}
	}
	if err := precheck(raw, ""); err != nil {
		return nil, &ParseError{Msg: oneLine(err.Error())}
	}
	defer func() {
		// The parser underneath is third-party code; a panic on some
		// malformed input must stay a parse error, never crash a server.
		if p := recover(); p != nil {
			s, err = nil, &ParseError{Msg: oneLine(fmt.Sprintf("invalid schema: %v", p))}
		}
	}()
	cache := &avro.SchemaCache{}
	for i, ref := range refs {
		if _, err := avro.ParseBytesWithCache([]byte(ref), "", cache); err != nil {
			return nil, &ParseError{Msg: oneLine(fmt.Sprintf("reference %d: %s", i+1, strings.TrimPrefix(err.Error(), "avro: ")))}
		}
	}
	as, perr := avro.ParseBytesWithCache([]byte(trimmed), "", cache)
	if perr != nil {
		if strings.Contains(perr.Error(), "invalid default") {
			// Say which default and why: parse without the field defaults
			// and check them against the types ourselves.
			if err := explainDefaults(raw, refs); err != nil {
				return nil, &ParseError{Msg: oneLine(err.Error())}
			}
		}
		return nil, &ParseError{Msg: oneLine(strings.TrimPrefix(perr.Error(), "avro: "))}
	}
	if err := checkDefaults(raw, as, "", map[avro.Schema]bool{}); err != nil {
		return nil, &ParseError{Msg: oneLine(err.Error())}
	}
	norm, nerr := normalize(raw)
	if nerr != nil {
		return nil, &ParseError{Msg: nerr.Error()}
	}
	return &Schema{text: text, avro: as, canonical: canonical(as), normalized: norm}, nil
}

// MustParse is Parse for schemas known to be valid (tests, constants).
func MustParse(text string) *Schema {
	s, err := Parse(text)
	if err != nil {
		panic(err)
	}
	return s
}

// Must returns s, and panics on err: for tests and constants.
func Must(s *Schema, err error) *Schema {
	if err != nil {
		panic(err)
	}
	return s
}

// String returns the schema text as given to Parse.
func (s *Schema) String() string { return s.text }

// Avro returns the parsed schema for encoding and decoding.
func (s *Schema) Avro() avro.Schema { return s.avro }

// Canonical returns the schema's Parsing Canonical Form (Avro
// specification): full names, only the attributes that matter for reading
// data, fixed attribute order, no whitespace.
func (s *Schema) Canonical() string { return s.canonical }

// Fingerprint returns the CRC-64-AVRO (Rabin) fingerprint of the Parsing
// Canonical Form. It identifies the wire shape only: two schemas that differ
// in defaults or aliases share it, so it must not be used as a registry
// identity (use Normalized).
func (s *Schema) Fingerprint() uint64 { return Rabin([]byte(s.canonical)) }

// Normalized returns the form the registry uses to decide that two schemas
// are the same schema: like the canonical form it has full names, no
// whitespace and a fixed attribute order, but it keeps everything that can
// change compatibility or meaning (defaults, aliases, enum defaults, order,
// doc, logical types and custom properties), as Confluent's normalisation
// does.
func (s *Schema) Normalized() string { return s.normalized }

// Name returns the full name of a named top-level schema (record, enum,
// fixed), or the type name otherwise.
func (s *Schema) Name() string {
	if n, ok := deref(s.avro).(avro.NamedSchema); ok {
		return n.FullName()
	}
	return string(s.avro.Type())
}

func jsonError(text string, err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		// Offset counts the bytes read, the offending one included.
		line, col := position(text, int(syn.Offset)-1)
		return &ParseError{Line: line, Column: col, Msg: "invalid JSON: " + syn.Error()}
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		line, col := position(text, int(typ.Offset))
		return &ParseError{Line: line, Column: col, Msg: "invalid JSON: " + typ.Error()}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		line, col := position(text, len(text))
		return &ParseError{Line: line, Column: col, Msg: "invalid JSON: unexpected end of input"}
	}
	return &ParseError{Msg: "invalid JSON: " + err.Error()}
}

// position returns the 1-based line and column of the byte at offset off
// (len(text): just past the end).
func position(text string, off int) (line, col int) {
	off = max(0, min(off, len(text)))
	before := text[:off]
	line = strings.Count(before, "\n") + 1
	// Columns count characters, as editors do.
	col = utf8.RuneCountInString(before[strings.LastIndexByte(before, '\n')+1:]) + 1
	return line, col
}

// precheck catches, with a location, the mistakes the underlying parser
// reports vaguely or accepts: unknown attribute values for type, fields
// that are not objects, names that are not strings.
func precheck(v any, path string) error {
	switch x := v.(type) {
	case string, nil:
		return nil
	case json.Number, bool:
		return fmt.Errorf("at %s: %s is not a schema (want a type name, an object or a union array)", orRoot(path), jsonText(x))
	case []any:
		for i, b := range x {
			if _, ok := b.([]any); ok {
				return fmt.Errorf("at %s/%d: a union may not contain a union", orRoot(path), i)
			}
			if err := precheck(b, fmt.Sprintf("%s/%d", path, i)); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		if err := checkKeys(x, path); err != nil {
			return err
		}
		t, ok := x["type"]
		if !ok {
			return fmt.Errorf("at %s: missing \"type\"", orRoot(path))
		}
		switch tt := t.(type) {
		case string:
			switch tt {
			case "record", "error", "enum", "fixed":
				if n, ok := x["name"].(string); !ok || n == "" {
					return fmt.Errorf("at %s: %s needs a non-empty string \"name\"", orRoot(path), tt)
				}
			}
			switch tt {
			case "record", "error":
				fs, ok := x["fields"].([]any)
				if !ok {
					return fmt.Errorf("at %s: record %s needs a \"fields\" array", orRoot(path), jsonText(x["name"]))
				}
				seen := map[string]bool{}
				for i, f := range fs {
					fp := fmt.Sprintf("%s/fields/%d", path, i)
					fm, ok := f.(map[string]any)
					if !ok {
						return fmt.Errorf("at %s: a field must be an object with name and type", fp)
					}
					if err := checkKeys(fm, fp); err != nil {
						return err
					}
					name, ok := fm["name"].(string)
					if !ok {
						return fmt.Errorf("at %s: field needs a string \"name\"", fp)
					}
					if seen[name] {
						return fmt.Errorf("at %s: duplicate field %q in record %s", fp, name, jsonText(x["name"]))
					}
					seen[name] = true
					ft, ok := fm["type"]
					if !ok {
						return fmt.Errorf("at %s: field %q needs a \"type\"", fp, name)
					}
					if err := precheck(ft, fp+"/type"); err != nil {
						return err
					}
				}
			case "array":
				it, ok := x["items"]
				if !ok {
					return fmt.Errorf("at %s: array needs \"items\"", orRoot(path))
				}
				return precheck(it, path+"/items")
			case "map":
				vt, ok := x["values"]
				if !ok {
					return fmt.Errorf("at %s: map needs \"values\"", orRoot(path))
				}
				return precheck(vt, path+"/values")
			case "enum":
				if _, ok := x["symbols"].([]any); !ok {
					return fmt.Errorf("at %s: enum %s needs a \"symbols\" array", orRoot(path), jsonText(x["name"]))
				}
			case "fixed":
				if _, ok := x["size"].(json.Number); !ok {
					return fmt.Errorf("at %s: fixed %s needs a numeric \"size\"", orRoot(path), jsonText(x["name"]))
				}
			}
			return nil
		case map[string]any, []any:
			return precheck(tt, path+"/type")
		default:
			return fmt.Errorf("at %s: \"type\" must be a string, an object or an array, not %s", orRoot(path), jsonText(t))
		}
	}
	return fmt.Errorf("at %s: not a schema", orRoot(path))
}

var reserved = []string{"type", "name", "namespace", "fields", "symbols", "items", "values", "size",
	"default", "aliases", "doc", "order", "logicalType", "precision", "scale"}

// checkKeys rejects attributes that differ from a reserved one only in case:
// the parser underneath would take "Name" for "name", the specification
// does not.
func checkKeys(m map[string]any, path string) error {
	for k := range m {
		for _, r := range reserved {
			if k != r && strings.EqualFold(k, r) {
				return fmt.Errorf("at %s: unknown attribute %q (attribute names are case-sensitive: %q)", orRoot(path), k, r)
			}
		}
	}
	return nil
}

// explainDefaults parses the schema with its field defaults removed and
// returns what checkDefaults finds wrong with them (nil if it finds
// nothing or the schema does not parse even so).
func explainDefaults(raw any, refs []string) error {
	stripped, err := json.Marshal(stripDefaults(raw, false))
	if err != nil {
		return nil
	}
	cache := &avro.SchemaCache{}
	for _, ref := range refs {
		if _, err := avro.ParseBytesWithCache([]byte(ref), "", cache); err != nil {
			return nil
		}
	}
	as, err := avro.ParseBytesWithCache(stripped, "", cache)
	if err != nil {
		return nil
	}
	return checkDefaults(raw, as, "", map[avro.Schema]bool{})
}

// stripDefaults copies v without the "default" of record fields.
func stripDefaults(v any, field bool) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			switch {
			case field && k == "default":
			case k == "fields":
				if fs, ok := val.([]any); ok {
					cp := make([]any, len(fs))
					for i, f := range fs {
						cp[i] = stripDefaults(f, true)
					}
					out[k] = cp
					continue
				}
				out[k] = val
			default:
				out[k] = stripDefaults(val, false)
			}
		}
		return out
	case []any:
		cp := make([]any, len(x))
		for i, e := range x {
			cp[i] = stripDefaults(e, false)
		}
		return cp
	}
	return v
}

// oneLine keeps a message that quotes user input on one line.
func oneLine(s string) string {
	return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(s)
}

func orRoot(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 60 {
		b = append(bytes.Clone(b[:57]), "..."...)
	}
	return string(b)
}

func deref(s avro.Schema) avro.Schema {
	if r, ok := s.(*avro.RefSchema); ok {
		return r.Schema()
	}
	return s
}

// SchemaType returns "AVRO", the registry's name for the schema's type.
func (s *Schema) SchemaType() string { return "AVRO" }
