package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// flotilla up on the shop's manifest for user-service: the progress, where
// everything is, a request through the printed gateway, and Ctrl-C (a
// cancelled context) stopping it cleanly.
func TestUpRunsAndStops(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the shop's user-service")
	}
	data := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"up", "-f", "../../flotilla.yaml", "--data", data, "--only", "user-service",
			"--api-addr", "127.0.0.1:0", "--gateway-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0",
			"--broker-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0"}, strings.NewReader(""), &out, &errb)
	}()
	// Wait for the summary (or for up to give up).
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(out.String(), "Ctrl-C stops everything") {
		select {
		case c := <-code:
			t.Fatalf("up exited %d before it was up:\n%s\nstderr:\n%s", c, out.String(), errb.String())
		case <-tick.C:
		}
	}
	got := out.String()
	for _, want := range []string{
		"wave 1\n  user-service", "release 1: 1 succeeded", "flotilla is up: 1 service(s) ready",
		"registry", "broker", "nats://127.0.0.1:", filepath.Join(data, "local", "logs"), "flotilla logs --data " + data + " SERVICE",
		"demo data: 0 product(s), 0 with stock; user demo@shop.local", "flotilla status --api 127.0.0.1:",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("up's output lacks %q:\n%s", want, got)
		}
	}
	gw := regexp.MustCompile(`gateway\s+(http://127\.0\.0\.1:\d+)`).FindStringSubmatch(got)
	if gw == nil {
		t.Fatalf("no gateway address in:\n%s", got)
	}
	resp, err := http.Get(gw[1] + "/api/user/ready")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/user/ready through the gateway: %d, want 200", resp.StatusCode)
	}
	cancel()
	if c := <-code; c != 0 {
		t.Fatalf("up exited %d after Ctrl-C; stderr:\n%s", c, errb.String())
	}
	if !strings.Contains(out.String(), "stopping: draining the services, then the platform\nstopped: services drained") {
		t.Errorf("no stop message:\n%s", out.String())
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && strings.HasPrefix(exe, data+"/") {
			t.Errorf("process %s (%s) still runs after up stopped", e.Name(), exe)
		}
	}
}

// A taken port: exit 1 with the address and the flag that moves it.
func TestUpPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	code, _, stderr := runCLI(t, "up", "-f", "../../flotilla.yaml", "--data", t.TempDir(), "--api-addr", ln.Addr().String(),
		"--gateway-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0", "--broker-addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:0")
	if code != 1 || !strings.Contains(stderr, ln.Addr().String()+": the port is in use") || !strings.Contains(stderr, "--api-addr 127.0.0.1:0") {
		t.Fatalf("up with the API's port taken: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "up", "-f", "../../flotilla.yaml", "--data", t.TempDir(), "--authz", "strict")
	if code != 2 || !strings.Contains(stderr, `authz "strict"`) {
		t.Fatalf("up --authz strict: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "up", "-f", "../../flotilla.yaml", "--data", t.TempDir(), "--log-max-size", "ten megs")
	if code != 2 || !strings.Contains(stderr, `--log-max-size "ten megs": want a size such as 10MiB`) {
		t.Fatalf("up --log-max-size 'ten megs': exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "up", "-f", "../../flotilla.yaml", "--data", t.TempDir(), "--log-max-files", "1")
	if code != 2 || !strings.Contains(stderr, "--log-max-files 1: want at least 2") {
		t.Fatalf("up --log-max-files 1: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "up", "-f", "../../flotilla.yaml", "--data", t.TempDir(), "--keep-versions", "0")
	if code != 2 || !strings.Contains(stderr, "--keep-versions 0: want at least 1") {
		t.Fatalf("up --keep-versions 0: exit %d, stderr %q", code, stderr)
	}
}

func TestParseLogSize(t *testing.T) {
	for in, want := range map[string]int64{"10MiB": 10 << 20, "500KB": 500_000, "1GiB": 1 << 30, "4096": 4096, "0": -1, "-1": -1} {
		if got, err := parseLogSize(in); err != nil || got != want {
			t.Errorf("parseLogSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "10 parsecs", "99999999999999999999GiB"} {
		if _, err := parseLogSize(in); err == nil {
			t.Errorf("parseLogSize(%q) accepted", in)
		}
	}
}

// FuzzParseLogSize: --log-max-size never panics; it gives -1 (never
// rotate), a positive size, or an error naming the flag and the value;
// and a size it prints back in bytes parses to the same size.
func FuzzParseLogSize(f *testing.F) {
	for _, s := range []string{"10MiB", "500KB", "1GiB", "4096", "0", "-1", "", "MiB", "10 parsecs", "99999999999999999999GiB",
		" 10 MiB ", "1.5GB", "8EiB", "16EiB", "-0", "+5", "0x10", "1e3", "9223372036854775807", "9223372036854775808", "\x00", "5 mib"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		n, err := parseLogSize(in)
		if err != nil {
			if n != 0 || !strings.Contains(err.Error(), "--log-max-size") || !strings.Contains(err.Error(), strconv.Quote(in)) {
				t.Fatalf("parseLogSize(%q) = %d, %q: want 0 and an error naming the flag and the value", in, n, err)
			}
			return
		}
		if n == 0 || n < -1 {
			t.Fatalf("parseLogSize(%q) = %d: want -1 or a positive size", in, n)
		}
		if n > 0 {
			back, err := parseLogSize(strconv.FormatInt(n, 10))
			if err != nil || back != n {
				t.Fatalf("parseLogSize(%q) = %d, but %d reads back as %d, %v", in, n, n, back, err)
			}
		}
	})
}
