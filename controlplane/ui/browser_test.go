package ui_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"gopkg.in/yaml.v3"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/graph"
)

// chromiumEnv names the Chromium the browser tests drive.
const chromiumEnv = "FLOTILLA_TEST_CHROMIUM"

// chromium is the browser's path: the test is skipped without the
// variable (and fails without it under CI=true), and fails when it names
// no program.
func chromium(t *testing.T) string {
	t.Helper()
	p := os.Getenv(chromiumEnv)
	if p == "" && os.Getenv("CI") == "true" {
		t.Fatalf("%s is not set (CI=true): .ci/run installs Debian's chromium and sets it", chromiumEnv)
	}
	if p == "" {
		t.Skipf("set %s to a Chromium (Debian's chromium: /usr/bin/chromium) to run the dashboard's browser tests", chromiumEnv)
	}
	if _, err := exec.LookPath(p); err != nil {
		t.Fatalf("%s=%s: %v", chromiumEnv, p, err)
	}
	return p
}

// shopManifest writes a copy of the shop's flotilla.yaml beside it (its
// paths resolve the same), each service switched at once after its smoke
// checks (no canary steps, no bake: this test is about the page), with
// extra env added to service's deploy env when service is not "".
func shopManifest(t *testing.T, path, service, env string) {
	t.Helper()
	src, err := os.ReadFile("../../flotilla.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	child := func(m *yaml.Node, key string) *yaml.Node {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return m.Content[i+1]
			}
		}
		v := &yaml.Node{Kind: yaml.MappingNode}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
		return v
	}
	root := doc.Content[0]
	*child(child(root, "defaults"), "canary") = yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Value: "bake"}, {Kind: yaml.ScalarNode, Value: "0s"}}}
	services := child(root, "services")
	for i := 0; i+1 < len(services.Content); i += 2 {
		svc := services.Content[i+1]
		for j := 0; j+1 < len(svc.Content); j += 2 {
			if svc.Content[j].Value == "canary" {
				svc.Content = append(svc.Content[:j], svc.Content[j+2:]...)
				break
			}
		}
		if services.Content[i].Value == service {
			k, v, _ := strings.Cut(env, "=")
			e := child(child(svc, "deploy"), "env")
			*child(e, k) = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v}
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// runShop brings the shop up on a platform and returns where it is.
func runShop(t *testing.T, manifest string) controlplane.PlatformInfo {
	t.Helper()
	cfg := controlplane.DefaultPlatformConfig(manifest)
	cfg.Data = t.TempDir()
	cfg.APIAddr, cfg.GatewayAddr, cfg.RegistryAddr, cfg.BrokerAddr, cfg.NATSAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Logger = quiet
	ready := make(chan controlplane.PlatformInfo, 1)
	cfg.Ready = func(i controlplane.PlatformInfo) { ready <- i }
	p, err := controlplane.NewPlatform(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("platform stop: %v", err)
		}
	})
	select {
	case info := <-ready:
		return info
	case err := <-done:
		done <- nil
		t.Fatalf("the platform did not come up: %v", err)
	}
	panic("unreachable")
}

// browser collects what the page said on its console.
type browser struct {
	mu       sync.Mutex
	problems []string
}

func (b *browser) add(s string) {
	b.mu.Lock()
	b.problems = append(b.problems, s)
	b.mu.Unlock()
}

func (b *browser) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.problems
	b.problems = nil
	return p
}

// The browser test: the shop deployed on a platform, its
// dashboard driven by a headless Chromium. Every page loads with no
// console error and is saved as a screenshot; the overview shows the ten
// services in their waves; a deploy started through the API shows on
// the open overview within 2 s; a rollback from a service's page (its
// confirmation accepted, the admin token typed) really rolls back, as
// the API then reports; the same button without the token is refused
// and changes nothing.
func TestBrowserDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the shop's ten services, and a browser")
	}
	chrome := chromium(t)
	shots, err := os.MkdirTemp("", "flotilla-ui-screenshots-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots of this run: %s", shots)

	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(root, "flotilla.ui-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	manifest := f.Name()
	t.Cleanup(func() { _ = os.Remove(manifest) })
	shopManifest(t, manifest, "", "")
	m, _, err := graph.Load(manifest)
	if err != nil {
		t.Fatal(err)
	}
	waves, err := graph.New(m).Waves(nil)
	if err != nil {
		t.Fatal(err)
	}

	info := runShop(t, manifest)
	admin, err := controlplane.ReadToken(controlplane.TokenFile(info.Data, controlplane.RoleAdmin))
	if err != nil {
		t.Fatal(err)
	}
	api := controlplane.NewClient(info.API).WithToken(admin)
	base := info.API + controlplane.DashboardPath

	// Some traffic for the figures.
	trafficCtx, stopTraffic := context.WithCancel(context.Background())
	defer stopTraffic()
	go func() {
		for trafficCtx.Err() == nil {
			if resp, err := http.Get(info.Gateway + "/api/product/products"); err == nil {
				_ = resp.Body.Close()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.Flag("headless", true), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1440, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	ctx, cancelTimeout := context.WithTimeout(ctx, 5*time.Minute)
	defer cancelTimeout()

	var b browser
	var dialogs sync.Map // the confirmation dialogs the page opened, by message
	messages := chromedp.Console(ctx)
	opening := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == "error" || m.Type == "assert" || m.IsException() {
				b.add(m.String())
			}
		}
	}()
	go func() {
		for ev, err := range opening {
			if err != nil {
				return
			}
			dialogs.Store(ev.Message, true)
			go func() {
				_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
			}()
		}
	}()

	// Every page loads, connects to the event stream, with no console
	// error; each is saved.
	open := func(name, path string) {
		t.Helper()
		err := chromedp.Do(ctx,
			chromedp.Navigate(base+strings.TrimPrefix(path, "/")),
			chromedp.WaitVisible(chromedp.CSS("main h1")),
			chromedp.WaitReady(chromedp.CSS(`body[data-live="open"]`)),
		)
		if err != nil {
			t.Fatalf("page %s (%s): %v", name, path, err)
		}
		time.Sleep(300 * time.Millisecond) // late console messages
		if p := b.take(); len(p) > 0 {
			t.Errorf("page %s (%s): console errors:\n  %s", name, path, strings.Join(p, "\n  "))
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot of %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The figures need a few samples of the traffic before the overview's
	// screenshot.
	time.Sleep(12 * time.Second)
	open("overview", "/")

	// Ten nodes, each in its wave's column (left to right).
	type drawnNode struct {
		Service string  `json:"service"`
		Wave    string  `json:"wave"`
		X       float64 `json:"x"`
	}
	drawn, err := chromedp.Run(ctx, chromedp.Evaluate[[]drawnNode](`Array.from(document.querySelectorAll("#graph .node")).map(n => ({service: n.dataset.service, wave: n.dataset.wave, x: n.getBoundingClientRect().x}))`))
	if err != nil {
		t.Fatal(err)
	}
	if len(drawn) != 10 {
		t.Fatalf("the overview draws %d nodes, want the shop's 10", len(drawn))
	}
	colX := map[string]float64{}
	for _, n := range drawn {
		want := 0
		for i, w := range waves {
			for _, s := range w {
				if s == n.Service {
					want = i + 1
				}
			}
		}
		if n.Wave != fmt.Sprint(want) {
			t.Errorf("%s drawn in wave %s, its wave is %d", n.Service, n.Wave, want)
		}
		if x, ok := colX[n.Wave]; ok && x != n.X {
			t.Errorf("%s is not in its wave's column (x %v, the column's %v)", n.Service, n.X, x)
		}
		colX[n.Wave] = n.X
	}
	for w := 2; w <= len(waves); w++ {
		if colX[fmt.Sprint(w)] <= colX[fmt.Sprint(w-1)] {
			t.Errorf("wave %d's column is not right of wave %d's", w, w-1)
		}
	}

	// A deploy started through the API shows on the open overview within
	// 2 s of its first step.
	before, err := api.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	old := ""
	for _, s := range before.Services {
		if s.Service == "cart-service" {
			old = s.Stable
		}
	}
	shopManifest(t, manifest, "cart-service", "UI_TEST=changed")
	firstStep := make(chan deploy.Event, 1)
	deployed := make(chan error, 1)
	requested := time.Now()
	go func() {
		rep, err := api.Deploy(context.Background(), deploy.Request{Services: []string{"cart-service"}, Who: "browser-test"}, func(e deploy.Event) {
			select {
			case firstStep <- e:
			default:
			}
		})
		if err == nil && (rep == nil || len(rep.Outcomes) == 0 || rep.Outcomes[0].Result != deploy.Succeeded) {
			err = fmt.Errorf("the deploy's report: %+v", rep)
		}
		deployed <- err
	}()
	var first deploy.Event
	select {
	case first = <-firstStep:
	case err := <-deployed:
		t.Fatalf("the deploy ended before its first step: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the deploy reported no step within a minute")
	}
	firstAt := time.Now()
	var shown bool
	for time.Since(firstAt) < 2*time.Second {
		if shown, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const l = document.getElementById("live"); const n = document.querySelector('.node[data-service="cart-service"] .state'); return !l.hidden && l.dataset.release === "`+fmt.Sprint(first.Release)+`" && n.textContent !== "" })()`)); err != nil {
			t.Fatal(err)
		}
		if shown {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	seen := time.Since(firstAt)
	if !shown {
		t.Fatalf("release %d did not show on the open overview within 2 s of its first step", first.Release)
	}
	release, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#live")))
	t.Logf("release %d on the overview %v after its first step (%v after the request): %q", first.Release, seen.Round(time.Millisecond), firstAt.Sub(requested).Round(time.Millisecond), release)
	if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		_ = os.WriteFile(filepath.Join(shots, "overview-during-release.png"), png, 0o644)
	}
	if err := <-deployed; err != nil {
		t.Fatalf("the deploy of cart-service: %v", err)
	}
	after, err := api.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	newVersion := ""
	for _, s := range after.Services {
		if s.Service == "cart-service" {
			newVersion = s.Stable
		}
	}
	if newVersion == old || newVersion == "" {
		t.Fatalf("cart-service serves %q after the deploy, was %q: want a new version", newVersion, old)
	}
	if p := b.take(); len(p) > 0 {
		t.Errorf("console errors during the release: %v", p)
	}

	// The other pages.
	open("releases", "/releases")
	open("release", fmt.Sprintf("/releases/%d", first.Release))
	open("canaries", "/canaries")
	open("contracts", "/contracts")
	pactLink, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`a[href^="/ui/contracts/pacts/"]`), "href"))
	if err != nil {
		t.Fatal(err)
	}
	open("pact", strings.TrimPrefix(pactLink.Value, "/ui"))
	open("schemas", "/schemas")
	subject, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#subjects tbody th")))
	if err != nil {
		t.Fatal(err)
	}
	open("schema-diff", "/schemas?subject="+subject)
	open("traces", "/traces")
	open("service", "/services/cart-service")

	// Without the token the button is refused, and nothing changes.
	rollbackForm := `form.action[action="/ui/actions/rollback"]`
	submit := func() (outcome, msg string) {
		t.Helper()
		if err := chromedp.Do(ctx,
			chromedp.Click(chromedp.CSS(rollbackForm+` button`)),
			chromedp.WaitReady(chromedp.CSS(rollbackForm+`[data-outcome]`)),
		); err != nil {
			t.Fatal(err)
		}
		o, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(rollbackForm), "data-outcome"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(rollbackForm+` output`)))
		if err != nil {
			t.Fatal(err)
		}
		return o.Value, m
	}
	if err := chromedp.Do(ctx, chromedp.RemoveAttribute(chromedp.CSS(rollbackForm+` input[name="token"]`), "required")); err != nil {
		t.Fatal(err)
	}
	outcome, msg := submit()
	if outcome != "refused" || !strings.Contains(msg, "token") {
		t.Errorf("the rollback without a token: %s %q, want refused naming the token", outcome, msg)
	}
	b.take() // the 401 of the refused action is the browser's resource error, expected
	if st := stable(t, api, "cart-service"); st != newVersion {
		t.Fatalf("after the refused rollback cart-service serves %s, want %s unchanged", st, newVersion)
	}

	// With its confirmation and the admin token, it rolls back.
	if err := chromedp.Do(ctx,
		chromedp.RemoveAttribute(chromedp.CSS(rollbackForm), "data-outcome"),
		chromedp.SendKeys(chromedp.CSS(rollbackForm+` input[name="token"]`), admin),
	); err != nil {
		t.Fatal(err)
	}
	outcome, msg = submit()
	if outcome != "ok" || !strings.Contains(msg, "rolled back cart-service") {
		t.Fatalf("the rollback with the token: %s %q, want it done", outcome, msg)
	}
	if _, ok := dialogs.Load("Roll cart-service back to the version that served before?"); !ok {
		t.Errorf("the rollback asked no confirmation")
	}
	if st := stable(t, api, "cart-service"); st != old {
		t.Fatalf("after the rollback cart-service serves %s, want %s back", st, old)
	}
	t.Logf("rolled back from the page: %q", msg)
	if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		_ = os.WriteFile(filepath.Join(shots, "service-after-rollback.png"), png, 0o644)
	}
	if p := b.take(); len(p) > 0 {
		t.Errorf("console errors: %v", p)
	}

	// Unknown ids: the 404 page says what exists.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"services/nope-service")); err != nil {
		t.Fatal(err)
	}
	notFound, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(notFound, "There is no service nope-service") || !strings.Contains(notFound, "order-service") {
		t.Errorf("the 404 page says %q", notFound)
	}
	b.take() // the 404 itself is a resource error
}

func stable(t *testing.T, api *controlplane.Client, service string) string {
	t.Helper()
	st, err := api.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Services {
		if s.Service == service {
			return s.Stable
		}
	}
	t.Fatalf("no %s in the status", service)
	return ""
}
