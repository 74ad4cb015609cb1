package affected

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/graph"
)

const manifest = `shared: [go.mod, "kit/**"]
services:
  users:
    paths: [svc/users, cmd/users]
    publishes: [UserRegistered]
  orders:
    path: svc/orders
    depends_on: [users, payments]
    publishes: [OrderPlaced]
    subscribes: [PaymentDone]
  payments:
    path: svc/payments
    depends_on: [users]
    publishes: [PaymentDone]
  mailer:
    path: svc/mailer
    subscribes: [UserRegistered, OrderPlaced]
  reports:
    path: svc/reports
`

// repo is a real git repository in a temporary folder.
type repo struct {
	t   *testing.T
	dir string
}

func newRepo(t *testing.T) *repo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is required: ", err)
	}
	r := &repo{t: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", "main")
	r.git("config", "user.email", "dev@example.com")
	r.git("config", "user.name", "dev")
	r.git("config", "commit.gpgsign", "false")
	return r
}

func (r *repo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *repo) write(p, body string) {
	r.t.Helper()
	full := filepath.Join(r.dir, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *repo) commit(msg string) string {
	r.t.Helper()
	r.git("add", "-A")
	r.git("commit", "-q", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

// shopRepo is a repository with the manifest and one file per service.
func shopRepo(t *testing.T) (*repo, *graph.Graph) {
	r := newRepo(t)
	r.write("flotilla.yaml", manifest)
	r.write("go.mod", "module example.com/shop\n")
	r.write("kit/server/server.go", "package server\n")
	r.write("README.md", "# shop\n")
	for _, s := range []string{"users", "orders", "payments", "mailer", "reports"} {
		r.write("svc/"+s+"/"+s+".go", "package "+s+"\n")
	}
	r.write("cmd/users/main.go", "package main\n")
	r.write("svc/orders/schemas/OrderPlaced.avsc", `{"type": "record", "name": "shop.orders.OrderPlaced", "fields": [{"name": "id", "type": "string"}]}`)
	r.commit("initial")
	m, _, err := graph.Load(filepath.Join(r.dir, "flotilla.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	g := graph.New(m)
	if p := g.Validate(); len(p) > 0 {
		t.Fatal(p)
	}
	return r, g
}

// summary is what the tests compare: the lists, without the files.
type summary struct {
	Changed, Deploy, Verify, Shared, Unowned []string
	Waves                                    [][]string
	Schemas                                  []Schema
}

func sum(r *Result) summary {
	return summary{r.Changed, r.Deploy, r.Verify, r.Shared, r.Unowned, r.Waves, r.Schemas}
}

func TestAffected(t *testing.T) {
	none := []string{}
	tests := []struct {
		name   string
		change func(r *repo)
		commit bool // commit the change and compare base..HEAD
		want   summary
		files  []File // checked when not nil
	}{
		{
			name:   "a modified file in a service",
			change: func(r *repo) { r.write("svc/payments/payments.go", "package payments // v2\n") },
			commit: true,
			want: summary{
				Changed: []string{"payments"}, Deploy: []string{"payments"}, Waves: [][]string{{"payments"}},
				// its consumer (orders, sync and by PaymentDone) and its provider (users)
				Verify: []string{"orders", "payments", "users"}, Shared: none, Unowned: none, Schemas: []Schema{},
			},
			files: []File{{Change: Change{Status: "M", Path: "svc/payments/payments.go"}, Service: "payments"}},
		},
		{
			name: "a rename across services counts both paths",
			change: func(r *repo) {
				r.git("mv", "svc/reports/reports.go", "svc/mailer/reports.go")
			},
			commit: true,
			want: summary{
				Changed: []string{"mailer", "reports"}, Deploy: []string{"mailer", "reports"}, Waves: [][]string{{"mailer", "reports"}},
				Verify: []string{"mailer", "orders", "reports", "users"}, Shared: none, Unowned: none, Schemas: []Schema{},
			},
			files: []File{{Change: Change{Status: "R", Path: "svc/mailer/reports.go", OldPath: "svc/reports/reports.go"}, Service: "mailer", OldService: "reports"}},
		},
		{
			name:   "a deletion",
			change: func(r *repo) { r.git("rm", "-q", "cmd/users/main.go") },
			commit: true,
			want: summary{
				Changed: []string{"users"}, Deploy: []string{"users"}, Waves: [][]string{{"users"}},
				Verify: []string{"mailer", "orders", "payments", "users"}, Shared: none, Unowned: none, Schemas: []Schema{},
			},
			files: []File{{Change: Change{Status: "D", Path: "cmd/users/main.go"}, Service: "users"}},
		},
		{
			name:   "a shared file affects every service",
			change: func(r *repo) { r.write("kit/server/server.go", "package server // v2\n") },
			commit: true,
			want: summary{
				Changed: []string{"mailer", "orders", "payments", "reports", "users"},
				Deploy:  []string{"mailer", "reports", "users", "payments", "orders"},
				Waves:   [][]string{{"mailer", "reports", "users"}, {"payments"}, {"orders"}},
				Verify:  []string{"mailer", "orders", "payments", "reports", "users"},
				Shared:  []string{"kit/server/server.go"}, Unowned: none, Schemas: []Schema{},
			},
			files: []File{{Change: Change{Status: "M", Path: "kit/server/server.go"}, Shared: "kit/**"}},
		},
		{
			name: "a schema change marks the event's subscribers",
			change: func(r *repo) {
				r.write("svc/orders/schemas/OrderPlaced.avsc", `{"type": "record", "name": "shop.orders.OrderPlaced", "fields": [{"name": "id", "type": "string"}, {"name": "total", "type": "long", "default": 0}]}`)
			},
			commit: true,
			want: summary{
				Changed: []string{"orders"}, Deploy: []string{"orders"}, Waves: [][]string{{"orders"}},
				Verify: []string{"mailer", "orders", "payments", "users"}, Shared: none, Unowned: none,
				Schemas: []Schema{{Path: "svc/orders/schemas/OrderPlaced.avsc", Event: "OrderPlaced", Publishers: []string{"orders"}, Subscribers: []string{"mailer"}}},
			},
		},
		{
			name: "a renamed record still pulls in the subscribers of the event it was",
			change: func(r *repo) {
				r.write("svc/orders/schemas/OrderPlaced.avsc", `{"type": "record", "name": "shop.orders.OrderSubmitted", "fields": [{"name": "id", "type": "string"}]}`)
			},
			commit: true,
			want: summary{
				Changed: []string{"orders"}, Deploy: []string{"orders"}, Waves: [][]string{{"orders"}},
				Verify: []string{"mailer", "orders", "payments", "users"}, Shared: none, Unowned: none,
				Schemas: []Schema{
					{Path: "svc/orders/schemas/OrderPlaced.avsc", Event: "OrderSubmitted", Publishers: []string{}, Subscribers: []string{}},
					{Path: "svc/orders/schemas/OrderPlaced.avsc", Event: "OrderPlaced", Publishers: []string{"orders"}, Subscribers: []string{"mailer"}},
				},
			},
		},
		{
			name: "the event comes from the record name, not the file name",
			change: func(r *repo) {
				r.write("svc/users/schemas/registered.avsc", `{"type": "record", "name": "UserRegistered", "namespace": "shop.users", "fields": []}`)
			},
			want: summary{
				Changed: []string{"users"}, Deploy: []string{"users"}, Waves: [][]string{{"users"}},
				Verify: []string{"mailer", "orders", "payments", "users"}, Shared: none, Unowned: none,
				Schemas: []Schema{{Path: "svc/users/schemas/registered.avsc", Event: "UserRegistered", Publishers: []string{"users"}, Subscribers: []string{"mailer"}}},
			},
			files: []File{{Change: Change{Status: "?", Path: "svc/users/schemas/registered.avsc"}, Service: "users"}},
		},
		{
			name:   "an unowned file",
			change: func(r *repo) { r.write("README.md", "# the shop\n") },
			commit: true,
			want:   summary{Changed: none, Deploy: none, Waves: [][]string{}, Verify: none, Shared: none, Unowned: []string{"README.md"}, Schemas: []Schema{}},
		},
		{
			name: "uncommitted, staged and untracked files in the working tree",
			change: func(r *repo) {
				r.write("svc/reports/reports.go", "package reports // edited\n")
				r.write("svc/mailer/new.go", "package mailer\n")
				r.write("docs/notes.txt", "x\n")
				r.write("svc/users/users.go", "package users // staged\n")
				r.git("add", "svc/users/users.go")
			},
			want: summary{
				Changed: []string{"mailer", "reports", "users"}, Deploy: []string{"mailer", "reports", "users"},
				Waves: [][]string{{"mailer", "reports", "users"}}, Verify: []string{"mailer", "orders", "payments", "reports", "users"},
				Shared: none, Unowned: []string{"docs/notes.txt"}, Schemas: []Schema{},
			},
		},
		{
			name: "ignored files are not changes",
			change: func(r *repo) {
				r.write(".gitignore", "*.log\n")
				r.git("add", ".gitignore")
				r.git("commit", "-q", "-m", "ignore logs")
				r.write("svc/orders/debug.log", "noise\n")
			},
			want: summary{Changed: none, Deploy: none, Waves: [][]string{}, Verify: none, Shared: none, Unowned: []string{".gitignore"}, Schemas: []Schema{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, g := shopRepo(t)
			base := r.git("rev-parse", "HEAD")
			tt.change(r)
			opts := Options{Base: base}
			if tt.commit {
				r.commit(tt.name)
				opts.Head = "HEAD"
			}
			res, err := Run(context.Background(), g, opts)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, sum(res)); d != "" {
				t.Errorf("result (-want +got):\n%s", d)
			}
			if tt.files != nil {
				if d := cmp.Diff(tt.files, res.Files); d != "" {
					t.Errorf("files (-want +got):\n%s", d)
				}
			}
		})
	}
}

func TestEdges(t *testing.T) {
	r, g := shopRepo(t)
	base := r.git("rev-parse", "HEAD")
	r.write("svc/payments/payments.go", "package payments // v2\n")
	res, err := Run(context.Background(), g, Options{Base: base})
	if err != nil {
		t.Fatal(err)
	}
	want := []Edge{
		{Consumer: "orders", Provider: "payments", Kind: "http"},
		{Consumer: "payments", Provider: "users", Kind: "http"},
		{Consumer: "orders", Provider: "payments", Kind: "event", Event: "PaymentDone"},
	}
	if d := cmp.Diff(want, res.Edges); d != "" {
		t.Errorf("edges (-want +got):\n%s", d)
	}
}

func TestBadRefs(t *testing.T) {
	r, g := shopRepo(t)
	for _, ref := range []string{"no-such-branch", "--output=/tmp/x", "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef"} {
		_, err := Run(context.Background(), g, Options{Base: ref})
		if !errors.Is(err, ErrBadRef) || !strings.Contains(err.Error(), ref) {
			t.Errorf("base %q: %v", ref, err)
		}
	}
	_, err := Run(context.Background(), g, Options{Base: "HEAD", Head: "nope"})
	if !errors.Is(err, ErrBadRef) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("head nope: %v", err)
	}
	if _, err := Run(context.Background(), g, Options{}); err == nil || !strings.Contains(err.Error(), "--base") {
		t.Errorf("no base: %v", err)
	}
	_ = r
	m := &graph.Manifest{Root: t.TempDir()}
	if _, err := Run(context.Background(), graph.New(m), Options{Base: "HEAD"}); err == nil || !strings.Contains(err.Error(), "not inside a git repository") {
		t.Errorf("not a repo: %v", err)
	}
}

// TestManifestInSubfolder: paths are relative to the manifest, and changes
// outside its folder are not this manifest's business.
func TestManifestInSubfolder(t *testing.T) {
	r := newRepo(t)
	r.write("platform/flotilla.yaml", "services:\n  api: {path: api}\n  web: {path: web, depends_on: [api]}\n")
	r.write("platform/api/a.go", "package api\n")
	r.write("platform/web/w.go", "package web\n")
	r.write("other/x.txt", "x\n")
	base := r.commit("initial")
	r.write("platform/api/a.go", "package api // v2\n")
	r.write("other/x.txt", "y\n")
	r.commit("change")
	m, _, err := graph.Load(filepath.Join(r.dir, "platform", "flotilla.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), graph.New(m), Options{Base: base, Head: "HEAD"})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(summary{Changed: []string{"api"}, Deploy: []string{"api"}, Waves: [][]string{{"api"}}, Verify: []string{"api", "web"}, Shared: []string{}, Unowned: []string{}, Schemas: []Schema{}}, sum(res)); d != "" {
		t.Errorf("result (-want +got):\n%s", d)
	}
}

// TestMergeBase: with --merge-base a branch's change excludes what landed
// on the base branch since it forked.
func TestMergeBase(t *testing.T) {
	r, g := shopRepo(t)
	r.git("checkout", "-q", "-b", "feature")
	r.write("svc/mailer/mailer.go", "package mailer // feature\n")
	r.commit("feature work")
	r.git("checkout", "-q", "main")
	r.write("svc/reports/reports.go", "package reports // main moved on\n")
	r.commit("main work")
	plain, err := Run(context.Background(), g, Options{Base: "main", Head: "feature"})
	if err != nil {
		t.Fatal(err)
	}
	mb, err := Run(context.Background(), g, Options{Base: "main", Head: "feature", MergeBase: true})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"mailer", "reports"}, plain.Changed); d != "" {
		t.Errorf("two-point diff (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"mailer"}, mb.Changed); d != "" {
		t.Errorf("merge-base diff (-want +got):\n%s", d)
	}
}

func TestParseNameStatus(t *testing.T) {
	got, err := parseNameStatus([]byte("M\x00a b.go\x00R087\x00old\x00new\x00D\x00gone\x00C100\x00x\x00y\x00"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{{Status: "M", Path: "a b.go"}, {Status: "R", OldPath: "old", Path: "new"}, {Status: "D", Path: "gone"}, {Status: "C", OldPath: "x", Path: "y"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if _, err := parseNameStatus([]byte("R100\x00old\x00")); err == nil {
		t.Error("truncated rename: no error")
	}
}

func TestParseNameStatusRefuses(t *testing.T) {
	for _, in := range []string{
		"R100\x00old\x00",          // a rename cut short
		"M\x00",                    // no path
		"M\x00\x00",                // an empty path
		"M\x00a\x00\x00M\x00b\x00", // an empty status field would shift every path after it
		"Q\x00a\x00",               // not a status
		"a.go\x00M\x00",            // a path where the status belongs
		"A100\x00a\x00",            // a score on an addition
		"R1x\x00a\x00b\x00",        // not a score
	} {
		if got, err := parseNameStatus([]byte(in)); err == nil {
			t.Errorf("parseNameStatus(%q) = %v, want an error", in, got)
		}
	}
}

// FuzzParseNameStatus: whatever git prints, parsing never panics, and what
// it accepts is well formed and reads the same when written back the way
// git writes it.
func FuzzParseNameStatus(f *testing.F) {
	for _, seed := range []string{
		"M\x00a b.go\x00R087\x00old\x00new\x00D\x00gone\x00C100\x00x\x00y\x00",
		"A\x00svc/users/new.go\x00T\x00link\x00M092\x00rewritten\x00",
		"R100\x00old\x00",
		"M\x00caf\xc3\xa9/\xe2\x80\x8b.go\x00",
		"",
		"\x00",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		changes, err := parseNameStatus(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "git diff: record ") {
				t.Fatalf("error %q does not name the record", err)
			}
			return
		}
		var out []byte
		for _, c := range changes {
			if !validStatus(c.Status) || len(c.Status) != 1 || c.Path == "" || strings.ContainsRune(c.Path, 0) {
				t.Fatalf("accepted a malformed change %+v from %q", c, data)
			}
			if (c.Status == "R" || c.Status == "C") != (c.OldPath != "") {
				t.Fatalf("change %+v: an old path belongs to renames and copies only", c)
			}
			out = append(out, c.Status...)
			out = append(out, 0)
			if c.OldPath != "" {
				out = append(out, c.OldPath...)
				out = append(out, 0)
			}
			out = append(out, c.Path...)
			out = append(out, 0)
		}
		again, err := parseNameStatus(out)
		if err != nil {
			t.Fatalf("written back as %q, it does not parse: %v", out, err)
		}
		if d := cmp.Diff(changes, again); d != "" {
			t.Fatalf("written back, it reads differently (-first +again):\n%s", d)
		}
	})
}

// TestManifestEdits: a service whose manifest entry is added or edited is
// changed (its settings are part of what is deployed); a removed one is
// reported; the manifest itself is not an unowned file.
func TestManifestEdits(t *testing.T) {
	for _, commit := range []bool{true, false} {
		t.Run(map[bool]string{true: "committed", false: "working tree"}[commit], func(t *testing.T) {
			r, _ := shopRepo(t)
			base := r.git("rev-parse", "HEAD")
			edited := strings.Replace(manifest, "    path: svc/payments\n", "    path: svc/payments\n    health: /ready\n", 1)
			edited = strings.Replace(edited, "  reports:\n    path: svc/reports\n", "  ledger:\n    path: svc/ledger\n    depends_on: [payments]\n", 1)
			r.write("flotilla.yaml", edited)
			opts := Options{Base: base}
			if commit {
				r.commit("manifest")
				opts.Head = "HEAD"
			}
			m, _, err := graph.Load(filepath.Join(r.dir, "flotilla.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			res, err := Run(context.Background(), graph.New(m), opts)
			if err != nil {
				t.Fatal(err)
			}
			want := []ManifestChange{{"ledger", "added"}, {"payments", "changed"}, {"reports", "removed"}}
			if d := cmp.Diff(want, res.Manifest); d != "" {
				t.Errorf("manifest changes (-want +got):\n%s", d)
			}
			if d := cmp.Diff([]string{"ledger", "payments"}, res.Changed); d != "" {
				t.Errorf("changed (-want +got):\n%s", d)
			}
			if d := cmp.Diff([][]string{{"payments"}, {"ledger"}}, res.Waves); d != "" {
				t.Errorf("waves (-want +got):\n%s", d)
			}
			if len(res.Unowned) != 0 {
				t.Errorf("unowned: %v", res.Unowned)
			}
		})
	}
	t.Run("no manifest at the base", func(t *testing.T) {
		r := newRepo(t)
		r.write("svc/a/a.go", "package a\n")
		base := r.commit("before flotilla")
		r.write("flotilla.yaml", "services:\n  a: {path: svc/a}\n  b: {path: svc/b}\n")
		r.commit("flotilla")
		m, _, err := graph.Load(filepath.Join(r.dir, "flotilla.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		res, err := Run(context.Background(), graph.New(m), Options{Base: base, Head: "HEAD"})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]string{"a", "b"}, res.Changed); d != "" {
			t.Errorf("changed (-want +got):\n%s", d)
		}
	})
}

// A deleted schema file is named by the record it held at the base, not
// by its file name: its subscribers are still pulled in.
func TestDeletedSchemaNamedByItsOldRecord(t *testing.T) {
	_, g := shopRepo(t)
	old := map[string]string{"svc/orders/schemas/placed.avsc": `{"type": "record", "name": "shop.orders.OrderPlaced", "fields": []}`}
	readOld := func(p string) ([]byte, error) {
		if b, ok := old[p]; ok {
			return []byte(b), nil
		}
		return nil, os.ErrNotExist
	}
	r, err := ComputeWithBase(g, []Change{{Status: "D", Path: "svc/orders/schemas/placed.avsc"}}, nil, readOld)
	if err != nil {
		t.Fatal(err)
	}
	want := []Schema{{Path: "svc/orders/schemas/placed.avsc", Event: "OrderPlaced", Publishers: []string{"orders"}, Subscribers: []string{"mailer"}}}
	if diff := cmp.Diff(want, r.Schemas); diff != "" {
		t.Errorf("schemas (-want +got):\n%s", diff)
	}
	if !slices.Contains(r.Verify, "mailer") {
		t.Errorf("verify %v lacks mailer", r.Verify)
	}
	// Without the base, only the file name is known.
	r, err = Compute(g, []Change{{Status: "D", Path: "svc/orders/schemas/placed.avsc"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Schemas) != 1 || r.Schemas[0].Event != "placed" {
		t.Errorf("schemas without the base: %+v", r.Schemas)
	}
}
