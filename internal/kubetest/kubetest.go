// Package kubetest starts a real Kubernetes control plane for a test
// package: etcd, kube-apiserver, kube-controller-manager and kube-scheduler,
// with kwok playing the kubelets of one fake node, and Istio's CRDs
// installed. The binaries come from testplane/build.sh, whose output
// directory FLOTILLA_TEST_KUBE names.
//
// A package starts one plane from TestMain and shares it, one namespace per
// test:
//
//	var plane *kubetest.Plane
//
//	func TestMain(m *testing.M) { os.Exit(kubetest.Main(m, &plane)) }
//
//	func TestX(t *testing.T) {
//		p := kubetest.Need(t, plane)
//		ns := p.Namespace(t)
//		...
//	}
//
// Every process listens on a free loopback port, so packages run in
// parallel. What the plane proves and what it does not: it runs the real
// API server (validation, defaults, server-side apply, CRD schemas) and the
// real Deployment, ReplicaSet and EndpointSlice controllers and scheduler;
// kwok marks scheduled pods Running and Ready without running anything (no
// container runtime, no probes, no kube-proxy, no istiod or Envoy). A pod
// labelled [NeverReady] is never made ready, so a rollout can miss its
// progress deadline.
package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/flotilla-ci/flotilla/internal/testenv"
)

// NeverReady is the pod label kwok's ready stage skips: a pod carrying it
// stays Pending and unready.
const NeverReady = "testplane/never-ready"

// token is the static bearer token of the plane's admin user.
const token = "flotilla-testplane-admin"

// Options tune a plane.
type Options struct {
	// NoIstio leaves Istio's CRDs out (a cluster without Istio).
	NoIstio bool
	// Log receives the processes' output (default: files under the
	// plane's directory, printed when a start fails).
	Log func(format string, args ...any)
}

// Plane is a running control plane.
type Plane struct {
	// Dir holds its data, certificates, logs and kubeconfig.
	Dir string
	// Kubeconfig is the path of a kubeconfig for the admin user.
	Kubeconfig string
	// Server is the API server's URL.
	Server string
	// Clientset and Dynamic are admin clients.
	Clientset kubernetes.Interface
	Dynamic   dynamic.Interface

	bin   string
	procs []*exec.Cmd
	names []string
	owned bool // Dir is removed on Stop
}

// Config returns an admin rest.Config (a fresh copy).
func (p *Plane) Config() *rest.Config {
	return &rest.Config{
		Host:            p.Server,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             200, Burst: 400,
	}
}

// Main starts a plane for a test package when FLOTILLA_TEST_KUBE is set,
// runs the tests and stops it; use it as TestMain's body. When the
// variable is unset the plane stays nil, and [Need] skips (or fails when
// CI=true) each test that wants it.
func Main(m *testing.M, plane **Plane) int {
	bin := strings.TrimSpace(os.Getenv(testenv.Kube))
	if bin == "" {
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	p, err := Start(ctx, bin, Options{})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubetest: %s=%s is set but the plane did not start: %v\n", testenv.Kube, bin, err)
		return 1
	}
	*plane = p
	code := m.Run()
	p.Stop()
	return code
}

// Need returns the package's plane. When FLOTILLA_TEST_KUBE is not set it
// skips the test, or fails it when CI=true: .ci/run builds the plane and
// CI must run these suites on it.
func Need(t testing.TB, p *Plane) *Plane {
	t.Helper()
	lookup(t)
	if p == nil {
		t.Fatalf("%s is set but no plane runs: call kubetest.Main from TestMain", testenv.Kube)
	}
	return p
}

// lookup returns FLOTILLA_TEST_KUBE; unset, the test skips, or fails
// under CI=true.
func lookup(t testing.TB) string {
	t.Helper()
	return testenv.Lookup(t, testenv.Kube)
}

// Extra starts another plane for one test (a second cluster, a cluster
// without Istio), stopped when the test ends. Like [Need] it skips (fails under
// CI=true) when FLOTILLA_TEST_KUBE is not set.
func Extra(t testing.TB, opts Options) *Plane {
	t.Helper()
	bin := lookup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := Start(ctx, bin, opts)
	if err != nil {
		t.Fatalf("start a second plane: %v", err)
	}
	t.Cleanup(p.Stop)
	return p
}

// Namespace creates a namespace for the test, deleted when it ends.
func (p *Plane) Namespace(t testing.TB) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-", " ", "-").Replace(t.Name()))
	if len(name) > 40 {
		name = name[:40]
	}
	name = strings.Trim(name, "-") + "-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 36)
	ctx := context.Background()
	_, err := p.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = p.Clientset.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// ServiceAccount creates a ServiceAccount in the namespace and returns a
// rest.Config that authenticates as it, with a token the API server
// issued (TokenRequest): what a workload running as that account sends.
// It may do only what RBAC bindings grant it.
func (p *Plane) ServiceAccount(t testing.TB, namespace, name string) *rest.Config {
	t.Helper()
	ctx := context.Background()
	sas := p.Clientset.CoreV1().ServiceAccounts(namespace)
	if _, err := sas.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create service account %s/%s: %v", namespace, name, err)
	}
	ttl := int64(3600)
	tr, err := sas.CreateToken(ctx, name, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token of service account %s/%s: %v", namespace, name, err)
	}
	cfg := p.Config()
	cfg.BearerToken = tr.Status.Token
	return cfg
}

// Start starts a plane from the binaries in bin (testplane/build.sh's
// output) and returns once a node is Ready and, unless opts.NoIstio, the
// Istio CRDs are established.
func Start(ctx context.Context, bin string, opts Options) (_ *Plane, err error) {
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("%s: %w (build the plane with testplane/build.sh)", b, err)
		}
	}
	dir, err := os.MkdirTemp("", "flotilla-kube-")
	if err != nil {
		return nil, err
	}
	p := &Plane{Dir: dir, bin: bin, owned: true}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w%s", err, p.tails())
			p.Stop()
		}
	}()
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	p.Server = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	if err := p.writeFiles(); err != nil {
		return nil, err
	}
	if err := p.start("etcd", "--name=t", "--data-dir="+filepath.Join(dir, "etcd"), "--unsafe-no-fsync",
		"--quota-backend-bytes=1073741824",
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=t="+peerURL); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, etcdURL+"/health", "", "etcd"); err != nil {
		return nil, err
	}
	if err := p.start("kube-apiserver", "--etcd-servers="+etcdURL, "--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(ports[2]),
		"--cert-dir="+filepath.Join(dir, "certs"), "--token-auth-file="+filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=RBAC", "--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16", "--allow-privileged=true",
		"--enable-priority-and-fairness=false"); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, p.Server+"/readyz", token, "kube-apiserver"); err != nil {
		return nil, err
	}
	kc := "--kubeconfig=" + p.Kubeconfig
	if err := p.start("kube-controller-manager", kc, "--leader-elect=false", "--secure-port=0",
		"--service-account-private-key-file="+filepath.Join(dir, "sa.key"),
		"--root-ca-file="+filepath.Join(dir, "certs", "apiserver.crt"),
		"--use-service-account-credentials=false",
		"--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route,-persistentvolume-binder,-attachdetach"); err != nil {
		return nil, err
	}
	if err := p.start("kube-scheduler", kc, "--leader-elect=false", "--secure-port=0"); err != nil {
		return nil, err
	}
	if err := p.start("kwok", kc, "-c", filepath.Join(dir, "kwok-stages.yaml"), "--manage-all-nodes=true",
		"--cidr=10.244.0.0/16", "--node-ip=127.0.0.1", "--server-address=127.0.0.1:"+strconv.Itoa(ports[3])); err != nil {
		return nil, err
	}
	cfg := p.Config()
	if p.Clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if p.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if !opts.NoIstio {
		if err := p.installCRDs(ctx, filepath.Join(bin, "istio-crds.yaml")); err != nil {
			return nil, err
		}
	}
	if err := p.addNode(ctx); err != nil {
		return nil, err
	}
	if !opts.NoIstio {
		if err := p.waitCRDs(ctx); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Stop stops the processes, last started first, and removes the plane's
// directory.
func (p *Plane) Stop() {
	for i := len(p.procs) - 1; i >= 0; i-- {
		c := p.procs[i]
		_ = c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
	}
	p.procs = nil
	if p.owned {
		_ = os.RemoveAll(p.Dir)
	}
}

func (p *Plane) start(name string, args ...string) error {
	logf, err := os.Create(filepath.Join(p.Dir, name+".log"))
	if err != nil {
		return err
	}
	defer func() { _ = logf.Close() }()
	c := exec.Command(filepath.Join(p.bin, name), args...)
	c.Stdout, c.Stderr = logf, logf
	c.Dir = p.Dir
	c.Env = append(os.Environ(), "HOME="+filepath.Join(p.Dir, "home"))
	// Its own process group, and killed with the test binary.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	p.procs = append(p.procs, c)
	p.names = append(p.names, name)
	return nil
}

// tails returns the last lines of every process's log, for a failed start.
func (p *Plane) tails() string {
	var b strings.Builder
	for _, n := range p.names {
		data, _ := os.ReadFile(filepath.Join(p.Dir, n+".log"))
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 8 {
			lines = lines[len(lines)-8:]
		}
		fmt.Fprintf(&b, "\n--- %s:\n%s", n, strings.Join(lines, "\n"))
	}
	return b.String()
}

func (p *Plane) writeFiles() error {
	if err := os.MkdirAll(filepath.Join(p.Dir, "home"), 0o755); err != nil {
		return err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"sa.key":     pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"sa.pub":     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		"tokens.csv": []byte(token + `,admin,admin-uid,"system:masters"` + "\n"),
		"kubeconfig": []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: testplane
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: %q}
contexts:
- name: testplane
  context: {cluster: testplane, user: admin}
current-context: testplane
`, p.Server, token)),
	}
	stages, err := stages(p.bin)
	if err != nil {
		return err
	}
	files["kwok-stages.yaml"] = stages
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(p.Dir, name), data, 0o600); err != nil {
			return err
		}
	}
	p.Kubeconfig = filepath.Join(p.Dir, "kubeconfig")
	return nil
}

// stages joins kwok's stage files, with the never-ready selector added to
// the pod-ready stage.
func stages(bin string) ([]byte, error) {
	var out bytes.Buffer
	for _, f := range []string{"node-initialize", "node-heartbeat", "pod-ready", "pod-complete", "pod-delete"} {
		data, err := os.ReadFile(filepath.Join(bin, "stages", f+".yaml"))
		if err != nil {
			return nil, fmt.Errorf("kwok stage: %w (rebuild the plane with testplane/build.sh)", err)
		}
		if f == "pod-ready" {
			anchor := "    - key: '.metadata.deletionTimestamp'\n      operator: 'DoesNotExist'\n"
			if !bytes.Contains(data, []byte(anchor)) {
				return nil, errors.New("kwok's pod-ready stage has changed: cannot add the never-ready selector")
			}
			data = bytes.Replace(data, []byte(anchor), []byte(anchor+"    - key: '.metadata.labels[\""+NeverReady+"\"]'\n      operator: 'DoesNotExist'\n"), 1)
		}
		if out.Len() > 0 {
			out.WriteString("\n---\n")
		}
		out.Write(data)
	}
	return out.Bytes(), nil
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installCRDs server-side applies every CRD of the file.
func (p *Plane) installCRDs(ctx context.Context, file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("istio CRDs: %w (rebuild the plane with testplane/build.sh)", err)
	}
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return fmt.Errorf("istio CRDs: %w", err)
		}
		if string(bytes.TrimSpace(js)) == "null" {
			continue
		}
		var u unstructured.Unstructured
		if err := u.UnmarshalJSON(js); err != nil {
			return fmt.Errorf("istio CRDs: %w", err)
		}
		if _, err := p.Dynamic.Resource(crdGVR).Apply(ctx, u.GetName(), &u, metav1.ApplyOptions{FieldManager: "kubetest", Force: true}); err != nil {
			return fmt.Errorf("apply CRD %s: %w", u.GetName(), err)
		}
	}
	return nil
}

// waitCRDs waits until every CRD is Established.
func (p *Plane) waitCRDs(ctx context.Context) error {
	return poll(ctx, "Istio CRDs established", func() (bool, error) {
		l, err := p.Dynamic.Resource(crdGVR).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range l.Items {
			conds, _, _ := unstructured.NestedSlice(c.Object, "status", "conditions")
			ok := false
			for _, x := range conds {
				m, _ := x.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					ok = true
				}
			}
			if !ok {
				return false, nil
			}
		}
		return len(l.Items) > 0, nil
	})
}

// addNode creates kwok's fake node and waits until it is Ready and
// untainted (the node lifecycle controller lifts the not-ready taint).
func (p *Plane) addNode(ctx context.Context) error {
	cs := p.Clientset
	if err := poll(ctx, "default service account", func() (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	}); err != nil {
		return err
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        "kwok-node-0",
		Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
		Labels:      map[string]string{"kubernetes.io/hostname": "kwok-node-0", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "type": "kwok"},
	}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create node: %w", err)
	}
	return poll(ctx, "node Ready and untainted", func() (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if len(n.Spec.Taints) > 0 {
			return false, nil
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
}

// poll calls f every 50ms until it says done, returns an error, or ctx ends.
func poll(ctx context.Context, what string, f func() (bool, error)) error {
	var last error
	for {
		done, err := f()
		if done && err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("waiting for %s: %w (last error: %w)", what, ctx.Err(), last)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func waitHTTP(ctx context.Context, url, bearer, what string) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: insecureTLS()}}
	return poll(ctx, what, func() (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := c.Do(req)
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// freePorts returns n loopback ports free at the time of the call.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func insecureTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the plane's self-signed serving certificate, on loopback
}
