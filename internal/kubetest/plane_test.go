package kubetest_test

import (
	"context"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	"github.com/flotilla-ci/flotilla/internal/kubetest"
)

// A plane without Istio starts with a Ready node and no Istio CRDs, and
// Stop ends its processes and removes its directory.
func TestPlaneWithoutIstio(t *testing.T) {
	start := time.Now()
	p := kubetest.Extra(t, kubetest.Options{NoIstio: true})
	t.Logf("plane up in %s", time.Since(start).Round(10*time.Millisecond))
	ctx := context.Background()
	n, err := p.Clientset.CoreV1().Nodes().Get(ctx, "kwok-node-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Spec.Taints) != 0 {
		t.Errorf("node taints %v, want none", n.Spec.Taints)
	}
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	l, err := p.Dynamic.Resource(crds).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 0 {
		t.Errorf("%d CRDs on a plane without Istio", len(l.Items))
	}
	// A ServiceAccount's token authenticates, and RBAC holds it to nothing.
	ns := p.Namespace(t)
	cfg := p.ServiceAccount(t, ns, "nobody")
	cfg.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
		t.Error("a ServiceAccount without a binding listed pods")
	}
	p.Stop()
	if _, err := os.Stat(p.Dir); !os.IsNotExist(err) {
		t.Errorf("after Stop, %s: %v", p.Dir, err)
	}
	if _, err := p.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
		t.Error("the API server still answers after Stop")
	}
}
