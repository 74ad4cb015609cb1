package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
)

// ErrNoDatabase is wrapped when a required service's database is not in
// the directory.
var ErrNoDatabase = errors.New("no database")

// RunDir audits the shop whose services keep their SQLite databases in
// dir as <service>.db (the local target's data directory: the data
// directory of 'flotilla up' + local/data). Shipping and notification are
// optional.
func RunDir(ctx context.Context, dir string, cfg Config) (*Report, error) {
	var dbs DBs
	var all []*sqldb.DB
	defer func() {
		for _, db := range all {
			_ = db.Close()
		}
	}()
	for _, s := range []struct {
		name     string
		into     **sqldb.DB
		required bool
	}{{"order-service", &dbs.Order, true}, {"inventory-service", &dbs.Inventory, true}, {"payment-service", &dbs.Payment, true},
		{"shipping-service", &dbs.Shipping, false}, {"notification-service", &dbs.Notification, false}} {
		path := filepath.Join(dir, s.name+".db")
		if _, err := os.Stat(path); err != nil {
			if s.required {
				return nil, fmt.Errorf("audit: %s's database %s: %w: %w", s.name, path, ErrNoDatabase, err)
			}
			continue
		}
		db, err := sqldb.Open(ctx, path)
		if err != nil {
			return nil, fmt.Errorf("audit: %s: %w", s.name, err)
		}
		*s.into = db
		all = append(all, db)
	}
	return Run(ctx, dbs, cfg)
}
