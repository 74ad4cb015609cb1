// Command search runs search-service. Configuration: see kit.Load, plus
// PRODUCT_URL, INDEX_DIR (the Bleve index; default data/search-index) and
// ADMIN_TOKEN (enables POST /admin/reindex).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/flotilla-ci/flotilla/shop/kit"
	"github.com/flotilla-ci/flotilla/shop/search"
	"github.com/flotilla-ci/flotilla/shop/search/bleveindex"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kc, err := kit.Load(search.Service, search.Deps, os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "search-service:", err)
		os.Exit(2)
	}
	dir := os.Getenv("INDEX_DIR")
	if dir == "" {
		dir = "data/search-index"
	}
	m := &search.Main{Config: search.Config{Kit: kc, AdminToken: os.Getenv("ADMIN_TOKEN"),
		Open:  func() (search.Index, error) { return bleveindex.Open(dir) },
		Reset: func() error { return bleveindex.Reset(dir) }}}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "search-service:", err)
		os.Exit(1)
	}
}
