package controlplane_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/deploy"
)

// platformConfig is a platform on free ports with its data in data.
func platformConfig(manifest, data string) controlplane.PlatformConfig {
	cfg := controlplane.DefaultPlatformConfig(manifest)
	cfg.Data = data
	cfg.APIAddr, cfg.GatewayAddr, cfg.RegistryAddr, cfg.BrokerAddr, cfg.NATSAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Logger = quiet
	return cfg
}

// runPlatform starts a platform and returns once it is ready (or fails
// the test with Run's error); stop cancels it and returns Run's result.
func runPlatform(t *testing.T, cfg controlplane.PlatformConfig) (info controlplane.PlatformInfo, stop func() error) {
	t.Helper()
	ready := make(chan controlplane.PlatformInfo, 1)
	cfg.Ready = func(i controlplane.PlatformInfo) { ready <- i }
	p, err := controlplane.NewPlatform(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { _ = stop() })
	select {
	case info = <-ready:
		rememberToken(t, info)
		return info, stop
	case err := <-done:
		stopped = true
		t.Fatalf("platform did not come up: %v", err)
	}
	return info, stop
}

// processesUnder lists the running processes whose executable is under
// dir (what the local target started from its artifact cache).
func processesUnder(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc to look for orphaned processes in")
	}
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.HasPrefix(exe, dir+string(filepath.Separator)) {
			out = append(out, e.Name()+" "+exe)
		}
	}
	return out
}

// artifacts maps each built artifact under data to its modification time.
func artifacts(t *testing.T, data string) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	root := filepath.Join(data, "local", "bin")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out[path] = fi.ModTime()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func get(t *testing.T, url string, v any) int {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	withToken(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if v != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v: %s", url, err, body)
		}
	}
	return resp.StatusCode
}

type catalog struct {
	Items []struct {
		SKU       string    `json:"sku"`
		CreatedAt time.Time `json:"createdAt"`
	} `json:"items"`
	Total int `json:"total"`
}

func demoLogin(t *testing.T, gateway string) int {
	t.Helper()
	body := `{"email":"` + controlplane.DemoUserEmail + `","password":"` + controlplane.DemoUserPassword + `"}`
	resp, err := http.Post(gateway+"/api/user/login", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// The platform on the shop's real manifest, for product-service (and
// user-service, which it depends on): up, a request through the gateway,
// a clean stop that leaves no process behind, and up again on the same
// data directory with the same data, the same stable addresses and no
// artifact rebuilt.
func TestPlatformUpStopAndUpAgain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the shop's user and product services")
	}
	manifest, err := filepath.Abs("../flotilla.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	cfg := platformConfig(manifest, data)
	cfg.Services = []string{"product-service"} // and user-service, its dependency
	var events []deploy.Event
	cfg.Events = func(e deploy.Event) { events = append(events, e) }

	info, stop := runPlatform(t, cfg)
	var names []string
	mesh1 := map[string]string{}
	versions1 := map[string]string{}
	for _, s := range info.Services {
		names = append(names, s.Name)
		mesh1[s.Name], versions1[s.Name] = s.Mesh, s.Version
	}
	if strings.Join(names, ",") != "user-service,product-service" {
		t.Fatalf("services %v, want user-service then product-service (its dependency first)", names)
	}
	waves := map[string]int{}
	for _, e := range events {
		if e.Step == deploy.StepDone && e.Service != "" {
			waves[e.Service] = e.Wave
		}
	}
	if waves["user-service"] != 1 || waves["product-service"] != 2 {
		t.Errorf("done events by wave %v, want user-service in wave 1 and product-service in wave 2", waves)
	}
	if info.Demo == nil || info.Demo.Products != 8 {
		t.Fatalf("demo data %+v, want 8 products", info.Demo)
	}
	var cat1 catalog
	if st := get(t, info.Gateway+"/api/product/products?limit=100", &cat1); st != http.StatusOK || cat1.Total != 8 {
		t.Fatalf("GET /api/product/products through the gateway: %d, %d products; want 200 with the 8 demo products", st, cat1.Total)
	}
	if st := demoLogin(t, info.Gateway); st != http.StatusOK {
		t.Fatalf("demo user login through the gateway: %d, want 200", st)
	}
	checkAPIToken(t, info)
	checkRotationUnderLoad(t, info)
	// The control plane's API knows what runs, and where.
	var status controlplane.StatusResponse
	if st := get(t, info.API+"/api/status", &status); st != http.StatusOK {
		t.Fatalf("GET /api/status: %d", st)
	}
	var pids []int
	for _, s := range status.Services {
		for _, in := range s.Instances {
			pids = append(pids, in.PID)
		}
	}
	if len(pids) != 2 {
		t.Fatalf("instances %v in the status, want one per service", pids)
	}
	var pinfo controlplane.PlatformInfo
	if st := get(t, info.API+"/api/platform", &pinfo); st != http.StatusOK || pinfo.Gateway != info.Gateway || len(pinfo.Services) != 2 {
		t.Errorf("GET /api/platform: %d %+v; want where everything is", st, pinfo)
	}
	// The release is in the history; the broker and the registry answer.
	var hist struct{ Records []deploy.Record }
	if st := get(t, info.API+"/api/history", &hist); st != http.StatusOK || len(hist.Records) != 2 {
		t.Errorf("GET /api/history: %d, %d records; want the 2 deployments", st, len(hist.Records))
	}
	for _, r := range hist.Records {
		if r.Result != deploy.Succeeded || r.Who != "flotilla up" {
			t.Errorf("history record %+v, want succeeded by flotilla up", r)
		}
	}
	if st := get(t, info.Broker+"/environments", nil); st != http.StatusOK {
		t.Errorf("GET %s/environments: %d, want 200", info.Broker, st)
	}
	if st := get(t, info.Registry+"/subjects", nil); st != http.StatusOK {
		t.Errorf("GET %s/subjects: %d, want 200", info.Registry, st)
	}
	built := artifacts(t, data)
	if len(built) != 2 {
		t.Fatalf("artifacts %v, want one per service", built)
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if left := processesUnder(t, data); len(left) > 0 {
		t.Fatalf("processes left running after the platform stopped: %v", left)
	}
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("pid %d still runs after the platform stopped", pid)
		}
	}
	// Its ports are free again.
	for _, u := range []string{info.Gateway, info.API, info.Registry, info.Broker} {
		ln, err := net.Listen("tcp", strings.TrimPrefix(u, "http://"))
		if err != nil {
			t.Errorf("%s still taken after the platform stopped: %v", u, err)
			continue
		}
		_ = ln.Close()
	}

	// Up again on the same data directory.
	events = nil
	cfg = platformConfig(manifest, data)
	cfg.Services = []string{"product-service"}
	info2, stop2 := runPlatform(t, cfg)
	var cat2 catalog
	if st := get(t, info2.Gateway+"/api/product/products?limit=100", &cat2); st != http.StatusOK {
		t.Fatalf("GET /api/product/products after the restart: %d", st)
	}
	if cat2.Total != 8 || len(cat2.Items) != len(cat1.Items) {
		t.Fatalf("after the restart the catalog has %d products, want the same 8", cat2.Total)
	}
	sort.Slice(cat1.Items, func(i, j int) bool { return cat1.Items[i].SKU < cat1.Items[j].SKU })
	sort.Slice(cat2.Items, func(i, j int) bool { return cat2.Items[i].SKU < cat2.Items[j].SKU })
	for i := range cat1.Items {
		if cat1.Items[i] != cat2.Items[i] {
			t.Errorf("product %d after the restart %+v, want %+v (the same row, not a new one)", i, cat2.Items[i], cat1.Items[i])
		}
	}
	if st := demoLogin(t, info2.Gateway); st != http.StatusOK {
		t.Errorf("demo user login after the restart: %d, want 200 (the same account)", st)
	}
	for _, s := range info2.Services {
		if s.Mesh != mesh1[s.Name] {
			t.Errorf("%s's mesh address after the restart %s, want %s as before", s.Name, s.Mesh, mesh1[s.Name])
		}
	}
	// Nothing was rebuilt: every artifact of the first run is still the
	// same file, and a service whose version did not change (the tree may
	// change under a long test) got no new one.
	built2 := artifacts(t, data)
	for path, mt := range built {
		if mt2, ok := built2[path]; !ok || !mt2.Equal(mt) {
			t.Errorf("artifact %s was rebuilt or removed on the second run", path)
		}
	}
	same := 0
	for _, s := range info2.Services {
		if s.Version == versions1[s.Name] {
			same++
		} else {
			t.Logf("%s changed in the tree during the test: %s → %s", s.Name, versions1[s.Name], s.Version)
		}
	}
	if len(built2)-len(built) != len(info2.Services)-same {
		t.Errorf("the second run built %d artifact(s), want one per changed service (%d)", len(built2)-len(built), len(info2.Services)-same)
	}
	// The history tells a start after a stop from a first deploy: the
	// second run's records say "start", with what served before the stop.
	var hist2 struct{ Records []deploy.Record }
	if st := get(t, info2.API+"/api/history", &hist2); st != http.StatusOK || len(hist2.Records) != 4 {
		t.Fatalf("GET /api/history after the restart: %d, %d records; want the 2 deployments and the 2 starts", st, len(hist2.Records))
	}
	for _, r := range hist2.Records[:2] {
		if r.Action != deploy.RecordStart || r.Previous != versions1[r.Service] || r.Result != deploy.Succeeded {
			t.Errorf("history after the restart: %s %s action %q previous %q result %s; want a succeeded start after %s",
				r.Service, r.Version, r.Action, r.Previous, r.Result, versions1[r.Service])
		}
	}
	for _, e := range events {
		if e.Step == deploy.StepDone && e.Service != "" && !strings.Contains(e.Msg, "after a stop") && !strings.Contains(e.Msg, "before the stop") {
			t.Errorf("%s's progress line after the restart %q, want it to say the service was started after a stop", e.Service, e.Msg)
		}
	}
	if err := stop2(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if left := processesUnder(t, data); len(left) > 0 {
		t.Fatalf("processes left running after the second stop: %v", left)
	}
}

// A port in use is reported with the flag that moves it, before anything
// starts.
func TestPlatformPortInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = taken.Close() }()
	manifest, _ := filepath.Abs("../flotilla.yaml")
	data := t.TempDir()
	cfg := platformConfig(manifest, data)
	cfg.GatewayAddr = taken.Addr().String()
	p, err := controlplane.NewPlatform(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), taken.Addr().String()) || !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), "--gateway-addr") {
		t.Fatalf("Run with the gateway's port taken: %v; want an error naming the address, that it is in use, and --gateway-addr", err)
	}
	if _, err := os.Stat(filepath.Join(data, "nats")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the event store was started although a port was taken (%v)", err)
	}
}

// A manifest error, an unknown service and bad addresses are one clear
// error each.
func TestPlatformBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "flotilla.yaml")
	if err := os.WriteFile(bad, []byte("services:\n  a-service:\n    pahts: [a]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.Abs("../flotilla.yaml")
	tests := []struct {
		name string
		cfg  controlplane.PlatformConfig
		want string
	}{
		{"manifest", platformConfig(bad, t.TempDir()), "pahts"},
		{"unknown service", func() controlplane.PlatformConfig {
			c := platformConfig(real, t.TempDir())
			c.Services = []string{"nosuch-service"}
			return c
		}(), "unknown service(s) nosuch-service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := controlplane.NewPlatform(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Run(context.Background()); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run: %v; want an error containing %q", err, tt.want)
			}
		})
	}
	cfg := platformConfig(real, t.TempDir())
	cfg.APIAddr, cfg.Authz = "7480", "strict"
	if _, err := controlplane.NewPlatform(cfg); err == nil || !strings.Contains(err.Error(), "api address") || !strings.Contains(err.Error(), "authz") {
		t.Errorf("NewPlatform with a bad address and authz mode: %v; want both reported", err)
	}
}

// A service that does not build stops the platform with the compiler's
// output, naming the service, and leaves nothing running.
func TestPlatformServiceThatDoesNotBuild(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"go.mod":             "module example.com/broken\n\ngo 1.22\n",
		"flotilla.yaml":      "services:\n  broken-service:\n    paths: [cmd/broken]\n    health: /ready\n",
		"cmd/broken/main.go": "package main\n\nfunc main() { notDefined() }\n",
		"cmd/broken/doc.go":  "// Command broken does not compile.\npackage main\n",
	}
	for name, body := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(root, ".flotilla")
	cfg := platformConfig(filepath.Join(root, "flotilla.yaml"), data)
	p, err := controlplane.NewPlatform(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "broken-service failed") || !strings.Contains(err.Error(), "undefined: notDefined") {
		t.Fatalf("Run: %v; want broken-service named with the compiler's output", err)
	}
	if left := processesUnder(t, data); len(left) > 0 {
		t.Fatalf("processes left running: %v", left)
	}
}

// Ctrl-C while the services are being built stops what had started and
// says it was interrupted.
func TestPlatformInterruptedWhileDeploying(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the shop's user-service")
	}
	manifest, _ := filepath.Abs("../flotilla.yaml")
	data := t.TempDir()
	cfg := platformConfig(manifest, data)
	cfg.Services = []string{"user-service"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg.Events = func(e deploy.Event) {
		if e.Step == deploy.StepBuild {
			cancel()
		}
	}
	cfg.Ready = func(controlplane.PlatformInfo) { t.Error("ready although interrupted while building") }
	p, err := controlplane.NewPlatform(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Run(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("Run interrupted while building: %v; want it to say so", err)
	}
	if left := processesUnder(t, data); len(left) > 0 {
		t.Fatalf("processes left running: %v", left)
	}
}

// apiTokens are the admin tokens of the platforms the tests run, by the
// API's host:port: get and call send them.
var apiTokens sync.Map

func rememberToken(t *testing.T, info controlplane.PlatformInfo) {
	t.Helper()
	tok, err := controlplane.ReadToken(controlplane.TokenFile(info.Data, controlplane.RoleAdmin))
	if err != nil {
		t.Fatal(err)
	}
	apiTokens.Store(strings.TrimPrefix(info.API, "http://"), tok)
}

func withToken(req *http.Request) {
	if tok, ok := apiTokens.Load(req.URL.Host); ok && req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+tok.(string))
	}
}

// apiClient is a client of the platform's API with its admin token.
func apiClient(t *testing.T, info controlplane.PlatformInfo) *controlplane.Client {
	t.Helper()
	rememberToken(t, info)
	tok, _ := apiTokens.Load(strings.TrimPrefix(info.API, "http://"))
	return controlplane.NewClient(info.API).WithToken(tok.(string))
}
