package registry_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-ci/flotilla/internal/sqldb/sqldbtest"
	"github.com/flotilla-ci/flotilla/internal/testenv"
	"github.com/flotilla-ci/flotilla/registry"
)

// TestKafkaJSClient: @kafkajs/confluent-schema-registry, the npm client,
// registers, looks up, reads, encodes and decodes JSON Schema (with a
// reference to another subject) and Protobuf schemas against the
// registry; incompatible registrations are refused with the registry's
// verbose reasons; its frames carry the registry's ids. (kafkajs writes
// Protobuf frames without message indexes, so that part of the wire format
// is franz-go's test.)
func TestKafkaJSClient(t *testing.T) {
	if testing.Short() {
		t.Skip("runs node; skipped with -short")
	}
	// The directory npm installed @kafkajs/confluent-schema-registry@4.1.0 in.
	dir := testenv.Lookup(t, testenv.KafkaJS)
	kafkajsEnv := testenv.KafkaJS
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("%s is set but node is not installed: %v", kafkajsEnv, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@kafkajs", "confluent-schema-registry")); err != nil {
		t.Fatalf("%s=%s: %v", kafkajsEnv, dir, err)
	}
	script, err := filepath.Abs("testdata/kafkajs/interop.js")
	if err != nil {
		t.Fatal(err)
	}
	sqldbtest.Each(t, func(t *testing.T, dsn string) {
		ts := newServer(t, dsn, registry.DefaultConfig())
		cmd := exec.Command(node, script, ts.URL)
		cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(dir, "node_modules"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("node: %v\n%s", err, stderr.String())
		}
		var got map[string]struct {
			OK    bool            `json:"ok"`
			Value json.RawMessage `json:"value"`
			Error string          `json:"error"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		ok := func(step string) json.RawMessage {
			t.Helper()
			r, found := got[step]
			if !found || !r.OK {
				t.Errorf("%s: %+v", step, r)
			}
			return r.Value
		}
		refused := func(step string, want ...string) {
			t.Helper()
			r := got[step]
			if r.OK {
				t.Errorf("%s: accepted (%s), want refused", step, r.Value)
			}
			for _, w := range want {
				if !strings.Contains(r.Error, w) {
					t.Errorf("%s: error %q lacks %q", step, r.Error, w)
				}
			}
		}
		idOf := func(raw json.RawMessage) int {
			var n int
			_ = json.Unmarshal(raw, &n)
			return n
		}
		frameID := func(step string) int {
			t.Helper()
			var v struct {
				Hex string `json:"hex"`
			}
			_ = json.Unmarshal(ok(step), &v)
			b, err := hex.DecodeString(v.Hex)
			if err != nil || len(b) < 5 || b[0] != 0 {
				t.Errorf("%s: frame %q is not the Confluent wire format", step, v.Hex)
				return -1
			}
			return int(binary.BigEndian.Uint32(b[1:5]))
		}

		jid := idOf(ok("json_register"))
		if idOf(ok("json_latest")) != jid || idOf(ok("json_lookup")) != jid {
			t.Errorf("JSON: latest %s, lookup %s, want id %d", got["json_latest"].Value, got["json_lookup"].Value, jid)
		}
		if id := frameID("json_roundtrip"); id != jid {
			t.Errorf("JSON frame carries id %d, want %d", id, jid)
		}
		if !strings.Contains(string(got["json_roundtrip"].Value), `"decoded":{"orderId":"o1","total":5}`) {
			t.Errorf("JSON round trip: %s", got["json_roundtrip"].Value)
		}
		refused("json_invalid_payload", "invalid payload")
		refused("json_incompatible", "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", "#/properties/coupon")
		ok("json_ref_base")
		ok("json_ref_register")
		if v := string(ok("json_ref_roundtrip")); v != `{"orderId":"o2","to":{"street":"Main 1"}}` {
			t.Errorf("JSON with a reference, round trip: %s", v)
		}
		refused("json_ref_invalid_payload", "invalid payload")

		pid := idOf(ok("proto_register"))
		if v := string(ok("proto_schema")); v != `"ProtoSchema"` {
			t.Errorf("getSchema of a Protobuf id: %s", v)
		}
		if idOf(ok("proto_lookup")) != pid {
			t.Errorf("Protobuf lookup %s, want id %d", got["proto_lookup"].Value, pid)
		}
		if id := frameID("proto_roundtrip"); id != pid {
			t.Errorf("Protobuf frame carries id %d, want %d", id, pid)
		}
		if !strings.Contains(string(got["proto_roundtrip"].Value), `"decoded":{"orderId":"o1","total":"1299","skus":["A1","B2"]}`) {
			t.Errorf("Protobuf round trip: %s", got["proto_roundtrip"].Value)
		}
		refused("proto_incompatible", "FIELD_SCALAR_KIND_CHANGED", "#/shop.OrderCreated/2")
		v2 := idOf(ok("proto_compatible"))
		if v2 == pid || idOf(ok("proto_latest")) != v2 {
			t.Errorf("Protobuf v2 id %d, latest %s", v2, got["proto_latest"].Value)
		}
	})
}
