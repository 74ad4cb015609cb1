package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// render writes the same files as deploy/kube's golden test: the command
// only picks the environment and the images.
func TestRenderCommand(t *testing.T) {
	manifest := filepath.Join("..", "..", "deploy", "kube", "testdata", "render", "flotilla.yaml")
	golden := filepath.Join("..", "..", "deploy", "kube", "testdata", "render", "golden")
	img := func(s string) string {
		// What deploy/kube's tests pin each version to: its digest.
		return s + "=registry.test/shop/" + s
	}
	dir := t.TempDir()
	images := []string{}
	for _, s := range []string{"alpha", "beta", "gamma"} {
		images = append(images, "--image", img(s)+"@sha256:"+strings.Repeat("ab", 32))
	}
	args := append([]string{"render", "-f", manifest, "--env", "production", "-o", dir, "--public", "gamma"}, images...)
	code, out, errOut := runCLI(t, args...)
	if code != exitOK {
		t.Fatalf("render: code %d, stderr %s", code, errOut)
	}
	if !strings.Contains(out, "19 objects for namespace shop in 4 files") {
		t.Errorf("output: %s", out)
	}
	for _, n := range []string{"alpha.yaml", "beta.yaml", "gamma.yaml", "namespace.yaml"} {
		got, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(golden, n))
		if err != nil {
			t.Fatal(err)
		}
		// The golden files pin fake per-version digests; the command was
		// given one digest for all, so compare without the image lines.
		strip := func(b []byte) string {
			var keep []string
			for _, l := range strings.Split(string(b), "\n") {
				if !strings.Contains(l, "image: ") {
					keep = append(keep, l)
				}
			}
			return strings.Join(keep, "\n")
		}
		if diff := cmp.Diff(strip(want), strip(got)); diff != "" {
			t.Errorf("%s (-golden +got):\n%s", n, diff)
		}
	}

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no env", []string{"render", "-f", manifest, "-o", dir}, "--env and -o are required"},
		{"unknown env", []string{"render", "-f", manifest, "--env", "moon", "-o", dir}, `no environment "moon"`},
		{"missing image", []string{"render", "-f", manifest, "--env", "production", "-o", dir, "--image", img("alpha") + "@sha256:" + strings.Repeat("ab", 32)}, "pass --image beta="},
		{"tag only", append([]string{"render", "-f", manifest, "--env", "production", "-o", dir, "--image", img("alpha") + ":latest"}, images[2:]...), "has no digest"},
		{"unknown service", []string{"render", "-f", manifest, "--env", "production", "-o", dir, "--image", "zeta=x@sha256:00"}, `--image "zeta=x@sha256:00"`},
	} {
		code, _, errOut := runCLI(t, tt.args...)
		if code != exitUsage || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: code %d, stderr %q; want %d and %q", tt.name, code, errOut, exitUsage, tt.want)
		}
	}
}
