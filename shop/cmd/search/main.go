// Command search runs search-service. Configuration: see kit.Load, plus
// PRODUCT_URL, USER_URL (the JWKS of user-service, which verifies the
// admin tokens of /admin/reindex) and INDEX_DIR (the Bleve index; default
// data/search-index).
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
	kc, err := kit.Load(search.Service, append(search.Deps, "user"), os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "search-service:", err)
		os.Exit(2)
	}
	dir := os.Getenv("INDEX_DIR")
	if dir == "" {
		dir = "data/search-index"
	}
	if os.Getenv("ADMIN_TOKEN") != "" {
		fmt.Fprintln(os.Stderr, "search-service: ADMIN_TOKEN is no longer read: /admin/reindex takes an admin's token from user-service, like every admin route; unset it")
		os.Exit(2)
	}
	m := &search.Main{Config: search.Config{Kit: kc, Users: kc.Deps["user"],
		Open:  func() (search.Index, error) { return bleveindex.Open(dir) },
		Reset: func() error { return bleveindex.Reset(dir) }}}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "search-service:", err)
		os.Exit(1)
	}
}
