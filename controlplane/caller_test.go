package controlplane

import (
	"net/http"
	"testing"

	"github.com/flotilla-ci/flotilla/mesh"
	"github.com/flotilla-ci/flotilla/shop/kit"
)

// The shop names its caller in the header the mesh authorises by.
func TestShopAndMeshAgreeOnTheCallerHeader(t *testing.T) {
	if http.CanonicalHeaderKey(kit.CallerHeader) != http.CanonicalHeaderKey(mesh.CallerHeader) {
		t.Fatalf("shop/kit sends %q, the mesh reads %q", kit.CallerHeader, mesh.CallerHeader)
	}
}
