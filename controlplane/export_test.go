package controlplane

import "github.com/flotilla-ci/flotilla/dataplane"

// DataplaneClient is the platform's client of its data plane, for tests
// that push what the control plane would not.
func (p *Platform) DataplaneClient() *dataplane.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dp
}
