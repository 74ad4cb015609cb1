package kit_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/kit/kittest"
)

// A service whose trace collector refuses connections keeps serving
// without waiting for it; its dropped-spans counter rises, on
// /metrics/tracing. A bad OTEL_* variable stops the service from
// starting, naming the variable.
func TestTracingCollectorDown(t *testing.T) {
	env := kittest.SQLiteEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + ln.Addr().String()
	_ = ln.Close() // connections are refused

	bad := env.Config(t, "demo-service")
	bad.OTEL = map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"}
	if _, err := kit.Start(context.Background(), bad, nil, nil); err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_SAMPLER") {
		t.Fatalf("start with OTEL_TRACES_SAMPLER=sometimes: %v, want an error naming it", err)
	}

	cfg := env.Config(t, "demo-service")
	cfg.OTEL = map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_RESOURCE_ATTRIBUTES": "service.version=v3",
		"OTEL_EXPORTER_OTLP_TIMEOUT": "500"}
	app, err := kit.Start(context.Background(), cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = app.Close() }()
	if !app.Tracing.Enabled() || app.Tracing.Config().ServiceVersion != "v3" {
		t.Fatalf("tracing enabled %v, config %+v", app.Tracing.Enabled(), app.Tracing.Config())
	}
	app.Mux.Handle("GET /hello/{name}", kit.Handle(func(w http.ResponseWriter, r *http.Request) error {
		kit.WriteJSON(w, 200, map[string]string{"hello": r.PathValue("name")})
		return nil
	}))
	app.Serve()
	dropped := func() int {
		resp, err := http.Get(app.URL() + "/metrics/tracing")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		m := regexp.MustCompile(`flotilla_tracing_spans_dropped_total\{service="demo-service"\} (\d+)`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("no dropped counter in\n%s", b)
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	var slowest time.Duration
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; dropped() == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d requests nothing counted as dropped", i)
		}
		for range 20 {
			start := time.Now()
			resp, err := http.Get(app.URL() + "/hello/ada")
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != 200 || len(resp.Header.Get("traceparent")) != 55 {
				t.Fatalf("answer %d, traceparent %q", resp.StatusCode, resp.Header.Get("traceparent"))
			}
			slowest = max(slowest, time.Since(start))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if slowest > 2*time.Second {
		t.Errorf("slowest request %v with the collector down", slowest)
	}
}
