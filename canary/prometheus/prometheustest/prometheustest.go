// Package prometheustest starts a real Prometheus server for a test: the
// binary named by FLOTILLA_TEST_PROMETHEUS (Debian's package `prometheus`),
// in a temporary directory, scraping the given targets every second.
// Without the variable the test is skipped with a line naming it (a
// failure when CI=true).
package prometheustest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/flotilla-ci/flotilla/internal/testenv"
)

// ScrapeInterval is how often the server scrapes its targets.
const ScrapeInterval = time.Second

// Server is a running Prometheus.
type Server struct {
	URL string // base URL of its HTTP API, http://127.0.0.1:PORT
	Dir string // its configuration, data and log
}

// Start runs Prometheus scraping targets (URLs of /metrics endpoints, e.g.
// an httptest server's URL + "/metrics") every ScrapeInterval, waits until
// it is ready, and stops it when t ends (printing its log if t failed).
func Start(t testing.TB, targets ...string) *Server {
	t.Helper()
	bin := testenv.Binary(t, testenv.Prometheus)
	dir := t.TempDir()
	type staticConfig struct {
		Targets []string `yaml:"targets"`
	}
	type scrapeConfig struct {
		JobName       string         `yaml:"job_name"`
		Scheme        string         `yaml:"scheme"`
		MetricsPath   string         `yaml:"metrics_path"`
		StaticConfigs []staticConfig `yaml:"static_configs"`
	}
	var scrapes []scrapeConfig
	for i, target := range targets {
		u, err := url.Parse(target)
		if err != nil || u.Host == "" {
			t.Fatalf("prometheustest: target %q: want http://host:port/metrics", target)
		}
		scrapes = append(scrapes, scrapeConfig{JobName: fmt.Sprintf("target%d", i), Scheme: u.Scheme, MetricsPath: u.EscapedPath(), StaticConfigs: []staticConfig{{Targets: []string{u.Host}}}})
	}
	iv := model(ScrapeInterval)
	conf, err := yaml.Marshal(map[string]any{
		"global":         map[string]string{"scrape_interval": iv, "scrape_timeout": iv, "evaluation_interval": iv},
		"scrape_configs": scrapes,
	})
	if err != nil {
		t.Fatal(err)
	}
	confFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(confFile, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "prometheus.log")
	logOut, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--config.file="+confFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:0", // its log names the port
		"--log.level=info",
	)
	cmd.Stdout, cmd.Stderr = logOut, logOut
	if err := cmd.Start(); err != nil {
		t.Fatalf("prometheustest: start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	s := &Server{Dir: dir}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = logOut.Close()
		if t.Failed() {
			s.dumpLog(t)
		}
	})

	listening := regexp.MustCompile(`msg="Listening on" address=(127\.0\.0\.1:\d+)`)
	deadline := time.Now().Add(2 * time.Minute)
	for s.URL == "" {
		if b, _ := os.ReadFile(logFile); len(b) > 0 {
			if m := listening.FindSubmatch(b); m != nil {
				s.URL = "http://" + string(m[1])
				break
			}
		}
		select {
		case <-exited:
			s.dumpLog(t)
			t.Fatalf("prometheustest: %s exited before listening: %v", bin, waitErr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.dumpLog(t)
			t.Fatalf("prometheustest: %s did not say where it listens within 2m", bin)
		}
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/-/ready", nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheustest: %s not ready within 2m: %v", s.URL, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func model(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }

func (s *Server) dumpLog(t testing.TB) {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "prometheus.log"))
	if lines := bytes.Split(bytes.TrimSpace(b), []byte("\n")); len(lines) > 40 {
		b = bytes.Join(lines[len(lines)-40:], []byte("\n"))
	}
	t.Logf("prometheus log (%s):\n%s", s.Dir, strings.TrimSpace(string(b)))
}
