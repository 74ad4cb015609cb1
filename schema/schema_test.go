package schema

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hamba/avro/v2"
)

// TestParseErrorPositions: a JSON error points at the offending character
// (1-based line and column, in characters, counting what precedes the schema).
func TestParseErrorPositions(t *testing.T) {
	tests := []struct {
		name, schema string
		line, col    int
	}{
		{"bad value", "{\n  \"type\": \"record\",\n  \"name\": x\n}", 3, 11},
		{"first character", "x", 1, 1},
		{"missing comma", `{"type":"int" "name":"a"}`, 1, 15},
		{"missing colon", "{\n\t\"type\" \"int\"}", 2, 9},
		{"after leading blank lines", "\n\n  {\"type\": ]}", 3, 12},
		{"after a multi-byte character", `{"doc":"héllo", x}`, 1, 17},
		{"trailing text", "\"int\"\n  \"long\"", 2, 3},
		{"unexpected end", "{\"type\":", 1, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.schema)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) = %v, want a ParseError", tt.schema, err)
			}
			if pe.Line != tt.line || pe.Column != tt.col {
				t.Errorf("Parse(%q): line %d, column %d, want line %d, column %d (%v)", tt.schema, pe.Line, pe.Column, tt.line, tt.col, pe)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, schema, want string
	}{
		{"bad JSON", `{"type":"record",`, "invalid JSON"},
		{"bad JSON position", "{\n  \"type\": \"record\",\n  \"name\": x\n}", "line 3, column"},
		{"trailing text", `"int" "long"`, "unexpected text after the schema"},
		{"empty", ``, "empty schema"},
		{"unknown type", `{"type":"record","name":"R","fields":[{"name":"a","type":"integer"}]}`, "unknown type: integer"},
		{"unknown top-level type", `"strng"`, "unknown type: strng"},
		{"duplicate field", `{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"a","type":"long"}]}`, `at /fields/1: duplicate field "a" in record "R"`},
		{"wrong default", `{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":"zero"}]}`, `at /fields/0: default of field "a": "zero" is not an integer`},
		{"bad record name", `{"type":"record","name":"9lives","fields":[]}`, "invalid name"},
		{"bad field name", `{"type":"record","name":"R","fields":[{"name":"a-b","type":"int"}]}`, "invalid name"},
		{"missing fields", `{"type":"record","name":"R"}`, `at /: record "R" needs a "fields" array`},
		{"field without type", `{"type":"record","name":"R","fields":[{"name":"a"}]}`, `at /fields/0: field "a" needs a "type"`},
		{"number as schema", `42`, "42 is not a schema"},
		{"nested union", `["int",["long"]]`, "a union may not contain a union"},
		{"enum without symbols", `{"type":"enum","name":"E"}`, `needs a "symbols" array`},
		{"duplicate enum symbol", `{"type":"enum","name":"E","symbols":["A","A"]}`, `duplicate symbol "A"`},
		{"fixed without size", `{"type":"fixed","name":"F"}`, `needs a numeric "size"`},
		{"array without items", `{"type":"array"}`, `array needs "items"`},
		{"nested error located", `{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"map"}}]}`, `at /fields/0/type: map needs "values"`},
		{"not UTF-8", "\"in\xfft\"", "not valid UTF-8"},
		{"int default too big", `{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":2147483648}]}`, `at /fields/0: default of field "a": 2147483648 is not an integer that fits in int (32 bits)`},
		{"int default not integral", `{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":1.5}]}`, "1.5 is not an integer"},
		{"fixed default wrong size", `{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"fixed","name":"F","size":2},"default":"abc"}]}`, `"abc" is 3 bytes; the fixed type is 2`},
		{"union default not first branch", `{"type":"record","name":"R","fields":[{"name":"a","type":["null","string"],"default":"null"}]}`, "first branch (NULL)"},
		{"nested default", `{"type":"record","name":"R","fields":[{"name":"in","type":{"type":"record","name":"I","fields":[{"name":"b","type":"boolean","default":"yes"}]}}]}`, `at /fields/0/type/fields/0: default of field "b": "yes" is not a boolean`},
		{"record default lacks field", `{"type":"record","name":"R","fields":[{"name":"in","type":{"type":"record","name":"I","fields":[{"name":"b","type":"int"}]},"default":{}}]}`, `lacks field "b"`},
		{"bytes default beyond 255", `{"type":"record","name":"R","fields":[{"name":"a","type":"bytes","default":"Ā"}]}`, "code point U+0100"},
		{"too big", `"` + strings.Repeat("x", MaxSchemaBytes) + `"`, "the limit is"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.schema)
			if err == nil {
				t.Fatalf("Parse succeeded: %s", s.Canonical())
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestCanonicalForm(t *testing.T) {
	tests := []struct{ schema, want string }{
		{`{"type":"int"}`, `"int"`},
		{`{"type":"int","logicalType":"date"}`, `"int"`},
		{`{"type":"record","name":"R","namespace":"a.b","doc":"d","fields":[{"name":"f","type":{"type":"enum","name":"E","symbols":["X"],"default":"X"},"default":"X","doc":"x","aliases":["g"]},{"name":"g","type":"E"}]}`,
			`{"name":"a.b.R","type":"record","fields":[{"name":"f","type":{"name":"a.b.E","type":"enum","symbols":["X"]}},{"name":"g","type":"a.b.E"}]}`},
		{`{"type":"fixed","name":"F","size":016}`, `invalid`},
		{`{"type":"fixed","size":16,"name":"F","namespace":"n"}`, `{"name":"n.F","type":"fixed","size":16}`},
		{`{"values":{"items":"long","type":"array"},"type":"map"}`, `{"type":"map","values":{"type":"array","items":"long"}}`},
		{`[ "null" , {"type":"string"} ]`, `["null","string"]`},
	}
	for _, tt := range tests {
		t.Run(tt.schema, func(t *testing.T) {
			s, err := Parse(tt.schema)
			if tt.want == "invalid" {
				if err == nil {
					t.Fatalf("Parse succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Canonical(); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestFingerprintKnownValues(t *testing.T) {
	// From the Avro specification's test vectors (as hamba/avro tests them).
	for text, want := range map[string]uint64{`"null"`: 0x63dd24e7cc258f8a, `"string"`: 0x8f014872634503c7} {
		if got := MustParse(text).Fingerprint(); got != want {
			t.Errorf("fingerprint of %s = %#x, want %#x", text, got, want)
		}
	}
}

// Every schema of the pair table: the canonical form and fingerprint agree
// with hamba/avro's independent implementation.
func TestCanonicalAgreesWithHamba(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range pairs {
		for _, text := range []string{p.a, p.b} {
			if seen[text] {
				continue
			}
			seen[text] = true
			s := MustParse(text)
			h, err := avro.ParseWithCache(text, "", &avro.SchemaCache{})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(text, "logicalType") {
				continue // hamba keeps logical types in its String form
			}
			if s.Canonical() != h.String() {
				t.Errorf("canonical of %s:\n ours  %s\n hamba %s", text, s.Canonical(), h.String())
			}
			fp, _ := h.FingerprintUsing(avro.CRC64Avro)
			if got, want := s.Fingerprint(), binary.BigEndian.Uint64(fp); got != want {
				t.Errorf("fingerprint of %s = %#x, hamba %#x", text, got, want)
			}
		}
	}
}

func TestNormalized(t *testing.T) {
	same := [][]string{
		{
			`{"type":"record","name":"R","namespace":"shop","fields":[{"name":"a","type":"int","default":1,"order":"ascending"}]}`,
			`{ "fields":[{"type":{"type":"int"},"default":1,"name":"a"}], "name":"shop.R", "type":"record" }`,
		},
		{
			`{"type":"record","name":"R","namespace":"n","fields":[{"name":"e","type":{"type":"enum","name":"E","symbols":["A"]}},{"name":"f","type":"E"}]}`,
			`{"type":"record","name":"n.R","fields":[{"name":"e","type":{"type":"enum","name":"n.E","symbols":["A"]}},{"name":"f","type":"n.E"}]}`,
		},
		{
			`{"type":"record","name":"R","aliases":["B","A"],"fields":[{"name":"x","type":"long","aliases":["z","y"]}]}`,
			`{"type":"record","name":"R","aliases":["A","B"],"fields":[{"name":"x","type":"long","aliases":["y","z"]}]}`,
		},
	}
	for _, group := range same {
		a, b := MustParse(group[0]), MustParse(group[1])
		if a.Normalized() != b.Normalized() {
			t.Errorf("normalised forms differ:\n %s\n %s", a.Normalized(), b.Normalized())
		}
	}
	// Schemas that read data differently must not be the same schema, even
	// though their canonical forms (and fingerprints) are equal.
	differ := [][]string{
		{rAInt, rADInt},
		{sEnumABC, sEnumABCDefA},
		{rAInt, `{"type":"record","name":"R","fields":[{"name":"a","type":"int","aliases":["b"]}]}`},
		{sDecimal4, sDecimal9},
		{rAInt, `{"type":"record","name":"R","fields":[{"name":"a","type":"int","order":"descending"}]}`},
		{rAInt, `{"type":"record","name":"R","doc":"changed","fields":[{"name":"a","type":"int"}]}`},
	}
	for _, pair := range differ {
		a, b := MustParse(pair[0]), MustParse(pair[1])
		if a.Normalized() == b.Normalized() {
			t.Errorf("normalised forms equal for\n %s\n %s", pair[0], pair[1])
		}
		if a.Fingerprint() != b.Fingerprint() {
			t.Errorf("fingerprints differ for\n %s\n %s", pair[0], pair[1])
		}
	}
	if diff := cmp.Diff(`{"type":"record","name":"shop.R","fields":[{"name":"a","type":"int","default":1}]}`, MustParse(same[0][0]).Normalized()); diff != "" {
		t.Errorf("normalised form (-want +got):\n%s", diff)
	}
}

// hamba/avro's checker caches results under the Parsing Canonical Form's
// fingerprint, which ignores defaults: a reused checker answers a second
// question with the first one's answer. The specification (and ReaderCanRead)
// says a reader field without a default that the writer lacks is an error.
func TestHambaDisagreesWithSpecification(t *testing.T) {
	withDefault := MustParse(`{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"int","default":0}]}`)
	noDefault := MustParse(rAIntBInt)
	writer := MustParse(rAInt)

	hc := avro.NewSchemaCompatibility()
	if err := hc.Compatible(withDefault.Avro(), writer.Avro()); err != nil {
		t.Fatalf("hamba: with a default: %v", err)
	}
	if err := hc.Compatible(noDefault.Avro(), writer.Avro()); err != nil {
		t.Fatalf("hamba now gets this right (%v); the case no longer shows the difference", err)
	}
	if got := render(ReaderCanRead(noDefault, writer)); !cmp.Equal(got, []string{"READER_FIELD_MISSING_DEFAULT_VALUE /fields/1"}) {
		t.Errorf("ReaderCanRead = %v", got)
	}
	// And hamba stops at its first problem, without a location or a reason.
	multi := avro.NewSchemaCompatibility().Compatible(MustParse(rMultiR).Avro(), MustParse(rMultiW).Avro())
	if multi == nil {
		t.Fatal("hamba: multi-problem pair compatible")
	}
	if n := len(ReaderCanRead(MustParse(rMultiR), MustParse(rMultiW))); n != 4 {
		t.Errorf("ReaderCanRead found %d problems, want 4 (hamba: %v)", n, multi)
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range pairs {
		f.Add(p.a)
	}
	f.Add(`{"type":"record","name":"R","fields":[{"name":"a","type":["null",{"type":"array","items":"R"}],"default":null}]}`)
	f.Add(`{"type":"fixed","name":"F","size":-1}`)
	f.Fuzz(func(t *testing.T, text string) {
		s, err := Parse(text)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error: %q", err)
			}
			return
		}
		// A valid schema's normalised form is itself valid and stable.
		again, err := Parse(s.Normalized())
		if err != nil {
			t.Fatalf("normalised form %s does not parse: %v", s.Normalized(), err)
		}
		if again.Normalized() != s.Normalized() || again.Canonical() != s.Canonical() {
			t.Fatalf("normalisation not stable:\n %s\n %s", s.Normalized(), again.Normalized())
		}
		if len(ReaderCanRead(s, s)) != 0 {
			t.Fatalf("schema cannot read itself: %s", s.Canonical())
		}
	})
}

func FuzzCompatibility(f *testing.F) {
	for _, p := range pairs {
		f.Add(p.a, p.b)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ra, err := Parse(a)
		if err != nil {
			return
		}
		rb, err := Parse(b)
		if err != nil {
			return
		}
		for _, inc := range ReaderCanRead(ra, rb) {
			if !strings.HasPrefix(inc.Location, "/") || inc.Reason == "" {
				t.Fatalf("malformed incompatibility %+v", inc)
			}
		}
		for _, m := range Modes {
			m.Check(ra, []Version{{1, rb}})
		}
	})
}

func TestParseWithReferences(t *testing.T) {
	money := `{"type":"record","name":"Money","namespace":"shop.common","fields":[{"name":"cents","type":"long"},{"name":"currency","type":"string"}]}`
	order := `{"type":"record","name":"OrderCreated","namespace":"shop.order","fields":[{"name":"total","type":"shop.common.Money"}]}`
	if _, err := Parse(order); err == nil || !strings.Contains(err.Error(), "unknown type: shop.common.Money") {
		t.Fatalf("without the reference: %v", err)
	}
	s, err := ParseWithReferences(order, []string{money})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Canonical(), `{"name":"shop.order.OrderCreated","type":"record","fields":[{"name":"total","type":{"name":"shop.common.Money","type":"record","fields":[{"name":"cents","type":"long"},{"name":"currency","type":"string"}]}}]}`; got != want {
		t.Errorf("canonical form\n got  %s\n want %s", got, want)
	}
	if got, want := s.Normalized(), `{"type":"record","name":"shop.order.OrderCreated","fields":[{"name":"total","type":"shop.common.Money"}]}`; got != want {
		t.Errorf("normalised form\n got  %s\n want %s", got, want)
	}
	// A change inside the referenced type is seen by the checker.
	money2 := strings.Replace(money, `"cents","type":"long"`, `"cents","type":"int"`, 1)
	s2 := Must(ParseWithReferences(order, []string{money2}))
	if got := render(ReaderCanRead(s2, s)); !cmp.Equal(got, []string{"TYPE_MISMATCH /fields/0/type/fields/0/type"}) {
		t.Errorf("ReaderCanRead = %v", got)
	}
	if _, err := ParseWithReferences(order, []string{`{"type":"record"`}); err == nil || !strings.Contains(err.Error(), "reference 1") {
		t.Errorf("bad reference: %v", err)
	}
}

// Over the whole pair table, a hamba/avro checker reused across checks (as
// a long-lived service would hold it) answers from its fingerprint cache
// and gets pairs wrong that differ only in defaults or aliases; ReaderCanRead
// answers every pair as the specification does.
func TestReusedHambaCheckerOverPairs(t *testing.T) {
	hc := avro.NewSchemaCompatibility()
	wrong := 0
	for _, p := range pairs {
		for _, d := range []struct {
			r, w string
			want []string
		}{{p.a, p.b, p.aReadsB}, {p.b, p.a, p.bReadsA}} {
			r, w := MustParse(d.r), MustParse(d.w)
			if got := render(ReaderCanRead(r, w)); !cmp.Equal(got, d.want) {
				t.Errorf("%s: ReaderCanRead = %v, want %v", p.name, got, d.want)
			}
			if (hc.Compatible(r.Avro(), w.Avro()) == nil) != (len(d.want) == 0) {
				wrong++
				t.Logf("hamba (reused) wrong on %s: reader %s writer %s", p.name, d.r, d.w)
			}
		}
	}
	if wrong == 0 {
		t.Error("the reused hamba checker answered every pair right: this test no longer shows the difference")
	}
}
