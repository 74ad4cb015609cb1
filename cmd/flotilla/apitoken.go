package main

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/flotilla-ci/flotilla/controlplane"
	"github.com/flotilla-ci/flotilla/graph"
)

// apiClient is a client of the control plane at addr with the token the
// CLI finds, in this order: FLOTILLA_TOKEN; the file FLOTILLA_TOKEN_FILE;
// the admin token, else the read-only one, of the data directory
// (FLOTILLA_DATA, else .flotilla beside the manifest), which 'flotilla up'
// made readable by its user only. Without one the API's 401 says where
// the tokens are.
func (a *app) apiClient(addr string) *controlplane.Client {
	c := controlplane.NewClient(addr)
	if tok := strings.TrimSpace(os.Getenv("FLOTILLA_TOKEN")); tok != "" {
		return c.WithToken(tok)
	}
	if f := os.Getenv("FLOTILLA_TOKEN_FILE"); f != "" {
		if tok, err := controlplane.ReadToken(f); err == nil {
			return c.WithToken(tok)
		}
		return c
	}
	data := os.Getenv("FLOTILLA_DATA")
	if data == "" {
		m := a.manifest
		if m == "" {
			if wd, err := os.Getwd(); err == nil {
				m, _ = graph.Find(wd)
			}
		}
		if m == "" {
			return c
		}
		data = filepath.Join(filepath.Dir(m), ".flotilla")
	}
	for _, role := range []string{controlplane.RoleAdmin, controlplane.RoleRead} {
		if tok, err := controlplane.ReadToken(controlplane.TokenFile(data, role)); err == nil {
			return c.WithToken(tok)
		}
	}
	return c
}
