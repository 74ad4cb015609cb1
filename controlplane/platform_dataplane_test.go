package controlplane_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/dataplane"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/internal/supervise"
)

// loadStreams sends 100 requests/s through the gateway in two streams of
// 50/s: one whose client retries an idempotent request that failed (up
// to 3 times, 100 ms apart), one that does not. It counts, per phase, the
// requests and those that failed, and the requests of the no-retry
// stream in flight when a phase began.
type loadStreams struct {
	url   string
	mu    sync.Mutex
	phase string
	sent  map[string]int
	// failed lists failures by phase and stream ("retry", "once").
	failed   map[string][]string
	inflight [2]atomic.Int64 // once, retry
	atStart  map[string]int64
	stop     chan struct{}
	stopOnce sync.Once
	done     sync.WaitGroup
}

func startLoad(url string) *loadStreams {
	l := &loadStreams{url: url, phase: "before", sent: map[string]int{}, failed: map[string][]string{},
		atStart: map[string]int64{}, stop: make(chan struct{})}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			retry := i%2 == 1
			l.done.Add(1)
			go func() {
				defer l.done.Done()
				l.one(client, retry)
			}()
		}
	}()
	return l
}

func (l *loadStreams) one(client *http.Client, retry bool) {
	s, name := 0, "once"
	if retry {
		s, name = 1, "retry"
	}
	l.inflight[s].Add(1)
	defer l.inflight[s].Add(-1)
	l.mu.Lock()
	phase := l.phase
	l.sent[phase]++
	l.mu.Unlock()
	var last string
	for attempt := 0; attempt < 4; attempt++ {
		if attempt > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		resp, err := client.Get(l.url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
			if resp.StatusCode != http.StatusBadGateway && resp.StatusCode != http.StatusServiceUnavailable {
				break
			}
		} else {
			last = err.Error()
		}
		if !retry {
			break
		}
	}
	l.mu.Lock()
	l.failed[phase+" "+name] = append(l.failed[phase+" "+name], last)
	l.mu.Unlock()
}

// setPhase starts a phase, noting the no-retry requests in flight.
func (l *loadStreams) setPhase(p string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.phase = p
	l.atStart[p] = l.inflight[0].Load()
}

// waitSent waits until n requests were sent in the current phase.
func (l *loadStreams) waitSent(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		l.mu.Lock()
		got := l.sent[l.phase]
		l.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests sent in a minute, want %d", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *loadStreams) finish() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.done.Wait()
}

// TestPlatformDataplaneRestartedAfterKill9: the data plane runs in a
// process of its own. Under 100 requests/s through the gateway, killed
// with SIGKILL, it is restarted by the platform's supervisor on the
// listening sockets the control plane kept, serving its last
// configuration within 2 s: requests made meanwhile wait in the backlog;
// the requests that fail are counted and reported (none with client
// retries of idempotent requests, at most those in flight at the kill
// without). Then a configuration it refuses (invalid: an instance's
// address that is its own gateway's, a loop) leaves it on the previous
// snapshot, serving without a failure, and the control plane reports the
// refusal in /api/platform.
func TestPlatformDataplaneRestartedAfterKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the shop's user-service")
	}
	manifest, err := filepath.Abs("../flotilla.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	cfg := platformConfig(manifest, data)
	cfg.Services = []string{"user-service"}
	cfg.Demo = false
	p, info, cancel, done := startPlatform(t, cfg)
	defer cancel()
	ctx := context.Background()
	dir := filepath.Join(data, "dataplane")
	sock := dataplane.SocketIn(dir)
	before, err := supervise.ReadState(dir, "dataplane")
	if err != nil {
		t.Fatal(err)
	}
	st0, err := dataplane.ProbeStatus(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	if ps := platformProcess(t, info.API, "dataplane"); ps.Sockets < 3 {
		t.Fatalf("the control plane keeps %d of the data plane's listening sockets, want the admin socket, the gateway's and user-service's", ps.Sockets)
	}

	load := startLoad(info.Gateway + "/api/user/ready")
	defer load.finish()
	load.waitSent(t, 100)

	// kill -9 of the data plane.
	load.setPhase("kill -9")
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// Serving again: a request sent right after the kill, on a fresh
	// connection, is answered (it waits in the backlog meanwhile).
	probe := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		resp, err := probe.Get(info.Gateway + "/api/user/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Since(killed) > time.Minute {
			t.Fatalf("the gateway did not serve again a minute after the kill -9: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(killed)
	var st dataplane.Status
	for {
		st, err = dataplane.ProbeStatus(ctx, sock)
		if err == nil && st.PID != before.PID {
			break
		}
		if time.Since(killed) > time.Minute {
			t.Fatalf("no new data plane answers a minute after the kill -9: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	load.waitSent(t, 300)
	load.mu.Lock()
	once, retried, inflight := load.failed["kill -9 once"], load.failed["kill -9 retry"], load.atStart["kill -9"]
	sent := load.sent["kill -9"]
	load.mu.Unlock()
	t.Logf("kill -9 of the data plane: serving again with config %d after %v; of %d requests, %d failed without retries (%d were in flight at the kill), %d with retries: %v %v",
		st.Version, took.Round(time.Millisecond), sent, len(once), inflight, len(retried), once, retried)
	// The new process's own start (a race-built test binary here) is
	// what takes the time, and it is the machine's: judged against 2 s
	// on a machine with time to spare, against 10 s (a restart that
	// backs off or waits for something) on a saturated one, where
	// bench/dataplane's figures are the ones to read.
	busy := loadAverage()
	switch limit := 2 * time.Second; {
	case took > limit && busy <= float64(2*runtime.NumCPU()):
		t.Errorf("the data plane served again %v after the kill -9, want within %v", took, limit)
	case took > 10*time.Second:
		t.Errorf("the data plane served again %v after the kill -9 (load average %.1f), want within 10s even on a busy machine", took, busy)
	case took > limit:
		t.Logf("serving again took over 2 s with the machine saturated (load average %.1f on %d cores): not judged", busy, runtime.NumCPU())
	}
	if st.Version < st0.Version || st.LoadError != "" {
		t.Errorf("the restarted data plane serves config %d (%q); want its last, %d", st.Version, st.LoadError, st0.Version)
	}
	if len(retried) > 0 {
		t.Errorf("%d requests failed with retries, want 0", len(retried))
	}
	if int64(len(once)) > inflight {
		t.Errorf("%d requests failed without retries, more than the %d in flight at the kill", len(once), inflight)
	}

	// A configuration the data plane refuses.
	load.setPhase("refused")
	served, err := dataplane.ProbeStatus(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	gw := strings.TrimPrefix(info.Gateway, "http://")
	err = p.DataplaneClient().SetSubset(ctx, "user-service", deploy.Subset{Name: "loop", Endpoints: []string{gw}})
	var re *dataplane.RefusedError
	if !errors.As(err, &re) || re.Acked != served.Version {
		t.Fatalf("a subset whose instance is the gateway: %v; want a refusal leaving version %d", err, served.Version)
	}
	after, err := dataplane.ProbeStatus(ctx, sock)
	if err != nil || after.Version != served.Version {
		t.Fatalf("after the refusal the data plane serves %+v, %v; want version %d", after, err, served.Version)
	}
	ps := platformProcess(t, info.API, "dataplane")
	if ps.ConfigRefused == nil || ps.ConfigRefused.Acked != served.Version || !strings.Contains(ps.ConfigRefused.Reason, "loop") {
		t.Errorf("/api/platform's data plane after the refusal: %+v; want the refusal reported", ps.ConfigRefused)
	} else {
		t.Logf("the control plane reports: config %d refused, serves %d: %s", ps.ConfigRefused.Version, ps.ConfigRefused.Acked, ps.ConfigRefused.Reason)
	}
	load.waitSent(t, 100)
	load.mu.Lock()
	if f := append(load.failed["refused once"], load.failed["refused retry"]...); len(f) > 0 {
		t.Errorf("%d requests failed after the refusal: %v", len(f), f)
	}
	load.mu.Unlock()
	load.finish()

	// The API's metrics come from the new data plane.
	code, _, body := call(t, "GET", info.API+"/metrics", "", nil)
	if code != http.StatusOK || !strings.Contains(body, `flotilla_mesh_subset_weight{destination="user-service"`) {
		t.Errorf("GET /metrics after the restart: %d\n%s", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := supervise.ReadState(dir, "dataplane"); err == nil {
		t.Errorf("the data plane's state file is left after the platform stopped")
	}
	if syscall.Kill(st.PID, 0) == nil {
		t.Errorf("the data plane (pid %d) runs on after the platform stopped", st.PID)
	}
}

// loadAverage is the machine's 1-minute load average (0 if unknown).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// platformProcess is one of the platform's processes as GET
// /api/platform reports it.
func platformProcess(t *testing.T, api, name string) controlplane.PlatformProcess {
	t.Helper()
	code, _, body := call(t, "GET", api+"/api/platform", "", nil)
	var info controlplane.PlatformInfo
	if code != http.StatusOK || json.Unmarshal([]byte(body), &info) != nil {
		t.Fatalf("GET /api/platform: %d %s", code, body)
	}
	for _, p := range info.Processes {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("GET /api/platform has no %s process: %s", name, body)
	return controlplane.PlatformProcess{}
}
