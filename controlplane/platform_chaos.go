package controlplane

import (
	"context"
	"net/http"
	"syscall"

	"github.com/flotilla-ci/flotilla/dataplane"
)

// chaosRoutes serves the chaos API (faults.go) on the platform's API:
// mesh faults go to the data plane, kills to the local target, bus
// faults to the bus's process. Close removes every fault. A bus a
// crashed control plane left stopped is let run again first.
func (p *Platform) chaosRoutes(ctx context.Context, mux *http.ServeMux, dependsOn map[string][]string, dp *dataplane.Client, lc *Local) {
	busPID := func() int {
		for _, st := range p.Processes() {
			if st.Name == "bus" && st.PID > 0 {
				return st.PID
			}
		}
		return 0
	}
	if pid := busPID(); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	c := NewChaos(ChaosConfig{
		DependsOn: dependsOn,
		SetFaults: dp.SetFaults,
		Kill:      lc.Target.Kill,
		BusPID:    busPID,
		Logger:    p.log.With("component", "chaos"),
	})
	// Faults an earlier control plane left in the data plane (it died
	// during an experiment whose lease nobody can renew now) go.
	if len(dp.Faults()) > 0 {
		if err := dp.SetFaults(ctx, nil); err != nil {
			p.log.WarnContext(ctx, "faults a previous control plane left in the data plane were not removed; they end on their own", "err", err)
		}
	}
	p.onClose("chaos faults", c.Close)
	c.Routes(mux)
}
