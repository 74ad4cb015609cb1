// Package kube is the deploy target that runs services on Kubernetes, with
// Istio as the router.
//
// Per service it keeps one ServiceAccount and one stable Service named
// after it (what its callers reach: <service>.<namespace>.svc.cluster.local),
// and per version a Deployment <service>-<version> whose pods carry the
// labels app=<service>, version=<version> and
// app.kubernetes.io/managed-by=flotilla, the manifest's health path as
// readiness probe, and an image pinned by digest. Every object is written
// with server-side apply under the field manager "flotilla".
//
// A version is ready when its Deployment's rollout is complete (observed
// generation, updated and available replicas); a rollout that misses its
// progress deadline is [deploy.ErrNotReady], a crash-looping container
// [deploy.ErrCrashLoop], each with the pod's last events and container
// state in the error. Remove scales a version to zero (its pods leave the
// Service's endpoints and get their termination grace), then deletes it.
// Nothing is kept in memory that the cluster does not hold: a restarted
// flotilla adopts what runs from the labels ([Target.Status]) and the
// routing from the Istio objects ([Router]).
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/flotilla-ci/flotilla/deploy"
)

var _ deploy.Target = (*Target)(nil)

// The labels every object flotilla writes carries.
const (
	LabelApp       = "app"
	LabelVersion   = "version"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "flotilla"
	// FieldManager is the server-side apply field manager.
	FieldManager = "flotilla"
	// AnnotationSource records a version's source version (its contracts').
	AnnotationSource = "flotilla.dev/source"
)

// Config configures a Kubernetes target. Zero fields take DefaultConfig's
// values.
type Config struct {
	// Namespace is where everything goes. Required.
	Namespace string
	// Image returns a version's image, pinned by digest
	// (repo@sha256:...). Required; a reference without a digest is
	// refused.
	Image func(ctx context.Context, spec deploy.Spec) (string, error)
	// Port is the container port every service listens on (8080); it is
	// given to the container as PORT.
	Port int
	// ServicePort is the stable Service's port (80).
	ServicePort int
	// ReadyTimeout is the rollout's progress deadline when a spec sets
	// none (120s).
	ReadyTimeout time.Duration
	// DrainTimeout bounds the wait for a removed version's pods to go
	// before its Deployment is deleted (30s).
	DrainTimeout time.Duration
	// PollInterval is how often a rollout's status is read (100ms).
	PollInterval time.Duration
	// PodLabels, when set, adds labels to a version's pods (a team's
	// cost-centre labels; the test plane's never-ready label).
	PodLabels func(spec deploy.Spec) map[string]string
	Logger    *slog.Logger
}

// DefaultConfig returns the defaults for a namespace.
func DefaultConfig(namespace string) Config {
	return Config{
		Namespace: namespace, Port: 8080, ServicePort: 80,
		ReadyTimeout: 120 * time.Second, DrainTimeout: 30 * time.Second,
		PollInterval: 100 * time.Millisecond,
	}
}

func (c *Config) applyDefaults() {
	d := DefaultConfig(c.Namespace)
	if c.Port == 0 {
		c.Port = d.Port
	}
	if c.ServicePort == 0 {
		c.ServicePort = d.ServicePort
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = d.ReadyTimeout
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = d.DrainTimeout
	}
	if c.PollInterval == 0 {
		c.PollInterval = d.PollInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every invalid field at once.
func (c Config) Validate() error {
	var errs []error
	if c.Namespace == "" {
		errs = append(errs, errors.New("kubernetes target: namespace is empty"))
	} else if msgs := validation.IsDNS1123Label(c.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("kubernetes target: namespace %q: %s", c.Namespace, strings.Join(msgs, "; ")))
	}
	if c.Image == nil {
		errs = append(errs, errors.New("kubernetes target: no image resolver (build and push the images with flotilla build --push REGISTRY)"))
	}
	if c.Port < 0 || c.Port > 65535 || c.ServicePort < 0 || c.ServicePort > 65535 {
		errs = append(errs, fmt.Errorf("kubernetes target: ports %d, %d: want 1-65535", c.Port, c.ServicePort))
	}
	if c.ReadyTimeout < 0 || c.DrainTimeout < 0 || c.PollInterval < 0 {
		errs = append(errs, errors.New("kubernetes target: durations must not be negative"))
	}
	return errors.Join(errs...)
}

// Target is the Kubernetes deploy target. Its methods are safe for
// concurrent use.
type Target struct {
	cs  kubernetes.Interface
	cfg Config
}

// New returns a target over the clientset. It checks that the namespace
// exists.
func New(ctx context.Context, cs kubernetes.Interface, cfg Config) (*Target, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// A namespaced Role (role.yaml) cannot read namespaces: then the first
	// write says a missing namespace instead.
	if _, err := cs.CoreV1().Namespaces().Get(ctx, cfg.Namespace, metav1.GetOptions{}); err != nil && !apierrors.IsForbidden(err) {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("kubernetes target: namespace %q does not exist: create it (kubectl create namespace %s) or name another in flotilla.yaml", cfg.Namespace, cfg.Namespace)
		}
		return nil, fmt.Errorf("kubernetes target: %w", explain(err))
	}
	return &Target{cs: cs, cfg: cfg}, nil
}

// Name returns the Deployment name of a version.
func Name(service, version string) string { return service + "-" + version }

// Address returns the stable address of a service in a namespace.
func Address(service, namespace string, port int) string {
	return service + "." + namespace + ".svc.cluster.local:" + strconv.Itoa(port)
}

// checkNames refuses a service or version Kubernetes cannot name.
func checkNames(service, version string) error {
	if msgs := validation.IsDNS1035Label(service); len(msgs) > 0 {
		return fmt.Errorf("service %q cannot name a Kubernetes Service: %s", service, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsDNS1123Label(Name(service, version)); len(msgs) > 0 {
		return fmt.Errorf("%s@%s cannot name a Deployment: %s", service, version, strings.Join(msgs, "; "))
	}
	return nil
}

func labels(service string) map[string]string {
	return map[string]string{LabelApp: service, LabelManagedBy: ManagedBy}
}

func versionLabels(service, version string) map[string]string {
	return map[string]string{LabelApp: service, LabelVersion: version, LabelManagedBy: ManagedBy}
}

// ServiceAccount is a service's identity (what AuthorizationPolicies name).
func ServiceAccount(service, namespace string) *corev1ac.ServiceAccountApplyConfiguration {
	return corev1ac.ServiceAccount(service, namespace).WithLabels(labels(service))
}

// Service is a service's stable Service: every version's pods behind one
// name, the port named http so Istio treats it as HTTP.
func Service(service, namespace string, port, targetPort int) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(service, namespace).WithLabels(labels(service)).
		WithSpec(corev1ac.ServiceSpec().
			WithSelector(map[string]string{LabelApp: service}).
			WithPorts(corev1ac.ServicePort().WithName("http").WithProtocol(corev1.ProtocolTCP).
				WithPort(int32(port)).WithTargetPort(intstr.FromInt32(int32(targetPort)))))
}

// Deployment is a version's Deployment.
func Deployment(spec deploy.Spec, namespace, image string, port int, readyTimeout time.Duration, podLabels map[string]string) *appsv1ac.DeploymentApplyConfiguration {
	replicas := int32(max(spec.Replicas, 1))
	health := spec.Health
	if health == "" {
		health = "/ready"
	}
	timeout := spec.ReadyTimeout
	if timeout == 0 {
		timeout = readyTimeout
	}
	env := map[string]string{}
	for k, v := range spec.Env {
		env[k] = v
	}
	env["PORT"] = strconv.Itoa(port)
	env["ADDR"] = ":" + strconv.Itoa(port)
	env["FLOTILLA_SERVICE"] = spec.Service
	env["FLOTILLA_VERSION"] = spec.Version
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var envs []*corev1ac.EnvVarApplyConfiguration
	for _, k := range keys {
		envs = append(envs, corev1ac.EnvVar().WithName(k).WithValue(env[k]))
	}
	podl := versionLabels(spec.Service, spec.Version)
	for k, v := range podLabels {
		if _, ok := podl[k]; !ok {
			podl[k] = v
		}
	}
	annotations := map[string]string{}
	if spec.Source != "" {
		annotations[AnnotationSource] = spec.Source
	}
	d := appsv1ac.Deployment(Name(spec.Service, spec.Version), namespace).
		WithLabels(versionLabels(spec.Service, spec.Version)).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(replicas).
			WithProgressDeadlineSeconds(int32(max(timeout.Round(time.Second)/time.Second, 1))).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{LabelApp: spec.Service, LabelVersion: spec.Version})).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(podl).
				WithSpec(corev1ac.PodSpec().
					WithServiceAccountName(spec.Service).
					WithSecurityContext(corev1ac.PodSecurityContext().WithRunAsNonRoot(true)).
					WithContainers(corev1ac.Container().
						WithName(spec.Service).
						WithImage(image).
						WithPorts(corev1ac.ContainerPort().WithName("http").WithContainerPort(int32(port)).WithProtocol(corev1.ProtocolTCP)).
						WithEnv(envs...).
						WithReadinessProbe(corev1ac.Probe().
							WithHTTPGet(corev1ac.HTTPGetAction().WithPath(health).WithPort(intstr.FromString("http"))).
							WithPeriodSeconds(2).WithFailureThreshold(3)).
						WithSecurityContext(corev1ac.SecurityContext().WithAllowPrivilegeEscalation(false).WithReadOnlyRootFilesystem(true))))))
	if len(annotations) > 0 {
		d = d.WithAnnotations(annotations)
	}
	return d
}

var apply = metav1.ApplyOptions{FieldManager: FieldManager, Force: true}

// Declare writes a service's ServiceAccount and stable Service and returns
// the Service's address.
func (t *Target) Declare(ctx context.Context, service string) (string, error) {
	if err := checkNames(service, "v"); err != nil {
		return "", err
	}
	if _, err := t.cs.CoreV1().ServiceAccounts(t.cfg.Namespace).Apply(ctx, ServiceAccount(service, t.cfg.Namespace), apply); err != nil {
		return "", fmt.Errorf("service account of %s: %w", service, explain(err))
	}
	if _, err := t.cs.CoreV1().Services(t.cfg.Namespace).Apply(ctx, Service(service, t.cfg.Namespace, t.cfg.ServicePort, t.cfg.Port), apply); err != nil {
		return "", fmt.Errorf("service of %s: %w", service, explain(err))
	}
	return Address(service, t.cfg.Namespace, t.cfg.ServicePort), nil
}

// Apply implements deploy.Target: it applies the version's Deployment
// (with its service's ServiceAccount and Service) and waits for its
// rollout. On failure the Deployment is deleted again.
func (t *Target) Apply(ctx context.Context, spec deploy.Spec) ([]deploy.Instance, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := checkNames(spec.Service, spec.Version); err != nil {
		return nil, err
	}
	id := spec.Service + "@" + spec.Version
	image, err := t.cfg.Image(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("apply %s: image: %w", id, err)
	}
	if !strings.Contains(image, "@sha256:") {
		return nil, fmt.Errorf("apply %s: image %q has no digest: deployments pin images by digest (repo@sha256:...); push it with flotilla build --push", id, image)
	}
	if _, err := t.Declare(ctx, spec.Service); err != nil {
		return nil, fmt.Errorf("apply %s: %w", id, err)
	}
	var podLabels map[string]string
	if t.cfg.PodLabels != nil {
		podLabels = t.cfg.PodLabels(spec)
	}
	d := Deployment(spec, t.cfg.Namespace, image, t.cfg.Port, t.cfg.ReadyTimeout, podLabels)
	deps := t.cs.AppsV1().Deployments(t.cfg.Namespace)
	if _, err := deps.Apply(ctx, d, apply); err != nil {
		return nil, fmt.Errorf("apply %s: %w", id, explain(err))
	}
	timeout := spec.ReadyTimeout
	if timeout == 0 {
		timeout = t.cfg.ReadyTimeout
	}
	if err := t.waitRollout(ctx, spec.Service, spec.Version, timeout); err != nil {
		// Nothing of a failed version stays: its pods never served.
		if derr := deps.Delete(context.WithoutCancel(ctx), Name(spec.Service, spec.Version), metav1.DeleteOptions{}); derr != nil && !apierrors.IsNotFound(derr) {
			err = errors.Join(err, fmt.Errorf("delete %s again: %w", Name(spec.Service, spec.Version), derr))
		}
		return nil, fmt.Errorf("apply %s: %w", id, err)
	}
	return t.instances(ctx, spec.Service, spec.Version)
}

// waitRollout waits until the Deployment's rollout completes, its progress
// deadline passes, or a container crash-loops.
func (t *Target) waitRollout(ctx context.Context, service, version string, timeout time.Duration) error {
	name := Name(service, version)
	// The controller reports a missed deadline on its next sync; give it a
	// few seconds past the deadline before deciding on our own.
	deadline := time.Now().Add(timeout + 5*time.Second)
	tick := time.NewTicker(t.cfg.PollInterval)
	defer tick.Stop()
	for {
		d, err := t.cs.AppsV1().Deployments(t.cfg.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return explain(err)
		}
		if rolledOut(d) {
			return nil
		}
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
				return fmt.Errorf("%w: %s: %s%s", deploy.ErrNotReady, c.Reason, c.Message, t.podReport(ctx, service, version))
			}
		}
		if msg := t.crashLoop(ctx, service, version); msg != "" {
			return fmt.Errorf("%w: %s%s", deploy.ErrCrashLoop, msg, t.podReport(ctx, service, version))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: rollout of %s not complete after %s%s", deploy.ErrNotReady, name, timeout, t.podReport(ctx, service, version))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// rolledOut is `kubectl rollout status`'s test of a complete rollout.
func rolledOut(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want
}

// crashLoop describes a container of the version in CrashLoopBackOff.
func (t *Target) crashLoop(ctx context.Context, service, version string) string {
	pods, err := t.pods(ctx, service, version)
	if err != nil {
		return ""
	}
	for _, p := range pods {
		for _, c := range p.Status.ContainerStatuses {
			if w := c.State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" {
				return fmt.Sprintf("pod %s container %s restarted %d times: %s", p.Name, c.Name, c.RestartCount, w.Message)
			}
		}
	}
	return ""
}

// podReport describes the version's pods: phase, container state and last
// events, for an error.
func (t *Target) podReport(ctx context.Context, service, version string) string {
	ctx = context.WithoutCancel(ctx)
	pods, err := t.pods(ctx, service, version)
	if err != nil || len(pods) == 0 {
		return ""
	}
	var b strings.Builder
	for i, p := range pods {
		if i == 3 {
			fmt.Fprintf(&b, "\n  (%d more pods)", len(pods)-3)
			break
		}
		fmt.Fprintf(&b, "\n  pod %s: %s", p.Name, p.Status.Phase)
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status != corev1.ConditionTrue {
				fmt.Fprintf(&b, ", not ready")
				if c.Reason != "" {
					fmt.Fprintf(&b, " (%s)", c.Reason)
				}
			}
		}
		for _, c := range p.Status.ContainerStatuses {
			switch {
			case c.State.Waiting != nil:
				fmt.Fprintf(&b, "; container %s waiting: %s %s", c.Name, c.State.Waiting.Reason, c.State.Waiting.Message)
			case c.State.Terminated != nil:
				fmt.Fprintf(&b, "; container %s terminated: %s, exit %d", c.Name, c.State.Terminated.Reason, c.State.Terminated.ExitCode)
			}
			if c.RestartCount > 0 {
				fmt.Fprintf(&b, " (%d restarts)", c.RestartCount)
			}
		}
		evs, err := t.cs.CoreV1().Events(t.cfg.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Pod,involvedObject.name=" + p.Name})
		if err != nil {
			continue
		}
		sort.Slice(evs.Items, func(i, j int) bool { return evs.Items[i].LastTimestamp.Before(&evs.Items[j].LastTimestamp) })
		items := evs.Items
		if len(items) > 5 {
			items = items[len(items)-5:]
		}
		for _, e := range items {
			fmt.Fprintf(&b, "\n    event %s %s: %s", e.Type, e.Reason, e.Message)
		}
	}
	return b.String()
}

func (t *Target) pods(ctx context.Context, service, version string) ([]corev1.Pod, error) {
	sel := LabelManagedBy + "=" + ManagedBy
	if service != "" {
		sel += "," + LabelApp + "=" + service
	}
	if version != "" {
		sel += "," + LabelVersion + "=" + version
	}
	l, err := t.cs.CoreV1().Pods(t.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, explain(err)
	}
	sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].Name < l.Items[j].Name })
	return l.Items, nil
}

func (t *Target) instances(ctx context.Context, service, version string) ([]deploy.Instance, error) {
	pods, err := t.pods(ctx, service, version)
	if err != nil {
		return nil, err
	}
	return t.toInstances(pods), nil
}

// toInstances maps pods (sorted by name) to instances, indexed per version.
func (t *Target) toInstances(pods []corev1.Pod) []deploy.Instance {
	var out []deploy.Instance
	for _, p := range pods {
		in := deploy.Instance{
			Service: p.Labels[LabelApp],
			Version: p.Labels[LabelVersion],
			State:   podState(&p),
			Started: p.CreationTimestamp.Time,
			Log:     "pod/" + p.Name,
		}
		if p.Status.PodIP != "" {
			in.Addr = p.Status.PodIP + ":" + strconv.Itoa(t.cfg.Port)
		}
		if p.Status.StartTime != nil {
			in.Started = p.Status.StartTime.Time
		}
		for _, c := range p.Status.ContainerStatuses {
			in.Restarts += int(c.RestartCount)
			if term := c.LastTerminationState.Terminated; term != nil {
				in.LastExit = fmt.Sprintf("%s, exit %d", term.Reason, term.ExitCode)
			}
		}
		out = append(out, in)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Version < out[j].Version
	})
	for i := range out {
		if i > 0 && out[i].Service == out[i-1].Service && out[i].Version == out[i-1].Version {
			out[i].Index = out[i-1].Index + 1
		}
	}
	return out
}

func podState(p *corev1.Pod) deploy.InstanceState {
	if p.DeletionTimestamp != nil {
		return deploy.StateStopping
	}
	for _, c := range p.Status.ContainerStatuses {
		if w := c.State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" {
			return deploy.StateCrashLoop
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return deploy.StateReady
		}
	}
	if p.Status.Phase == corev1.PodRunning {
		return deploy.StateUnready
	}
	return deploy.StateStarting
}

// Status implements deploy.Target: the pods of flotilla's Deployments,
// found by their labels (so a restarted flotilla adopts what runs).
func (t *Target) Status(ctx context.Context, service string) ([]deploy.Instance, error) {
	return t.instances(ctx, service, "")
}

// Versions returns the versions of a service that have a Deployment,
// sorted, found by their labels.
func (t *Target) Versions(ctx context.Context, service string) ([]string, error) {
	l, err := t.cs.AppsV1().Deployments(t.cfg.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: LabelManagedBy + "=" + ManagedBy + "," + LabelApp + "=" + service,
	})
	if err != nil {
		return nil, explain(err)
	}
	var out []string
	for _, d := range l.Items {
		out = append(out, d.Labels[LabelVersion])
	}
	sort.Strings(out)
	return out, nil
}

// Remove implements deploy.Target: the version is scaled to zero (its pods
// leave the Service's endpoints and get their termination grace period),
// its pods are waited for up to DrainTimeout, and its Deployment deleted.
func (t *Target) Remove(ctx context.Context, service, version string) error {
	name := Name(service, version)
	deps := t.cs.AppsV1().Deployments(t.cfg.Namespace)
	d, err := deps.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && d.Labels[LabelManagedBy] != ManagedBy) {
		return fmt.Errorf("remove %s@%s: %w", service, version, deploy.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("remove %s@%s: %w", service, version, explain(err))
	}
	if _, err := deps.Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{FieldManager: FieldManager}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove %s@%s: scale to 0: %w", service, version, explain(err))
	}
	drainCtx, cancel := context.WithTimeout(ctx, t.cfg.DrainTimeout)
	for {
		pods, err := t.pods(drainCtx, service, version)
		if err != nil || len(pods) == 0 {
			break
		}
		select {
		case <-drainCtx.Done():
		case <-time.After(t.cfg.PollInterval):
			continue
		}
		break
	}
	cancel()
	if err := deps.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove %s@%s: %w", service, version, explain(err))
	}
	return nil
}

// explain adds what to do to the API errors a user can act on.
func explain(err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%w (give flotilla's service account this permission: see deploy/kube/role.yaml)", err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%w (check the kubeconfig's credentials)", err)
	}
	return err
}
