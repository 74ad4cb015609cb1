package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestChaosRunDryRunAndBadInput(t *testing.T) {
	root, _ := filepath.Abs("../..")
	manifest := filepath.Join(root, "flotilla.yaml")
	runCLI := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"-f", manifest}, args...), strings.NewReader(""), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, out, errOut := runCLI("chaos", "run", "--dry-run", filepath.Join(root, "chaos", "inventory-slow.yaml"))
	if code != 0 || !strings.Contains(out, "at +5s: delay * -> inventory-service +500ms for 20s") || !strings.Contains(out, "nothing injected") {
		t.Errorf("dry run: %d\n%s%s", code, out, errOut)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	data, _ := os.ReadFile(filepath.Join(root, "chaos", "inventory-slow.yaml"))
	_ = os.WriteFile(bad, []byte(strings.Replace(string(data), "destination: inventory-service", "destination: warehouse-service", 1)), 0o644)
	code, _, errOut = runCLI("chaos", "run", bad)
	if code != exitUsage || !strings.Contains(errOut, `faults[0].destination: unknown service "warehouse-service"`) || !strings.Contains(errOut, "bad.yaml: line ") {
		t.Errorf("unknown service: exit %d, %s", code, errOut)
	}
}
