package ui_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/flotilla-ci/flotilla/controlplane/ui"
	"github.com/flotilla-ci/flotilla/controlplane/ui/uitest"
)

// BenchmarkOverview serves the overview with 1,000 releases in the
// history (bench/ui prints the same with its percentiles).
func BenchmarkOverview(b *testing.B) {
	ctx := context.Background()
	dep, err := uitest.Open(ctx, "../../flotilla.yaml", b.TempDir(), 1000)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = dep.Close() }()
	dash, err := ui.New(ui.Config{Deployer: dep, API: http.NotFoundHandler(), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	h := dash.Handler()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "/ui/", nil)
		req.RemoteAddr = "127.0.0.1:1"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}
