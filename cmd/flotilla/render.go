package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flotilla-ci/flotilla/deploy"
	"github.com/flotilla-ci/flotilla/deploy/kube"
)

func (a *app) renderCmd() *cobra.Command {
	var env, out string
	var images, public []string
	cmd := &cobra.Command{
		Use:   "render --env ENV -o DIR",
		Short: "Write a Kubernetes environment's objects as plain YAML (for GitOps)",
		Args:  cobra.NoArgs,
		Long: `render writes every object a deploy of the services' current versions to a
kubernetes environment would apply, as plain YAML a team on Argo CD or Flux
commits instead of letting flotilla apply it: per service (DIR/<service>.yaml)
its ServiceAccount, stable Service, Deployment <service>-<version> (labels
app, version, app.kubernetes.io/managed-by: flotilla; the health path as
readiness probe; the image pinned by digest), Istio DestinationRule and
VirtualService (the x-canary and x-flotilla-version lanes, all traffic on
the version) and AuthorizationPolicy (exactly the services that depends_on
it); and DIR/namespace.yaml with the namespace's STRICT PeerAuthentication.
The same sources render the same bytes.

Images: --image SERVICE=REPO@sha256:DIGEST for each service, or
--image SERVICE=REPO@sha256:DIGEST,... ; a service without a digest-pinned
image is an error naming it.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if env == "" || out == "" {
				return usageErr(fmt.Errorf("render: --env and -o are required"))
			}
			g, err := a.loadValidGraph()
			if err != nil {
				return err
			}
			m := g.Manifest()
			e := m.Environment(env)
			switch {
			case e == nil:
				var names []string
				for _, x := range m.Environments {
					names = append(names, x.Name)
				}
				return usageErr(fmt.Errorf("render: %s has no environment %q (it has %s)", m.File, env, strings.Join(names, ", ")))
			case e.Target != "kubernetes":
				return usageErr(fmt.Errorf("render: environment %s deploys to %q, not kubernetes: only kubernetes environments render", env, e.Target))
			case e.Namespace == "":
				return usageErr(fmt.Errorf("render: environment %s names no namespace in %s", env, m.File))
			}
			refs := map[string]string{}
			for _, kv := range images {
				svc, ref, ok := strings.Cut(kv, "=")
				if !ok || m.Service(svc) == nil {
					return usageErr(fmt.Errorf("render: --image %q: want SERVICE=REPO@sha256:DIGEST with a service of %s", kv, m.File))
				}
				refs[svc] = ref
			}
			objs, err := kube.Render(cmd.Context(), m, kube.RenderConfig{
				Namespace: e.Namespace, Public: public,
				Image: func(_ context.Context, s deploy.Spec) (string, error) {
					if r, ok := refs[s.Service]; ok {
						return r, nil
					}
					return "", fmt.Errorf("no image: pass --image %s=REPO@sha256:DIGEST", s.Service)
				},
			})
			if err != nil {
				return usageErr(err)
			}
			names, err := kube.WriteDir(out, objs)
			if err != nil {
				return err
			}
			sort.Strings(names)
			for _, n := range names {
				fmt.Fprintln(a.stdout, filepath.Join(out, n))
			}
			fmt.Fprintf(a.stdout, "%d objects for namespace %s in %d files\n", len(objs), e.Namespace, len(names))
			return nil
		},
	}
	cmd.Flags().StringVar(&env, "env", "", "the kubernetes environment of flotilla.yaml")
	cmd.Flags().StringVarP(&out, "output", "o", "", "the directory to write the YAML into")
	cmd.Flags().StringSliceVar(&images, "image", nil, "SERVICE=REPO@sha256:DIGEST, the image of a service (repeat, or comma-separate)")
	cmd.Flags().StringSliceVar(&public, "public", nil, "services the ingress gateway may call")
	return cmd
}
