// Command kube measures a release of the shop's ten services on the
// Kubernetes test plane (internal/kubetest: the real API server,
// controllers and scheduler, kwok for the kubelets, Istio's CRDs), through
// the orchestrator, the Kubernetes target and the Istio router, with no
// canary analysis: the "a release of the ten services under 60 s",
// and the API requests one release makes, by verb and resource.
//
// The first release creates everything; each further run changes every
// service's config, so all ten roll to a new version beside the old one,
// switch their VirtualService and remove the old Deployment.
//
//	export FLOTILLA_TEST_KUBE=$(testplane/build.sh)
//	go run ./bench/kube              # 3 releases
//	go run ./bench/kube -runs 5
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/kube"
	"github.com/flotilla-ci/flotilla/deploy/sqlstore"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/internal/kubetest"
)

func main() {
	runs := flag.Int("runs", 3, "releases of all ten services to time (the first creates them)")
	manifest := flag.String("manifest", "flotilla.yaml", "the shop's manifest (run from the repository root)")
	flag.Parse()
	if err := run(*runs, *manifest); err != nil {
		fmt.Fprintln(os.Stderr, "bench/kube:", err)
		os.Exit(1)
	}
}

// counter counts the API requests of every client whose transport it
// wraps, by "VERB resource".
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

type counting struct {
	c    *counter
	next http.RoundTripper
}

func (t counting) RoundTrip(r *http.Request) (*http.Response, error) {
	t.c.mu.Lock()
	t.c.n[r.Method+" "+resource(r.URL.Path)]++
	t.c.mu.Unlock()
	return t.next.RoundTrip(r)
}

func (c *counter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.n
	c.n = map[string]int{}
	return out
}

// resource names the resource of an API path: /apis/G/V/namespaces/N/R/...
// or /api/v1/namespaces/N/R/... gives R (and R/sub for a subresource).
func resource(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i, p := range parts {
		if p == "namespaces" && i+2 < len(parts) {
			rest := parts[i+2:]
			if len(rest) >= 3 {
				return rest[0] + "/" + rest[2]
			}
			return rest[0]
		}
	}
	if len(parts) > 0 {
		return parts[len(parts)-1]
	}
	return path
}

func run(runs int, file string) error {
	bin := os.Getenv("FLOTILLA_TEST_KUBE")
	if bin == "" {
		return fmt.Errorf("FLOTILLA_TEST_KUBE is not set: export FLOTILLA_TEST_KUBE=$(testplane/build.sh)")
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	start := time.Now()
	p, err := kubetest.Start(ctx, bin, kubetest.Options{})
	if err != nil {
		return err
	}
	defer p.Stop()
	fmt.Printf("plane up in %s (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, Istio CRDs)\n", time.Since(start).Round(10*time.Millisecond))

	const ns = "shop"
	if _, err := p.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	cnt := &counter{n: map[string]int{}}
	cfg := p.Config()
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return counting{cnt, rt} }
	cs, err := kubernetes.NewForConfig(rest.CopyConfig(cfg))
	if err != nil {
		return err
	}
	ic, err := istioclient.NewForConfig(rest.CopyConfig(cfg))
	if err != nil {
		return err
	}
	kc := kube.DefaultConfig(ns)
	kc.Image = func(_ context.Context, s deploy.Spec) (string, error) {
		sum := fmt.Sprintf("%064x", []byte(s.Version))
		return "registry.test/shop/" + s.Service + "@sha256:" + sum[len(sum)-64:], nil
	}
	kc.PollInterval = 50 * time.Millisecond
	tg, err := kube.New(ctx, cs, kc)
	if err != nil {
		return err
	}
	router := kube.NewRouter(ic, tg)
	m, _, err := graph.Load(file)
	if err != nil {
		return err
	}
	for _, s := range m.Services {
		s.Smoke = nil // the plane runs no containers: nothing would answer
	}
	dir, err := os.MkdirTemp("", "bench-kube-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	store, err := sqlstore.Open(ctx, filepath.Join(dir, "history.db"))
	if err != nil {
		return err
	}
	defer func() { _ = store.Close() }()

	var times []time.Duration
	for i := range runs {
		for _, s := range m.Services {
			if s.Deploy.Env == nil {
				s.Deploy.Env = map[string]string{}
			}
			s.Deploy.Env["BENCH_REV"] = strconv.Itoa(i)
		}
		o, err := deploy.New(deploy.Config{
			Graph: graph.New(m), Target: tg, Router: router, Store: store,
			Environment: "production", DrainTimeout: time.Second,
		})
		if err != nil {
			return err
		}
		cnt.take()
		rep, err := o.Deploy(ctx, deploy.Request{All: true, Environment: "production", Who: "bench"}, nil)
		if err != nil {
			return fmt.Errorf("release %d: %w", i+1, err)
		}
		reqs := cnt.take()
		total := 0
		var lines []string
		for k, v := range reqs {
			total += v
			lines = append(lines, fmt.Sprintf("%5d %s", v, k))
		}
		sort.Slice(lines, func(a, b int) bool { return lines[a][6:] < lines[b][6:] })
		what := "first release (creates everything)"
		if i > 0 {
			what = "release of ten new versions (replace every old one)"
		}
		fmt.Printf("\nrun %d, %s: %s, %d waves, %d services, %d API requests\n", i+1, what,
			rep.Duration.Round(10*time.Millisecond), len(rep.Plan.Waves), len(rep.Outcomes), total)
		for _, l := range lines {
			fmt.Println("  " + l)
		}
		times = append(times, rep.Duration)
	}
	if len(times) > 1 {
		rest := append([]time.Duration(nil), times[1:]...)
		sort.Slice(rest, func(a, b int) bool { return rest[a] < rest[b] })
		fmt.Printf("\nreleases of ten new versions: median %s, max %s (target < 60 s)\n",
			rest[len(rest)/2].Round(10*time.Millisecond), rest[len(rest)-1].Round(10*time.Millisecond))
	}
	return nil
}
