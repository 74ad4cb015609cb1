package repocheck

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/flotilla-ci/flotilla/schema"
	"github.com/flotilla-ci/flotilla/schema/jsonschema"
	"github.com/flotilla-ci/flotilla/schema/protobuf"
)

// Schema types, as the registry names them.
const (
	Avro     = "AVRO"
	Protobuf = "PROTOBUF"
	JSON     = "JSON"
)

// schemaExts are the file names of event schemas, by type: Avro (.avsc),
// Protobuf (.proto) and JSON Schema (.schema.json, so that other JSON
// files beside the code are not taken for schemas).
var schemaExts = []struct{ ext, typ string }{{".avsc", Avro}, {".proto", Protobuf}, {".schema.json", JSON}}

// TypeOf returns the schema type of a file by its name ("" when it is
// not an event schema).
func TypeOf(name string) string {
	for _, e := range schemaExts {
		if strings.HasSuffix(name, e.ext) {
			return e.typ
		}
	}
	return ""
}

// baseEvent is a schema file's name without its extension.
func baseEvent(name string) string {
	name = path.Base(name)
	for _, e := range schemaExts {
		if strings.HasSuffix(name, e.ext) {
			return strings.TrimSuffix(name, e.ext)
		}
	}
	return name
}

// typed is a parsed Protobuf (*protobuf.Schema) or JSON Schema
// (*jsonschema.Schema) event schema.
type typed interface {
	Normalized() string
	SchemaType() string
}

// parseTyped parses a Protobuf or JSON Schema text; imports are the texts
// of the .proto files it may import, by import path.
func parseTyped(typ, text string, imports map[string]string) (typed, error) {
	switch typ {
	case Protobuf:
		return protobuf.Parse(text, imports)
	case JSON:
		return jsonschema.Parse(text)
	}
	return nil, fmt.Errorf("schema type %s is not checked here", typ)
}

// checkTyped checks a Protobuf or JSON Schema candidate against earlier
// versions of the same event under a level, by that type's Confluent
// rules. Each problem's reason is Confluent's difference type, its
// location the path, and its detail names the field (and, for a .proto
// file, its line in the file that has it). versions are the earlier
// versions' numbers (0 for a git baseline).
func checkTyped(mode schema.Mode, cand typed, candText string, prev []typed, prevTexts []string, versions []int) []schema.Problem {
	var out []schema.Problem
	for _, p := range prev {
		if p.SchemaType() != cand.SchemaType() {
			return []schema.Problem{{Version: versions[len(versions)-1], Direction: schema.NewReadsOld, Incompatibility: schema.Incompatibility{
				Reason: "TYPE_CHANGED", Location: "/", Detail: fmt.Sprintf("Incompatible because of different schema type: %s, was %s", cand.SchemaType(), p.SchemaType())}}}
		}
	}
	switch c := cand.(type) {
	case *protobuf.Schema:
		ps := make([]*protobuf.Schema, len(prev))
		for i, p := range prev {
			ps[i] = p.(*protobuf.Schema)
		}
		for _, p := range protobuf.Check(mode, c, ps) {
			old := ps[p.Version-1]
			detail := p.Description()
			fNew, fOld := protoFieldAt(c, candText, p.Path), protoFieldAt(old, prevTexts[p.Version-1], p.Path)
			switch {
			case fNew == fOld && fNew != "":
				detail += ": " + fNew
			case fNew != "" && fOld != "":
				detail += ": " + fNew + " in the new schema, " + fOld + " in the old"
			case fNew != "":
				detail += ": " + fNew + " in the new schema"
			case fOld != "":
				detail += ": " + fOld + " in the old schema"
			}
			out = append(out, schema.Problem{Version: versions[p.Version-1], Direction: p.Direction,
				Incompatibility: schema.Incompatibility{Reason: schema.Reason(p.Type), Location: p.Path, Detail: detail}})
		}
	case *jsonschema.Schema:
		js := make([]*jsonschema.Schema, len(prev))
		for i, p := range prev {
			js[i] = p.(*jsonschema.Schema)
		}
		for _, p := range jsonschema.Check(mode, c, js) {
			update, original := "new", "old"
			if p.Direction == schema.OldReadsNew {
				update, original = "old", "new"
			}
			out = append(out, schema.Problem{Version: versions[p.Version-1], Direction: p.Direction,
				Incompatibility: schema.Incompatibility{Reason: schema.Reason(p.Type), Location: p.Path, Detail: p.Description(update, original)}})
		}
	}
	return out
}

var protoPath = regexp.MustCompile(`^#/([^/]+)/(\d+)$`)

// protoFieldAt names the field a Protobuf difference's path (#/pkg.Msg/N)
// points at in s: "field total (number 2, line 7)"; "" when s has no such
// field.
func protoFieldAt(s *protobuf.Schema, text, p string) string {
	m := protoPath.FindStringSubmatch(p)
	if m == nil {
		return ""
	}
	n, err := strconv.Atoi(m[2])
	if err != nil {
		return ""
	}
	msg := findMessage(s.File().Messages(), protoreflect.FullName(m[1]))
	if msg == nil {
		return ""
	}
	f := msg.Fields().ByNumber(protoreflect.FieldNumber(n))
	if f == nil {
		return ""
	}
	line := 0
	if loc := s.File().SourceLocations().ByDescriptor(f); loc.Path != nil {
		line = loc.StartLine + 1
	}
	if line == 0 {
		re := regexp.MustCompile(`\b` + regexp.QuoteMeta(string(f.Name())) + `\s*=\s*` + m[2] + `\b`)
		for i, l := range strings.Split(text, "\n") {
			if re.MatchString(l) {
				line = i + 1
				break
			}
		}
	}
	if line > 0 {
		return fmt.Sprintf("field %s (number %d, line %d)", f.Name(), n, line)
	}
	return fmt.Sprintf("field %s (number %d)", f.Name(), n)
}

func findMessage(ms protoreflect.MessageDescriptors, name protoreflect.FullName) protoreflect.MessageDescriptor {
	for i := 0; i < ms.Len(); i++ {
		m := ms.Get(i)
		if m.FullName() == name {
			return m
		}
		if x := findMessage(m.Messages(), name); x != nil {
			return x
		}
	}
	return nil
}

var protoLine = regexp.MustCompile(`\(number \d+, line (\d+)\)`)

// protoProblemLine is the line a Protobuf problem's detail names (the
// first field it names), or 0.
func protoProblemLine(detail string) int {
	m := protoLine.FindStringSubmatch(detail)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
