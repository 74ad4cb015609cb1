package protobuf

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/flotilla-ci/flotilla/schema"
)

// Type names a difference as Confluent's Protobuf Difference.Type does.
type Type string

// Difference is one change from the original file to the update, at a
// path of full names and field numbers ("#/shop.OrderCreated/3").
type Difference struct {
	Type Type
	Path string
}

func (d Difference) String() string { return string(d.Type) + " " + d.Path }

var incompatible = map[Type]bool{
	"PACKAGE_CHANGED": true, "MESSAGE_REMOVED": true, "FIELD_KIND_CHANGED": true,
	"FIELD_SCALAR_KIND_CHANGED": true, "FIELD_NAMED_TYPE_CHANGED": true,
	"REQUIRED_FIELD_ADDED": true, "REQUIRED_FIELD_REMOVED": true, "ONEOF_FIELD_REMOVED": true,
	"MULTIPLE_FIELDS_MOVED_TO_ONEOF": true, "FIELD_MOVED_TO_EXISTING_ONEOF": true,
}

// Compatible reports whether the change keeps data written under the
// original readable under the update.
func (d Difference) Compatible() bool { return !incompatible[d.Type] }

// Description renders the difference in Confluent's words.
func (d Difference) Description() string {
	switch d.Type {
	case "MESSAGE_REMOVED":
		return fmt.Sprintf("The new schema is missing a message at path '%s' in the old schema", d.Path)
	case "FIELD_KIND_CHANGED":
		return fmt.Sprintf("The type of a field at path '%s' in the new schema does not match the old schema", d.Path)
	case "FIELD_SCALAR_KIND_CHANGED":
		return fmt.Sprintf("The kind of a SCALAR field at path '%s' in the new schema does not match its kind in the old schema", d.Path)
	case "FIELD_NAMED_TYPE_CHANGED":
		return fmt.Sprintf("The type of a MESSAGE or ENUM field at path '%s' in the new schema does not match its type in the old schema", d.Path)
	case "REQUIRED_FIELD_ADDED":
		return fmt.Sprintf("A required field at path '%s' in the new schema is missing in the old schema", d.Path)
	case "REQUIRED_FIELD_REMOVED":
		return fmt.Sprintf("The new schema is missing a required field at path '%s' in the old schema", d.Path)
	case "ONEOF_FIELD_REMOVED":
		return fmt.Sprintf("The new schema is missing a field of a oneof at path '%s' in the old schema", d.Path)
	case "MULTIPLE_FIELDS_MOVED_TO_ONEOF":
		return fmt.Sprintf("Multiple fields in the oneof at path '%s' in the new schema are outside a oneof in the old schema", d.Path)
	case "FIELD_MOVED_TO_EXISTING_ONEOF":
		return fmt.Sprintf("A field at path '%s' in the new schema was moved into an existing oneof", d.Path)
	case "PACKAGE_CHANGED":
		return "The package of the new schema does not match the old schema"
	}
	return string(d.Type) + " at " + d.Path
}

// Diff returns every difference from original to update.
func Diff(original, update *Schema) []Difference {
	var out []Difference
	add := func(t Type, p string) { out = append(out, Difference{t, p}) }
	of, uf := original.file, update.file
	if of.Package() != uf.Package() {
		add("PACKAGE_CHANGED", "#/")
	}
	om, um := original.messages, update.messages
	for _, name := range original.messageNames {
		o := om[name]
		u, ok := um[name]
		if !ok {
			add("MESSAGE_REMOVED", "#/"+name)
			continue
		}
		compareMessage(add, "#/"+name, o, u)
	}
	for _, name := range update.messageNames {
		if _, ok := om[name]; !ok {
			add("MESSAGE_ADDED", "#/"+name)
		}
	}
	oe, ue := original.enums, update.enums
	for _, name := range sortedKeys(oe) {
		u, ok := ue[name]
		if !ok {
			add("ENUM_REMOVED", "#/"+name)
			continue
		}
		o := oe[name]
		for i := 0; i < o.Values().Len(); i++ {
			v := o.Values().Get(i)
			switch w := u.Values().ByNumber(v.Number()); {
			case w == nil:
				add("ENUM_CONST_REMOVED", fmt.Sprintf("#/%s/%d", name, v.Number()))
			case w.Name() != v.Name():
				add("ENUM_CONST_CHANGED", fmt.Sprintf("#/%s/%d", name, v.Number()))
			}
		}
		for i := 0; i < u.Values().Len(); i++ {
			if v := u.Values().Get(i); o.Values().ByNumber(v.Number()) == nil {
				add("ENUM_CONST_ADDED", fmt.Sprintf("#/%s/%d", name, v.Number()))
			}
		}
	}
	for _, name := range sortedKeys(ue) {
		if _, ok := oe[name]; !ok {
			add("ENUM_ADDED", "#/"+name)
		}
	}
	return out
}

// Incompatible returns the differences that are not compatible: none means
// a reader with update reads what was written under original.
func Incompatible(original, update *Schema) []Difference {
	var out []Difference
	for _, d := range Diff(original, update) {
		if !d.Compatible() {
			out = append(out, d)
		}
	}
	return out
}

// fieldPath is a field's path, rendered only when a difference is found.
type fieldPath struct {
	msg    string
	number protoreflect.FieldNumber
}

func (p fieldPath) String() string { return fmt.Sprintf("%s/%d", p.msg, p.number) }

// wire groups: scalar types that read each other's encoding.
var group = map[protoreflect.Kind]int{
	protoreflect.Int32Kind: 1, protoreflect.Uint32Kind: 1, protoreflect.Int64Kind: 1, protoreflect.Uint64Kind: 1, protoreflect.BoolKind: 1,
	protoreflect.Sint32Kind: 2, protoreflect.Sint64Kind: 2,
	protoreflect.Fixed32Kind: 3, protoreflect.Sfixed32Kind: 3,
	protoreflect.Fixed64Kind: 4, protoreflect.Sfixed64Kind: 4,
	protoreflect.StringKind: 5, protoreflect.BytesKind: 5,
	protoreflect.FloatKind: 6, protoreflect.DoubleKind: 7,
}

// fieldKind is "message", "enum" or "scalar".
func fieldKind(f protoreflect.FieldDescriptor) string {
	switch f.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return "message"
	case protoreflect.EnumKind:
		return "enum"
	}
	return "scalar"
}

func realOneof(f protoreflect.FieldDescriptor) protoreflect.OneofDescriptor {
	if o := f.ContainingOneof(); o != nil && !o.IsSynthetic() {
		return o
	}
	return nil
}

func compareMessage(addS func(Type, string), path string, o, u protoreflect.MessageDescriptor) {
	add := func(t Type, p fieldPath) { addS(t, p.String()) }
	of, uf := o.Fields(), u.Fields()
	for i := 0; i < of.Len(); i++ {
		f := of.Get(i)
		p := fieldPath{path, f.Number()}
		g := uf.ByNumber(f.Number())
		if g == nil {
			switch {
			case f.Cardinality() == protoreflect.Required:
				add("REQUIRED_FIELD_REMOVED", p)
			case realOneof(f) != nil:
				add("ONEOF_FIELD_REMOVED", p)
			default:
				add("FIELD_REMOVED", p)
			}
			continue
		}
		if f.Name() != g.Name() {
			add("FIELD_NAME_CHANGED", p)
		}
		fk, gk := fieldKind(f), fieldKind(g)
		switch {
		case f.IsMap() != g.IsMap() || fk != gk:
			add("FIELD_KIND_CHANGED", p)
		case fk == "scalar" && f.Kind() != g.Kind():
			if group[f.Kind()] == group[g.Kind()] {
				if group[f.Kind()] == 5 {
					add("FIELD_STRING_OR_BYTES_LABEL_CHANGED", p)
				} else {
					add("FIELD_NUMERIC_LABEL_CHANGED", p)
				}
			} else {
				add("FIELD_SCALAR_KIND_CHANGED", p)
			}
		case fk == "message" && f.Message().FullName() != g.Message().FullName():
			add("FIELD_NAMED_TYPE_CHANGED", p)
		case fk == "enum" && f.Enum().FullName() != g.Enum().FullName():
			add("FIELD_NAMED_TYPE_CHANGED", p)
		}
		if (f.Cardinality() == protoreflect.Repeated) != (g.Cardinality() == protoreflect.Repeated) && !f.IsMap() && !g.IsMap() {
			add("FIELD_KIND_CHANGED", p)
		}
	}
	for i := 0; i < uf.Len(); i++ {
		g := uf.Get(i)
		if of.ByNumber(g.Number()) != nil {
			continue
		}
		p := fieldPath{path, g.Number()}
		switch {
		case g.Cardinality() == protoreflect.Required:
			add("REQUIRED_FIELD_ADDED", p)
		case realOneof(g) != nil:
			add("ONEOF_FIELD_ADDED", p)
		default:
			add("FIELD_ADDED", p)
		}
	}
	// Oneofs: fields that were outside a oneof and are now inside one.
	oo := o.Oneofs()
	for i := 0; i < u.Oneofs().Len(); i++ {
		uo := u.Oneofs().Get(i)
		if uo.IsSynthetic() {
			continue
		}
		p := fmt.Sprintf("%s/%s", path, uo.Name())
		add := addS
		existed := oo.ByName(uo.Name()) != nil
		if !existed {
			add("ONEOF_ADDED", p)
		}
		moved := 0
		for j := 0; j < uo.Fields().Len(); j++ {
			g := uo.Fields().Get(j)
			if f := of.ByNumber(g.Number()); f != nil && realOneof(f) == nil {
				moved++
				if existed {
					add("FIELD_MOVED_TO_EXISTING_ONEOF", fmt.Sprintf("%s/%d", path, g.Number()))
				}
			}
		}
		if moved > 1 && !existed {
			add("MULTIPLE_FIELDS_MOVED_TO_ONEOF", p)
		}
	}
	for i := 0; i < oo.Len(); i++ {
		if o1 := oo.Get(i); !o1.IsSynthetic() && u.Oneofs().ByName(o1.Name()) == nil {
			addS("ONEOF_REMOVED", fmt.Sprintf("%s/%s", path, o1.Name()))
		}
	}
}

func messages(f protoreflect.FileDescriptor) map[string]protoreflect.MessageDescriptor {
	out := map[string]protoreflect.MessageDescriptor{}
	var walk func(ms protoreflect.MessageDescriptors)
	walk = func(ms protoreflect.MessageDescriptors) {
		for i := 0; i < ms.Len(); i++ {
			m := ms.Get(i) // map entries too: a map's value type is their field 2
			out[string(m.FullName())] = m
			walk(m.Messages())
		}
	}
	walk(f.Messages())
	return out
}

func enums(f protoreflect.FileDescriptor, msgs map[string]protoreflect.MessageDescriptor) map[string]protoreflect.EnumDescriptor {
	out := map[string]protoreflect.EnumDescriptor{}
	for i := 0; i < f.Enums().Len(); i++ {
		e := f.Enums().Get(i)
		out[string(e.FullName())] = e
	}
	for _, m := range msgs {
		for i := 0; i < m.Enums().Len(); i++ {
			e := m.Enums().Get(i)
			out[string(e.FullName())] = e
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Problem is one incompatibility of a candidate with an earlier version.
type Problem struct {
	Version   int              // 1-based index into the earlier versions
	Direction schema.Direction // which schema reads which
	Difference
}

// Check checks candidate against the earlier versions (oldest first) under
// a compatibility level, as the registry does: the latest only or every
// version when transitive, newest first, stopping at the first with
// problems.
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
