package schema

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Schemas for the reader/writer pairs, written from the Avro specification's
// Schema Resolution section and the reference checker's test suite.
const (
	sInt     = `"int"`
	sLong    = `"long"`
	sFloat   = `"float"`
	sDouble  = `"double"`
	sString  = `"string"`
	sBytes   = `"bytes"`
	sBoolean = `"boolean"`
	sNull    = `"null"`

	sIntArray      = `{"type":"array","items":"int"}`
	sLongArray     = `{"type":"array","items":"long"}`
	sNullIntArray  = `{"type":"array","items":["null","int"]}`
	sIntMap        = `{"type":"map","values":"int"}`
	sLongMap       = `{"type":"map","values":"long"}`
	sIntArrayMap   = `{"type":"map","values":{"type":"array","items":"int"}}`
	sLongArrayMap  = `{"type":"map","values":{"type":"array","items":"long"}}`
	sEnumABMap     = `{"type":"map","values":{"type":"enum","name":"E","symbols":["A","B"]}}`
	sEnumABCMap    = `{"type":"map","values":{"type":"enum","name":"E","symbols":["A","B","C"]}}`
	sEnumA         = `{"type":"enum","name":"E","symbols":["A"]}`
	sEnumAB        = `{"type":"enum","name":"E","symbols":["A","B"]}`
	sEnumABC       = `{"type":"enum","name":"E","symbols":["A","B","C"]}`
	sEnumBC        = `{"type":"enum","name":"E","symbols":["B","C"]}`
	sEnumABD       = `{"type":"enum","name":"E","symbols":["A","B","D"]}`
	sEnumABCDefA   = `{"type":"enum","name":"E","symbols":["A","B","C"],"default":"A"}`
	sEnum2AB       = `{"type":"enum","name":"E2","symbols":["A","B"]}`
	sEnumNsAB      = `{"type":"enum","name":"E","namespace":"x.y","symbols":["A","B"]}`
	sFixed4        = `{"type":"fixed","name":"F","size":4}`
	sFixed8        = `{"type":"fixed","name":"F","size":8}`
	sFixedG4       = `{"type":"fixed","name":"G","size":4}`
	sFixedG4AliasF = `{"type":"fixed","name":"G","aliases":["F"],"size":4}`
	sDecimal4      = `{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}`
	sDecimal9      = `{"type":"bytes","logicalType":"decimal","precision":9,"scale":3}`
	sDate          = `{"type":"int","logicalType":"date"}`

	sUInt          = `["int"]`
	sULong         = `["long"]`
	sUIntString    = `["int","string"]`
	sUStringInt    = `["string","int"]`
	sUIntStringB   = `["int","string","boolean"]`
	sUNullInt      = `["null","int"]`
	sUNullLong     = `["null","long"]`
	sUNullBytes    = `["null","bytes"]`
	sUNullString   = `["null","string"]`
	sUNullDouble   = `["null","double"]`
	sUIntLongFloat = `["int","long","float"]`
	sUIntLong      = `["int","long"]`

	rEmpty            = `{"type":"record","name":"R","fields":[]}`
	rAInt             = `{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}`
	rALong            = `{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}`
	rADInt            = `{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":0}]}`
	rAIntBInt         = `{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"int"}]}`
	rAIntBDInt        = `{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"int","default":0}]}`
	rADIntBDInt       = `{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":0},{"name":"b","type":"int","default":0}]}`
	rANullDefault     = `{"type":"record","name":"R","fields":[{"name":"a","type":["null","int"],"default":null}]}`
	sAInt             = `{"type":"record","name":"S","fields":[{"name":"a","type":"int"}]}`
	rNsAInt           = `{"type":"record","name":"R","namespace":"com.shop","fields":[{"name":"a","type":"int"}]}`
	sAliasR           = `{"type":"record","name":"S","aliases":["R"],"fields":[{"name":"a","type":"int"}]}`
	nsSAliasR         = `{"type":"record","name":"S","namespace":"n","aliases":["R"],"fields":[{"name":"a","type":"int"}]}`
	nsRAInt           = `{"type":"record","name":"R","namespace":"n","fields":[{"name":"a","type":"int"}]}`
	rBAliasA          = `{"type":"record","name":"R","fields":[{"name":"b","type":"int","aliases":["a"]}]}`
	rBInt             = `{"type":"record","name":"R","fields":[{"name":"b","type":"int"}]}`
	rAIntBStr         = `{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string"}]}`
	rBStrAInt         = `{"type":"record","name":"R","fields":[{"name":"b","type":"string"},{"name":"a","type":"int"}]}`
	rInnerInt         = `{"type":"record","name":"O","fields":[{"name":"inner","type":{"type":"record","name":"I","fields":[{"name":"x","type":"int"}]}}]}`
	rInnerLong        = `{"type":"record","name":"O","fields":[{"name":"inner","type":{"type":"record","name":"I","fields":[{"name":"x","type":"long"}]}}]}`
	aRA               = `{"type":"array","items":{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}}`
	aRAB              = `{"type":"array","items":{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"int"}]}}`
	listInt           = `{"type":"record","name":"List","fields":[{"name":"head","type":"int"},{"name":"tail","type":["null","List"]}]}`
	listLong          = `{"type":"record","name":"List","fields":[{"name":"head","type":"long"},{"name":"tail","type":["null","List"]}]}`
	rMultiR           = `{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string"},{"name":"c","type":{"type":"enum","name":"E","symbols":["A","B"]}},{"name":"d","type":"int"}]}`
	rMultiW           = `{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"b","type":"int"},{"name":"c","type":{"type":"enum","name":"E","symbols":["A","B","C"]}}]}`
	rFNullStr         = `{"type":"record","name":"R","fields":[{"name":"f","type":["null","string"]}]}`
	rFStr             = `{"type":"record","name":"R","fields":[{"name":"f","type":"string"}]}`
	rEnumFieldDefault = `{"type":"record","name":"R","fields":[{"name":"c","type":{"type":"enum","name":"E","symbols":["A","B"]},"default":"A"}]}`
	rEnumFieldABC     = `{"type":"record","name":"R","fields":[{"name":"c","type":{"type":"enum","name":"E","symbols":["A","B","C"]}}]}`
)

// pairs lists schema pairs with what each side reports reading the other.
var pairs = []struct {
	name    string
	a, b    string
	aReadsB []string // "REASON location"
	bReadsA []string
}{
	{"int/int", sInt, sInt, nil, nil},
	{"long/int promotion", sLong, sInt, nil, []string{"TYPE_MISMATCH /"}},
	{"float/int promotion", sFloat, sInt, nil, []string{"TYPE_MISMATCH /"}},
	{"double/int promotion", sDouble, sInt, nil, []string{"TYPE_MISMATCH /"}},
	{"float/long promotion", sFloat, sLong, nil, []string{"TYPE_MISMATCH /"}},
	{"double/long promotion", sDouble, sLong, nil, []string{"TYPE_MISMATCH /"}},
	{"double/float promotion", sDouble, sFloat, nil, []string{"TYPE_MISMATCH /"}},
	{"string/bytes both ways", sString, sBytes, nil, nil},
	{"string/int", sString, sInt, []string{"TYPE_MISMATCH /"}, []string{"TYPE_MISMATCH /"}},
	{"string/float", sString, sFloat, []string{"TYPE_MISMATCH /"}, []string{"TYPE_MISMATCH /"}},
	{"boolean/int", sBoolean, sInt, []string{"TYPE_MISMATCH /"}, []string{"TYPE_MISMATCH /"}},
	{"boolean/boolean", sBoolean, sBoolean, nil, nil},
	{"null/int", sNull, sInt, []string{"TYPE_MISMATCH /"}, []string{"TYPE_MISMATCH /"}},
	{"null/null", sNull, sNull, nil, nil},
	{"array int/int", sIntArray, sIntArray, nil, nil},
	{"array long/int", sLongArray, sIntArray, nil, []string{"TYPE_MISMATCH /items"}},
	{"array nullable items", sNullIntArray, sIntArray, nil, []string{"TYPE_MISMATCH /items"}},
	{"map long/int", sLongMap, sIntMap, nil, []string{"TYPE_MISMATCH /values"}},
	{"map of arrays", sLongArrayMap, sIntArrayMap, nil, []string{"TYPE_MISMATCH /values/items"}},
	{"array/map", sIntArray, sIntMap, []string{"TYPE_MISMATCH /"}, []string{"TYPE_MISMATCH /"}},
	{"enum added symbol", sEnumABC, sEnumAB, nil, []string{"MISSING_ENUM_SYMBOLS /symbols [C]"}},
	{"enum disjoint symbols", sEnumAB, sEnumBC, []string{"MISSING_ENUM_SYMBOLS /symbols [C]"}, []string{"MISSING_ENUM_SYMBOLS /symbols [A]"}},
	{"enum reader default", sEnumABCDefA, sEnumABD, nil, []string{"MISSING_ENUM_SYMBOLS /symbols [C]"}},
	{"enum two missing", sEnumABC, sEnumA, nil, []string{"MISSING_ENUM_SYMBOLS /symbols [B, C]"}},
	{"enum renamed", sEnumAB, sEnum2AB, []string{"NAME_MISMATCH /name"}, []string{"NAME_MISMATCH /name"}},
	{"enum namespace only", sEnumAB, sEnumNsAB, nil, nil},
	{"enum map", sEnumABMap, sEnumABCMap, []string{"MISSING_ENUM_SYMBOLS /values/symbols [C]"}, nil},
	{"enum/string", sEnumAB, sString, []string{"TYPE_MISMATCH /"}, []string{"TYPE_MISMATCH /"}},
	{"fixed size", sFixed4, sFixed8, []string{"FIXED_SIZE_MISMATCH /size"}, []string{"FIXED_SIZE_MISMATCH /size"}},
	{"fixed renamed", sFixed4, sFixedG4, []string{"NAME_MISMATCH /name"}, []string{"NAME_MISMATCH /name"}},
	{"fixed alias", sFixedG4AliasF, sFixed4, nil, []string{"NAME_MISMATCH /name"}},
	{"fixed/bytes", sFixed4, sBytes, []string{"TYPE_MISMATCH /"}, []string{"TYPE_MISMATCH /"}},
	{"logical types ignored: decimal", sDecimal4, sDecimal9, nil, nil},
	{"logical types ignored: date", sDate, sInt, nil, nil},
	{"single-branch union", sUInt, sInt, nil, nil},
	{"union reader of int", sUIntString, sInt, nil, []string{"TYPE_MISMATCH /"}},
	{"union long/int", sULong, sUInt, nil, []string{"MISSING_UNION_BRANCH /0"}},
	{"union order", sUIntString, sUStringInt, nil, nil},
	{"nullable/int", sUNullInt, sInt, nil, []string{"TYPE_MISMATCH /"}},
	{"nullable long/int", sUNullLong, sUNullInt, nil, []string{"MISSING_UNION_BRANCH /1"}},
	{"union extra branch", sUIntStringB, sUIntString, nil, []string{"MISSING_UNION_BRANCH /2"}},
	{"double/union of numbers", sDouble, sUIntLongFloat, nil, []string{"MISSING_UNION_BRANCH /"}},
	{"union bytes/string", sUNullBytes, sUNullString, nil, nil},
	{"nullable double/int", sUNullDouble, sInt, nil, []string{"TYPE_MISMATCH /", "TYPE_MISMATCH /"}},
	{"long/union int long", sLong, sUIntLong, nil, nil},
	{"empty record/a", rEmpty, rAInt, nil, []string{"READER_FIELD_MISSING_DEFAULT_VALUE /fields/0"}},
	{"defaulted/empty", rADInt, rEmpty, nil, nil},
	{"a int/a long", rAInt, rALong, []string{"TYPE_MISMATCH /fields/0/type"}, nil},
	{"added field without default", rAIntBInt, rAInt, []string{"READER_FIELD_MISSING_DEFAULT_VALUE /fields/1"}, nil},
	{"added field with default", rAIntBDInt, rAInt, nil, nil},
	{"all defaults/empty", rADIntBDInt, rEmpty, nil, nil},
	{"nullable default/empty", rANullDefault, rEmpty, nil, nil},
	{"record renamed", rAInt, sAInt, []string{"NAME_MISMATCH /name"}, []string{"NAME_MISMATCH /name"}},
	{"record namespace only", rAInt, rNsAInt, nil, nil},
	{"record alias", sAliasR, rAInt, nil, []string{"NAME_MISMATCH /name"}},
	{"relative alias qualified by namespace", nsSAliasR, nsRAInt, nil, []string{"NAME_MISMATCH /name"}},
	{"relative alias does not match other namespace", nsSAliasR, rAInt, []string{"NAME_MISMATCH /name"}, []string{"NAME_MISMATCH /name"}},
	{"field alias", rBAliasA, rAInt, nil, []string{"READER_FIELD_MISSING_DEFAULT_VALUE /fields/0"}},
	{"field renamed without alias", rBInt, rAInt, []string{"READER_FIELD_MISSING_DEFAULT_VALUE /fields/0"}, []string{"READER_FIELD_MISSING_DEFAULT_VALUE /fields/0"}},
	{"field order", rAIntBStr, rBStrAInt, nil, nil},
	{"nested record", rInnerInt, rInnerLong, []string{"TYPE_MISMATCH /fields/0/type/fields/0/type"}, nil},
	{"array of records", aRA, aRAB, nil, []string{"READER_FIELD_MISSING_DEFAULT_VALUE /items/fields/1"}},
	{"recursive list", listLong, listInt, nil, []string{"TYPE_MISMATCH /fields/0/type"}},
	{"recursive same", listInt, listInt, nil, nil},
	{"many problems at once", rMultiR, rMultiW,
		[]string{"TYPE_MISMATCH /fields/0/type", "TYPE_MISMATCH /fields/1/type", "MISSING_ENUM_SYMBOLS /fields/2/type/symbols [C]", "READER_FIELD_MISSING_DEFAULT_VALUE /fields/3"},
		[]string{"TYPE_MISMATCH /fields/1/type"}},
	{"nullable field", rFNullStr, rFStr, nil, []string{"TYPE_MISMATCH /fields/0/type"}},
	{"nullable record/record", `["null",` + rAInt + `]`, rAInt, nil, []string{"TYPE_MISMATCH /"}},
	{"unions of records", `[` + rAIntBInt + `]`, `[` + rAInt + `]`, []string{"MISSING_UNION_BRANCH /0"}, nil},
	{"union of records promoted field", `["null",` + rALong + `]`, `["null",` + rAInt + `]`, nil, []string{"MISSING_UNION_BRANCH /1"}},
	{"union picks the readable branch", `["string",` + rADInt + `]`, rEmpty, nil, []string{"TYPE_MISMATCH /"}},
	{"field default does not stand in for a symbol", rEnumFieldDefault, rEnumFieldABC, []string{"MISSING_ENUM_SYMBOLS /fields/0/type/symbols [C]"}, nil},
}

func render(incs []Incompatibility) []string {
	var out []string
	for _, i := range incs {
		s := string(i.Reason) + " " + i.Location
		if i.Reason == MissingEnumSymbols {
			s += " " + i.Detail
		}
		out = append(out, s)
	}
	return out
}

func TestReaderCanReadPairs(t *testing.T) {
	if n := 2 * len(pairs); n < 120 {
		t.Fatalf("only %d reader/writer checks", n)
	}
	for _, p := range pairs {
		a, b := MustParse(p.a), MustParse(p.b)
		t.Run(p.name+"/a reads b", func(t *testing.T) {
			if diff := cmp.Diff(p.aReadsB, render(ReaderCanRead(a, b))); diff != "" {
				t.Errorf("reader %s\nwriter %s\n(-want +got):\n%s", p.a, p.b, diff)
			}
		})
		t.Run(p.name+"/b reads a", func(t *testing.T) {
			if diff := cmp.Diff(p.bReadsA, render(ReaderCanRead(b, a))); diff != "" {
				t.Errorf("reader %s\nwriter %s\n(-want +got):\n%s", p.b, p.a, diff)
			}
		})
	}
}

func TestIncompatibilityDetails(t *testing.T) {
	tests := []struct {
		reader, writer string
		want           []Incompatibility
	}{
		{sInt, sLong, []Incompatibility{{TypeMismatch, "/", "reader type: INT not compatible with writer type: LONG"}}},
		{rAIntBInt, rAInt, []Incompatibility{{ReaderFieldMissingDefaultValue, "/fields/1", "b"}}},
		{sFixed4, sFixed8, []Incompatibility{{FixedSizeMismatch, "/size", "expected: 8, found: 4"}}},
		{sAInt, rAInt, []Incompatibility{{NameMismatch, "/name", "expected: R"}}},
		{sUInt, sULong, []Incompatibility{{MissingUnionBranch, "/0", "reader union lacking writer type: LONG"}}},
	}
	for _, tt := range tests {
		t.Run(tt.reader+"<-"+tt.writer, func(t *testing.T) {
			got := ReaderCanRead(MustParse(tt.reader), MustParse(tt.writer))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestModes(t *testing.T) {
	// Confluent's transitive example: v3 reads v2 (f2 defaulted there) but
	// not v1, which never had f2.
	v1 := MustParse(`{"type":"record","name":"R","fields":[{"name":"f1","type":"string"}]}`)
	v2 := MustParse(`{"type":"record","name":"R","fields":[{"name":"f1","type":"string"},{"name":"f2","type":"string","default":"foo"}]}`)
	v3 := MustParse(`{"type":"record","name":"R","fields":[{"name":"f1","type":"string"},{"name":"f2","type":"string"}]}`)
	prev := []Version{{1, v1}, {2, v2}}
	dropF1 := MustParse(`{"type":"record","name":"R","fields":[{"name":"f2","type":"string","default":"x"}]}`)
	tests := []struct {
		mode      Mode
		candidate *Schema
		want      []string // "version direction reason location"
	}{
		{Backward, v3, nil},
		{BackwardTransitive, v3, []string{"1 new READER_FIELD_MISSING_DEFAULT_VALUE /fields/1"}},
		{Forward, v3, nil},
		{ForwardTransitive, v3, nil},
		{Full, v3, nil},
		{FullTransitive, v3, []string{"1 new READER_FIELD_MISSING_DEFAULT_VALUE /fields/1"}},
		{None, v3, nil},
		{Backward, dropF1, nil},
		{Forward, dropF1, []string{"2 old READER_FIELD_MISSING_DEFAULT_VALUE /fields/0"}},
		{Full, dropF1, []string{"2 old READER_FIELD_MISSING_DEFAULT_VALUE /fields/0"}},
		{BackwardTransitive, dropF1, nil},
		{None, dropF1, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s", tt.mode, tt.candidate.Canonical()), func(t *testing.T) {
			var got []string
			for _, p := range tt.mode.Check(tt.candidate, prev) {
				dir := "new"
				if p.Direction == OldReadsNew {
					dir = "old"
				}
				got = append(got, fmt.Sprintf("%d %s %s %s", p.Version, dir, p.Reason, p.Location))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range Modes {
		got, err := ParseMode(string(m))
		if err != nil || got != m {
			t.Errorf("ParseMode(%q) = %q, %v", m, got, err)
		}
	}
	if got, err := ParseMode("full_transitive"); err != nil || got != FullTransitive {
		t.Errorf("lower case: %q, %v", got, err)
	}
	if _, err := ParseMode("SIDEWAYS"); err == nil {
		t.Error("ParseMode(SIDEWAYS) succeeded")
	}
	if !FullTransitive.Transitive() || Full.Transitive() {
		t.Error("Transitive is wrong")
	}
}

// Nested unions of arrays and maps: without a memo of every node pair the
// check costs 4^depth.
func TestNestedUnionsStayFast(t *testing.T) {
	text := `"int"`
	for i := 0; i < 60; i++ {
		text = fmt.Sprintf(`[{"type":"array","items":%s},{"type":"map","values":%s}]`, text, text)
		if len(text) > 1<<16 {
			break
		}
	}
	s := MustParse(text)
	done := make(chan []Incompatibility, 1)
	go func() { done <- ReaderCanRead(s, s) }()
	select {
	case got := <-done:
		if len(got) != 0 {
			t.Errorf("a schema cannot read itself: %v", got)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the check did not finish")
	}
}
