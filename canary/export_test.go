package canary

// Joined is how many releases wait for service's canary in progress.
func Joined(a *Analysis, service string) int {
	a.mu.Lock()
	r := a.runs[service]
	a.mu.Unlock()
	if r == nil {
		return 0
	}
	return int(r.joined.Load())
}
