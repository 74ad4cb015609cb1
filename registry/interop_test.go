package registry_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hamba/avro/v2"
	hambareg "github.com/hamba/avro/v2/registry"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/flotilla-ci/flotilla/internal/sqldb/sqldbtest"
	"github.com/flotilla-ci/flotilla/registry"
)

// franz-go's schema registry client, a real Confluent client, against the
// server: register, fetch by id, list, check compatibility, configure and
// delete.
func TestFranzGoClient(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		ts := newServer(t, dsn, registry.DefaultConfig())
		cl, err := sr.NewClient(sr.URLs(ts.URL))
		if err != nil {
			t.Fatal(err)
		}
		const subj = "shop.order.OrderCreated-value"

		types, err := cl.SupportedTypes(ctx)
		if err != nil || !cmp.Equal(types, []sr.SchemaType{sr.TypeAvro, sr.TypeJSON, sr.TypeProtobuf}, cmpopts.SortSlices(func(a, b sr.SchemaType) bool { return a < b })) {
			t.Errorf("SupportedTypes = %v, %v", types, err)
		}
		ss1, err := cl.CreateSchema(ctx, subj, sr.Schema{Schema: v1})
		if err != nil {
			t.Fatalf("CreateSchema v1: %v", err)
		}
		if ss1.ID != 1 || ss1.Version != 1 || ss1.Subject != subj || ss1.Schema.Schema != v1 {
			t.Errorf("CreateSchema v1 = %+v", ss1)
		}
		id2, err := cl.RegisterSchema(ctx, subj, sr.Schema{Schema: v2, Type: sr.TypeAvro}, -1, -1)
		if err != nil || id2 != 2 {
			t.Fatalf("RegisterSchema v2 = %d, %v", id2, err)
		}
		again, err := cl.RegisterSchema(ctx, subj, sr.Schema{Schema: v2}, -1, -1)
		if err != nil || again != id2 {
			t.Errorf("re-register v2 = %d, %v; want the same id %d", again, err, id2)
		}

		byID, err := cl.SchemaByID(ctx, id2)
		if err != nil || byID.Schema != v2 {
			t.Errorf("SchemaByID = %+v, %v", byID, err)
		}
		text, err := cl.SchemaTextByID(ctx, id2)
		if err != nil || text != v2 {
			t.Errorf("SchemaTextByID = %q, %v", text, err)
		}
		subs, err := cl.Subjects(ctx)
		if err != nil || !cmp.Equal(subs, []string{subj}) {
			t.Errorf("Subjects = %v, %v", subs, err)
		}
		vs, err := cl.SubjectVersions(ctx, subj)
		if err != nil || !cmp.Equal(vs, []int{1, 2}) {
			t.Errorf("SubjectVersions = %v, %v", vs, err)
		}
		latest, err := cl.SchemaByVersion(ctx, subj, -1)
		if err != nil || latest.Version != 2 || latest.ID != id2 {
			t.Errorf("SchemaByVersion(latest) = %+v, %v", latest, err)
		}
		looked, err := cl.LookupSchema(ctx, subj, sr.Schema{Schema: v1})
		if err != nil || looked.ID != 1 || looked.Version != 1 {
			t.Errorf("LookupSchema = %+v, %v", looked, err)
		}
		all, err := cl.AllSchemas(ctx)
		if err != nil || len(all) != 2 || all[1].Version != 2 || all[1].Schema.Schema != v2 {
			t.Errorf("AllSchemas = %+v, %v", all, err)
		}
		latestOnly, err := cl.AllSchemas(sr.WithParams(ctx, sr.LatestOnly))
		if err != nil || len(latestOnly) != 1 || latestOnly[0].Version != 2 {
			t.Errorf("AllSchemas(latestOnly) = %+v, %v", latestOnly, err)
		}
		usages, err := cl.SchemaUsagesByID(ctx, id2)
		if err != nil || len(usages) != 1 || usages[0].Subject != subj {
			t.Errorf("SchemaUsagesByID = %+v, %v", usages, err)
		}

		// Compatibility: v3 narrows a type and adds a required field.
		res, err := cl.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), subj, -1, sr.Schema{Schema: v3})
		if err != nil || res.Is || len(res.Messages) == 0 {
			t.Errorf("CheckCompatibility(v3, latest) = %+v, %v", res, err)
		}
		res, err = cl.CheckCompatibility(ctx, subj, -2, sr.Schema{Schema: v2})
		if err != nil || !res.Is {
			t.Errorf("CheckCompatibility(v2, all) = %+v, %v", res, err)
		}
		_, err = cl.RegisterSchema(ctx, subj, sr.Schema{Schema: v3}, -1, -1)
		var re *sr.ResponseError
		if !errors.As(err, &re) || re.StatusCode != http.StatusConflict || re.ErrorCode != 40901 {
			t.Errorf("registering an incompatible schema: %v", err)
		}

		// Levels.
		set := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatFullTransitive}, subj)
		if set[0].Err != nil || set[0].Level != sr.CompatFullTransitive {
			t.Errorf("SetCompatibility = %+v", set[0])
		}
		got := cl.Compatibility(ctx, subj)
		if got[0].Err != nil || got[0].Level != sr.CompatFullTransitive {
			t.Errorf("Compatibility(subject) = %+v", got[0])
		}
		global := cl.Compatibility(ctx)
		if global[0].Err != nil || global[0].Level != sr.CompatBackward {
			t.Errorf("Compatibility(global) = %+v", global[0])
		}
		reset := cl.ResetCompatibility(ctx, subj)
		if reset[0].Err != nil || reset[0].Level != sr.CompatFullTransitive {
			t.Errorf("ResetCompatibility = %+v", reset[0])
		}

		// Modes.
		if ms := cl.SetMode(ctx, sr.ModeReadOnly, subj); ms[0].Err != nil || ms[0].Mode != sr.ModeReadOnly {
			t.Errorf("SetMode = %+v", ms[0])
		}
		if ms := cl.Mode(ctx, subj); ms[0].Err != nil || ms[0].Mode != sr.ModeReadOnly {
			t.Errorf("Mode = %+v", ms[0])
		}
		if _, err := cl.RegisterSchema(ctx, subj, sr.Schema{Schema: v1 + " "}, -1, -1); !errors.As(err, &re) || re.ErrorCode != 42205 {
			t.Errorf("register in READONLY: %v", err)
		}
		if ms := cl.ResetMode(ctx, subj); ms[0].Err != nil {
			t.Errorf("ResetMode = %+v", ms[0])
		}

		// Import with a chosen id and version, as a migration from another
		// registry does.
		if ms := cl.SetMode(ctx, sr.ModeImport, "imported-value"); ms[0].Err != nil {
			t.Fatalf("SetMode(IMPORT) = %+v", ms[0])
		}
		imported, err := cl.CreateSchemaWithIDAndVersion(ctx, "imported-value", sr.Schema{Schema: v3}, 500, 7)
		if err != nil || imported.ID != 500 || imported.Version != 7 {
			t.Errorf("CreateSchemaWithIDAndVersion = %+v, %v", imported, err)
		}

		// Deletes: a hard delete needs a soft delete first.
		if _, err := cl.DeleteSubject(ctx, subj, sr.HardDelete); !errors.As(err, &re) || re.ErrorCode != 40405 {
			t.Errorf("hard delete first: %v", err)
		}
		if err := cl.DeleteSchema(ctx, subj, 2, sr.SoftDelete); err != nil {
			t.Fatal(err)
		}
		if vs, err := cl.SubjectVersions(ctx, subj); err != nil || !cmp.Equal(vs, []int{1}) {
			t.Errorf("versions after deleting 2 = %v, %v", vs, err)
		}
		deleted, err := cl.DeleteSubject(ctx, subj, sr.SoftDelete)
		if err != nil || !cmp.Equal(deleted, []int{1}) {
			t.Errorf("soft DeleteSubject = %v, %v", deleted, err)
		}
		deleted, err = cl.DeleteSubject(ctx, subj, sr.HardDelete)
		if err != nil || !cmp.Equal(deleted, []int{1, 2}) {
			t.Errorf("hard DeleteSubject = %v, %v", deleted, err)
		}
		if _, err := cl.SubjectVersions(ctx, subj); !errors.As(err, &re) || re.ErrorCode != 40401 {
			t.Errorf("after hard delete: %v", err)
		}
	})
}

// hamba/avro's registry client, a second real Confluent client.
func TestHambaRegistryClient(t *testing.T) {
	ctx := context.Background()
	ts := newServer(t, sqldbtest.SQLite(t), registry.DefaultConfig())
	cl, err := hambareg.NewClient(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	const subj = "OrderCreated-value"
	id, _, err := cl.CreateSchema(ctx, subj, v1)
	if err != nil || id != 1 {
		t.Fatalf("CreateSchema = %d, %v", id, err)
	}
	if s, err := cl.GetSchema(ctx, id); err != nil || s.(*avro.RecordSchema).FullName() != "shop.order.OrderCreated" {
		t.Errorf("GetSchema = %v, %v", s, err)
	}
	if ok, err := cl.IsCompatible(ctx, subj, v2); err != nil || !ok {
		t.Errorf("IsCompatible(v2) = %v, %v", ok, err)
	}
	if ok, err := cl.IsCompatible(ctx, subj, v3); err != nil || ok {
		t.Errorf("IsCompatible(v3) = %v, %v", ok, err)
	}
	if got, _, err := cl.IsRegistered(ctx, subj, v1); err != nil || got != id {
		t.Errorf("IsRegistered = %d, %v", got, err)
	}
	if _, _, err := cl.CreateSchema(ctx, subj, v3); err == nil {
		t.Error("CreateSchema(v3) succeeded")
	} else if e := (hambareg.Error{}); !errors.As(err, &e) || e.StatusCode != http.StatusConflict || e.Code != 40901 {
		t.Errorf("CreateSchema(v3): %#v", err)
	}
	info, err := cl.GetLatestSchemaInfo(ctx, subj)
	if err != nil || info.Version != 1 || info.ID != id {
		t.Errorf("GetLatestSchemaInfo = %+v, %v", info, err)
	}
	if err := cl.SetCompatibilityLevel(ctx, subj, "FULL"); err != nil {
		t.Fatal(err)
	}
	if lvl, err := cl.GetCompatibilityLevel(ctx, subj); err != nil || lvl != "FULL" {
		t.Errorf("GetCompatibilityLevel = %q, %v", lvl, err)
	}
	if lvl, err := cl.GetGlobalCompatibilityLevel(ctx); err != nil || lvl != "BACKWARD" {
		t.Errorf("GetGlobalCompatibilityLevel = %q, %v", lvl, err)
	}
	if subs, err := cl.GetSubjects(ctx); err != nil || !cmp.Equal(subs, []string{subj}) {
		t.Errorf("GetSubjects = %v, %v", subs, err)
	}
	if vs, err := cl.DeleteSubject(ctx, subj); err != nil || !cmp.Equal(vs, []int{1}) {
		t.Errorf("DeleteSubject = %v, %v", vs, err)
	}
}

// franz-go's client registers and reads JSON Schema subjects: the type
// travels with the id, Confluent's JSON rules decide compatibility, and its
// Serde frames a JSON payload with the id that decodes back.
func TestFranzGoClientJSONSchema(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		ts := newServer(t, dsn, registry.DefaultConfig())
		cl, err := sr.NewClient(sr.URLs(ts.URL))
		if err != nil {
			t.Fatal(err)
		}
		const subj = "OrderCreated-value"
		v1 := `{"type":"object","properties":{"orderId":{"type":"string"},"total":{"type":"integer"}},"required":["orderId"],"additionalProperties":false}`
		ss, err := cl.CreateSchema(ctx, subj, sr.Schema{Schema: v1, Type: sr.TypeJSON})
		if err != nil {
			t.Fatalf("CreateSchema: %v", err)
		}
		got, err := cl.SchemaByID(ctx, ss.ID)
		if err != nil || got.Type != sr.TypeJSON || got.Schema != v1 {
			t.Errorf("SchemaByID = %+v, %v", got, err)
		}
		latest, err := cl.SchemaByVersion(ctx, subj, -1)
		if err != nil || latest.Type != sr.TypeJSON || latest.Version != 1 {
			t.Errorf("SchemaByVersion = %+v, %v", latest, err)
		}
		if l, err := cl.LookupSchema(ctx, subj, sr.Schema{Schema: v1, Type: sr.TypeJSON}); err != nil || l.ID != ss.ID {
			t.Errorf("LookupSchema = %+v, %v", l, err)
		}
		// The same text as Avro is not this schema (and not valid Avro).
		if _, err := cl.LookupSchema(ctx, subj, sr.Schema{Schema: v1}); err == nil {
			t.Error("the JSON schema was found as Avro")
		}
		// BACKWARD (the default): a required property added to the closed
		// model is refused; an optional one is accepted.
		v2bad := `{"type":"object","properties":{"orderId":{"type":"string"},"total":{"type":"integer"},"coupon":{"type":"string"}},"required":["orderId","coupon"],"additionalProperties":false}`
		res, err := cl.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), subj, -1, sr.Schema{Schema: v2bad, Type: sr.TypeJSON})
		if err != nil || res.Is || len(res.Messages) == 0 || !contains(res.Messages[0], "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL") {
			t.Errorf("CheckCompatibility of a required property added = %+v, %v", res, err)
		}
		var re *sr.ResponseError
		if _, err := cl.CreateSchema(ctx, subj, sr.Schema{Schema: v2bad, Type: sr.TypeJSON}); !errors.As(err, &re) || re.StatusCode != http.StatusConflict {
			t.Errorf("CreateSchema of an incompatible schema: %v", err)
		}
		v2 := `{"type":"object","properties":{"orderId":{"type":"string"},"total":{"type":"integer"},"coupon":{"type":"string"}},"required":["orderId"],"additionalProperties":false}`
		ss2, err := cl.CreateSchema(ctx, subj, sr.Schema{Schema: v2, Type: sr.TypeJSON})
		if err != nil || ss2.Version != 2 {
			t.Fatalf("CreateSchema v2 = %+v, %v", ss2, err)
		}
		// An Avro schema in a JSON subject: another type is incompatible.
		res, err = cl.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), subj, -1, sr.Schema{Schema: `"string"`})
		if err != nil || res.Is || len(res.Messages) == 0 || res.Messages[0] != "Incompatible because of different schema type" {
			t.Errorf("CheckCompatibility across types = %+v, %v", res, err)
		}
		// Invalid JSON Schema: 42201.
		if _, err := cl.CreateSchema(ctx, "bad-value", sr.Schema{Schema: `{"type":"strng"}`, Type: sr.TypeJSON}); !errors.As(err, &re) || re.ErrorCode != 42201 {
			t.Errorf("CreateSchema of an invalid JSON schema: %v", err)
		}
		// The wire format: franz-go's Serde frames JSON payloads with the id.
		type order struct {
			OrderID string `json:"orderId"`
			Total   int    `json:"total"`
		}
		var serde sr.Serde
		serde.Register(ss2.ID, order{}, sr.EncodeFn(func(v any) ([]byte, error) { return json.Marshal(v) }),
			sr.DecodeFn(func(b []byte, v any) error { return json.Unmarshal(b, v) }))
		b, err := serde.Encode(order{OrderID: "o1", Total: 5})
		if err != nil || b[0] != 0 || int(binary.BigEndian.Uint32(b[1:5])) != ss2.ID {
			t.Fatalf("Encode = %x, %v", b, err)
		}
		var back order
		if err := serde.Decode(b, &back); err != nil || back.OrderID != "o1" {
			t.Errorf("Decode = %+v, %v", back, err)
		}
	})
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// franz-go's client registers and reads Protobuf subjects, with an import
// as a reference, and its Serde writes the Confluent header with the
// message indexes that name the message within the file.
func TestFranzGoClientProtobuf(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		ts := newServer(t, dsn, registry.DefaultConfig())
		cl, err := sr.NewClient(sr.URLs(ts.URL))
		if err != nil {
			t.Fatal(err)
		}
		money := "syntax = \"proto3\";\npackage shop.common;\nmessage Money { int64 cents = 1; string currency = 2; }\n"
		ms, err := cl.CreateSchema(ctx, "shop/common/money.proto", sr.Schema{Schema: money, Type: sr.TypeProtobuf})
		if err != nil {
			t.Fatalf("CreateSchema money: %v", err)
		}
		order := "syntax = \"proto3\";\npackage shop;\nimport \"shop/common/money.proto\";\nmessage OrderCreated { string order_id = 1; shop.common.Money total = 2; }\nmessage OrderCancelled { string order_id = 1; }\n"
		refs := []sr.SchemaReference{{Name: "shop/common/money.proto", Subject: "shop/common/money.proto", Version: ms.Version}}
		os, err := cl.CreateSchema(ctx, "OrderCreated-value", sr.Schema{Schema: order, Type: sr.TypeProtobuf, References: refs})
		if err != nil {
			t.Fatalf("CreateSchema order: %v", err)
		}
		got, err := cl.SchemaByID(ctx, os.ID)
		if err != nil || got.Type != sr.TypeProtobuf || got.Schema != order || len(got.References) != 1 {
			t.Errorf("SchemaByID = %+v, %v", got, err)
		}
		// A scalar kind outside its wire group is refused, with Confluent's type.
		narrowed := strings.Replace(order, "string order_id = 1; shop.common.Money", "int64 order_id = 1; shop.common.Money", 1)
		res, err := cl.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), "OrderCreated-value", -1, sr.Schema{Schema: narrowed, Type: sr.TypeProtobuf, References: refs})
		if err != nil || res.Is || len(res.Messages) == 0 || !contains(res.Messages[0], "FIELD_SCALAR_KIND_CHANGED") {
			t.Errorf("CheckCompatibility of a changed scalar kind = %+v, %v", res, err)
		}
		added := strings.Replace(order, "shop.common.Money total = 2;", "shop.common.Money total = 2; string coupon = 3;", 1)
		if ss, err := cl.CreateSchema(ctx, "OrderCreated-value", sr.Schema{Schema: added, Type: sr.TypeProtobuf, References: refs}); err != nil || ss.Version != 2 {
			t.Errorf("CreateSchema of a field added = %+v, %v", ss, err)
		}
		// The wire format: magic byte, id, then the message indexes (the
		// second message: [1], written as the count 1 and the index 1).
		var serde sr.Serde
		serde.Register(os.ID, "cancelled", sr.Index(1), sr.EncodeFn(func(v any) ([]byte, error) { return []byte(v.(string)), nil }))
		b, err := serde.Encode("cancelled")
		if err != nil {
			t.Fatal(err)
		}
		if b[0] != 0 || int(binary.BigEndian.Uint32(b[1:5])) != os.ID || b[5] != 2 || b[6] != 2 {
			t.Errorf("header = %x", b[:7])
		}
	})
}

// TestFranzGoClientJSONSchemaReferences: a JSON schema refers to another
// subject through the registry's references, as Confluent's do: the
// reference's name is what its "$ref" says. It registers, reads back with
// its references, and a candidate is checked through the referenced
// schema; a "$ref" with no reference for it is 42201.
func TestFranzGoClientJSONSchemaReferences(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		ts := newServer(t, dsn, registry.DefaultConfig())
		cl, err := sr.NewClient(sr.URLs(ts.URL))
		if err != nil {
			t.Fatal(err)
		}
		address := `{"type":"object","properties":{"street":{"type":"string"},"zip":{"type":"string"}},"required":["street"],"additionalProperties":false}`
		if _, err := cl.CreateSchema(ctx, "Address", sr.Schema{Schema: address, Type: sr.TypeJSON}); err != nil {
			t.Fatalf("CreateSchema Address: %v", err)
		}
		refs := []sr.SchemaReference{{Name: "address.schema.json", Subject: "Address", Version: 1}}
		order := `{"type":"object","properties":{"id":{"type":"string"},"shipTo":{"$ref":"address.schema.json"}},"required":["id"],"additionalProperties":false}`
		ss, err := cl.CreateSchema(ctx, "OrderCreated-value", sr.Schema{Schema: order, Type: sr.TypeJSON, References: refs})
		if err != nil {
			t.Fatalf("CreateSchema with a reference: %v", err)
		}
		got, err := cl.SchemaByID(ctx, ss.ID)
		if err != nil || got.Type != sr.TypeJSON || len(got.References) != 1 || got.References[0].Name != "address.schema.json" {
			t.Errorf("SchemaByID = %+v, %v", got, err)
		}
		if used, err := cl.SchemaReferences(ctx, "Address", 1); err != nil || len(used) != 1 || used[0].Subject != "OrderCreated-value" {
			t.Errorf("SchemaReferences = %+v, %v", used, err)
		}
		// A candidate whose reference is a narrower address (another
		// version of Address, closed, with zip now an integer).
		narrow := `{"type":"object","properties":{"street":{"type":"string"},"zip":{"type":"integer"}},"required":["street"],"additionalProperties":false}`
		if r := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}, "Address"); len(r) != 1 || r[0].Err != nil {
			t.Fatalf("SetCompatibility = %+v", r)
		}
		if _, err := cl.CreateSchema(ctx, "Address", sr.Schema{Schema: narrow, Type: sr.TypeJSON}); err != nil {
			t.Fatalf("CreateSchema Address v2: %v", err)
		}
		refs2 := []sr.SchemaReference{{Name: "address.schema.json", Subject: "Address", Version: 2}}
		res, err := cl.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), "OrderCreated-value", -1, sr.Schema{Schema: order, Type: sr.TypeJSON, References: refs2})
		if err != nil || res.Is || len(res.Messages) == 0 || !contains(res.Messages[0], "shipTo") {
			t.Errorf("CheckCompatibility through a narrowed reference = %+v, %v", res, err)
		}
		res, err = cl.CheckCompatibility(ctx, "OrderCreated-value", -1, sr.Schema{Schema: order, Type: sr.TypeJSON, References: refs})
		if err != nil || !res.Is {
			t.Errorf("CheckCompatibility of the same schema = %+v, %v", res, err)
		}
		var re *sr.ResponseError
		if _, err := cl.CreateSchema(ctx, "Stray-value", sr.Schema{Schema: order, Type: sr.TypeJSON}); !errors.As(err, &re) || re.ErrorCode != 42201 {
			t.Errorf("CreateSchema with a $ref and no reference: %v", err)
		}
	})
}
