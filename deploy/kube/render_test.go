package kube_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/kube"
	"github.com/flotilla-ci/flotilla/graph"
)

// update rewrites the golden files: go test ./deploy/kube -run TestRender -update
var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func renderManifest(t *testing.T) *graph.Manifest {
	t.Helper()
	m, _, err := graph.Load(filepath.Join("testdata", "render", "flotilla.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func render(t *testing.T, ns string) []kube.Object {
	t.Helper()
	objs, err := kube.Render(context.Background(), renderManifest(t), kube.RenderConfig{Namespace: ns, Image: fakeImage, Public: []string{"gamma"}})
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestRenderGolden(t *testing.T) {
	dir := t.TempDir()
	names, err := kube.WriteDir(dir, render(t, "shop"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"alpha.yaml", "beta.yaml", "gamma.yaml", "namespace.yaml"}, names); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	for _, n := range names {
		got, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("testdata", "render", "golden", n)
		if *update {
			if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", golden, diff)
		}
	}
	// The same input renders the same bytes.
	again, _ := kube.Files(render(t, "shop"))
	first, _ := kube.Files(render(t, "shop"))
	if !cmp.Equal(again, first) {
		t.Error("two renders differ")
	}
}

func TestRenderRefusesAnImageWithoutDigest(t *testing.T) {
	_, err := kube.Render(context.Background(), renderManifest(t), kube.RenderConfig{
		Namespace: "shop",
		Image: func(_ context.Context, s deploy.Spec) (string, error) {
			if s.Service == "beta" {
				return "registry.test/beta:latest", nil
			}
			return fakeImage(context.Background(), s)
		},
	})
	if err == nil || !strings.Contains(err.Error(), "beta@") || !strings.Contains(err.Error(), "has no digest") {
		t.Errorf("render with a tag-only image: %v", err)
	}
}

// The rendered files are what the API server accepts: a server-side
// dry-run apply of every document, with the real schemas (Istio's CRDs
// included).
func TestRenderedObjectsPassServerDryRun(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	files, err := kube.Files(render(t, e.ns))
	if err != nil {
		t.Fatal(err)
	}
	resources := map[string]schema.GroupVersionResource{
		"ServiceAccount":      {Version: "v1", Resource: "serviceaccounts"},
		"Service":             {Version: "v1", Resource: "services"},
		"Deployment":          {Group: "apps", Version: "v1", Resource: "deployments"},
		"DestinationRule":     {Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"},
		"VirtualService":      {Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"},
		"AuthorizationPolicy": {Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"},
		"PeerAuthentication":  {Group: "security.istio.io", Version: "v1", Resource: "peerauthentications"},
	}
	n := 0
	for name, data := range files {
		for _, doc := range strings.Split(string(data), "---\n") {
			js, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			var u unstructured.Unstructured
			if err := u.UnmarshalJSON(js); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			gvr, ok := resources[u.GetKind()]
			if !ok {
				t.Fatalf("%s: unexpected kind %s", name, u.GetKind())
			}
			_, err = e.p.Dynamic.Resource(gvr).Namespace(e.ns).Apply(ctx, u.GetName(), &u, metav1.ApplyOptions{FieldManager: "flotilla", DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				t.Errorf("%s: %s %s: %v", name, u.GetKind(), u.GetName(), err)
			}
			n++
		}
	}
	if n != 3*6+1 {
		t.Errorf("%d objects dry-run, want 19", n)
	}
	// A dry run writes nothing.
	if l, _ := e.p.Clientset.AppsV1().Deployments(e.ns).List(ctx, metav1.ListOptions{}); len(l.Items) != 0 {
		t.Errorf("the dry run created %d Deployments", len(l.Items))
	}
}
