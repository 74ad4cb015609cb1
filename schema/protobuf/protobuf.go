// Package protobuf is flotilla's Protobuf support for event schemas:
// .proto files parsed and linked with github.com/bufbuild/protocompile
// (imports resolved from the schema's references, keyed by import path,
// and the standard google/protobuf imports), a normalised form, and
// compatibility by the Confluent registry's Protobuf rules
// (ProtobufSchemaDiff): messages matched by full name and fields by
// number; a removed message, a changed package, a field whose kind, scalar
// type (outside the wire-compatible groups) or named type changed, a
// required field added or removed, a field removed from a oneof, and
// fields moved into a oneof are incompatible; fields and messages added or
// removed otherwise, renamed fields, and every enum change are compatible.
package protobuf

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// MaxSchemaBytes is the largest schema text Parse accepts.
const MaxSchemaBytes = 1 << 20

// fileName is the name the schema itself compiles under.
const fileName = "schema.proto"

// Schema is a parsed, linked .proto file.
type Schema struct {
	text       string
	file       protoreflect.FileDescriptor
	normalized string
	messages   map[string]protoreflect.MessageDescriptor // by full name, nested and map entries too
	enums      map[string]protoreflect.EnumDescriptor
	// messageNames are the keys of messages, sorted.
	messageNames []string
}

// Parse parses and links a .proto file; refs maps each import path it
// uses to that file's text (Confluent references: name = import path).
// Errors say the line and column.
func Parse(text string, refs map[string]string) (s *Schema, err error) {
	if len(text) > MaxSchemaBytes {
		return nil, fmt.Errorf("schema is %d bytes; the limit is %d", len(text), MaxSchemaBytes)
	}
	if !utf8.ValidString(text) {
		return nil, errors.New("schema is not valid UTF-8")
	}
	srcs := map[string]string{fileName: text}
	for name, t := range refs {
		if name == fileName {
			return nil, fmt.Errorf("a reference may not be named %s", fileName)
		}
		srcs[name] = t
	}
	defer func() {
		if p := recover(); p != nil {
			s, err = nil, fmt.Errorf("invalid schema: %v", p)
		}
	}()
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{Accessor: protocompile.SourceAccessorFromMap(srcs)}),
	}
	files, err := c.Compile(context.Background(), fileName)
	if err != nil {
		return nil, fmt.Errorf("invalid schema: %s", strings.Join(strings.Fields(err.Error()), " "))
	}
	fd := files[0]
	fdp := protodesc.ToFileDescriptorProto(fd)
	fdp.SourceCodeInfo = nil
	fdp.Name = nil
	b, err := protojson.MarshalOptions{}.Marshal(fdp)
	if err != nil {
		return nil, fmt.Errorf("normalise: %w", err)
	}
	msgs := messages(fd)
	return &Schema{text: text, file: fd, normalized: string(b), messages: msgs, enums: enums(fd, msgs), messageNames: sortedKeys(msgs)}, nil
}

// String returns the text as given to Parse.
func (s *Schema) String() string { return s.text }

// Normalized returns the file's descriptor (without source positions) as
// JSON: the same definitions written differently give the same form.
func (s *Schema) Normalized() string { return s.normalized }

// SchemaType returns "PROTOBUF", the registry's name for the schema's type.
func (s *Schema) SchemaType() string { return "PROTOBUF" }

// File returns the linked descriptor.
func (s *Schema) File() protoreflect.FileDescriptor { return s.file }

// MessageIndexes returns the path of indexes that names a message in the
// file, as the Confluent wire format writes it after the schema id ([0]
// for the first top-level message, [1, 0] for the first message nested in
// the second); false when the file has no such message.
func (s *Schema) MessageIndexes(fullName string) ([]int, bool) {
	var find func(ms protoreflect.MessageDescriptors, path []int) ([]int, bool)
	find = func(ms protoreflect.MessageDescriptors, path []int) ([]int, bool) {
		for i := 0; i < ms.Len(); i++ {
			m := ms.Get(i)
			p := append(append([]int(nil), path...), i)
			if string(m.FullName()) == fullName {
				return p, true
			}
			if r, ok := find(m.Messages(), p); ok {
				return r, true
			}
		}
		return nil, false
	}
	return find(s.file.Messages(), nil)
}
