package dataplane

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/mesh"
)

// TestFaultsReachTheDataPlane pushes faults through the client into a
// running data plane: they take effect at the service's address, survive
// on disk with the snapshot, a fault on an unknown service refuses the
// whole push, and removing them restores the service.
func TestFaultsReachTheDataPlane(t *testing.T) {
	ctx := context.Background()
	dir := shortDir(t)
	startMain(t, dir)
	c := newClient(t, ClientConfig{Socket: SocketIn(dir)})
	addr, err := c.Declare(ctx, "inventory-service")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetSubset(ctx, "inventory-service", deploy.Subset{Name: "v1", Endpoints: []string{upstream(t, "inv")}}); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, addr, "/"); code != 200 {
		t.Fatalf("before the fault: %d", code)
	}
	abort := mesh.Fault{ID: "f1", Kind: mesh.FaultAbort, Destination: "inventory-service", Status: http.StatusTeapot, Until: time.Now().Add(time.Minute)}
	if err := c.SetFaults(ctx, []mesh.Fault{abort}); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, addr, "/"); code != http.StatusTeapot || !strings.Contains(body, "f1") {
		t.Errorf("with the fault: %d %q, want 418 naming f1", code, body)
	}
	saved, err := load(dir)
	if err != nil || len(saved.Faults) != 1 {
		t.Errorf("saved snapshot faults = %v, %v; want the fault kept with the snapshot", saved, err)
	}

	err = c.SetFaults(ctx, []mesh.Fault{abort, {ID: "f2", Kind: mesh.FaultDelay, Destination: "nope-service", Delay: time.Second, Until: time.Now().Add(time.Minute)}})
	if err == nil || !strings.Contains(err.Error(), `destination "nope-service" is not among the snapshot's services`) {
		t.Errorf("a fault on an unknown service = %v", err)
	}
	if got := c.Faults(); len(got) != 1 || got[0].ID != "f1" {
		t.Errorf("after a refused push the desired faults are %v, want f1 alone", got)
	}

	if err := c.SetFaults(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, addr, "/"); code != 200 {
		t.Errorf("after the faults were removed: %d", code)
	}
}
