package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// runCLI runs the CLI in-process as a user would and returns its output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestVersionAndUsage(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(out, "flotilla ") || strings.HasPrefix(out, "flotilla dev ") || !strings.Contains(out, runtime.Version()) {
		t.Fatalf("version: code %d, out %q; want the module version and %s", code, out, runtime.Version())
	}
	code, _, errOut := runCLI(t, "no-such-command")
	if code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Fatalf("unknown command: code %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "version", "--no-such-flag")
	if code != 2 || !strings.Contains(errOut, "--help") {
		t.Fatalf("bad flag: code %d, stderr %q", code, errOut)
	}
}

// TestExitCodes holds every command to one meaning per exit code (see
// exitCodesHelp): 0 yes, 1 no (a check's finding, a failed action), 2 usage
// or unusable input, 3 no answer (a server that cannot be reached).
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	valid := file("valid.yaml", "services:\n  a:\n    path: a\n  b:\n    path: b\n    depends_on: [a]\n")
	cycle := file("cycle.yaml", "services:\n  a:\n    path: a\n    depends_on: [b]\n  b:\n    path: b\n    depends_on: [a]\n")
	syntax := file("syntax.yaml", "services:\n  a:\n    path: a\n    depends_on: [b\n")
	missing := filepath.Join(dir, "missing.yaml")
	// A service that owns one event schema, for schema check.
	if err := os.MkdirAll(filepath.Join(dir, "ev", "schemas"), 0o755); err != nil {
		t.Fatal(err)
	}
	file(filepath.Join("ev", "schemas", "Happened.avsc"), `{"type":"record","name":"Happened","fields":[{"name":"id","type":"string"}]}`)
	events := file("events.yaml", "services:\n  ev:\n    path: ev\n    publishes: [Happened]\n")
	oldAvsc := file("old.avsc", `{"type":"record","name":"E","fields":[{"name":"id","type":"string"}]}`)
	compatAvsc := file("compat.avsc", `{"type":"record","name":"E","fields":[{"name":"id","type":"string"},{"name":"n","type":"int","default":0}]}`)
	breakAvsc := file("break.avsc", `{"type":"record","name":"E","fields":[{"name":"id","type":"int"}]}`)
	badAvsc := file("bad.avsc", `{"type":"record","name":"E","fields":[`)
	// Nothing listens on port 1: connections are refused at once.
	const down = "http://127.0.0.1:1"

	tests := []struct {
		name string
		args []string
		code int
	}{
		{"version", []string{"version"}, exitOK},
		{"version with an argument", []string{"version", "x"}, exitUsage},
		{"unknown command", []string{"no-such-command"}, exitUsage},
		{"unknown flag", []string{"graph", "order", "--no-such-flag"}, exitUsage},

		{"check valid", []string{"graph", "check", "-f", valid}, exitOK},
		{"check a cycle", []string{"graph", "check", "-f", cycle}, exitNo},
		{"check a syntax error", []string{"graph", "check", "-f", syntax}, exitNo},
		{"check a missing manifest", []string{"graph", "check", "-f", missing}, exitUsage},

		{"order valid", []string{"graph", "order", "-f", valid}, exitOK},
		{"order an invalid graph", []string{"graph", "order", "-f", cycle}, exitUsage},
		{"order a syntax error", []string{"graph", "order", "-f", syntax}, exitUsage},
		{"order a missing manifest", []string{"graph", "order", "-f", missing}, exitUsage},
		{"order unknown output", []string{"graph", "order", "-f", valid, "-o", "xml"}, exitUsage},
		{"order an unknown service", []string{"graph", "order", "-f", valid, "--only", "zzz"}, exitUsage},
		{"show a syntax error", []string{"graph", "show", "-f", syntax}, exitUsage},
		{"impact without a service", []string{"graph", "impact", "-f", valid}, exitUsage},
		{"impact an unknown service", []string{"graph", "impact", "-f", valid, "zzz"}, exitUsage},
		{"impact an invalid graph", []string{"graph", "impact", "-f", cycle, "a"}, exitUsage},
		{"affected without --base", []string{"affected", "-f", valid}, exitUsage},
		{"affected an invalid graph", []string{"affected", "-f", cycle, "--base", "HEAD"}, exitUsage},

		{"compare compatible", []string{"schema", "compare", oldAvsc, compatAvsc}, exitOK},
		{"compare incompatible", []string{"schema", "compare", oldAvsc, breakAvsc}, exitNo},
		{"compare an invalid schema", []string{"schema", "compare", oldAvsc, badAvsc}, exitNo},
		{"compare a missing file", []string{"schema", "compare", oldAvsc, filepath.Join(dir, "none.avsc")}, exitUsage},
		{"compare a bad mode", []string{"schema", "compare", "--mode", "SIDEWAYS", oldAvsc, compatAvsc}, exitUsage},
		{"schema check, registry down", []string{"schema", "check", "-f", events, "--base", "", "--registry", down}, exitNoAnswer},
		{"schema check, no registry", []string{"schema", "check", "-f", events, "--base", ""}, exitOK},
		{"register without a registry", []string{"schema", "register", "-f", valid, "--registry", ""}, exitUsage},

		{"can-i-deploy without a broker", []string{"contract", "can-i-deploy", "--broker-url", "", "--pacticipant", "a", "--version", "1", "--to-environment", "production"}, exitUsage},
		{"can-i-deploy, broker down", []string{"contract", "can-i-deploy", "--broker-url", down, "--pacticipant", "a", "--version", "1", "--to-environment", "production"}, exitNoAnswer},
		{"record-deployment, broker down", []string{"contract", "record-deployment", "--broker-url", down, "--pacticipant", "a", "--version", "1", "--environment", "production"}, exitNoAnswer},
		{"verify an unparsable pact", []string{"contract", "verify", "--pact", "testdata/contract/bad/broken.json", "--provider-name", "order-service", "--provider-base-url", down}, exitUsage},
		{"registry import, registry down", []string{"registry", "import", "--from", down, "--to", down}, exitNoAnswer},

		{"deploy an unknown service", []string{"deploy", "-f", valid, "--api", down, "zzz"}, exitUsage},
		{"deploy an invalid graph", []string{"deploy", "-f", cycle, "--api", down, "a"}, exitUsage},
		{"deploy, control plane down", []string{"deploy", "-f", valid, "--api", down, "a"}, exitNoAnswer},
		{"status, control plane down", []string{"status", "--api", down}, exitNoAnswer},
		{"history, control plane down", []string{"history", "--api", down}, exitNoAnswer},
		{"rollback, control plane down", []string{"rollback", "--api", down, "a"}, exitNoAnswer},
		{"logs of an unknown service", []string{"logs", "-f", valid, "zzz"}, exitUsage},
		{"logs of a service that never ran", []string{"logs", "-f", valid, "--data", dir, "a"}, exitNo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"FLOTILLA_BROKER_URL", "PACT_BROKER_BASE_URL", "FLOTILLA_REGISTRY_URL", "FLOTILLA_API"} {
				t.Setenv(k, "")
			}
			code, out, errOut := runCLI(t, tt.args...)
			if code != tt.code {
				t.Errorf("flotilla %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(tt.args, " "), code, tt.code, out, errOut)
			}
		})
	}
}

// TestExitCodeInterrupted: a command stopped by a signal (its context
// cancelled) exits 130, not as a failure to get an answer.
func TestExitCodeInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb strings.Builder
	// can-i-deploy's request fails on the cancelled context.
	code := run(ctx, []string{"contract", "can-i-deploy", "--broker-url", "http://127.0.0.1:1", "--pacticipant", "a", "--version", "1", "--to-environment", "production"}, strings.NewReader(""), &out, &errb)
	if code != exitInterrupted || !strings.Contains(errb.String(), "interrupted") {
		t.Errorf("exit %d, stderr %q; want %d and interrupted", code, errb.String(), exitInterrupted)
	}
}

func TestHelpDocumentsExitCodes(t *testing.T) {
	_, out, _ := runCLI(t, "--help")
	for _, code := range []string{"0  done", "1  the answer is no", "2  usage or input error", "3  no answer"} {
		if !strings.Contains(out, code) {
			t.Errorf("flotilla --help does not explain exit code %q:\n%s", code, out)
		}
	}
}

func TestVersionLine(t *testing.T) {
	settings := func(kv ...string) []debug.BuildSetting {
		var out []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			out = append(out, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	const rev = "3f2a1b9c0d1e5a6b7c8d9e0f1a2b3c4d5e6f7a8b"
	tests := []struct {
		name string
		set  string
		info *debug.BuildInfo
		want string
	}{
		{"installed at a tag", "dev", &debug.BuildInfo{GoVersion: "go1.25.1", Main: debug.Module{Version: "v1.4.0"},
			Settings: settings("vcs.revision", rev, "vcs.time", "2026-12-07T10:00:00Z", "vcs.modified", "false", "GOOS", "linux", "GOARCH", "amd64")},
			"flotilla v1.4.0 (commit 3f2a1b9c0d1e, 2026-12-07T10:00:00Z) go1.25.1 linux/amd64"},
		{"a dirty checkout", "dev", &debug.BuildInfo{GoVersion: "go1.25.1", Main: debug.Module{Version: "(devel)"},
			Settings: settings("vcs.revision", rev, "vcs.time", "2026-12-07T10:00:00Z", "vcs.modified", "true", "GOOS", "linux", "GOARCH", "arm64")},
			"flotilla (devel) (commit 3f2a1b9c0d1e, dirty, 2026-12-07T10:00:00Z) go1.25.1 linux/arm64"},
		{"no VCS stamp", "dev", &debug.BuildInfo{GoVersion: "go1.25.1", Main: debug.Module{Version: "(devel)"}},
			"flotilla (devel) (no VCS information) go1.25.1"},
		{"-X main.version wins", "v2.0.0-rc1", &debug.BuildInfo{GoVersion: "go1.25.1", Main: debug.Module{Version: "(devel)"}, Settings: settings("vcs.revision", "abc")},
			"flotilla v2.0.0-rc1 (commit abc) go1.25.1"},
		{"no build information", "dev", nil, "flotilla dev (no build information)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := versionLine(tt.set, tt.info); got != tt.want {
				t.Errorf("versionLine = %q, want %q", got, tt.want)
			}
		})
	}
}
