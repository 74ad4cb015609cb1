package search

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/flotilla-ci/flotilla/internal/sqldb"
)

// listed is one product as product-service's list API returns it.
type listed struct {
	SKU         string    `json:"sku"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Category    string    `json:"category"`
	Price       int64     `json:"price"`
	Currency    string    `json:"currency"`
	Active      bool      `json:"active"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

const (
	listPage  = 100 // product-service's largest page
	indexPage = 500
)

// rebuild restores the index: first the catalog, read page by page from
// product-service into the table (each field group kept only where the
// listing is as new as what events already wrote, and products the
// listing no longer has marked inactive), then every row of the table
// written to the index, one page at a time under the write lock so an
// event applied meanwhile is never overwritten by an older copy.
// Popularity comes from the table: product-service does not know it.
func (m *Main) rebuild(ctx context.Context) (err error) {
	start := time.Now()
	log := m.app.Log
	log.InfoContext(ctx, "search index rebuild", "reason", m.Status().Reason)
	defer func() {
		m.finish(err)
		if err != nil {
			log.WarnContext(ctx, "search index rebuild failed", "err", err, "duration_ms", time.Since(start).Milliseconds())
		}
	}()
	gen := start.UnixNano()
	n := 0
	for offset := 0; ; {
		var page struct {
			Items      []listed `json:"items"`
			NextOffset *int     `json:"nextOffset"`
		}
		path := "/products?" + url.Values{"limit": {strconv.Itoa(listPage)}, "offset": {strconv.Itoa(offset)}, "sort": {"sku"}}.Encode()
		if err := m.products.Do(ctx, "GET", path, "", nil, nil, &page); err != nil {
			return fmt.Errorf("list products: %w", err)
		}
		err := m.app.DB.InTx(ctx, func(tx *sqldb.Tx) error {
			for _, p := range page.Items {
				ms := p.UpdatedAt.UnixMilli()
				if err := upsert(ctx, tx, row{SKU: p.SKU, Name: p.Name, Description: p.Description, Category: p.Category, Active: p.Active,
					DetailsMS: ms, Price: p.Price, Currency: p.Currency, PriceMS: ms}, gen); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		n += len(page.Items)
		m.progress(n, 0)
		if page.NextOffset == nil || len(page.Items) == 0 {
			break
		}
		offset = *page.NextOffset
	}
	// Products the listing did not have, and no event has touched since it
	// began, were withdrawn.
	if _, err := m.app.DB.ExecContext(ctx, `UPDATE search_products SET active = $1 WHERE active = $2 AND listed <> $3 AND details_ms >= 0 AND details_ms < $4`,
		false, true, gen, start.UnixMilli()); err != nil {
		return fmt.Errorf("mark withdrawn products: %w", err)
	}
	indexed := 0
	for after := ""; ; {
		k, last, err := m.indexPage(ctx, after)
		if err != nil {
			return err
		}
		indexed += k
		m.progress(n, indexed)
		if last == "" {
			break
		}
		after = last
	}
	// A bulk load leaves many segments; merging them makes every later
	// query cheaper. Engines without segments need not implement it.
	if c, ok := m.idx.(interface{ Compact(context.Context) error }); ok {
		if err := c.Compact(ctx); err != nil {
			log.WarnContext(ctx, "search index compaction failed; queries stay correct, a little slower", "err", err)
		}
	}
	log.InfoContext(ctx, "search index rebuilt", "listed", n, "indexed", indexed, "duration_ms", time.Since(start).Milliseconds())
	return nil
}

// indexPage writes the rows after the SKU after; it returns how many it
// put and the last SKU ("" at the end).
func (m *Main) indexPage(ctx context.Context, after string) (int, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rows, err := m.app.DB.QueryContext(ctx, `SELECT `+rowCols+` FROM search_products WHERE sku > $1 ORDER BY sku LIMIT $2`, after, indexPage)
	if err != nil {
		return 0, "", fmt.Errorf("read products: %w", err)
	}
	var put []Doc
	var del []string
	last := ""
	count := 0
	for rows.Next() {
		r, err := scanRow(rows)
		if err != nil {
			_ = rows.Close()
			return 0, "", err
		}
		count++
		last = r.SKU
		if r.indexable() {
			put = append(put, r.doc())
		} else {
			del = append(del, r.SKU)
		}
	}
	if err := rows.Close(); err != nil {
		return 0, "", err
	}
	if err := rows.Err(); err != nil {
		return 0, "", err
	}
	if err := m.idx.Put(ctx, put...); err != nil {
		return 0, "", err
	}
	if err := m.idx.Delete(ctx, del...); err != nil {
		return 0, "", err
	}
	if count < indexPage {
		last = ""
	}
	return len(put), last, nil
}
