package kubetest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The never-ready selector goes into kwok's pod-ready stage, and a stage
// file that no longer has the anchor it is added after is an error, not a
// plane whose failure tests silently pass.
func TestStagesAddTheNeverReadySelector(t *testing.T) {
	bin := t.TempDir()
	if err := os.MkdirAll(filepath.Join(bin, "stages"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(bin, "stages", name+".yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"node-initialize", "node-heartbeat", "pod-complete", "pod-delete"} {
		write(n, "kind: Stage\nmetadata:\n  name: "+n+"\n")
	}
	write("pod-ready", "kind: Stage\nspec:\n  selector:\n    matchExpressions:\n    - key: '.metadata.deletionTimestamp'\n      operator: 'DoesNotExist'\n    - key: '.status.phase'\n")
	out, err := stages(bin)
	if err != nil {
		t.Fatal(err)
	}
	want := "    - key: '.metadata.labels[\"testplane/never-ready\"]'\n      operator: 'DoesNotExist'\n    - key: '.status.phase'"
	if !strings.Contains(string(out), want) {
		t.Errorf("stages:\n%s\nwant the never-ready selector", out)
	}
	if n := strings.Count(string(out), "\n---\n"); n != 4 {
		t.Errorf("%d separators, want 4 (five stages)", n)
	}
	write("pod-ready", "kind: Stage\nspec: {}\n")
	if _, err := stages(bin); err == nil {
		t.Error("a pod-ready stage without the anchor was accepted")
	}
}
