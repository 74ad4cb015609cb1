package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// shopGitRepo makes a real repository holding the shop's manifest and a
// file in each service folder, on branch main, and a branch feature that
// changes a service, an event schema and a file nobody owns.
func shopGitRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	gitIn := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=dev", "GIT_AUTHOR_EMAIL=dev@example.com", "GIT_COMMITTER_NAME=dev", "GIT_COMMITTER_EMAIL=dev@example.com")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	put := func(p, body string) {
		t.Helper()
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	manifest, err := os.ReadFile(shopManifest)
	if err != nil {
		t.Fatal(err)
	}
	gitIn("init", "-q", "-b", "main")
	put("flotilla.yaml", string(manifest))
	put("go.mod", "module example.com/shop\n")
	put("README.md", "# shop\n")
	for _, s := range []string{"user", "product", "inventory", "cart", "order", "payment", "shipping", "notification", "search", "analytics"} {
		put("shop/"+s+"/"+s+".go", "package "+s+"\n")
		put("shop/cmd/"+s+"/main.go", "package main\n")
	}
	put("shop/order/schemas/OrderCancelled.avsc", `{"type": "record", "name": "OrderCancelled", "namespace": "shop.order", "fields": [{"name": "order_id", "type": "string"}]}`)
	gitIn("add", "-A")
	gitIn("commit", "-q", "-m", "initial")
	gitIn("checkout", "-q", "-b", "feature")
	put("shop/cart/cart.go", "package cart // coupons\n")
	put("shop/order/schemas/OrderCancelled.avsc", `{"type": "record", "name": "OrderCancelled", "namespace": "shop.order", "fields": [{"name": "order_id", "type": "string"}, {"name": "reason", "type": "string", "default": ""}]}`)
	put("docs/coupons.md", "# coupons\n")
	gitIn("add", "-A")
	gitIn("commit", "-q", "-m", "coupons")
	return dir
}

func TestAffectedGolden(t *testing.T) {
	dir := shopGitRepo(t)
	manifest := filepath.Join(dir, "flotilla.yaml")
	for _, format := range []string{"text", "json", "github"} {
		t.Run(format, func(t *testing.T) {
			code, out, errOut := runCLI(t, "affected", "-f", manifest, "--base", "main", "--head", "feature", "-o", format)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			golden(t, filepath.Join("affected", format+".golden"), out)
		})
	}
}

func TestAffectedWorkingTree(t *testing.T) {
	dir := shopGitRepo(t)
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join(dir, "shop")) // the manifest is found upwards
	code, out, errOut := runCLI(t, "affected", "--base", "feature", "-o", "github")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// An untracked shared file redeploys everything, wave by wave.
	for _, want := range []string{
		`changed=["analytics-service","cart-service","inventory-service","notification-service","order-service","payment-service","product-service","search-service","shipping-service","user-service"]`,
		"wave_count=5\n",
		`wave_1=["analytics-service","user-service"]`,
		`wave_5=["shipping-service"]`,
		"any=true\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
}

func TestAffectedBadInput(t *testing.T) {
	dir := shopGitRepo(t)
	manifest := filepath.Join(dir, "flotilla.yaml")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing base ref", []string{"affected", "-f", manifest, "--base", "origin/nope"}, `unknown git ref "origin/nope": no such branch, tag or commit`},
		{"missing head ref", []string{"affected", "-f", manifest, "--base", "main", "--head", "v9"}, `unknown git ref "v9"`},
		{"no base", []string{"affected", "-f", manifest}, "--base REF is required"},
		{"not a repository", []string{"affected", "-f", shopCopy(t), "--base", "main"}, "is not inside a git repository"},
		{"bad format", []string{"affected", "-f", manifest, "--base", "main", "-o", "xml"}, `unknown output format "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2\nstdout: %s", code, out)
			}
			if !strings.Contains(errOut, tt.want) || strings.Count(errOut, "\n") != 1 {
				t.Errorf("stderr is not one line with %q:\n%s", tt.want, errOut)
			}
		})
	}
}

// shopCopy puts the shop's manifest in a folder that is not a repository.
func shopCopy(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(shopManifest)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "flotilla.yaml")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAffectedManifestEdit: editing a service's entry in flotilla.yaml
// redeploys that service.
func TestAffectedManifestEdit(t *testing.T) {
	dir := shopGitRepo(t)
	p := filepath.Join(dir, "flotilla.yaml")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(data), "  search-service:\n    paths: [shop/search, shop/cmd/search]\n    health: /ready\n", "  search-service:\n    paths: [shop/search, shop/cmd/search]\n    health: /healthz\n", 1)
	if edited == string(data) {
		t.Fatal("the test's edit did not apply to the shop's manifest")
	}
	if err := os.WriteFile(p, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "affected", "-f", p, "--base", "feature")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"changed: search-service\n", "manifest: search-service changed\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "unowned") {
		t.Errorf("the manifest is reported unowned:\n%s", out)
	}
}
