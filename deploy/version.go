package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/flotilla-ci/flotilla/graph"
	"github.com/flotilla-ci/flotilla/internal/version"
)

// Versioner derives every service's version from the repository's content,
// so the same sources and config are the same version on every machine
// and in every command, and nothing unchanged is rebuilt or redeployed.
//
// The source version is internal/version's: the content hash of the
// service's paths and the manifest's shared paths, the version contracts
// are published and verified under (`flotilla contract version
// --service`). The deploy version is the source version when the service
// has no deploy config in the manifest and no build flags; otherwise the
// source version, a dash and 6 hex digits hashing the config (deploy
// package, env, port, replicas) and the flags: a config change is a new
// version, and the contract version stays readable in it. The build digest
// (the artifact cache key) covers the source, the main package and the
// flags, not the runtime config, so a config-only change reuses the
// artifact. Addresses the platform injects
// at start (ports, the bus and registry URLs) are in none of them.
type Versioner struct {
	m     *graph.Manifest
	flags []string
}

// Fingerprint is a service's versions.
type Fingerprint struct {
	// Version is the deploy version.
	Version string
	// Source is the source version (internal/version).
	Source string
	// Digest keys the artifact: the source, the main package and the
	// build flags.
	Digest string
}

// NewVersioner returns the versioner of m's services built with flags.
func NewVersioner(m *graph.Manifest, flags []string) *Versioner {
	return &Versioner{m: m, flags: flags}
}

// Of returns the versions of a service of the manifest.
func (v *Versioner) Of(ctx context.Context, name string) (Fingerprint, error) {
	s := v.m.Service(name)
	if s == nil {
		return Fingerprint{}, fmt.Errorf("version: unknown service %q", name)
	}
	if len(s.Paths) == 0 {
		return Fingerprint{}, fmt.Errorf("version of %s: it has no paths in %s", name, v.m.File)
	}
	paths := append(append([]string{}, s.Paths...), v.m.Shared...)
	src, err := version.Of(ctx, v.m.Root, paths...)
	if err != nil {
		return Fingerprint{}, fmt.Errorf("version of %s: %s", name, strings.TrimPrefix(err.Error(), "version: "))
	}
	fp := Fingerprint{Version: src, Source: src}
	h := sha256.New()
	fmt.Fprintf(h, "source %s\npackage %s\n", src, s.MainPackage())
	for _, f := range v.flags {
		fmt.Fprintf(h, "flag %q\n", f)
	}
	fp.Digest = hex.EncodeToString(h.Sum(nil))[:version.Length]
	if len(v.flags) == 0 && s.Deploy.Package == "" && len(s.Deploy.Env) == 0 && s.Deploy.Port == 0 && s.Deploy.Replicas <= 1 {
		return fp, nil
	}
	c := sha256.New()
	fmt.Fprintf(c, "build %s\nport %d\nreplicas %d\n", fp.Digest, s.Deploy.Port, max(s.Deploy.Replicas, 1))
	keys := make([]string, 0, len(s.Deploy.Env))
	for k := range s.Deploy.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(c, "env %q=%q\n", k, s.Deploy.Env[k])
	}
	fp.Version = src + "-" + hex.EncodeToString(c.Sum(nil))[:6]
	return fp, nil
}

// mainPackage is the service's main package, or an error saying how to
// declare it.
func mainPackage(m *graph.Manifest, s *graph.Service) (string, error) {
	if p := s.MainPackage(); p != "" {
		return p, nil
	}
	return "", errors.New(locate(m.File, s.Line) + s.Name + " has no main package: set deploy.package (e.g. ./cmd/" + s.Name + ") or give it a path under a cmd/ folder")
}

func locate(file string, line int) string {
	if line > 0 {
		return fmt.Sprintf("%s:%d: ", file, line)
	}
	return file + ": "
}
