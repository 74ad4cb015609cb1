package dataplane

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/flotilla-ci/flotilla/mesh"
	"github.com/flotilla-ci/flotilla/tracing"
)

// TracingService is the data plane's service.name on its spans (the
// mesh's hops and the gateway's requests) unless OTEL_SERVICE_NAME names
// another.
const TracingService = "flotilla-dataplane"

// OTELEnv is the OTEL_* subset of the process's environment: for a main
// to put in Config.OTEL.
func OTELEnv() map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "OTEL_") {
			env[k] = v
		}
	}
	return env
}

// setupTracing gives the mesh the tracer provider Config.OTEL describes,
// unless the mesh config brings one. A bad variable is an error naming it.
func (m *Main) setupTracing(ctx context.Context, mc *mesh.Config) error {
	if mc.Tracing != nil || len(m.Config.OTEL) == 0 {
		return nil
	}
	tc, err := tracing.ParseEnv(m.Config.OTEL, TracingService)
	if err != nil {
		return err
	}
	p, err := tracing.Setup(ctx, tc, m.Config.Logger)
	if err != nil {
		return err
	}
	mc.Tracing, m.tracing = p, p
	return nil
}

// closeTracing flushes the spans still queued.
func (m *Main) closeTracing() {
	if m.tracing == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.tracing.Shutdown(ctx); err != nil {
		m.Config.Logger.Warn("flush traces", "err", err)
	}
}
