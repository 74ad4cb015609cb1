package supervise_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flotilla-ci/flotilla/internal/supervise"
)

// A damaged state file is an error naming the file and what to do, not a
// guess at what runs.
func TestStartWithDamagedState(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(supervise.StatePath(dir, "helper"), []byte(`{"name": "helper", "pid": `), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := supervise.Start(context.Background(), spec(t, dir, "serve"))
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "helper.json")) || !strings.Contains(err.Error(), "remove it") {
		t.Fatalf("start with a damaged state file: %v; want the file named and what to do", err)
	}
}

func FuzzReadState(f *testing.F) {
	f.Add([]byte(`{"name":"bus","pid":1,"path":"/bin/flotilla","args":["bus"],"identity":{"start_ticks":5}}`))
	f.Add([]byte(`{"name":"other"}`))
	f.Add([]byte(`{"name":"bus","pid":-3,"identity":{"argv":null}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(supervise.StatePath(dir, "bus"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		st, err := supervise.ReadState(dir, "bus")
		if err != nil {
			return
		}
		if st.Name != "bus" {
			t.Fatalf("read a state naming %q for bus", st.Name)
		}
		_, _ = st.Running()
	})
}
