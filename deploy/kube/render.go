package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/graph"
)

// RenderConfig says how to render an environment's objects.
type RenderConfig struct {
	// Namespace is the environment's namespace. Required.
	Namespace string
	// Image returns a service version's image, pinned by digest. Required.
	Image func(ctx context.Context, spec deploy.Spec) (string, error)
	// Public names the services the ingress gateway may call.
	Public []string
	// BuildFlags are the services' build flags, part of their versions
	// (nil: deploy.DefaultBuildFlags, as a deploy computes them).
	BuildFlags []string
	// Port and ServicePort as in Config (8080, 80).
	Port, ServicePort int
	// ReadyTimeout is the progress deadline of a service without a
	// deploy.timeout (120s).
	ReadyTimeout time.Duration
}

// Object is one rendered object.
type Object struct {
	// File is the file it goes in, relative to the output directory.
	File string
	Kind string
	Name string
	// Body is the object (an apply configuration).
	Body any
}

// Render returns every object a deploy of the manifest's current
// versions to the namespace would write, in a stable order: per service
// (by name) its ServiceAccount, Service, Deployment, DestinationRule,
// VirtualService and AuthorizationPolicy, in <service>.yaml; the
// namespace's PeerAuthentication in namespace.yaml. Each service gets its
// current version with all the traffic, as after a promotion.
func Render(ctx context.Context, m *graph.Manifest, cfg RenderConfig) ([]Object, error) {
	if cfg.Namespace == "" || cfg.Image == nil {
		return nil, errors.New("render: a namespace and an image resolver are required")
	}
	if cfg.Port == 0 {
		cfg.Port = 8080
	}
	if cfg.ServicePort == 0 {
		cfg.ServicePort = 80
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 120 * time.Second
	}
	flags := cfg.BuildFlags
	if flags == nil {
		flags = deploy.DefaultBuildFlags
	}
	vr := deploy.NewVersioner(m, flags)
	pols := map[string]any{}
	for _, ap := range AuthorizationPolicies(m, cfg.Namespace, cfg.Public) {
		pols[*ap.Name] = ap
	}
	var out []Object
	var errs []error
	for _, s := range m.Services {
		fp, err := vr.Of(ctx, s.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := checkNames(s.Name, fp.Version); err != nil {
			errs = append(errs, err)
			continue
		}
		env := map[string]string{}
		for _, d := range s.DependsOn {
			env[deploy.DepEnv(d)] = "http://" + Address(d, cfg.Namespace, cfg.ServicePort)
		}
		for k, v := range s.Deploy.Env {
			env[k] = v
		}
		spec := deploy.Spec{
			Service: s.Name, Version: fp.Version, Source: fp.Source,
			Build:    deploy.Build{Package: s.MainPackage(), Digest: fp.Digest},
			Env:      env,
			Replicas: s.Deploy.Replicas, Health: s.Health, ReadyTimeout: s.Deploy.Timeout.D(),
		}
		image, err := cfg.Image(ctx, spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s@%s: image: %w", s.Name, fp.Version, err))
			continue
		}
		if !strings.Contains(image, "@sha256:") {
			errs = append(errs, fmt.Errorf("%s@%s: image %q has no digest: rendered Deployments pin images by digest (repo@sha256:...)", s.Name, fp.Version, image))
			continue
		}
		rt := Routing{Service: s.Name, Subsets: []string{fp.Version}, Weights: map[string]int{fp.Version: 100}}
		file := s.Name + ".yaml"
		out = append(out,
			Object{file, "ServiceAccount", s.Name, ServiceAccount(s.Name, cfg.Namespace)},
			Object{file, "Service", s.Name, Service(s.Name, cfg.Namespace, cfg.ServicePort, cfg.Port)},
			Object{file, "Deployment", Name(s.Name, fp.Version), Deployment(spec, cfg.Namespace, image, cfg.Port, cfg.ReadyTimeout, nil)},
			Object{file, "DestinationRule", s.Name, DestinationRule(rt, cfg.Namespace)},
			Object{file, "VirtualService", s.Name, VirtualService(rt, cfg.Namespace)},
			Object{file, "AuthorizationPolicy", s.Name, pols[s.Name]},
		)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	out = append(out, Object{"namespace.yaml", "PeerAuthentication", "default", PeerAuthentication(cfg.Namespace)})
	return out, nil
}

// YAML renders an object as YAML, keys sorted.
func YAML(o Object) ([]byte, error) {
	js, err := json.Marshal(o.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", o.Kind, o.Name, err)
	}
	return yaml.JSONToYAML(js)
}

// Files groups the objects into their files, each object a YAML
// document, in order.
func Files(objs []Object) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, o := range objs {
		y, err := YAML(o)
		if err != nil {
			return nil, err
		}
		if len(files[o.File]) > 0 {
			files[o.File] = append(files[o.File], "---\n"...)
		}
		files[o.File] = append(files[o.File], y...)
	}
	return files, nil
}

// WriteDir writes the objects' files into dir (created if missing) and
// returns their names, sorted. Files flotilla did not write are left alone.
func WriteDir(dir string, objs []Object) ([]string, error) {
	files, err := Files(objs)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var names []string
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}
