package kit_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
)

func TestAppHealthReadyAndDrain(t *testing.T) {
	kittest.Each(t, func(t *testing.T, env kittest.Env) {
		cfg := env.Config(t, "demo-service")
		app, err := kit.Start(context.Background(), cfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		started := make(chan struct{})
		app.Mux.Handle("GET /slow", kit.Handle(func(w http.ResponseWriter, r *http.Request) error {
			close(started)
			time.Sleep(300 * time.Millisecond)
			kit.WriteJSON(w, 200, map[string]string{"done": "yes"})
			return nil
		}))
		app.Mux.Handle("GET /boom", kit.Handle(func(w http.ResponseWriter, r *http.Request) error { panic("boom") }))
		app.Serve()
		for _, path := range []string{"/health", "/ready"} {
			resp, err := http.Get(app.URL() + path)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s: %v %v", path, resp, err)
			}
			resp.Body.Close()
		}
		resp, err := http.Get(app.URL() + "/boom")
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error kit.Error }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 500 || e.Error.Code != "internal" {
			t.Errorf("panic → %d %+v, want 500 internal", resp.StatusCode, e)
		}
		// An in-flight request finishes during Close.
		done := make(chan string, 1)
		go func() {
			resp, err := http.Get(app.URL() + "/slow")
			if err != nil {
				done <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- string(b)
		}()
		<-started
		if err := app.Close(); err != nil {
			t.Fatal(err)
		}
		if got := <-done; got != "{\"done\":\"yes\"}\n" {
			t.Errorf("in-flight request during drain got %q", got)
		}
		if _, err := http.Get(app.URL() + "/health"); err == nil {
			t.Error("still accepting after Close")
		}
	})
}

func TestStartReportsBadBusURL(t *testing.T) {
	cfg := kit.DefaultConfig("x")
	cfg.DatabaseURL = t.TempDir() + "/x.db"
	cfg.BusURL = "kafka://localhost:9092"
	_, err := kit.Start(context.Background(), cfg, nil, nil)
	if err == nil || err.Error() != `start x: BUS_URL "kafka://localhost:9092": unsupported scheme "kafka"; want nats://host:port` {
		t.Errorf("err = %v", err)
	}
}
