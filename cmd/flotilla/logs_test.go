package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/local"
	"github.com/flotilla-ci/flotilla/deploy/sqlstore"
	"github.com/flotilla-ci/flotilla/graph"
)

// syncBuffer is a bytes.Buffer safe to read while logs --follow writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// rotatedLogs lays out a version's log rotated twice, as the local target
// leaves it, and returns the data directory and the live file.
func rotatedLogs(t *testing.T) (data, live string) {
	t.Helper()
	data = t.TempDir()
	dir := filepath.Join(local.DirIn(data), "logs", "alpha-service")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	live = filepath.Join(dir, "v1.log")
	for name, text := range map[string]string{"v1.log.2": "one\ntwo\n", "v1.log.1": "three\nfo", "v1.log": "ur\nfive\nsix\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return data, live
}

func TestLogsReadsRotatedFilesInOrder(t *testing.T) {
	data, _ := rotatedLogs(t)
	manifest := filepath.Join(testShop, graph.FileName)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-n", "0"}, "one\ntwo\nthree\nfour\nfive\nsix\n"},
		{nil, "one\ntwo\nthree\nfour\nfive\nsix\n"},
		{[]string{"-n", "3"}, "four\nfive\nsix\n"},
		{[]string{"-n", "1"}, "six\n"},
		{[]string{"--version", "v"}, "one\ntwo\nthree\nfour\nfive\nsix\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(t, append([]string{"-f", manifest, "logs", "alpha-service", "--data", data}, tt.args...)...)
			if code != 0 || out != tt.want {
				t.Errorf("exit %d, stdout %q, stderr %q; want %q", code, out, errOut, tt.want)
			}
		})
	}
}

// appendTo appends to a file, as a service writing its output does.
func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func waitOutput(t *testing.T, out *syncBuffer, s string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), s); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("--follow never printed %q; printed %q", s, out.String())
		}
	}
}

func TestLogsFollowAcrossRotation(t *testing.T) {
	data, live := rotatedLogs(t)
	manifest := filepath.Join(testShop, graph.FileName)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-f", manifest, "logs", "alpha-service", "--data", data, "-F", "-n", "2"}, strings.NewReader(""), &out, &errOut)
	}()
	waitOutput(t, &out, "six\n")
	appendTo(t, live, "seven\n")
	waitOutput(t, &out, "seven\n")

	// Rotate as the local target does, holding the live file's lock: a
	// line written since the last read ("eight") leaves with the rotated
	// part, and the follower must find it there.
	f, err := os.OpenFile(live, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	appendTo(t, live, "eight\n")
	b, err := os.ReadFile(live)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(live+".1", live+".2"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(live+".1", b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	appendTo(t, live, "nine\n")
	waitOutput(t, &out, "nine\n")
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("logs -F: exit %d, stderr %q", code, errOut.String())
	}
	if want := "five\nsix\nseven\neight\nnine\n"; out.String() != want {
		t.Errorf("logs -F printed %q, want %q (every line once, across the rotation)", out.String(), want)
	}
}

// After a rollback the version rolled back from wrote last (its drain and
// stop), but logs shows the version that serves again, as the history
// says, and names the other; without a history the newest log is shown.
func TestLogsShowsTheServingVersionAfterARollback(t *testing.T) {
	data := t.TempDir()
	dir := filepath.Join(local.DirIn(data), "logs", "alpha-service")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(testShop, graph.FileName)
	old := time.Now().Add(-time.Hour)
	for _, f := range []struct {
		version, text string
		mtime         time.Time
	}{{"v1", "v1 serving\n", old}, {"v2", "v2 draining\nv2 stopped\n", old.Add(time.Minute)}} {
		p := filepath.Join(dir, f.version+".log")
		if err := os.WriteFile(p, []byte(f.text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, f.mtime, f.mtime); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := runCLI(t, "-f", manifest, "logs", "alpha-service", "--data", data)
	if code != 0 || out != "v2 draining\nv2 stopped\n" {
		t.Errorf("without a history: exit %d, stdout %q, stderr %q; want v2's log, the newest", code, out, errOut)
	}

	ctx := context.Background()
	st, err := sqlstore.Open(ctx, filepath.Join(data, "flotilla.db"))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range []deploy.Record{
		{Version: "v1", Action: deploy.RecordDeploy},
		{Version: "v2", Previous: "v1", Action: deploy.RecordDeploy},
		{Version: "v1", Previous: "v2", Action: deploy.RecordRollback},
	} {
		id, err := st.StartRelease(ctx, "tester", []string{"alpha-service"}, old.Add(time.Duration(i)*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		r.Release, r.Service, r.Result, r.Who, r.Started = id, "alpha-service", deploy.Succeeded, "tester", old.Add(time.Duration(i)*time.Minute)
		r.Spec = deploy.Spec{Service: "alpha-service", Version: r.Version, Build: deploy.Build{Package: "./cmd/alpha"}}
		if _, err := st.Add(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, "-f", manifest, "logs", "alpha-service", "--data", data)
	if code != 0 || out != "v1 serving\n" || !strings.Contains(errOut, "alpha-service serves v1; v2 wrote last (--version v2 shows it)") {
		t.Errorf("after the rollback: exit %d, stdout %q, stderr %q; want v1's log and a note naming v2", code, out, errOut)
	}
	code, out, _ = runCLI(t, "-f", manifest, "logs", "alpha-service", "--data", data, "--version", "v2")
	if code != 0 || out != "v2 draining\nv2 stopped\n" {
		t.Errorf("--version v2: exit %d, stdout %q", code, out)
	}
}
