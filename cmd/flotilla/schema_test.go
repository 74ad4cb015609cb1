package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/flotilla-ci/flotilla/internal/sqldb/sqldbtest"
)

const schemaManifest = `services:
  order-service:
    paths: [shop/order]
    publishes: [OrderCreated]
  inventory-service:
    paths: [shop/inventory]
    publishes: [StockReserved]
    subscribes: [OrderCreated]
  payment-service:
    paths: [shop/payment]
    subscribes: [OrderCreated, StockReserved]
  notification-service:
    paths: [shop/notification]
    subscribes: [OrderCreated]
`

const orderCreatedV1 = `{
  "type": "record",
  "name": "OrderCreated",
  "namespace": "shop.order",
  "fields": [
    {"name": "order_id", "type": "string"},
    {"name": "customer_id", "type": "string"},
    {"name": "total_cents", "type": "long"},
    {"name": "status", "type": {"type": "enum", "name": "OrderStatus", "symbols": ["PENDING", "PAID", "CANCELLED"]}}
  ]
}
`

const stockReservedV1 = `{"type":"record","name":"StockReserved","namespace":"shop.inventory","fields":[
  {"name":"order_id","type":"string"},{"name":"sku","type":"string"},{"name":"quantity","type":"int"}]}
`

func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=ci", "-c", "user.email=ci@example.com", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"}, args...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// schemaRepo makes a git repository holding the manifest and the v1
// schemas, committed on main.
func schemaRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "flotilla.yaml"), schemaManifest)
	writeFile(t, filepath.Join(dir, "shop/order/schemas/OrderCreated.avsc"), orderCreatedV1)
	writeFile(t, filepath.Join(dir, "shop/inventory/schemas/StockReserved.avsc"), stockReservedV1)
	git(t, dir, "init", "-q")
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "v1")
	return dir
}

func TestSchemaCheckAgainstGit(t *testing.T) {
	orderFile := "shop/order/schemas/OrderCreated.avsc"
	tests := []struct {
		name, file, content string
		args                []string
		code                int
		want                []string
	}{
		{
			name: "removed field without default", file: orderFile,
			content: strings.Replace(orderCreatedV1, `    {"name": "customer_id", "type": "string"},`+"\n", "", 1),
			code:    1,
			want: []string{
				"FAIL shop/order/schemas/OrderCreated.avsc  (OrderCreated, order-service)",
				"vs main: incompatible (FULL)",
				"READER_FIELD_MISSING_DEFAULT_VALUE at /fields/1: The field 'customer_id' at path '/fields/1' in the old schema has no default value and is missing in the new schema",
				"consumers that would break: inventory-service, notification-service, payment-service",
			},
		},
		{
			name: "narrowed type", file: orderFile,
			content: strings.Replace(orderCreatedV1, `"total_cents", "type": "long"`, `"total_cents", "type": "int"`, 1),
			code:    1,
			want: []string{
				"TYPE_MISMATCH at /fields/2/type: The type (path '/fields/2/type') of a field in the new schema does not match with the old schema",
				"consumers that would break: inventory-service, notification-service, payment-service",
			},
		},
		{
			name: "removed enum symbol", file: orderFile,
			content: strings.Replace(orderCreatedV1, `, "CANCELLED"]`, `]`, 1),
			code:    1,
			want: []string{
				"MISSING_ENUM_SYMBOLS at /fields/3/type/symbols: The new schema is missing enum symbols '[CANCELLED]' at path '/fields/3/type/symbols' in the old schema",
				"consumers that would break: inventory-service, notification-service, payment-service",
			},
		},
		{
			name: "renamed record", file: orderFile,
			content: strings.Replace(orderCreatedV1, `"name": "OrderCreated"`, `"name": "OrderPlaced"`, 1),
			code:    1,
			want: []string{
				"FAIL shop/order/schemas/OrderCreated.avsc  (OrderPlaced, order-service)",
				"NAME_MISMATCH at /name: The name of the schema has changed (path '/name')",
				"consumers that would break: inventory-service, notification-service, payment-service",
			},
		},
		{
			name: "field added with a default", file: orderFile,
			content: strings.Replace(orderCreatedV1, `{"name": "total_cents", "type": "long"},`, `{"name": "total_cents", "type": "long"}, {"name": "currency", "type": "string", "default": "EUR"},`, 1),
			code:    0,
			want: []string{
				"ok   shop/order/schemas/OrderCreated.avsc  (OrderCreated, order-service)",
				"vs main: compatible (FULL)",
				"2 schemas checked, 0 incompatible",
			},
		},
		{
			name: "field added without a default passes FORWARD only", file: orderFile,
			content: strings.Replace(orderCreatedV1, `{"name": "total_cents", "type": "long"},`, `{"name": "total_cents", "type": "long"}, {"name": "currency", "type": "string"},`, 1),
			args:    []string{"--mode", "forward"},
			code:    0,
			want:    []string{"vs main: compatible (FORWARD)"},
		},
		{
			name: "invalid schema", file: orderFile,
			content: `{"type":"record","name":"OrderCreated","fields":[{"name":"a","type":"int","default":"x"}]}`,
			code:    1,
			want:    []string{`invalid schema: at /fields/0: default of field "a": "x" is not an integer`},
		},
		{
			name: "removed schema with subscribers", file: "shop/inventory/schemas/StockReserved.avsc",
			code: 1,
			want: []string{
				"FAIL shop/inventory/schemas/StockReserved.avsc  (StockReserved, inventory-service)",
				"removed since main",
				"consumers that would break: payment-service",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := schemaRepo(t)
			git(t, dir, "checkout", "-q", "-b", "change")
			if tt.content == "" {
				git(t, dir, "rm", "-q", tt.file)
			} else {
				writeFile(t, filepath.Join(dir, tt.file), tt.content)
			}
			git(t, dir, "commit", "-q", "-am", tt.name)
			args := append([]string{"-f", filepath.Join(dir, "flotilla.yaml"), "schema", "check", "--base", "main"}, tt.args...)
			code, out, errOut := runCLI(t, args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestSchemaCheckReport(t *testing.T) {
	dir := schemaRepo(t)
	changed := strings.Replace(orderCreatedV1, `"total_cents", "type": "long"`, `"total_cents", "type": "int"`, 1)
	changed = strings.Replace(changed, `, "CANCELLED"]`, `]`, 1)
	changed = strings.Replace(changed, `{"name": "order_id", "type": "string"},`, `{"name": "order_id", "type": "string"}, {"name": "coupon", "type": "string"},`, 1)
	writeFile(t, filepath.Join(dir, "shop/order/schemas/OrderCreated.avsc"), changed)
	// Uncommitted changes are checked against HEAD by default.
	code, out, errOut := runCLI(t, "-f", filepath.Join(dir, "flotilla.yaml"), "schema", "check")
	if code != 1 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	golden(t, "schema/check-report.txt", out)

	code, out, _ = runCLI(t, "-f", filepath.Join(dir, "flotilla.yaml"), "schema", "check", "-o", "github")
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	var annotations []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "::") {
			annotations = append(annotations, line)
		}
	}
	golden(t, "schema/check-github.txt", strings.Join(annotations, "\n")+"\n")
}

func TestSchemaCheckBadInput(t *testing.T) {
	dir := schemaRepo(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--base", "no-such-branch"}, "--base no-such-branch: no such commit or branch here"},
		{[]string{"--mode", "sideways"}, `--mode: unknown compatibility level "sideways"`},
	} {
		code, _, errOut := runCLI(t, append([]string{"-f", filepath.Join(dir, "flotilla.yaml"), "schema", "check"}, tt.args...)...)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tt.args, code, errOut, tt.want)
		}
	}
	if code, _, errOut := runCLI(t, "-f", filepath.Join(dir, "flotilla.yaml"), "schema", "register"); code != 2 || !strings.Contains(errOut, "--registry URL") {
		t.Errorf("register without a registry: %d %q", code, errOut)
	}
}

// startRegistry runs `flotilla registry serve` in-process on port 0.
func startRegistry(t *testing.T, user string) string {
	t.Helper()
	return startRegistryOn(t, filepath.Join(t.TempDir(), "registry.db"), user)
}

func startRegistryOn(t *testing.T, dsn, user string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	rs := &registryServe{addr: "127.0.0.1:0", db: dsn, user: user,
		level: "BACKWARD", maxBody: 1 << 20, ready: func(a string) { ready <- a }, stdout: &strings.Builder{}, stderr: &strings.Builder{}}
	done := make(chan error, 1)
	go func() { done <- rs.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("registry serve: %v", err)
		}
	})
	select {
	case addr := <-ready:
		return "http://" + addr
	case err := <-done:
		t.Fatalf("registry serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("registry serve did not start")
	}
	return ""
}

func TestSchemaRegisterAndCheckAgainstRegistry(t *testing.T) {
	dir := schemaRepo(t)
	url := startRegistry(t, "ci:s3cret")
	manifest := filepath.Join(dir, "flotilla.yaml")

	code, out, _ := runCLI(t, "-f", manifest, "schema", "register", "--registry", url)
	if code != 1 || !strings.Contains(out, "40101") {
		t.Fatalf("register without credentials: exit %d\n%s", code, out)
	}
	code, out, errOut := runCLI(t, "-f", manifest, "schema", "register", "--registry", url, "--user", "ci:s3cret", "--level", "full")
	if code != 0 {
		t.Fatalf("register: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, w := range []string{"ok   shop/order/schemas/OrderCreated.avsc  OrderCreated-value id 2", "ok   shop/inventory/schemas/StockReserved.avsc  StockReserved-value id 1"} {
		if !strings.Contains(out, w) {
			t.Errorf("register output lacks %q:\n%s", w, out)
		}
	}
	code, out, _ = runCLI(t, "-f", manifest, "schema", "check", "--base", "", "--registry", url)
	if code != 0 || !strings.Contains(out, "vs registry OrderCreated-value: registered as version 1 (id 2)") {
		t.Errorf("check of registered schemas: exit %d\n%s", code, out)
	}

	// Narrow a type: the level register set (FULL) rejects it, naming the version.
	writeFile(t, filepath.Join(dir, "shop/order/schemas/OrderCreated.avsc"),
		strings.Replace(orderCreatedV1, `"total_cents", "type": "long"`, `"total_cents", "type": "int"`, 1))
	code, out, _ = runCLI(t, "-f", manifest, "schema", "check", "--base", "", "--registry", url)
	if code != 1 || !strings.Contains(out, "vs registry OrderCreated-value: incompatible (FULL)") ||
		!strings.Contains(out, "TYPE_MISMATCH at /fields/2/type") || !strings.Contains(out, "(version 1, new schema reading data written with the old)") {
		t.Errorf("check of a narrowed type: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "-f", manifest, "schema", "register", "--registry", url, "--user", "ci:s3cret")
	if code != 1 || !strings.Contains(out, "FAIL shop/order/schemas/OrderCreated.avsc") || !strings.Contains(out, "40901") {
		t.Errorf("register of an incompatible schema: exit %d\n%s", code, out)
	}
}

func TestRegistryServeBadFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--default-level", "sideways"}, "--default-level: unknown compatibility level"},
		{[]string{"--user", "nopassword"}, "--user: want NAME:PASSWORD"},
		{[]string{"--max-body-bytes", "10"}, "max_body_bytes: 10 is too small"},
		{[]string{"--addr", "256.0.0.1:1"}, "registry serve --addr"},
	} {
		args := append([]string{"registry", "serve", "--db", filepath.Join(t.TempDir(), "r.db")}, tt.args...)
		code, _, errOut := runCLI(t, args...)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tt.args, code, errOut, tt.want)
		}
	}
}

func TestSchemaCompare(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old.avsc")
	narrowed := filepath.Join(dir, "new.avsc")
	widened := filepath.Join(dir, "wide.avsc")
	writeFile(t, old, orderCreatedV1)
	writeFile(t, narrowed, strings.Replace(orderCreatedV1, `"total_cents", "type": "long"`, `"total_cents", "type": "int"`, 1))
	writeFile(t, widened, strings.Replace(orderCreatedV1, `"total_cents", "type": "long"`, `"total_cents", "type": "double"`, 1))
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{old, narrowed}, 1, "TYPE_MISMATCH at /fields/2/type"},
		{[]string{old, narrowed, "--mode", "forward"}, 0, "is FORWARD compatible with"},
		{[]string{old, widened, "--mode", "backward"}, 0, "is BACKWARD compatible with"},
		{[]string{old, widened}, 1, "not FULL compatible"},
		{[]string{old, filepath.Join(dir, "missing.avsc")}, 2, "no such file"},
		{[]string{old, old, "--mode", "up"}, 2, "unknown compatibility level"},
	}
	for _, tt := range tests {
		code, out, errOut := runCLI(t, append([]string{"schema", "compare"}, tt.args...)...)
		if code != tt.code || !strings.Contains(out+errOut, tt.want) {
			t.Errorf("%v: exit %d\n%s%s\nwant exit %d and %q", tt.args, code, out, errOut, tt.code, tt.want)
		}
	}
}

// The same command on PostgreSQL (FLOTILLA_TEST_POSTGRES): register the
// repository's schemas, then check against them.
func TestRegistryServePostgres(t *testing.T) {
	url := startRegistryOn(t, sqldbtest.Postgres(t), "")
	dir := schemaRepo(t)
	manifest := filepath.Join(dir, "flotilla.yaml")
	if code, out, errOut := runCLI(t, "-f", manifest, "schema", "register", "--registry", url); code != 0 {
		t.Fatalf("register: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ := runCLI(t, "-f", manifest, "schema", "check", "--base", "", "--registry", url)
	if code != 0 || !strings.Contains(out, "vs registry StockReserved-value: registered as version 1 (id 1)") {
		t.Errorf("check: exit %d\n%s", code, out)
	}
}

// A manifest below the repository's top level: paths at the base are
// found under the manifest's folder.
func TestSchemaCheckManifestInSubfolder(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, "platform")
	writeFile(t, filepath.Join(dir, "flotilla.yaml"), schemaManifest)
	writeFile(t, filepath.Join(dir, "shop/order/schemas/OrderCreated.avsc"), orderCreatedV1)
	writeFile(t, filepath.Join(dir, "shop/inventory/schemas/StockReserved.avsc"), stockReservedV1)
	git(t, top, "init", "-q")
	git(t, top, "add", ".")
	git(t, top, "commit", "-q", "-m", "v1")
	writeFile(t, filepath.Join(dir, "shop/order/schemas/OrderCreated.avsc"), strings.Replace(orderCreatedV1, `, "CANCELLED"]`, `]`, 1))
	git(t, top, "rm", "-q", "platform/shop/inventory/schemas/StockReserved.avsc")
	code, out, errOut := runCLI(t, "-f", filepath.Join(dir, "flotilla.yaml"), "schema", "check", "--base", "HEAD")
	if code != 1 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, w := range []string{"MISSING_ENUM_SYMBOLS at /fields/3/type/symbols", "FAIL shop/inventory/schemas/StockReserved.avsc", "removed since HEAD"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// A schema file moved (or renamed) is compared with its old self, not
// reported as removed and new.
func TestSchemaCheckMovedFile(t *testing.T) {
	dir := schemaRepo(t)
	if err := os.MkdirAll(filepath.Join(dir, "shop/order/events"), 0o755); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "mv", "shop/order/schemas/OrderCreated.avsc", "shop/order/events/order-created.avsc")
	writeFile(t, filepath.Join(dir, "shop/order/events/order-created.avsc"), strings.Replace(orderCreatedV1, `"total_cents", "type": "long"`, `"total_cents", "type": "int"`, 1))
	code, out, _ := runCLI(t, "-f", filepath.Join(dir, "flotilla.yaml"), "schema", "check")
	if code != 1 || strings.Contains(out, "removed since") || !strings.Contains(out, "vs HEAD (as shop/order/schemas/OrderCreated.avsc): incompatible (FULL)") ||
		!strings.Contains(out, "TYPE_MISMATCH at /fields/2/type") {
		t.Errorf("exit %d\n%s", code, out)
	}
	git(t, dir, "checkout", "-q", "--", ".")
	writeFile(t, filepath.Join(dir, "shop/order/events/order-created.avsc"), orderCreatedV1)
	code, out, _ = runCLI(t, "-f", filepath.Join(dir, "flotilla.yaml"), "schema", "check")
	if code != 0 || !strings.Contains(out, "vs HEAD (as shop/order/schemas/OrderCreated.avsc): unchanged") {
		t.Errorf("moved unchanged: exit %d\n%s", code, out)
	}
}

func TestRegistryImport(t *testing.T) {
	src := startRegistry(t, "")
	dst := startRegistry(t, "admin:pw")
	dir := schemaRepo(t)
	manifest := filepath.Join(dir, "flotilla.yaml")
	if code, out, errOut := runCLI(t, "-f", manifest, "schema", "register", "--registry", src); code != 0 {
		t.Fatalf("register: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := runCLI(t, "registry", "import", "--from", src, "--to", dst)
	if code != 2 || !strings.Contains(errOut, "Unauthorized") {
		t.Errorf("import without credentials: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "registry", "import", "--from", src, "--to", dst, "--user", "admin:pw")
	if code != 0 || !strings.Contains(out, "imported 2 subjects: 2 versions of 2 schemas, same ids") {
		t.Fatalf("import: exit %d\n%s%s", code, out, errOut)
	}
	// The repository's schemas are now registered in the target, under the same ids.
	code, out, _ = runCLI(t, "-f", manifest, "schema", "check", "--base", "", "--registry", dst)
	if code != 0 || !strings.Contains(out, "vs registry OrderCreated-value: registered as version 1 (id 2)") {
		t.Errorf("check against the target: exit %d\n%s", code, out)
	}
	if code, _, errOut := runCLI(t, "registry", "import", "--to", dst); code != 2 || !strings.Contains(errOut, "--from URL") {
		t.Errorf("import without --from: exit %d %q", code, errOut)
	}
}

// The reproduction: the writer's coupon has a default, the mail
// reader's has none; deleting coupon from the writer is FULL-compatible
// with the writer's history, and still breaks notification-service.
func TestSchemaCheckReaders(t *testing.T) {
	const writerV1 = `{
  "type": "record", "name": "OrderCreated", "namespace": "shop.order",
  "fields": [
    {"name": "order_id", "type": "string"},
    {"name": "coupon", "type": "string", "default": ""},
    {"name": "total_cents", "type": "long"}
  ]
}
`
	const reader = `{
  "type": "record", "name": "OrderCreated", "namespace": "shop.order",
  "fields": [
    {"name": "order_id", "type": "string"},
    {"name": "coupon", "type": "string"}
  ]
}
`
	const manifest = `services:
  order-service:
    paths: [shop/order]
    publishes: [OrderCreated]
  notification-service:
    paths: [shop/notification]
    subscribes: [OrderCreated]
`
	repo := func(t *testing.T) string {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "flotilla.yaml"), manifest)
		writeFile(t, filepath.Join(dir, "shop/order/schemas/OrderCreated.avsc"), writerV1)
		writeFile(t, filepath.Join(dir, "shop/notification/readers/OrderCreated.avsc"), reader)
		git(t, dir, "init", "-q")
		git(t, dir, "add", ".")
		git(t, dir, "commit", "-q", "-m", "v1")
		return dir
	}
	t.Run("coupon removed from the writer", func(t *testing.T) {
		dir := repo(t)
		writeFile(t, filepath.Join(dir, "shop/order/schemas/OrderCreated.avsc"),
			strings.Replace(writerV1, `    {"name": "coupon", "type": "string", "default": ""},`+"\n", "", 1))
		git(t, dir, "commit", "-q", "-am", "drop coupon")
		// compare, like the registry's modes, sees no break.
		code, out, errOut := runCLI(t, "-f", filepath.Join(dir, "flotilla.yaml"), "schema", "check", "--base", "HEAD~1")
		if code != 1 {
			t.Errorf("exit %d, want 1\n%s\n%s", code, out, errOut)
		}
		for _, w := range []string{
			"FAIL shop/order/schemas/OrderCreated.avsc  (OrderCreated, order-service)",
			"vs HEAD~1: compatible (FULL)",
			"refused: notification-service cannot read it: shop/notification/readers/OrderCreated.avsc:5, field coupon: READER_FIELD_MISSING_DEFAULT_VALUE (the reader's field coupon has no default and the writer does not write it)",
			"FAIL shop/notification/readers/OrderCreated.avsc  (notification-service reader of OrderCreated)",
			"reads HEAD~1:shop/order/schemas/OrderCreated.avsc",
			"cannot read shop/order/schemas/OrderCreated.avsc:",
			"shop/notification/readers/OrderCreated.avsc:5 field coupon: READER_FIELD_MISSING_DEFAULT_VALUE at /fields/1",
			"1 reader schemas checked, 1 cannot read what they may receive",
		} {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
		code, out, _ = runCLI(t, "-f", filepath.Join(dir, "flotilla.yaml"), "schema", "check", "--base", "HEAD~1", "-o", "github")
		if code != 1 || !strings.Contains(out, "::error file=shop/notification/readers/OrderCreated.avsc,line=5,title=READER_FIELD_MISSING_DEFAULT_VALUE (notification-service cannot read shop/order/schemas/OrderCreated.avsc)") {
			t.Errorf("github annotations: exit %d\n%s", code, out)
		}
	})
	t.Run("readers in the registry", func(t *testing.T) {
		dir := repo(t)
		manifest := filepath.Join(dir, "flotilla.yaml")
		url := startRegistry(t, "")
		code, out, errOut := runCLI(t, "-f", manifest, "schema", "register", "--registry", url, "--level", "full")
		if code != 0 || !strings.Contains(out, "ok   shop/notification/readers/OrderCreated.avsc  OrderCreated-reader-notification-service id 2") {
			t.Fatalf("register: exit %d\n%s\n%s", code, out, errOut)
		}
		// A tool outside the repository asks whether this consumer can
		// read a writer: Confluent's client against the reader's subject.
		cl, err := sr.NewClient(sr.URLs(url))
		if err != nil {
			t.Fatal(err)
		}
		noCoupon := strings.Replace(writerV1, `    {"name": "coupon", "type": "string", "default": ""},`+"\n", "", 1)
		for _, tt := range []struct {
			writer string
			ok     bool
		}{{writerV1, true}, {noCoupon, false}} {
			res, err := cl.CheckCompatibility(sr.WithParams(context.Background(), sr.Verbose), "OrderCreated-reader-notification-service", -1, sr.Schema{Schema: tt.writer})
			if err != nil || res.Is != tt.ok {
				t.Errorf("can notification-service read %s? %+v %v, want %v", tt.writer, res, err, tt.ok)
			}
		}
		// The registered writer versions are checked too: the change in
		// the repository drops coupon, and the registered version 1 has it.
		writeFile(t, filepath.Join(dir, "shop/order/schemas/OrderCreated.avsc"), noCoupon)
		writeFile(t, filepath.Join(dir, "shop/notification/readers/OrderCreated.avsc"), strings.Replace(reader, `{"name": "coupon", "type": "string"}`, `{"name": "coupon", "type": "string", "default": ""}`, 1))
		code, out, _ = runCLI(t, "-f", manifest, "schema", "check", "--base", "", "--registry", url)
		if code != 0 || !strings.Contains(out, "reads registry OrderCreated-value version 1") {
			t.Errorf("check: exit %d\n%s", code, out)
		}
	})
	t.Run("registry unreachable", func(t *testing.T) {
		dir := repo(t)
		code, out, errOut := runCLI(t, "-f", filepath.Join(dir, "flotilla.yaml"), "schema", "check", "--registry", "http://127.0.0.1:1")
		if code != 3 || out != "" || !strings.Contains(errOut, "registry unreachable at http://127.0.0.1:1") {
			t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
	})
	t.Run("a reader stricter than needed passes", func(t *testing.T) {
		dir := repo(t)
		// The reader drops coupon and reads total_cents as a double (a
		// promotion), and adds a field of its own with a default.
		writeFile(t, filepath.Join(dir, "shop/notification/readers/OrderCreated.avsc"), `{
  "type": "record", "name": "OrderCreated", "namespace": "shop.order",
  "fields": [
    {"name": "order_id", "type": "string"},
    {"name": "total_cents", "type": "double"},
    {"name": "channel", "type": "string", "default": "mail"}
  ]
}`)
		code, out, errOut := runCLI(t, "-f", filepath.Join(dir, "flotilla.yaml"), "schema", "check", "--base", "HEAD")
		if code != 0 || !strings.Contains(out, "ok   shop/notification/readers/OrderCreated.avsc") {
			t.Errorf("exit %d\n%s\n%s", code, out, errOut)
		}
	})
	t.Run("a reader change it cannot read with", func(t *testing.T) {
		dir := repo(t)
		writeFile(t, filepath.Join(dir, "shop/notification/readers/OrderCreated.avsc"),
			strings.Replace(reader, `{"name": "coupon", "type": "string"}`, `{"name": "coupon", "type": "int"}`, 1))
		code, out, _ := runCLI(t, "-f", filepath.Join(dir, "flotilla.yaml"), "schema", "check", "--base", "HEAD")
		if code != 1 || !strings.Contains(out, "shop/notification/readers/OrderCreated.avsc:5 field coupon: TYPE_MISMATCH at /fields/1/type") {
			t.Errorf("exit %d\n%s", code, out)
		}
	})
	t.Run("subscribes and reader files disagree", func(t *testing.T) {
		dir := repo(t)
		writeFile(t, filepath.Join(dir, "flotilla.yaml"), strings.Replace(manifest, "subscribes: [OrderCreated]", "subscribes: [OrderCreated, OrderShipped]", 1))
		writeFile(t, filepath.Join(dir, "shop/notification/readers/StockReserved.avsc"), `{"type":"record","name":"StockReserved","fields":[]}`)
		code, out, _ := runCLI(t, "-f", filepath.Join(dir, "flotilla.yaml"), "schema", "check", "--base", "HEAD")
		for _, w := range []string{
			"FAIL notification-service subscribes to OrderShipped but keeps no reader schema for it (want shop/notification/readers/OrderShipped.avsc, the record it decodes OrderShipped with)",
			"FAIL shop/notification/readers/StockReserved.avsc: notification-service keeps a reader for StockReserved but does not subscribe to it (add StockReserved to its subscribes in flotilla.yaml, or delete the file)",
		} {
			if code != 1 || !strings.Contains(out, w) {
				t.Errorf("exit %d, output lacks %q:\n%s", code, w, out)
			}
		}
	})
}
