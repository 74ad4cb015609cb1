package local

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/mesh"
)

var _ deploy.Router = (*MeshRouter)(nil)

// MeshRouter is the local target's router: the built-in mesh, one stable
// loopback address per service, a subset per version.
type MeshRouter struct {
	Mesh *mesh.Mesh
	// Ports fixes a service's stable port (the manifest's deploy.port);
	// others get a free one.
	Ports map[string]int
	// File, when set, remembers the ports given out (JSON), so a restarted
	// control plane listens where the running services' dependencies were
	// told to call.
	File string

	mu         sync.Mutex
	remembered map[string]int
}

// Declare implements deploy.Router: the service's mesh address, listening
// from the first call on. A fixed port already taken is an error naming it.
func (r *MeshRouter) Declare(ctx context.Context, service string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if addr, err := r.Mesh.Addr(service); err == nil {
		return addr, nil
	}
	r.load()
	addr := ""
	switch p := r.Ports[service]; {
	case p != 0:
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	case r.remembered[service] != 0 && portFree(r.remembered[service]) == nil:
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.remembered[service]))
	}
	got, err := r.Mesh.AddService(ctx, mesh.ServiceConfig{Name: service, Addr: addr})
	if err != nil {
		return "", fmt.Errorf("mesh address of %s: %w", service, err)
	}
	if _, port, err := net.SplitHostPort(got); err == nil && r.File != "" {
		r.remembered[service], _ = strconv.Atoi(port)
		if data, err := json.MarshalIndent(r.remembered, "", "  "); err == nil {
			tmp := r.File + ".tmp"
			if err := os.WriteFile(tmp, data, 0o644); err == nil {
				_ = os.Rename(tmp, r.File)
			}
		}
	}
	return got, nil
}

// load reads the remembered ports once.
func (r *MeshRouter) load() {
	if r.remembered != nil {
		return
	}
	r.remembered = map[string]int{}
	if r.File == "" {
		return
	}
	if data, err := os.ReadFile(r.File); err == nil {
		_ = json.Unmarshal(data, &r.remembered)
	}
}

// SetSubset implements deploy.Router.
func (r *MeshRouter) SetSubset(ctx context.Context, service string, sub deploy.Subset) error {
	return r.Mesh.SetSubset(ctx, service, mesh.Subset{Name: sub.Name, Canary: sub.Canary, Endpoints: sub.Endpoints})
}

// RemoveSubset implements deploy.Router.
func (r *MeshRouter) RemoveSubset(ctx context.Context, service, subset string) error {
	return r.Mesh.RemoveSubset(ctx, service, subset)
}

// SetWeights implements deploy.Router.
func (r *MeshRouter) SetWeights(ctx context.Context, service string, weights map[string]int) error {
	return r.Mesh.SetWeights(ctx, service, weights)
}

// Weights implements deploy.Router.
func (r *MeshRouter) Weights(ctx context.Context, service string) (map[string]int, error) {
	return r.Mesh.Weights(ctx, service)
}
