package local

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/deploy"
)

// syncBuffer is a bytes.Buffer safe to read while a follower writes.
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

// canCollapse reports whether dir's file system collapses ranges, so
// rotation there loses nothing.
func canCollapse(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.CreateTemp(dir, "collapse")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Write(make([]byte, 3<<16)); err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	n := collapsible(st)
	return n > 0 && collapse(f, n) == nil
}

var numbered = regexp.MustCompile(`^line (\d{8}) `)

// checkSequence reports a problem unless the numbered lines in text are
// 1..want, each once, in order (gaps allowed when lossy).
func checkSequence(text string, want int, lossy bool) error {
	next := 1
	seen := 0
	for _, l := range strings.Split(text, "\n") {
		m := numbered.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		if n < next || (!lossy && n != next) {
			return fmt.Errorf("line %d after line %d", n, next-1)
		}
		next = n + 1
		seen++
	}
	if next != want+1 {
		return fmt.Errorf("last line %d, want %d", next-1, want)
	}
	if !lossy && seen != want {
		return fmt.Errorf("%d lines, want %d", seen, want)
	}
	return nil
}

// wroteLines waits until the log says how many lines the chatty service
// wrote before it stopped.
func wroteLines(t *testing.T, path string) int {
	t.Helper()
	re := regexp.MustCompile(`svc: wrote (\d+) lines`)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(path)
		if m := re.FindSubmatch(b); m != nil {
			n, _ := strconv.Atoi(string(m[1]))
			return n
		}
	}
	t.Fatalf("%s never said how many lines it wrote", path)
	return 0
}

func readAll(t *testing.T, path string) string {
	t.Helper()
	r, err := OpenLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	var b bytes.Buffer
	if err := r.Tail(&b, 0); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// A process writing without pause has its log rotated past the limit
// again and again; the files read in order, and a reader following
// throughout, have every line once and in order.
func TestLogRotationLosesNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const limit = 32 << 10
	tg := newTarget(t, dir, func(c *Config) {
		c.LogMaxSize, c.LogMaxFiles, c.LogCheckInterval = limit, 1000, 5*time.Millisecond
	})
	lossy := !canCollapse(t, dir)
	if lossy {
		t.Logf("%s cannot collapse a range: rotation copies and truncates, so lines may be missing (never repeated)", dir)
	}
	path := tg.LogFile("mike-service", "m1")
	if _, err := tg.Apply(ctx, spec("mike-service", "m1", "chatty")); err != nil {
		t.Fatal(err)
	}
	r, err := OpenLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	var followed syncBuffer
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Follow(fctx, &followed, 3*time.Millisecond) }()

	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(rotatedName(path, 8)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the log was not rotated 8 times in 30s")
		}
	}
	if err := tg.Remove(ctx, "mike-service", "m1"); err != nil {
		t.Fatal(err)
	}
	n := wroteLines(t, path)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(followed.String(), "svc: wrote") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := checkSequence(readAll(t, path), n, lossy); err != nil {
		t.Errorf("the log files in order: %v", err)
	}
	if err := checkSequence(followed.String(), n, lossy); err != nil {
		t.Errorf("the followed log: %v", err)
	}
	// How far past the limit a file grows depends on how often the
	// checks get the CPU: TestLogCheckRotatesAtTheLimit pins the sizes
	// with the checks made by the test.
	for i := 1; i < 9; i++ {
		if _, err := os.Stat(rotatedName(path, i)); err != nil {
			t.Errorf("%s: %v", rotatedName(path, i), err)
		}
	}
}

// A check rotates a log past the limit and leaves one under it alone;
// each rotated file holds what the live one did at the check, past the
// limit by what was written since the last check and short of it by at
// most two blocks (what stays behind when whole blocks are collapsed).
// The test makes the checks itself, so no timing is involved.
func TestLogCheckRotatesAtTheLimit(t *testing.T) {
	dir := t.TempDir()
	const limit = 32 << 10
	tg := newTarget(t, dir, func(c *Config) { c.LogMaxSize, c.LogMaxFiles = limit, 1000 })
	v := &version{spec: spec("mike-service", "m1", "")}
	path := tg.LogFile("mike-service", "m1")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	line, n := 0, 0
	// Between checks, a writer adds up to a quarter of the limit.
	for round := 1; round <= 12; round++ {
		for size := 0; size < limit/4; {
			line++
			k, err := fmt.Fprintf(f, "line %08d %s\n", line, strings.Repeat("x", 100))
			if err != nil {
				t.Fatal(err)
			}
			size += k
		}
		if err := tg.checkLog(v, path); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(rotatedName(path, n+1)); err == nil {
			n++
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > limit+limit/4+1<<10 {
			t.Fatalf("after check %d the live file is %d bytes, want at most the limit and one round's writes", round, st.Size())
		}
	}
	if n < 2 {
		t.Fatalf("%d rotations in 12 checks of 3 limits' worth of writes, want at least 2", n)
	}
	for i := 1; i <= n; i++ {
		st, err := os.Stat(rotatedName(path, i))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() < limit-8<<10 || st.Size() > limit+limit/4+1<<10 {
			t.Errorf("%s is %d bytes, want about %d (past it by at most one round's writes)", rotatedName(path, i), st.Size(), limit)
		}
	}
	if err := checkSequence(readAll(t, path), line, !canCollapse(t, dir)); err != nil {
		t.Errorf("the log files in order: %v", err)
	}
}

// Rotation keeps LogMaxFiles files with the live one and drops the
// oldest; a reader sees what is kept, in order.
func TestRotateKeepsFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "v1.log")
	write := func(s string) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
	}
	var all []string
	for i := 1; i <= 5; i++ {
		// Lines a few blocks long, so a collapse has whole blocks to cut.
		chunk := strings.Repeat(fmt.Sprintf("chunk %d %s\n", i, strings.Repeat("x", 1000)), 20)
		all = append(all, chunk)
		write(chunk)
		if _, err := rotateLog(path, 3); err != nil {
			t.Fatal(err)
		}
	}
	write("after\n")
	var got []string
	for _, name := range []string{"v1.log", "v1.log.1", "v1.log.2", "v1.log.3"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			got = append(got, name)
		}
	}
	if d := cmp.Diff([]string{"v1.log", "v1.log.1", "v1.log.2"}, got); d != "" {
		t.Errorf("files after 5 rotations keeping 3 (-want +got):\n%s", d)
	}
	// What the three files hold is the end of everything written.
	text := readAll(t, path)
	whole := strings.Join(all, "") + "after\n"
	if !strings.HasSuffix(whole, text) || !strings.Contains(text, "chunk 4") || strings.Contains(text, "chunk 1 ") {
		t.Errorf("the kept files read %d bytes, not the end of what was written (chunks 4, 5 and after)", len(text))
	}
	// And the last lines come across files.
	r, err := OpenLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	var b bytes.Buffer
	if err := r.Tail(&b, 3); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(whole, "\n"), "\n")
	if want := strings.Join(lines[len(lines)-3:], "\n") + "\n"; b.String() != want {
		t.Errorf("Tail(3) = %q, want %q", b.String(), want)
	}
}

func TestLogConfigValidate(t *testing.T) {
	for _, n := range []int{-1, 1} {
		c := DefaultConfig("d", "r")
		c.LogMaxFiles = n
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "log max files") {
			t.Errorf("LogMaxFiles %d: Validate = %v, want an error", n, err)
		}
	}
}

// startControlPlaneProcess runs controlPlaneHelper in a process of its
// own and returns it with the pid and address of the service it deployed.
func startControlPlaneProcess(t *testing.T, dir, mode string) (*exec.Cmd, int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FLOTILLA_LOCAL_HELPER_DIR="+dir, "FLOTILLA_LOCAL_HELPER_ROOT="+testRoot(t),
		"FLOTILLA_LOCAL_HELPER_ARTIFACTS="+artifacts, "FLOTILLA_LOCAL_HELPER_MODE="+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("the control plane process said %q, %v", line, err)
	}
	var pid int
	var addr string
	if _, err := fmt.Sscan(strings.TrimPrefix(line, "ready "), &pid, &addr); err != nil {
		t.Fatal(err)
	}
	return cmd, pid, addr
}

// A service whose control plane is killed keeps writing its log; the
// next control plane adopts it and rotates that log, and no line is lost.
func TestKilledControlPlaneLogs(t *testing.T) {
	dir := t.TempDir()
	lossy := !canCollapse(t, dir)
	cmd, pid, _ := startControlPlaneProcess(t, dir, "chatty")
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	path := filepath.Join(dir, "logs", "kilo-service", "k1.log")
	st1, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// The service keeps writing: wait for the log to grow, with a deadline.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st2, err := os.Stat(path)
		if err == nil && st2.Size() > st1.Size() && alive(pid) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with its control plane gone the service (alive %v) stopped writing its log (%d bytes, then %v, %v)", alive(pid), st1.Size(), st2, err)
		}
	}
	tg := newTarget(t, dir, func(c *Config) {
		c.LogMaxSize, c.LogMaxFiles, c.LogCheckInterval = 32<<10, 1000, 5*time.Millisecond
	})
	in := waitFor(t, tg, "kilo-service", func(in deploy.Instance) bool { return in.State == deploy.StateReady })
	if in.PID != pid {
		t.Fatalf("after the kill: pid %d, want the adopted %d", in.PID, pid)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(rotatedName(path, 3)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the adopted service's log was not rotated 3 times in 30s")
		}
	}
	if err := tg.Remove(context.Background(), "kilo-service", "k1"); err != nil {
		t.Fatal(err)
	}
	n := wroteLines(t, path)
	if err := checkSequence(readAll(t, path), n, lossy); err != nil {
		t.Errorf("the adopted service's log: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); alive(pid) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("the adopted service (pid %d) survived Remove", pid)
	}
}
