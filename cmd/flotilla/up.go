package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/local"
	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/identity"
	"github.com/flotilla-ci/flotilla/mesh"
)

func (a *app) upCmd() *cobra.Command {
	var (
		cfg        controlplane.PlatformConfig
		only       []string
		noDemo     bool
		withJaeger bool
		jaegerBin  string
		logMaxSize string
		authz      string
		mtls       string
		provider   string
		promURL    string
	)
	d := controlplane.DefaultPlatformConfig("")
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the whole platform and the manifest's services on this machine",
		Long: `Run the local platform: in this process the schema registry, the contract
broker, the mesh and its edge gateway, the local deploy target and the
control-plane API; the NATS JetStream event bus in a process of its own
(started, or adopted when a previous 'flotilla up' left it running); then
build and deploy every service of the manifest in wave order, wait until all
are ready, load demo data, and print where everything is. Ctrl-C stops the
services (drained first), then the platform and the bus. If this process is
killed instead, the bus and the services keep running, and the next
'flotilla up' adopts them.

'flotilla up' of a newer flotilla on a data directory where another version
runs upgrades the platform in place: the running 'flotilla up' hands over
(it leaves everything running and exits), this one adopts the bus and the
services, and replaces the data plane by its own program on the same
listening sockets while the old one drains its requests. The bus keeps its
program until it next restarts.

State lives in the data directory (default .flotilla beside the manifest):
the next 'flotilla up' comes back with the same data, and a service whose
version is unchanged is not rebuilt. The default addresses are in the
7400-7499 block; a port in use is reported with the flag that moves it
(port 0 picks a free one).`,
		Example: `  flotilla up
  flotilla up --only order-service          # order-service and what it depends on
  flotilla up --data /tmp/shop --gateway-addr 127.0.0.1:0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, warns, err := a.loadManifest()
			if err != nil {
				return err
			}
			for _, w := range warns {
				fmt.Fprintf(a.stderr, "warning: %s\n", w)
			}
			cfg.Manifest = m.File
			if cfg.Data == "" {
				cfg.Data = filepath.Join(m.Root, ".flotilla")
			}
			cfg.Services = only
			cfg.Demo = !noDemo
			if withJaeger {
				bin, err := exec.LookPath(jaegerBin)
				if err != nil {
					return usageErr(fmt.Errorf("--jaeger: no jaeger binary %q (build it: cd tools/jaeger && go build -o DIR/jaeger github.com/jaegertracing/jaeger/cmd/jaeger; then --jaeger-bin DIR/jaeger or FLOTILLA_JAEGER_BIN): %w", jaegerBin, err))
				}
				cfg.Tracing.Jaeger = bin
			}
			cfg.Authz = mesh.AuthzMode(authz)
			cfg.MTLS = identity.Mode(mtls)
			if cfg.Metrics, err = metricsProvider(provider, promURL); err != nil {
				return usageErr(err)
			}
			bi, _ := debug.ReadBuildInfo()
			cfg.Version = strings.TrimPrefix(versionLine(version, bi), "flotilla ")
			if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
				return usageErr(fmt.Errorf("up --data: %w", err))
			}
			// The platform's own log (access logs, the mesh, the
			// orchestrator) goes to a file; the terminal gets progress.
			logPath := filepath.Join(cfg.Data, "flotilla.log")
			logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
			if err != nil {
				return usageErr(fmt.Errorf("up: %w", err))
			}
			defer func() { _ = logf.Close() }()
			cfg.Logger = slog.New(slog.NewTextHandler(logf, nil))
			// The mesh forwards every request of the shop in this
			// process: collect less often than the default (mesh/doc.go).
			debug.SetGCPercent(400)
			r := newRenderer(a.stdout, isTerminal(a.stdout))
			cfg.Events = r.event
			// Once up, say at once that Ctrl-C was heard: draining takes
			// a few seconds.
			ctx := cmd.Context()
			var wg sync.WaitGroup
			runDone := make(chan struct{})
			up := make(chan struct{})
			cfg.Ready = func(info controlplane.PlatformInfo) {
				defer close(up)
				if info.Report != nil {
					r.report(info.Report)
				}
				printUp(a.stdout, info, logPath)
				wg.Add(1)
				go func() {
					defer wg.Done()
					select {
					case <-ctx.Done():
						fmt.Fprintln(a.stdout, "stopping: draining the services, then the platform")
					case <-runDone:
					}
				}()
			}
			if cfg.Target.LogMaxSize, err = parseLogSize(logMaxSize); err != nil {
				return usageErr(err)
			}
			if cfg.KeepVersions < 1 {
				return usageErr(fmt.Errorf("--keep-versions %d: want at least 1 (the serving, canary and previous versions are kept besides)", cfg.KeepVersions))
			}
			if cfg.Target.LogMaxFiles < 2 {
				return usageErr(fmt.Errorf("--log-max-files %d: want at least 2 (the live file and one rotated)", cfg.Target.LogMaxFiles))
			}
			// The bus and the data plane run from a copy of this program
			// kept in the data directory and named by its content, so they
			// outlive a binary that goes away (go run's, a rebuilt one) and
			// the next up of the same flotilla adopts them.
			bin, err := platformBinary(filepath.Join(cfg.Data, "platform", "bin"))
			if err != nil {
				return err
			}
			cfg.BusCommand, cfg.Dataplane = []string{bin, "bus"}, []string{bin, "dataplane"}
			p, err := controlplane.NewPlatform(cfg)
			if err != nil {
				return usageErr(err)
			}
			fmt.Fprintf(a.stdout, "flotilla up: %s, data in %s (platform log: %s)\n", m.File, relPath(cfg.Data), relPath(logPath))
			// A newer flotilla up on the same data directory asks this one
			// to hand over (an upgrade): once up, it leaves the bus, the
			// data plane and the services running and exits.
			handover := make(chan os.Signal, 1)
			signal.Notify(handover, controlplane.HandoverSignal)
			defer signal.Stop(handover)
			runCtx, cancelRun := context.WithCancel(ctx)
			defer cancelRun()
			var handedOver atomic.Bool
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case <-handover:
				case <-runDone:
					return
				}
				select {
				case <-up:
				case <-runDone:
					return
				}
				fmt.Fprintln(a.stdout, "handing over to a newer flotilla up: the bus, the data plane and the services run on")
				handedOver.Store(true)
				_ = p.Detach()
				cancelRun()
			}()
			err = p.Run(runCtx)
			close(runDone)
			wg.Wait()
			if handedOver.Load() {
				fmt.Fprintln(a.stdout, "handed over: the newer flotilla up runs the platform")
				return nil
			}
			if err != nil {
				if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
					fmt.Fprintln(a.stdout, "interrupted before every service was up: stopped what had started")
					return nil
				}
				return problem(err)
			}
			fmt.Fprintln(a.stdout, "stopped: services drained, platform closed; 'flotilla up' brings it all back")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Data, "data", "", "the data directory (default: .flotilla beside the manifest)")
	f.StringSliceVar(&only, "only", nil, "run only these services (comma-separated) and what they depend on")
	f.StringVar(&cfg.APIAddr, "api-addr", d.APIAddr, "the control-plane API's address ('flotilla status --api' talks to it)")
	f.StringVar(&cfg.GatewayAddr, "gateway-addr", d.GatewayAddr, "the edge gateway's address")
	f.StringVar(&cfg.RegistryAddr, "registry-addr", d.RegistryAddr, "the schema registry's address")
	f.StringVar(&cfg.BrokerAddr, "broker-addr", d.BrokerAddr, "the contract broker's address")
	f.StringVar(&cfg.NATSAddr, "nats-addr", d.NATSAddr, "the embedded NATS server's address")
	f.StringVar(&authz, "authz", string(d.Authz), "the mesh's authorization from the graph: enforce (refuse a call to a service the caller does not depends_on with 403), warn (count it) or off")
	f.StringVar(&mtls, "mtls", string(d.MTLS), "mutual TLS on the mesh's and the services' listeners: strict (a connection without a certificate of the platform's CA is refused) or permissive (plaintext is also accepted, and counted); 'flotilla certs' lists the identities")
	f.BoolVar(&noDemo, "no-demo", false, "do not load the demo data")
	f.BoolVar(&withJaeger, "jaeger", false, "run Jaeger v2 (query UI on 127.0.0.1:16686) and send every service's spans to it ('flotilla trace --from jaeger' reads them)")
	defJaeger := os.Getenv("FLOTILLA_JAEGER_BIN")
	if defJaeger == "" {
		defJaeger = "jaeger"
	}
	f.StringVar(&jaegerBin, "jaeger-bin", defJaeger, "with --jaeger: the jaeger binary, built from tools/jaeger (FLOTILLA_JAEGER_BIN)")
	f.StringVar(&provider, "metrics-provider", providerMesh, "where canaries read their figures: mesh (the data plane's own) or prometheus (--prometheus-url)")
	f.StringVar(&promURL, "prometheus-url", "", "with --metrics-provider prometheus: a Prometheus scraping the API's /metrics, e.g. http://127.0.0.1:9090")
	f.StringVar(&logMaxSize, "log-max-size", "10MiB", "rotate a service's log file past this size (e.g. 50MB, 1GiB; 0 or -1: never)")
	f.IntVar(&cfg.KeepVersions, "keep-versions", deploy.DefaultKeepVersions, "versions of each service whose artifacts and logs are kept for rollback besides the serving, canary and previous ones (pruned after every release; 'flotilla gc' prunes now)")
	f.IntVar(&cfg.Target.LogMaxFiles, "log-max-files", local.DefaultConfig("", "").LogMaxFiles, "log files kept per service version, the live one included (at least 2)")
	return cmd
}

// printUp says where everything is and what to try first.
func printUp(w io.Writer, info controlplane.PlatformInfo, logPath string) {
	fmt.Fprintf(w, "\nflotilla is up: %d service(s) ready in %v\n\n", len(info.Services), info.Took.Round(100*time.Millisecond))
	if len(info.Upgraded) > 0 {
		fmt.Fprintln(w, "upgraded in place:")
		for _, u := range info.Upgraded {
			fmt.Fprintf(w, "  %s\n", u)
		}
		fmt.Fprintln(w)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  gateway\t%s\tthe shop's public API: /api/<service>/... (e.g. /api/product/products)\n", info.Gateway)
	fmt.Fprintf(tw, "  api\t%s\tthe control plane: flotilla status, deploy, history, rollback; /metrics\n", info.API)
	fmt.Fprintf(tw, "  ui\t%s%s\tthe dashboard: the graph in waves, releases, canaries, contracts, schemas (actions need the admin token)\n", info.API, controlplane.DashboardPath)
	fmt.Fprintf(tw, "  registry\t%s\tschema registry (Confluent REST API)\n", info.Registry)
	fmt.Fprintf(tw, "  broker\t%s\tcontract broker (Pact Broker API)\n", info.Broker)
	fmt.Fprintf(tw, "  nats\t%s\tthe event bus (JetStream)\n", info.NATS)
	fmt.Fprintf(tw, "  logs\t%s\tflotilla logs%s SERVICE\n", relPath(info.Logs), dataFlag(info.Data))
	fmt.Fprintf(tw, "  data\t%s\tdelete it to start from scratch\n", relPath(info.Data))
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range info.Services {
		fmt.Fprintf(tw, "  %s\t%s\tmesh %s\tgateway %s\n", s.Name, short(s.Version), s.Mesh, s.Gateway)
	}
	_ = tw.Flush()
	if d := info.Demo; d != nil {
		fmt.Fprintf(w, "\ndemo data: %d product(s), %d with stock; user %s, password %s\n", d.Products, d.Stocked, d.User, d.Password)
	}
	api := ""
	if strings.TrimPrefix(info.API, "http://") != controlplane.DefaultAddr {
		api = " --api " + strings.TrimPrefix(info.API, "http://")
	}
	fmt.Fprintf(w, "\ntry:\n  flotilla status%s\n", api)
	if info.Demo != nil && info.Demo.Products > 0 {
		fmt.Fprintf(w, "  curl %s/api/product/products\n", info.Gateway)
	} else if len(info.Services) > 0 {
		fmt.Fprintf(w, "  curl %s%sready\n", info.Gateway, info.Services[0].Gateway)
	}
	fmt.Fprintf(w, "\nCtrl-C stops everything (platform log: %s)\n", relPath(logPath))
}

// relPath names a path as the user would: relative to where they stand
// when it is below it.
func relPath(p string) string {
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	if rel, err := filepath.Rel(wd, abs); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return p
}

// dataFlag is the --data flag other commands need to find a data
// directory that is not the default one ("" when it is).
func dataFlag(data string) string {
	wd, err := os.Getwd()
	if err != nil {
		return " --data " + data
	}
	if m, err := graph.Find(wd); err == nil && filepath.Join(filepath.Dir(m), ".flotilla") == data {
		return ""
	}
	return " --data " + relPath(data)
}

// parseLogSize reads --log-max-size: a size with an optional unit (KB,
// MiB, …); 0 or a negative number means never rotate.
func parseLogSize(v string) (int64, error) {
	if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && n <= 0 {
		return -1, nil
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n == 0 || n > math.MaxInt64 {
		return 0, fmt.Errorf("--log-max-size %q: want a size such as 10MiB, 500KB or 1GiB (or 0: never rotate)", v)
	}
	return int64(n), nil
}

// platformBinary copies this program into dir as flotilla-<digest of its
// content> (once: the same build lands on the same name, so the platform's
// processes started from it are adopted by the next up), removes the
// copies of other builds (a process still running one keeps its file
// open), and returns the copy's path.
func platformBinary(dir string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("the platform's processes: this program's path: %w", err)
	}
	src, err := os.Open(exe)
	if err != nil {
		return "", fmt.Errorf("the platform's processes: %w", err)
	}
	defer func() { _ = src.Close() }()
	h := sha256.New()
	if _, err := io.Copy(h, src); err != nil {
		return "", fmt.Errorf("the platform's processes: read %s: %w", exe, err)
	}
	name := "flotilla-" + hex.EncodeToString(h.Sum(nil))[:16]
	dst := filepath.Join(dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("the platform's processes: %w", err)
	}
	if _, err := os.Stat(dst); err != nil {
		if _, err := src.Seek(0, io.SeekStart); err != nil {
			return "", err
		}
		tmp, err := os.CreateTemp(dir, name+".tmp-*")
		if err != nil {
			return "", fmt.Errorf("the platform's processes: %w", err)
		}
		_, err = io.Copy(tmp, src)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Chmod(tmp.Name(), 0o755)
		}
		if err == nil {
			err = os.Rename(tmp.Name(), dst)
		}
		if err != nil {
			_ = os.Remove(tmp.Name())
			return "", fmt.Errorf("the platform's processes: copy %s to %s: %w", exe, dst, err)
		}
	}
	if old, err := filepath.Glob(filepath.Join(dir, "flotilla-*")); err == nil {
		for _, o := range old {
			if o != dst {
				_ = os.Remove(o)
			}
		}
	}
	return dst, nil
}
