package deploy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Errors a Target returns (wrapped, with the service and version named);
// callers branch on them with errors.Is.
var (
	// ErrBuild: the service's artifact could not be built. The error is a
	// *BuildError carrying the compiler's output.
	ErrBuild = errors.New("build failed")
	// ErrNotReady: the instances did not pass their readiness probe within
	// the spec's ReadyTimeout.
	ErrNotReady = errors.New("not ready in time")
	// ErrCrashLoop: an instance kept exiting before it became ready.
	ErrCrashLoop = errors.New("crash loop")
	// ErrPortInUse: the spec asked for a fixed port that something else
	// listens on.
	ErrPortInUse = errors.New("port in use")
	// ErrNotFound: no such service or version runs on the target.
	ErrNotFound = errors.New("not running")
	// ErrNoArtifact: a version cannot be started again because its
	// artifact is gone (a rollback to a version whose build was evicted).
	ErrNoArtifact = errors.New("no artifact for this version")
)

// Target runs versions of services: local processes behind the built-in
// mesh, or Kubernetes deployments behind Istio. A version is started next
// to the ones already running and stopped separately, so a target never
// decides on its own which version gets traffic: the Router does.
type Target interface {
	// Apply starts spec's version of its service (building it first when
	// the target builds, and when its artifact is not cached) next to the
	// versions already running, and returns its instances once every one
	// of them passes its readiness probe. Applying a version that already
	// runs returns its instances. On failure nothing of the version is
	// left running, and the error wraps ErrBuild (a *BuildError),
	// ErrNotReady, ErrCrashLoop, ErrPortInUse or ErrNoArtifact, naming
	// the service and version, or is ctx's error.
	Apply(ctx context.Context, spec Spec) ([]Instance, error)
	// Status returns the instances of service (every service when it is
	// empty), sorted by service, version and index. An unknown service has
	// none; that is not an error.
	Status(ctx context.Context, service string) ([]Instance, error)
	// Remove stops every instance of the version: a polite signal, time
	// to drain, then a forced stop. A version that does not run is an
	// error wrapping ErrNotFound.
	Remove(ctx context.Context, service, version string) error
}

// Builder is implemented by a Target that builds artifacts itself, so the
// orchestrator can report the build as its own step. Apply builds anyway
// when Build was not called.
type Builder interface {
	// Build makes spec's artifact available, from its cache when it is
	// there. A compile failure is a *BuildError wrapping ErrBuild.
	Build(ctx context.Context, spec Spec) error
}

// BatchBuilder is implemented by a Builder that builds several artifacts
// faster together than one at a time (one `go build` of many packages
// shares the loading and hashing of their dependencies). BuildMany
// returns one error per spec, in order; a spec's error is what Build
// would have returned for it.
type BatchBuilder interface {
	Builder
	BuildMany(ctx context.Context, specs []Spec) []error
}

// BuildProgress is how far a batch build has come.
type BuildProgress struct {
	// Compiled counts the packages compiled so far (not found in the
	// build cache); Package is the last one.
	Compiled int
	Package  string
	// Packages is how many packages the build takes in, compiled or
	// from the cache (0 while not known): what Compiled can reach.
	Packages int
}

// ProgressBuilder is a BatchBuilder that says how far its build has come
// while it runs, so a long first build is not silence. progress may be
// nil; it is not called concurrently.
type ProgressBuilder interface {
	BatchBuilder
	BuildManyProgress(ctx context.Context, specs []Spec, progress func(BuildProgress)) []error
}

// Spec is one version of one service as a target runs it.
type Spec struct {
	Service string `json:"service"`
	// Version is the service's version (see Versioner): what the instances
	// and the Router's subset are named by.
	Version string `json:"version"`
	// Source is the source version (internal/version): what the service's
	// contracts are published and verified under.
	Source string `json:"source,omitempty"`
	Build  Build  `json:"build"`
	// Env is the instances' environment beyond what the target sets
	// itself (its port, its name and version): the manifest's deploy env,
	// the addresses of the bus, the registry and the dependencies.
	Env map[string]string `json:"env,omitempty"`
	// Port fixes the instances' port (0: the target picks a free one).
	Port int `json:"port,omitempty"`
	// Replicas is the number of instances (0 means 1).
	Replicas int `json:"replicas,omitempty"`
	// Health is the readiness path (default /ready).
	Health string `json:"health,omitempty"`
	// ReadyTimeout bounds the wait for readiness (0: the target's default).
	ReadyTimeout time.Duration `json:"ready_timeout,omitempty"`
}

// Build says how a service's artifact is made.
type Build struct {
	// Package is the Go package of the service's main, relative to the
	// module root (./shop/cmd/user).
	Package string `json:"package"`
	// Flags are extra `go build` flags.
	Flags []string `json:"flags,omitempty"`
	// Digest identifies the build inputs (sources and flags, not the
	// deploy-time config); the artifact cache is keyed by it, so a
	// config-only change starts a new version from the same binary.
	// Empty means the version.
	Digest string `json:"digest,omitempty"`
}

// Key returns the artifact cache key: the digest, or the version.
func (s Spec) Key() string {
	if s.Build.Digest != "" {
		return s.Build.Digest
	}
	return s.Version
}

// Validate reports what is missing from a spec.
func (s Spec) Validate() error {
	var errs []error
	if s.Service == "" {
		errs = append(errs, errors.New("spec: service is empty"))
	}
	if s.Version == "" {
		errs = append(errs, errors.New("spec: version is empty"))
	}
	if s.Build.Package == "" {
		errs = append(errs, errors.New("spec: build package is empty"))
	}
	if s.Replicas < 0 || s.Port < 0 || s.Port > 65535 {
		errs = append(errs, fmt.Errorf("spec: replicas %d, port %d: want non-negative, port at most 65535", s.Replicas, s.Port))
	}
	if s.Port != 0 && s.Replicas > 1 {
		errs = append(errs, fmt.Errorf("spec: a fixed port (%d) cannot serve %d replicas; leave the port unset", s.Port, s.Replicas))
	}
	return errors.Join(errs...)
}

// InstanceState is what an instance is doing.
type InstanceState string

// The states of an instance.
const (
	StateStarting  InstanceState = "starting"   // started, not yet ready
	StateReady     InstanceState = "ready"      // passed its readiness probe
	StateUnready   InstanceState = "unready"    // was ready, fails its probe now
	StateCrashLoop InstanceState = "crash-loop" // exits again and again
	StateStopping  InstanceState = "stopping"
	StateStopped   InstanceState = "stopped"
)

// Instance is one running copy of a version.
type Instance struct {
	Service string `json:"service"`
	Version string `json:"version"`
	Index   int    `json:"index"`
	// Addr is where the instance listens, host:port.
	Addr  string        `json:"addr"`
	PID   int           `json:"pid,omitempty"`
	State InstanceState `json:"state"`
	// Restarts counts the times it was restarted after exiting.
	Restarts int `json:"restarts"`
	// LastExit describes its last exit ("exit status 1"), if any.
	LastExit string    `json:"last_exit,omitempty"`
	Started  time.Time `json:"started"`
	// Log is where its output goes (a file for local processes).
	Log string `json:"log,omitempty"`
}

// Endpoints returns the addresses of instances.
func Endpoints(insts []Instance) []string {
	out := make([]string, 0, len(insts))
	for _, in := range insts {
		out = append(out, in.Addr)
	}
	sort.Strings(out)
	return out
}

// BuildError is a failed build, with what the compiler said.
type BuildError struct {
	Service, Version string
	Package          string
	Output           string // the compiler's output, verbatim
	Err              error  // how the build command failed
}

func (e *BuildError) Error() string {
	return fmt.Sprintf("build %s@%s (%s): %v\n%s", e.Service, e.Version, e.Package, e.Err, strings.TrimRight(e.Output, "\n"))
}

// Unwrap makes errors.Is(err, ErrBuild) true.
func (e *BuildError) Unwrap() []error { return []error{ErrBuild, e.Err} }
