package protobuf_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/flotilla-ci/flotilla/schema"
	"github.com/flotilla-ci/flotilla/schema/protobuf"
)

// p3 wraps message bodies in a proto3 file of package shop.
func p3(body string) string { return "syntax = \"proto3\";\npackage shop;\n" + body }

// p2 is the same in proto2 (required fields).
func p2(body string) string { return "syntax = \"proto2\";\npackage shop;\n" + body }

func msg(fields string) string { return p3("message Order {\n" + fields + "\n}\n") }

// The pairs follow Confluent's Protobuf rules (ProtobufSchemaDiff): old,
// new, whether new reads what old wrote (BACKWARD), whether old reads what
// new writes (FORWARD), and a difference the failing direction names.
var pairs = []struct {
	name          string
	old, new      string
	backward, fwd bool
	want          string
}{
	{"same", msg(`string id = 1;`), msg(`string id = 1;`), true, true, ""},
	{"same, written otherwise", msg(`string id = 1;`), msg("  string   id=1 ; // the id"), true, true, ""},
	{"field added", msg(`string id = 1;`), msg(`string id = 1; int64 total = 2;`), true, true, ""},
	{"field removed", msg(`string id = 1; int64 total = 2;`), msg(`string id = 1;`), true, true, ""},
	{"field removed, number reserved", msg(`string id = 1; int64 total = 2;`), msg(`string id = 1; reserved 2;`), true, true, ""},
	{"reserved number reused", msg(`string id = 1; reserved 2;`), msg(`string id = 1; int32 n = 2;`), true, true, ""},
	{"field renamed", msg(`string id = 1;`), msg(`string order_id = 1;`), true, true, ""},
	{"int32 to int64", msg(`int32 n = 1;`), msg(`int64 n = 1;`), true, true, ""},
	{"int32 to uint32", msg(`int32 n = 1;`), msg(`uint32 n = 1;`), true, true, ""},
	{"int64 to bool", msg(`int64 n = 1;`), msg(`bool n = 1;`), true, true, ""},
	{"uint64 to int32", msg(`uint64 n = 1;`), msg(`int32 n = 1;`), true, true, ""},
	{"sint32 to sint64", msg(`sint32 n = 1;`), msg(`sint64 n = 1;`), true, true, ""},
	{"fixed32 to sfixed32", msg(`fixed32 n = 1;`), msg(`sfixed32 n = 1;`), true, true, ""},
	{"fixed64 to sfixed64", msg(`fixed64 n = 1;`), msg(`sfixed64 n = 1;`), true, true, ""},
	{"string to bytes", msg(`string s = 1;`), msg(`bytes s = 1;`), true, true, ""},
	{"int32 to sint32", msg(`int32 n = 1;`), msg(`sint32 n = 1;`), false, false, "FIELD_SCALAR_KIND_CHANGED"},
	{"int32 to fixed32", msg(`int32 n = 1;`), msg(`fixed32 n = 1;`), false, false, "FIELD_SCALAR_KIND_CHANGED"},
	{"int64 to double", msg(`int64 n = 1;`), msg(`double n = 1;`), false, false, "FIELD_SCALAR_KIND_CHANGED"},
	{"float to double", msg(`float n = 1;`), msg(`double n = 1;`), false, false, "FIELD_SCALAR_KIND_CHANGED"},
	{"string to int32", msg(`string s = 1;`), msg(`int32 s = 1;`), false, false, "FIELD_SCALAR_KIND_CHANGED"},
	{"fixed64 to fixed32", msg(`fixed64 n = 1;`), msg(`fixed32 n = 1;`), false, false, "FIELD_SCALAR_KIND_CHANGED"},
	{"scalar to message", p3("message Money { int64 cents = 1; }\nmessage Order { int64 total = 1; }"), p3("message Money { int64 cents = 1; }\nmessage Order { Money total = 1; }"), false, false, "FIELD_KIND_CHANGED"},
	{"scalar to enum", p3("enum Status { NEW = 0; }\nmessage Order { int32 status = 1; }"), p3("enum Status { NEW = 0; }\nmessage Order { Status status = 1; }"), false, false, "FIELD_KIND_CHANGED"},
	{"message to another message", p3("message A { int64 x = 1; }\nmessage B { int64 x = 1; }\nmessage Order { A a = 1; }"), p3("message A { int64 x = 1; }\nmessage B { int64 x = 1; }\nmessage Order { B a = 1; }"), false, false, "FIELD_NAMED_TYPE_CHANGED"},
	{"enum to another enum", p3("enum S { A = 0; }\nenum T { B = 0; }\nmessage Order { S s = 1; }"), p3("enum S { A = 0; }\nenum T { B = 0; }\nmessage Order { T s = 1; }"), false, false, "FIELD_NAMED_TYPE_CHANGED"},
	{"singular to repeated", msg(`string tag = 1;`), msg(`repeated string tag = 1;`), false, false, "FIELD_KIND_CHANGED"},
	{"map to message list", p3("message E { string key = 1; string value = 2; }\nmessage Order { map<string,string> m = 1; }"), p3("message E { string key = 1; string value = 2; }\nmessage Order { repeated E m = 1; }"), false, false, "FIELD_KIND_CHANGED"},
	{"message added", msg(`string id = 1;`), msg(`string id = 1;`) + "message Line { string sku = 1; }", true, false, "MESSAGE_REMOVED"},
	{"message removed", msg(`string id = 1;`) + "message Line { string sku = 1; }", msg(`string id = 1;`), false, true, "MESSAGE_REMOVED"},
	{"nested message removed", msg("string id = 1; message Line { string sku = 1; }"), msg("string id = 1;"), false, true, "MESSAGE_REMOVED"},
	{"nested message field narrowed", msg("Line line = 1; message Line { int64 qty = 1; }"), msg("Line line = 1; message Line { float qty = 1; }"), false, false, "FIELD_SCALAR_KIND_CHANGED"},
	{"package changed", msg(`string id = 1;`), strings.Replace(msg(`string id = 1;`), "package shop;", "package store;", 1), false, false, "PACKAGE_CHANGED"},
	{"enum value added", p3("enum S { A = 0; }\nmessage Order { S s = 1; }"), p3("enum S { A = 0; B = 1; }\nmessage Order { S s = 1; }"), true, true, ""},
	{"enum value removed", p3("enum S { A = 0; B = 1; }\nmessage Order { S s = 1; }"), p3("enum S { A = 0; }\nmessage Order { S s = 1; }"), true, true, ""},
	{"enum value renamed", p3("enum S { A = 0; B = 1; }\nmessage Order { S s = 1; }"), p3("enum S { A = 0; C = 1; }\nmessage Order { S s = 1; }"), true, true, ""},
	{"enum added", msg(`string id = 1;`), msg(`string id = 1;`) + "enum S { A = 0; }", true, true, ""},
	{"nested enum added", msg(`string id = 1;`), msg("string id = 1; enum S { A = 0; }"), true, true, ""},
	{"required field added", p2("message Order { optional string id = 1; }"), p2("message Order { optional string id = 1; required int64 total = 2; }"), false, false, "REQUIRED_FIELD_ADDED"},
	{"required field removed", p2("message Order { optional string id = 1; required int64 total = 2; }"), p2("message Order { optional string id = 1; }"), false, false, "REQUIRED_FIELD_REMOVED"},
	{"optional proto2 field added", p2("message Order { optional string id = 1; }"), p2("message Order { optional string id = 1; optional int64 total = 2; }"), true, true, ""},
	{"required made optional", p2("message Order { required string id = 1; }"), p2("message Order { optional string id = 1; }"), true, true, ""},
	{"proto3 optional added", msg(`string id = 1;`), msg(`string id = 1; optional int64 total = 2;`), true, true, ""},
	{"field made proto3 optional", msg(`int64 total = 1;`), msg(`optional int64 total = 1;`), true, true, ""},
	{"oneof added with a new field", msg(`string id = 1;`), msg("string id = 1; oneof pay { string card = 2; }"), true, false, "ONEOF_FIELD_REMOVED"},
	{"field added to a oneof", msg("oneof pay { string card = 1; }"), msg("oneof pay { string card = 1; string iban = 2; }"), true, false, "ONEOF_FIELD_REMOVED"},
	{"field removed from a oneof", msg("oneof pay { string card = 1; string iban = 2; }"), msg("oneof pay { string card = 1; }"), false, true, "ONEOF_FIELD_REMOVED"},
	{"one field moved into a new oneof", msg(`string card = 1;`), msg("oneof pay { string card = 1; }"), true, true, ""},
	{"two fields moved into a new oneof", msg(`string card = 1; string iban = 2;`), msg("oneof pay { string card = 1; string iban = 2; }"), false, true, "MULTIPLE_FIELDS_MOVED_TO_ONEOF"},
	{"fields moved out of a oneof", msg("oneof pay { string card = 1; string iban = 2; }"), msg(`string card = 1; string iban = 2;`), true, false, "MULTIPLE_FIELDS_MOVED_TO_ONEOF"},
	{"field moved into an existing oneof", msg("string iban = 2; oneof pay { string card = 1; }"), msg("oneof pay { string card = 1; string iban = 2; }"), false, true, "FIELD_MOVED_TO_EXISTING_ONEOF"},
	{"oneof renamed", msg("oneof pay { string card = 1; }"), msg("oneof payment { string card = 1; }"), true, true, ""},
	{"field number changed", msg(`string id = 1;`), msg(`string id = 2;`), true, true, ""},
	{"field number changed and type too", msg(`string id = 1; int64 n = 2;`), msg(`int64 id = 2;`), true, true, ""},
	{"messages reordered", p3("message A { int64 x = 1; }\nmessage B { int64 y = 1; }"), p3("message B { int64 y = 1; }\nmessage A { int64 x = 1; }"), true, true, ""},
	{"fields reordered", msg(`string id = 1; int64 total = 2;`), msg(`int64 total = 2; string id = 1;`), true, true, ""},
	{"option added", msg(`string id = 1;`), strings.Replace(msg(`string id = 1;`), "package shop;", "package shop;\noption go_package = \"example.com/shop\";", 1), true, true, ""},
	{"comment added", msg(`string id = 1;`), "// The order.\n" + msg(`string id = 1;`), true, true, ""},
	{"imported type used", "syntax = \"proto3\";\npackage shop;\nimport \"google/protobuf/timestamp.proto\";\nmessage Order { google.protobuf.Timestamp at = 1; }",
		"syntax = \"proto3\";\npackage shop;\nimport \"google/protobuf/timestamp.proto\";\nmessage Order { google.protobuf.Timestamp at = 1; string id = 2; }", true, true, ""},
	{"timestamp to duration", "syntax = \"proto3\";\npackage shop;\nimport \"google/protobuf/timestamp.proto\";\nimport \"google/protobuf/duration.proto\";\nmessage Order { google.protobuf.Timestamp at = 1; }",
		"syntax = \"proto3\";\npackage shop;\nimport \"google/protobuf/timestamp.proto\";\nimport \"google/protobuf/duration.proto\";\nmessage Order { google.protobuf.Duration at = 1; }", false, false, "FIELD_NAMED_TYPE_CHANGED"},
	{"map value type changed", msg(`map<string, int64> qty = 1;`), msg(`map<string, string> qty = 1;`), false, false, "FIELD_SCALAR_KIND_CHANGED"},
	{"map value widened", msg(`map<string, int32> qty = 1;`), msg(`map<string, int64> qty = 1;`), true, true, ""},
	{"proto2 to proto3 with the same fields", p2("message Order { optional string id = 1; }"), msg(`string id = 1;`), true, true, ""},
}

func TestCompatibilityPairs(t *testing.T) {
	if len(pairs) < 60 {
		t.Fatalf("%d pairs; the issue asks for at least 60", len(pairs))
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			o, err := protobuf.Parse(p.old, nil)
			if err != nil {
				t.Fatalf("old: %v", err)
			}
			n, err := protobuf.Parse(p.new, nil)
			if err != nil {
				t.Fatalf("new: %v", err)
			}
			back, fwd := protobuf.Incompatible(o, n), protobuf.Incompatible(n, o)
			if (len(back) == 0) != p.backward {
				t.Errorf("backward: got %v, want compatible=%v", back, p.backward)
			}
			if (len(fwd) == 0) != p.fwd {
				t.Errorf("forward: got %v, want compatible=%v", fwd, p.fwd)
			}
			if p.want != "" && !slices.ContainsFunc(append(back, fwd...), func(d protobuf.Difference) bool { return string(d.Type) == p.want }) {
				t.Errorf("want a %s; backward %v, forward %v", p.want, back, fwd)
			}
			if full := protobuf.Check(schema.Full, n, []*protobuf.Schema{o}); (len(full) == 0) != (p.backward && p.fwd) {
				t.Errorf("FULL: %v", full)
			}
		})
	}
}

func TestParse(t *testing.T) {
	for _, bad := range []struct{ text, want string }{
		{`syntax = "proto3"; message {`, "schema.proto:1:"},
		{`syntax = "proto3"; message A { string a = 1; int32 b = 1; }`, "same tag"},
		{`syntax = "proto3"; import "money.proto"; message A { Money m = 1; }`, "money.proto"},
		{`syntax = "proto3"; message A { Unknown u = 1; }`, "Unknown"},
	} {
		if _, err := protobuf.Parse(bad.text, nil); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Parse(%q) = %v, want %q", bad.text, err, bad.want)
		}
	}
	// References: an import resolved from the referenced schema's text.
	money := "syntax = \"proto3\";\npackage shop.common;\nmessage Money { int64 cents = 1; string currency = 2; }\n"
	s, err := protobuf.Parse("syntax = \"proto3\";\npackage shop;\nimport \"shop/common/money.proto\";\nmessage Order { string id = 1; shop.common.Money total = 2; message Line { string sku = 1; } }\nmessage Refund { string id = 1; }\n",
		map[string]string{"shop/common/money.proto": money})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]int{"shop.Order": {0}, "shop.Order.Line": {0, 0}, "shop.Refund": {1}} {
		if got, ok := s.MessageIndexes(name); !ok || !slices.Equal(got, want) {
			t.Errorf("MessageIndexes(%s) = %v, want %v", name, got, want)
		}
	}
	a, _ := protobuf.Parse(msg(`string id = 1;`), nil)
	b, _ := protobuf.Parse("// x\n"+msg(`  string id=1;`), nil)
	if a.Normalized() != b.Normalized() {
		t.Errorf("normalised forms differ:\n%s\n%s", a.Normalized(), b.Normalized())
	}
}
