package supervise

import (
	"context"
	"fmt"
	"net"
	"net/http"
)

// HTTPReady is a readiness probe: GET url answers 2xx.
func HTTPReady(url string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := probeClient.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// TCPReady is a readiness probe: addr accepts a TCP connection.
func TCPReady(addr string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// probeClient makes the probes (no keep-alive: a connection must not
// outlive the process it reached).
var probeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
