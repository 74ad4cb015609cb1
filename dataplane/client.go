package dataplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flotilla-ci/flotilla/canary"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/mesh"
)

var (
	_ deploy.Router  = (*Client)(nil)
	_ canary.Metrics = (*Client)(nil)
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// Socket is the data plane's admin socket (SocketIn(state)). Required.
	Socket string
	// Ports fixes a service's stable port (the manifest's deploy.port);
	// the others get a free one.
	Ports map[string]int
	// PortsFile, when set, remembers the ports given out (JSON), so a
	// service removed from the data plane and declared again (a new data
	// plane state) gets the port its running dependants were told.
	PortsFile string
	// Host is the services' listen host (default 127.0.0.1).
	Host string
}

// Client is the control plane's side: it holds the desired configuration
// and pushes it whole to the data plane on every change, returning once
// the data plane acknowledged it or with its refusal. It implements
// deploy.Router (so the orchestrator drives the data plane through it)
// and canary.Metrics (the data plane's measurements). Its methods are
// safe for concurrent use; changes are pushed one at a time.
type Client struct {
	cfg  ClientConfig
	http *http.Client

	mu         sync.Mutex // serialises changes; guards the fields below
	desired    *Snapshot  // as last acknowledged (or adopted)
	remembered map[string]int
}

// SocketIn is the admin socket of the data plane whose state directory
// is dir.
func SocketIn(dir string) string { return dir + string(os.PathSeparator) + "admin.sock" }

// NewClient returns a client with an empty desired state; call Adopt to
// start from what the data plane serves.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Socket == "" {
		return nil, errors.New("dataplane client: no socket")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	sock := cfg.Socket
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     time.Minute,
	}
	return &Client{cfg: cfg, http: &http.Client{Transport: tr}, desired: &Snapshot{}}, nil
}

// Close releases the client's idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// ErrUnreachable wraps the error of a data plane that did not answer.
var ErrUnreachable = errors.New("data plane unreachable")

// do sends a request to the admin API and decodes a 2xx answer into out.
func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://dataplane"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w (%s): %w", ErrUnreachable, c.cfg.Socket, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxSnapshotBytes))
	if err != nil {
		return fmt.Errorf("%w (%s): %s %s: %w", ErrUnreachable, c.cfg.Socket, method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e apiError
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return &statusError{status: resp.StatusCode, api: e}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("data plane %s %s: answer: %w", method, path, err)
	}
	return nil
}

type statusError struct {
	status int
	api    apiError
}

func (e *statusError) Error() string {
	return fmt.Sprintf("data plane answered %d: %s", e.status, e.api.Error)
}

// Status asks the data plane for its status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/status", nil, &st)
	return st, err
}

// Adopt makes what the data plane serves the desired state: a restarted
// control plane starts from the routes that run, not from none.
func (c *Client) Adopt(ctx context.Context) error {
	var snap Snapshot
	if err := c.do(ctx, http.MethodGet, "/snapshot", nil, &snap); err != nil {
		return fmt.Errorf("adopt the data plane's configuration: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.desired = &snap
	return nil
}

// Desired returns a copy of the desired state (as last acknowledged).
func (c *Client) Desired() *Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.desired.Clone()
}

// Push sends the whole desired state again, under a new version: after
// the data plane restarted, or to check it still serves it.
func (c *Client) Push(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.push(ctx, c.desired.Clone())
	return err
}

// push sends next with the version after the desired one (after the data
// plane's, when it is ahead: a data plane that kept a snapshot from an
// earlier control plane) and makes it the desired state once
// acknowledged, with the addresses the data plane took. c.mu is held.
func (c *Client) push(ctx context.Context, next *Snapshot) (*Ack, error) {
	next.Version = c.desired.Version + 1
	for attempt := 0; ; attempt++ {
		body, err := json.Marshal(next)
		if err != nil {
			return nil, fmt.Errorf("encode snapshot: %w", err)
		}
		var ack Ack
		err = c.do(ctx, http.MethodPut, "/snapshot", body, &ack)
		var se *statusError
		if errors.As(err, &se) {
			if se.api.Code == "stale" && attempt == 0 && se.api.Version >= next.Version {
				next.Version = se.api.Version + 1
				continue
			}
			return nil, &RefusedError{Version: next.Version, Acked: se.api.Version, Stale: se.api.Code == "stale", Reason: se.api.Error}
		}
		if err != nil {
			return nil, err
		}
		for i := range next.Services {
			if a := ack.Listeners[next.Services[i].Name]; a != "" {
				next.Services[i].Addr = a
			}
		}
		if next.Gateway != nil && ack.Gateway != "" {
			next.Gateway.Listen = ack.Gateway
		}
		next.Version = ack.Version
		c.desired = next
		if len(ack.Warnings) > 0 {
			return &ack, fmt.Errorf("data plane applied version %d with problems: %s", ack.Version, strings.Join(ack.Warnings, "; "))
		}
		return &ack, nil
	}
}

// change applies fn to a copy of the desired state and pushes it.
func (c *Client) change(ctx context.Context, fn func(next *Snapshot) error) (*Ack, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := c.desired.Clone()
	if err := fn(next); err != nil {
		return nil, err
	}
	return c.push(ctx, next)
}

// SetAuthz sets the mesh's authorization.
func (c *Client) SetAuthz(ctx context.Context, a Authz) error {
	_, err := c.change(ctx, func(next *Snapshot) error {
		next.Authz = a
		return nil
	})
	return err
}

// SetGateway sets the edge gateway (nil removes it) and returns its
// address (the port taken, for port 0). A gateway asked to listen
// elsewhere than it does is removed in one snapshot and added in the
// next (the data plane refuses to move a listener within one).
func (c *Client) SetGateway(ctx context.Context, gw *mesh.GatewayConfig) (string, error) {
	c.mu.Lock()
	cur := c.desired.Gateway
	c.mu.Unlock()
	stays := gw == nil || cur == nil || cur.Listen == gw.Listen || zeroPort(gw.Listen) && sameHost(gw.Listen, cur.Listen)
	if !stays {
		if _, err := c.change(ctx, func(next *Snapshot) error {
			next.Gateway = nil
			return nil
		}); err != nil {
			return "", fmt.Errorf("move the gateway from %s to %s: %w", cur.Listen, gw.Listen, err)
		}
	}
	ack, err := c.change(ctx, func(next *Snapshot) error {
		next.Gateway = gw
		return nil
	})
	if ack == nil {
		return "", err
	}
	return ack.Gateway, err
}

// Declare implements deploy.Router: the service's stable address,
// listening from the first call on. Its port is the manifest's fixed one
// (Ports), else the one remembered for it when that is free, else a free
// one. A fixed port already taken is an error naming it.
func (c *Client) Declare(ctx context.Context, service string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if svc := c.desired.Service(service); svc != nil {
		return svc.Addr, nil
	}
	c.loadPorts()
	port := 0
	switch p := c.cfg.Ports[service]; {
	case p != 0:
		port = p
	case c.remembered[service] != 0 && portFree(c.cfg.Host, c.remembered[service]) == nil:
		port = c.remembered[service]
	}
	next := c.desired.Clone()
	next.Services = append(next.Services, Service{Name: service, Addr: net.JoinHostPort(c.cfg.Host, strconv.Itoa(port))})
	ack, err := c.push(ctx, next)
	if ack == nil {
		return "", fmt.Errorf("mesh address of %s: %w", service, err)
	}
	got := ack.Listeners[service]
	if _, p, perr := net.SplitHostPort(got); perr == nil && c.cfg.PortsFile != "" {
		c.remembered[service], _ = strconv.Atoi(p)
		c.savePorts()
	}
	return got, err
}

func (c *Client) loadPorts() {
	if c.remembered != nil {
		return
	}
	c.remembered = map[string]int{}
	if c.cfg.PortsFile == "" {
		return
	}
	if data, err := os.ReadFile(c.cfg.PortsFile); err == nil {
		_ = json.Unmarshal(data, &c.remembered)
	}
}

func (c *Client) savePorts() {
	data, err := json.MarshalIndent(c.remembered, "", "  ")
	if err != nil {
		return
	}
	tmp := c.cfg.PortsFile + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err == nil {
		_ = os.Rename(tmp, c.cfg.PortsFile)
	}
}

func portFree(host string, port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return ln.Close()
}

func unknownService(service string) error {
	return fmt.Errorf("service %q: %w", service, canary.ErrUnknownService)
}

// SetSubset implements deploy.Router.
func (c *Client) SetSubset(ctx context.Context, service string, sub deploy.Subset) error {
	_, err := c.change(ctx, func(next *Snapshot) error {
		svc := next.Service(service)
		if svc == nil {
			return unknownService(service)
		}
		in := Subset{Name: sub.Name, Canary: sub.Canary, Endpoints: append([]string(nil), sub.Endpoints...)}
		found := false
		for i := range svc.Subsets {
			if sub.Canary {
				svc.Subsets[i].Canary = false
			}
			if svc.Subsets[i].Name == sub.Name {
				svc.Subsets[i] = in
				found = true
			}
		}
		if !found {
			svc.Subsets = append(svc.Subsets, in)
			if svc.Weights == nil {
				svc.Weights = map[string]int{}
			}
			w := 0
			if len(svc.Subsets) == 1 {
				w = 100
			}
			svc.Weights[sub.Name] = w
		}
		return nil
	})
	return err
}

// RemoveSubset implements deploy.Router: it returns once the data plane
// drained the subset's in-flight requests. It refuses to remove a subset
// that carries traffic while the others carry none: shift the weights
// first.
func (c *Client) RemoveSubset(ctx context.Context, service, subset string) error {
	_, err := c.change(ctx, func(next *Snapshot) error {
		svc := next.Service(service)
		if svc == nil {
			return unknownService(service)
		}
		rest := 0
		var kept []Subset
		for _, s := range svc.Subsets {
			if s.Name != subset {
				kept = append(kept, s)
				rest += svc.Weights[s.Name]
			}
		}
		if len(kept) == len(svc.Subsets) {
			return fmt.Errorf("service %s: subset %s: %w", service, subset, mesh.ErrUnknownSubset)
		}
		if mine := svc.Weights[subset]; mine > 0 && rest == 0 && len(kept) > 0 {
			return fmt.Errorf("service %s: subset %s carries all the traffic (weight %d) and the others none: shift the weights first", service, subset, mine)
		}
		svc.Subsets = kept
		delete(svc.Weights, subset)
		return nil
	})
	return err
}

// SetWeights implements canary.Router: subsets not named get 0.
func (c *Client) SetWeights(ctx context.Context, service string, weights map[string]int) error {
	_, err := c.change(ctx, func(next *Snapshot) error {
		svc := next.Service(service)
		if svc == nil {
			return unknownService(service)
		}
		has := map[string]bool{}
		for _, s := range svc.Subsets {
			has[s.Name] = true
		}
		var errs []error
		for n := range weights {
			if !has[n] {
				errs = append(errs, fmt.Errorf("subset %s: %w", n, mesh.ErrUnknownSubset))
			}
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("service %s: set weights: %w", service, err)
		}
		svc.Weights = map[string]int{}
		for _, s := range svc.Subsets {
			svc.Weights[s.Name] = weights[s.Name]
		}
		return nil
	})
	return err
}

// Weights implements canary.Router: the weights the data plane
// acknowledged.
func (c *Client) Weights(_ context.Context, service string) (map[string]int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	svc := c.desired.Service(service)
	if svc == nil {
		return nil, unknownService(service)
	}
	out := make(map[string]int, len(svc.Subsets))
	for _, s := range svc.Subsets {
		out[s.Name] = svc.Weights[s.Name]
	}
	return out, nil
}

// RemoveService stops the service's listener once its in-flight requests
// drained.
func (c *Client) RemoveService(ctx context.Context, service string) error {
	_, err := c.change(ctx, func(next *Snapshot) error {
		for i, s := range next.Services {
			if s.Name == service {
				next.Services = append(next.Services[:i], next.Services[i+1:]...)
				return nil
			}
		}
		return unknownService(service)
	})
	return err
}

// Stats implements canary.Metrics with the data plane's measurements,
// which outlive a control-plane restart. No requests in the window is
// canary.ErrNoData (wrapped).
func (c *Client) Stats(ctx context.Context, service, version string, window time.Duration) (canary.Stats, error) {
	q := url.Values{"service": {service}, "version": {version}, "window": {window.String()}}
	var ws wireStats
	err := c.do(ctx, http.MethodGet, "/stats?"+q.Encode(), nil, &ws)
	var se *statusError
	if errors.As(err, &se) && se.api.Code == "no_data" {
		return canary.Stats{}, fmt.Errorf("stats %s@%s: %s: %w", service, version, se.api.Error, canary.ErrNoData)
	}
	if err != nil {
		return canary.Stats{}, fmt.Errorf("stats %s@%s: %w", service, version, err)
	}
	st := canary.Stats{Requests: ws.Requests, Errors: ws.Errors, ErrorRate: ws.ErrorRate, Latency: ws.Latency}
	for _, f := range []struct {
		s string
		d *time.Duration
	}{{ws.P50, &st.P50}, {ws.P90, &st.P90}, {ws.P99, &st.P99}, {ws.Window, &st.Window}} {
		if *f.d, err = time.ParseDuration(f.s); err != nil {
			return canary.Stats{}, fmt.Errorf("stats %s@%s: duration %q: %w", service, version, f.s, err)
		}
	}
	return st, nil
}

// MetricsHandler proxies GET /metrics to the data plane (for the control
// plane's API, so one scrape target keeps working).
func (c *Client) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://dataplane/metrics", nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		resp, err := c.http.Do(req)
		if err != nil {
			http.Error(w, fmt.Sprintf("%v (%s): %v", ErrUnreachable, c.cfg.Socket, err), http.StatusBadGateway)
			return
		}
		defer func() { _ = resp.Body.Close() }()
		if ct := resp.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
}
