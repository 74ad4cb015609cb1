package testenv

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// importPath is this package's import path.
const importPath = "github.com/flotilla-ci/flotilla/internal/testenv"

var varName = regexp.MustCompile(`^FLOTILLA_TEST_[A-Z0-9_]+$`)

// Readers finds, in the Go source of the module rooted at root, which
// packages read which variable: through this package's constants
// (testenv.Postgres) or by its name in a string literal. It returns each
// variable with the sorted, slash-separated directories of its readers.
// This package does not count, nor do nested modules (tools/) and
// testdata.
func Readers(root string) (map[string][]string, error) {
	consts, err := constants(filepath.Join(root, "internal", "testenv", "testenv.go"))
	if err != nil {
		return nil, err
	}
	seen := map[string]map[string]bool{}
	read := func(v, dir string) {
		if seen[v] == nil {
			seen[v] = map[string]bool{}
		}
		seen[v][dir] = true
	}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			name := d.Name()
			if rel != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules" || name == "vendor" || rel == "internal/testenv") {
				return filepath.SkipDir
			}
			if rel != "." {
				if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
					return filepath.SkipDir // another module
				}
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("readers of the test variables: %w", err)
		}
		dir := path.Dir(rel)
		local := ""
		for _, im := range f.Imports {
			if ip, _ := strconv.Unquote(im.Path.Value); ip == importPath {
				local = "testenv"
				if im.Name != nil {
					local = im.Name.Name
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok && local != "" && x.Name == local {
					if v, ok := consts[n.Sel.Name]; ok {
						read(v, dir)
					}
				}
			case *ast.BasicLit:
				if n.Kind == token.STRING {
					if s, err := strconv.Unquote(n.Value); err == nil && varName.MatchString(s) {
						read(s, dir)
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for v, dirs := range seen {
		for d := range dirs {
			out[v] = append(out[v], d)
		}
		slices.Sort(out[v])
	}
	return out, nil
}

// constants returns this package's exported constants that name a
// variable, by identifier.
func constants(file string) (map[string]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, fmt.Errorf("the test variables: %w", err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				if v, err := strconv.Unquote(lit.Value); err == nil && varName.MatchString(v) && name.IsExported() {
					out[name.Name] = v
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("the test variables: no FLOTILLA_TEST_* constants in " + file)
	}
	return out, nil
}

// ModuleRoot returns the directory of the go.mod above dir.
func ModuleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = up
	}
}
