package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildServices compiles shop/cmd/* into dir once per test binary.
func buildServices(t *testing.T, dir string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./shop/cmd/...", "./shop/e2e/auditor")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./shop/cmd/...: %v\n%s", err, out)
	}
}

// freePort picks a free port for a service that is crashed and restarted
// on the same address. It comes from below the kernel's ephemeral range
// (ip_local_port_range), so that while the service is down no listener on
// port 0 (another test binary's mock server, say) is handed its port and
// receives the requests still retried at it.
func freePort(t *testing.T) string {
	t.Helper()
	low := 32768
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	const from = 20000
	if low <= from+1000 {
		low = 60000 // an unusual range: any port will do
	}
	for range 200 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(from+rand.IntN(low-from)))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		_ = l.Close()
		return addr
	}
	t.Fatalf("no free port from %d to %d", from, low)
	return ""
}

// proc supervises one service process: it restarts the process whenever it
// exits, with the next entry of its crash schedule armed (none once the
// schedule is used up), until stop.
type proc struct {
	name, bin, addr string
	env             []string
	faults          string   // always on
	crashes         []string // crash=... per life, in order
	log             *os.File

	mu       sync.Mutex
	cmd      *exec.Cmd
	lives    int
	crashed  int
	stopping bool
	done     chan struct{}
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	p.done = make(chan struct{})
	if err := p.spawn(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	go p.supervise()
}

func (p *proc) spawn() error {
	faults := p.faults
	if p.lives < len(p.crashes) {
		faults = strings.Trim(faults+","+p.crashes[p.lives], ",")
	}
	cmd := exec.Command(p.bin)
	cmd.Env = append(append(os.Environ(), p.env...), "ADDR="+p.addr, "FAULTS="+faults, "LOG_LEVEL=warn", "DRAIN_TIMEOUT=5s")
	cmd.Stdout, cmd.Stderr = p.log, p.log
	fmt.Fprintf(p.log, "=== life %d: FAULTS=%s\n", p.lives+1, faults)
	if err := cmd.Start(); err != nil {
		return err
	}
	p.mu.Lock()
	p.cmd = cmd
	p.lives++
	p.mu.Unlock()
	return nil
}

func (p *proc) supervise() {
	defer close(p.done)
	for {
		p.mu.Lock()
		cmd := p.cmd
		p.mu.Unlock()
		err := cmd.Wait()
		p.mu.Lock()
		stopping := p.stopping
		if !stopping {
			p.crashed++
		}
		p.mu.Unlock()
		if stopping {
			return
		}
		fmt.Fprintf(p.log, "=== exited: %v; restarting\n", err)
		time.Sleep(100 * time.Millisecond)
		if err := p.spawn(); err != nil {
			fmt.Fprintf(p.log, "=== restart failed: %v\n", err)
			return
		}
	}
}

// stop sends SIGTERM (a graceful drain) and waits.
func (p *proc) stop() {
	p.mu.Lock()
	p.stopping = true
	cmd := p.cmd
	p.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(os.Interrupt)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-p.done
	}
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready after 30s", url)
}

// tail returns the last lines of a log, for failure messages.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

var _ = context.Background
