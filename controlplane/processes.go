package controlplane

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	busnats "github.com/flotilla-ci/flotilla/bus/nats"
	"github.com/flotilla-ci/flotilla/internal/supervise"
	"github.com/flotilla-ci/flotilla/tracing/store/jaeger"
)

// The platform's own processes (today the event bus) run apart from the
// control plane, supervised by it, so that a kill -9 or an upgrade of the
// control plane leaves them serving: their state, lock and log files are
// in ProcessDir(data), and the next control plane adopts them.

// ProcessDir is where the platform's processes are recorded: <name>.json
// (pid, program, version, start time, addresses), <name>.lock, <name>.log.
func ProcessDir(data string) string { return filepath.Join(data, "platform") }

// busProcessEnv marks the environment of a bus process: a program started
// as the bus must not start a platform of its own (a program that does not
// serve the bus subcommand would otherwise run again and again).
const busProcessEnv = "FLOTILLA_BUS_PROCESS"

// busCommand is the program and first arguments that run the bus.
func (p *Platform) busCommand() ([]string, error) {
	if len(p.cfg.BusCommand) > 0 {
		return p.cfg.BusCommand, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("the event bus runs as '<this program> bus', and this program's path is unknown (%w): set BusCommand", err)
	}
	return []string{exe, "bus"}, nil
}

// runningBus is the address of a bus process a previous control plane
// left running on the data directory, if one runs where this platform
// wants its bus (the configured address, or any port on its host when
// the configured port is 0): the platform adopts it instead of checking
// that the port is free.
func (p *Platform) runningBus(data string) (string, bool) {
	st, err := supervise.ReadState(ProcessDir(data), "bus")
	if err != nil {
		return "", false
	}
	if ok, _ := st.Running(); !ok {
		return "", false
	}
	addr := st.Addrs["client"]
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", false
	}
	wantHost, wantPort, _ := net.SplitHostPort(p.cfg.NATSAddr)
	if addr == p.cfg.NATSAddr || (wantPort == "0" && host == wantHost && port != "0") {
		return addr, true
	}
	return "", false
}

// startBus adopts the bus process a previous control plane left running,
// or starts one, on the event store in data and addr.
func (p *Platform) startBus(ctx context.Context, data, addr string) (*supervise.Process, error) {
	cmd, err := p.busCommand()
	if err != nil {
		return nil, err
	}
	url := "nats://" + addr
	args := append(append([]string(nil), cmd[1:]...), "--dir", filepath.Join(data, "nats"), "--addr", addr)
	proc, err := supervise.Start(ctx, supervise.Spec{
		Name: "bus", Dir: ProcessDir(data), Path: cmd[0], Args: args,
		Env: append(os.Environ(), busProcessEnv+"=1"),
		// A restart of the bus would interrupt the services' events: a
		// bus an older flotilla started is adopted, and runs this
		// program from its next restart on.
		KeepProgram: true,
		Version:     p.cfg.Version, Addrs: map[string]string{"client": addr},
		Ready: func(ctx context.Context) error { return busnats.Probe(ctx, url) },
		OnRestart: func(ctx context.Context, st supervise.Status) {
			p.log.WarnContext(ctx, "the event bus exited and was restarted", "pid", st.PID, "restarts", st.Restarts, "exit", st.LastExit, "log", st.Log)
		},
		Logger: p.log.With("component", "supervise"),
	})
	if err != nil {
		if errors.Is(err, supervise.ErrBusy) {
			return nil, fmt.Errorf("the event bus: %w", err)
		}
		return nil, fmt.Errorf("the event bus did not start: %w", err)
	}
	st := proc.Status()
	if st.Adopted {
		p.log.InfoContext(ctx, "adopted the running event bus", "pid", st.PID, "url", url, "started", st.Started, "version", st.Version)
	} else {
		p.log.InfoContext(ctx, "started the event bus", "pid", st.PID, "url", url, "log", st.Log)
	}
	return proc, nil
}

// ServeBus serves the bus subcommand's arguments (--dir D --addr
// host:port [--max-store N]) until ctx ends: for a program other than
// flotilla (a test binary, a benchmark) that runs a Platform whose
// BusCommand is itself, so it can be its own bus process. stderr gets the
// bus's log.
func ServeBus(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("bus", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "JetStream storage directory")
	addr := fs.String("addr", DefaultNATSAddr, "address to listen on")
	maxStore := fs.Int64("max-store", 0, "JetStream file storage cap in bytes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("bus: --dir is required")
	}
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("bus --addr %q: %w", *addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("bus --addr %q: %w", *addr, err)
	}
	m := &busnats.Main{Config: busnats.ServerConfig{Dir: *dir, Host: host, Port: n, MaxStore: *maxStore},
		Logger: slog.New(slog.NewTextHandler(stderr, nil))}
	return m.Run(ctx)
}

// Processes are the platform's own processes as they are now (the event
// bus), for `flotilla status`; empty before Run started them.
func (p *Platform) Processes() []supervise.Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []supervise.Status
	for _, pr := range p.procs {
		out = append(out, pr.Status())
	}
	return out
}

// startJaeger runs the Jaeger v2 binary bin under the supervisor, its
// configuration in data/jaeger, and returns once its query service
// answers. Jaeger's own tracing is off: its spans would land in the store
// it serves.
func (p *Platform) startJaeger(ctx context.Context, data, bin string, a jaeger.Addrs) (*supervise.Process, error) {
	dir := filepath.Join(data, "jaeger")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("jaeger: %w", err)
	}
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, []byte(jaeger.Config(a, 50_000)), 0o644); err != nil {
		return nil, fmt.Errorf("jaeger: %w", err)
	}
	c := jaeger.NewClient("http://" + a.QueryHTTP)
	proc, err := supervise.Start(ctx, supervise.Spec{
		Name: "jaeger", Dir: ProcessDir(data), Path: bin, Args: []string{"--config", "file:" + cfg},
		Env:   append(os.Environ(), "OTEL_TRACES_EXPORTER=none"),
		Addrs: map[string]string{"otlp": a.OTLPHTTP, "query": a.QueryHTTP},
		Ready: func(ctx context.Context) error {
			_, err := c.Services(ctx)
			return err
		},
		ReadyTimeout: time.Minute,
		Logger:       p.log.With("component", "supervise"),
	})
	if err != nil {
		return nil, fmt.Errorf("jaeger did not start: %w", err)
	}
	p.log.InfoContext(ctx, "started jaeger", "pid", proc.Status().PID, "query", "http://"+a.QueryHTTP, "otlp", "http://"+a.OTLPHTTP)
	return proc, nil
}
