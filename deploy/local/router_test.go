package local

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/mesh"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestMeshRouter(t *testing.T) {
	ctx := context.Background()
	m, err := mesh.New(mesh.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Close(ctx) }()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = taken.Close() }()
	port := taken.Addr().(*net.TCPAddr).Port
	r := &MeshRouter{Mesh: m, Ports: map[string]int{"fixed-service": port}}

	if _, err := r.Weights(ctx, "alpha-service"); !errors.Is(err, canary.ErrUnknownService) {
		t.Errorf("Weights of an undeclared service = %v, want ErrUnknownService", err)
	}
	a1, err := r.Declare(ctx, "alpha-service")
	if err != nil {
		t.Fatal(err)
	}
	a2, err := r.Declare(ctx, "alpha-service")
	if err != nil || a2 != a1 {
		t.Errorf("second Declare = %q, %v; want the same address %q", a2, err, a1)
	}
	if err := r.SetSubset(ctx, "alpha-service", deploy.Subset{Name: "v1", Endpoints: []string{"127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetSubset(ctx, "alpha-service", deploy.Subset{Name: "v2", Canary: true, Endpoints: []string{"127.0.0.1:2"}}); err != nil {
		t.Fatal(err)
	}
	w, err := r.Weights(ctx, "alpha-service")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]int{"v1": 100, "v2": 0}, w); d != "" {
		t.Errorf("a new subset beside a serving one (-want +got):\n%s", d)
	}
	if err := r.SetWeights(ctx, "alpha-service", map[string]int{"v2": 100}); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveSubset(ctx, "alpha-service", "v1"); err != nil {
		t.Fatal(err)
	}
	if w, _ := r.Weights(ctx, "alpha-service"); !cmp.Equal(w, map[string]int{"v2": 100}) {
		t.Errorf("weights after the shift and removal = %v", w)
	}
	_, err = r.Declare(ctx, "fixed-service")
	if err == nil || !strings.Contains(err.Error(), "mesh address of fixed-service") || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Errorf("Declare on a taken port = %v, want an error naming the service and port %d", err, port)
	}
}
