package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// protoShop copies testdata/schema/protoshop (events in Protobuf and JSON
// Schema) into a git repository, committed on main.
func protoShop(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join("testdata", "schema", "protoshop")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		writeFile(t, filepath.Join(dir, rel), string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	git(t, dir, "init", "-q")
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "v1")
	return dir
}

func editFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s lacks %q", path, old)
	}
	writeFile(t, path, strings.Replace(string(b), old, new, 1))
}

func wantAll(t *testing.T, what string, code, wantCode int, out string, want ...string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("%s: exit %d, want %d\n%s", what, code, wantCode, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s: output lacks %q:\n%s", what, w, out)
		}
	}
}

// TestSchemaCheckProtobufAndJSONSchema: a project whose events are
// Protobuf (.proto) and JSON Schema (.schema.json) end to end: schema
// check against git reads them; a breaking Protobuf change is refused
// naming the file, the field (name, number and line) and the consumers;
// a JSON Schema change by its own rules; a removed .proto with
// subscribers fails; register sends each with its schemaType, and the
// check against the registry (what the deploy gate runs) refuses the
// same change.
func TestSchemaCheckProtobufAndJSONSchema(t *testing.T) {
	dir := protoShop(t)
	manifest := filepath.Join(dir, "flotilla.yaml")
	proto := filepath.Join(dir, "shop/order/schemas/OrderPlaced.proto")
	jsonFile := filepath.Join(dir, "shop/payment/schemas/PaymentFailed.schema.json")

	code, out, errOut := runCLI(t, "-f", manifest, "schema", "check")
	wantAll(t, "unchanged", code, 0, out+errOut,
		"ok   shop/order/schemas/OrderPlaced.proto  (OrderPlaced, order-service)",
		"ok   shop/payment/schemas/PaymentFailed.schema.json  (PaymentFailed, payment-service)",
		"vs HEAD: unchanged", "2 schemas checked, 0 incompatible")

	// A compatible change: a new optional field.
	editFile(t, proto, "  Status status = 5;\n", "  Status status = 5;\n  string coupon = 6;\n")
	code, out, errOut = runCLI(t, "-f", manifest, "schema", "check")
	wantAll(t, "a field added", code, 0, out+errOut, "vs HEAD: compatible (FULL)")

	// A breaking one: total_cents from int64 to double.
	editFile(t, proto, "int64 total_cents = 3;", "double total_cents = 3;")
	code, out, errOut = runCLI(t, "-f", manifest, "schema", "check")
	wantAll(t, "a scalar kind changed", code, 1, out+errOut,
		"FAIL shop/order/schemas/OrderPlaced.proto  (OrderPlaced, order-service)",
		"vs HEAD: incompatible (FULL)",
		"FIELD_SCALAR_KIND_CHANGED at #/shop.order.OrderPlaced/3",
		"does not match its kind in the old schema: field total_cents (number 3, line 9) (new schema reading data written with the old)",
		"consumers that would break: billing-service, mail-service",
		"2 schemas checked, 1 incompatible")
	code, out, _ = runCLI(t, "-f", manifest, "schema", "check", "-o", "github")
	wantAll(t, "github annotations", code, 1, out, "::error file=shop/order/schemas/OrderPlaced.proto,line=9,title=FIELD_SCALAR_KIND_CHANGED")
	git(t, dir, "checkout", "-q", "--", ".")

	// A field renumbered: the old number's data is lost to the reader.
	editFile(t, proto, "string customer_id = 2;", "string customer_id = 7;")
	code, out, _ = runCLI(t, "-f", manifest, "schema", "check", "--mode", "BACKWARD")
	if code != 0 {
		// Confluent's rules allow removing and adding optional proto3
		// fields; the check must say so rather than refuse.
		t.Errorf("renumbered optional field under BACKWARD: exit %d\n%s", code, out)
	}
	git(t, dir, "checkout", "-q", "--", ".")

	// JSON Schema: a property removed from a closed content model.
	editFile(t, jsonFile, `,
    "amountCents": {"type": "integer"}`, "")
	code, out, errOut = runCLI(t, "-f", manifest, "schema", "check")
	wantAll(t, "a property removed from a closed model", code, 1, out+errOut,
		"FAIL shop/payment/schemas/PaymentFailed.schema.json  (PaymentFailed, payment-service)",
		"PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL at #/properties/amountCents",
		"consumers that would break: mail-service, order-service")
	git(t, dir, "checkout", "-q", "--", ".")

	// A .proto removed while services subscribe to its event.
	git(t, dir, "rm", "-q", "shop/order/schemas/OrderPlaced.proto")
	code, out, errOut = runCLI(t, "-f", manifest, "schema", "check")
	wantAll(t, "removed", code, 1, out+errOut, "FAIL shop/order/schemas/OrderPlaced.proto", "removed since HEAD", "consumers that would break: billing-service, mail-service")
	git(t, dir, "reset", "-q", "--hard")

	// The registry: register sends the types; the check against it (the
	// deploy gate's check) refuses the same break.
	url := startRegistry(t, "")
	code, out, errOut = runCLI(t, "-f", manifest, "schema", "register", "--registry", url, "--level", "FULL")
	wantAll(t, "register", code, 0, out+errOut, "ok   shop/order/schemas/OrderPlaced.proto  OrderPlaced-value id 1", "ok   shop/payment/schemas/PaymentFailed.schema.json  PaymentFailed-value id 2")
	code, out, errOut = runCLI(t, "-f", manifest, "schema", "check", "--base", "", "--registry", url)
	wantAll(t, "check of what is registered", code, 0, out+errOut, "vs registry OrderPlaced-value: registered as version 1 (id 1)", "vs registry PaymentFailed-value: registered as version 1 (id 2)")
	editFile(t, proto, "int64 total_cents = 3;", "double total_cents = 3;")
	code, out, errOut = runCLI(t, "-f", manifest, "schema", "check", "--base", "", "--registry", url)
	wantAll(t, "registry check of a break", code, 1, out+errOut,
		"vs registry OrderPlaced-value: incompatible (FULL)",
		"FIELD_SCALAR_KIND_CHANGED at #/shop.order.OrderPlaced/3",
		"field total_cents (number 3, line 9)", "(version 1, new schema reading data written with the old)",
		"consumers that would break: billing-service, mail-service")
	code, out, errOut = runCLI(t, "-f", manifest, "schema", "register", "--registry", url)
	wantAll(t, "register of a break", code, 1, out+errOut, "FAIL shop/order/schemas/OrderPlaced.proto", "40901")
}
