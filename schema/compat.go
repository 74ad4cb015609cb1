package schema

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hamba/avro/v2"
)

// Reason classifies an incompatibility with the names Avro's reference
// checker and the Confluent registry use in their messages.
type Reason string

// The six kinds of incompatibility.
const (
	NameMismatch                   Reason = "NAME_MISMATCH"
	FixedSizeMismatch              Reason = "FIXED_SIZE_MISMATCH"
	MissingEnumSymbols             Reason = "MISSING_ENUM_SYMBOLS"
	ReaderFieldMissingDefaultValue Reason = "READER_FIELD_MISSING_DEFAULT_VALUE"
	TypeMismatch                   Reason = "TYPE_MISMATCH"
	MissingUnionBranch             Reason = "MISSING_UNION_BRANCH"
)

// Incompatibility is one reason a reader schema cannot read data written
// with a writer schema.
type Incompatibility struct {
	Reason Reason
	// Location is a JSON pointer into the reader schema, such as
	// "/fields/3/type" ("/" for the top level).
	Location string
	// Detail is Avro's message: the missing field's name, the missing
	// symbols, "expected: 4, found: 8", "reader type: INT not compatible
	// with writer type: LONG", ...
	Detail string
}

func (i Incompatibility) String() string {
	return fmt.Sprintf("%s at %s: %s", i.Reason, i.Location, i.Detail)
}

// ReaderCanRead returns every reason the reader schema cannot read data
// written with the writer schema, by the Avro specification's schema
// resolution rules; none means compatible. It follows Avro's reference
// checker (SchemaCompatibility) where the specification leaves a choice:
// names compare unqualified (a namespace change is compatible) or through
// the reader's aliases, fields match by name then by the reader field's
// aliases, an enum default on the reader admits unknown writer symbols, and
// logical types are ignored.
func ReaderCanRead(reader, writer *Schema) []Incompatibility {
	c := checker{memo: map[pair]memoEntry{}, fields: map[*avro.RecordSchema]map[string]*avro.Field{}}
	out := c.check(reader.avro, writer.avro)
	for i := range out {
		if out[i].Location == "" {
			out[i].Location = "/"
		}
	}
	return out
}

type pair struct{ r, w avro.Schema }

type memoEntry struct {
	done bool
	res  []Incompatibility
}

type checker struct {
	memo   map[pair]memoEntry
	fields map[*avro.RecordSchema]map[string]*avro.Field // writer fields by name
}

func prefix(p string, in []Incompatibility) []Incompatibility {
	for i := range in {
		in[i].Location = p + in[i].Location
	}
	return in
}

// check returns the incompatibilities with locations relative to reader.
// Every (reader, writer) node pair is checked once: named pairs met again
// while in progress are recursion and assumed compatible, as Avro does, and
// finished pairs answer from the memo, which keeps nested unions from
// costing exponential time.
func (c *checker) check(reader, writer avro.Schema) []Incompatibility {
	reader, writer = deref(reader), deref(writer)
	if leaf(reader) || leaf(writer) {
		return c.calc(reader, writer) // no recursion below a primitive
	}
	k := pair{reader, writer}
	if e, ok := c.memo[k]; ok {
		if !e.done {
			return nil
		}
		return slices.Clone(e.res)
	}
	c.memo[k] = memoEntry{}
	res := c.calc(reader, writer)
	c.memo[k] = memoEntry{done: true, res: slices.Clone(res)}
	return res
}

func leaf(s avro.Schema) bool {
	switch s.(type) {
	case *avro.PrimitiveSchema, *avro.NullSchema:
		return true
	}
	return false
}

func typeName(s avro.Schema) string { return strings.ToUpper(string(deref(s).Type())) }

func mismatch(reader, writer avro.Schema) []Incompatibility {
	return []Incompatibility{{
		Reason: TypeMismatch,
		Detail: fmt.Sprintf("reader type: %s not compatible with writer type: %s", typeName(reader), typeName(writer)),
	}}
}

func (c *checker) calc(reader, writer avro.Schema) []Incompatibility {
	rt, wt := reader.Type(), writer.Type()
	if rt == wt {
		switch r := reader.(type) {
		case *avro.ArraySchema:
			return prefix("/items", c.check(r.Items(), writer.(*avro.ArraySchema).Items()))
		case *avro.MapSchema:
			return prefix("/values", c.check(r.Values(), writer.(*avro.MapSchema).Values()))
		case *avro.FixedSchema:
			w := writer.(*avro.FixedSchema)
			out := checkNames(r, w)
			if r.Size() != w.Size() {
				out = append(out, Incompatibility{Reason: FixedSizeMismatch, Location: "/size",
					Detail: fmt.Sprintf("expected: %d, found: %d", w.Size(), r.Size())})
			}
			return out
		case *avro.EnumSchema:
			w := writer.(*avro.EnumSchema)
			out := checkNames(r, w)
			var missing []string
			for _, s := range w.Symbols() {
				if !slices.Contains(r.Symbols(), s) {
					missing = append(missing, s)
				}
			}
			readerDefault := r.HasDefault() && slices.Contains(r.Symbols(), r.Default())
			if len(missing) > 0 && !readerDefault {
				slices.Sort(missing)
				out = append(out, Incompatibility{Reason: MissingEnumSymbols, Location: "/symbols",
					Detail: "[" + strings.Join(missing, ", ") + "]"})
			}
			return out
		case *avro.RecordSchema:
			w := writer.(*avro.RecordSchema)
			out := checkNames(r, w)
			for i, rf := range r.Fields() {
				wf := c.lookupField(w, rf)
				if wf == nil {
					if !rf.HasDefault() {
						out = append(out, Incompatibility{Reason: ReaderFieldMissingDefaultValue, Location: "/fields/" + strconv.Itoa(i), Detail: rf.Name()})
					}
					continue
				}
				if sub := c.check(rf.Type(), wf.Type()); len(sub) > 0 {
					out = append(out, prefix("/fields/"+strconv.Itoa(i)+"/type", sub)...)
				}
			}
			return out
		case *avro.UnionSchema:
			// Every branch the writer may have written must be readable.
			var out []Incompatibility
			for i, wb := range writer.(*avro.UnionSchema).Types() {
				if len(c.check(r, wb)) > 0 {
					out = append(out, Incompatibility{Reason: MissingUnionBranch, Location: "/" + strconv.Itoa(i),
						Detail: "reader union lacking writer type: " + typeName(wb)})
				}
			}
			return out
		default:
			return nil // the same primitive
		}
	}
	if w, ok := writer.(*avro.UnionSchema); ok {
		// A non-union reader must read every branch the writer may write.
		var out []Incompatibility
		for _, wb := range w.Types() {
			out = append(out, c.check(reader, wb)...)
		}
		return out
	}
	switch rt {
	case avro.Long:
		if wt == avro.Int {
			return nil
		}
	case avro.Float:
		if wt == avro.Int || wt == avro.Long {
			return nil
		}
	case avro.Double:
		if wt == avro.Int || wt == avro.Long || wt == avro.Float {
			return nil
		}
	case avro.Bytes:
		if wt == avro.String {
			return nil
		}
	case avro.String:
		if wt == avro.Bytes {
			return nil
		}
	case avro.Union:
		for _, rb := range reader.(*avro.UnionSchema).Types() {
			if len(c.check(rb, writer)) == 0 {
				return nil
			}
		}
		return []Incompatibility{{Reason: MissingUnionBranch, Detail: "reader union lacking writer type: " + typeName(writer)}}
	}
	return mismatch(reader, writer)
}

// checkNames: the unqualified names must be equal, or the reader's aliases
// must hold the writer's full name.
func checkNames(r, w avro.NamedSchema) []Incompatibility {
	if r.Name() == w.Name() || slices.Contains(r.Aliases(), w.FullName()) {
		return nil
	}
	return []Incompatibility{{Reason: NameMismatch, Location: "/name", Detail: "expected: " + w.FullName()}}
}

// lookupField finds the writer field the reader field reads: by name, then
// by the reader field's aliases.
func (c *checker) lookupField(w *avro.RecordSchema, rf *avro.Field) *avro.Field {
	byName, ok := c.fields[w]
	if !ok {
		byName = make(map[string]*avro.Field, len(w.Fields()))
		for _, wf := range w.Fields() {
			byName[wf.Name()] = wf
		}
		c.fields[w] = byName
	}
	if wf, ok := byName[rf.Name()]; ok {
		return wf
	}
	for _, a := range rf.Aliases() {
		if wf, ok := byName[a]; ok {
			return wf
		}
	}
	return nil
}
