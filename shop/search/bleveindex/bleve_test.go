package bleveindex_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/shop/search"
	"github.com/flotilla-ci/flotilla/shop/search/bleveindex"
)

var catalog = []search.Doc{
	{SKU: "SKU-1", Name: "Red garden hose", Description: "Twenty metres of flexible hose", Category: "garden", Price: 2499, Currency: "EUR", Popularity: 5},
	{SKU: "SKU-2", Name: "Garden gloves", Description: "Leather gloves for roses", Category: "garden", Price: 899, Currency: "EUR", Popularity: 40},
	{SKU: "SKU-3", Name: "Chef knife", Description: "Steel knife for the kitchen garden harvest", Category: "kitchen", Price: 7900, Currency: "EUR", Popularity: 12},
	{SKU: "SKU-4", Name: "Cookbook", Description: "Recipes from the garden", Category: "books", Price: 1999, Currency: "EUR"},
	{SKU: "SKU-5", Name: "Hose reel", Description: "Keeps a hose tidy", Category: "garden", Price: 12900, Currency: "EUR", Popularity: 1},
}

func open(t *testing.T, dir string) *bleveindex.Index {
	t.Helper()
	x, err := bleveindex.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func skus(r search.Result) []string {
	out := []string{}
	for _, h := range r.Hits {
		out = append(out, h.SKU)
	}
	return out
}

func i64(v int64) *int64 { return &v }

func TestSearch(t *testing.T) {
	ctx := context.Background()
	x := open(t, filepath.Join(t.TempDir(), "idx"))
	defer func() { _ = x.Close() }()
	if err := x.Put(ctx, catalog...); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		q    search.Query
		want []string
	}{
		{"text ranks name matches first", search.Query{Text: "hose", Sort: search.SortRelevance, Limit: 10}, []string{"SKU-5", "SKU-1"}},
		{"stemmed text, category included", search.Query{Text: "gardens", Sort: search.SortPrice, Limit: 10}, []string{"SKU-2", "SKU-4", "SKU-1", "SKU-3", "SKU-5"}},
		{"category filter", search.Query{Categories: []string{"garden"}, Sort: search.SortPrice, Limit: 10}, []string{"SKU-2", "SKU-1", "SKU-5"}},
		{"two categories", search.Query{Categories: []string{"books", "kitchen"}, Sort: search.SortPriceDesc, Limit: 10}, []string{"SKU-3", "SKU-4"}},
		{"price range inclusive", search.Query{MinPrice: i64(899), MaxPrice: i64(2499), Sort: search.SortPrice, Limit: 10}, []string{"SKU-2", "SKU-4", "SKU-1"}},
		{"popularity", search.Query{Sort: search.SortPopularity, Limit: 3}, []string{"SKU-2", "SKU-3", "SKU-1"}},
		{"text and filters", search.Query{Text: "garden", Categories: []string{"garden"}, MaxPrice: i64(3000), Sort: search.SortPrice, Limit: 10}, []string{"SKU-2", "SKU-1"}},
		{"paging", search.Query{Sort: search.SortPrice, Limit: 2, Offset: 2}, []string{"SKU-1", "SKU-3"}},
		{"no match", search.Query{Text: "trampoline", Limit: 10}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := x.Search(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, skus(r)); diff != "" {
				t.Errorf("hits (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("hit fields", func(t *testing.T) {
		r, err := x.Search(ctx, search.Query{Text: "knife", Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		got := r.Hits[0].Doc
		want := catalog[2]
		want.Description = "" // not stored
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("hit (-want +got):\n%s", diff)
		}
	})
	t.Run("facets count every match", func(t *testing.T) {
		r, err := x.Search(ctx, search.Query{Text: "garden", Limit: 1, Facets: true})
		if err != nil {
			t.Fatal(err)
		}
		if r.Total != 5 {
			t.Errorf("total = %d, want 5", r.Total)
		}
		want := []search.FacetCount{{Value: "garden", Count: 3}, {Value: "books", Count: 1}, {Value: "kitchen", Count: 1}}
		if diff := cmp.Diff(want, r.Facets.Category); diff != "" {
			t.Errorf("category facet (-want +got):\n%s", diff)
		}
		var bands []int
		for _, b := range r.Facets.Price {
			bands = append(bands, b.Count)
		}
		if diff := cmp.Diff([]int{1, 2, 0, 1, 1}, bands); diff != "" {
			t.Errorf("price bands (-want +got):\n%s", diff)
		}
	})
}

func TestPutReplacesDeleteRemovesAndReopenKeeps(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "idx")
	x := open(t, dir)
	if err := x.Put(ctx, catalog...); err != nil {
		t.Fatal(err)
	}
	changed := catalog[0]
	changed.Name, changed.Price = "Blue garden hose", 2999
	if err := x.Put(ctx, changed); err != nil {
		t.Fatal(err)
	}
	if err := x.Delete(ctx, "SKU-5", "SKU-404"); err != nil {
		t.Fatal(err)
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	x = open(t, dir)
	defer func() { _ = x.Close() }()
	if n, err := x.Count(ctx); err != nil || n != 4 {
		t.Fatalf("count after reopen = %d, %v; want 4", n, err)
	}
	r, err := x.Search(ctx, search.Query{Text: "hose", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Hits) != 1 || r.Hits[0].Name != "Blue garden hose" || r.Hits[0].Price != 2999 {
		t.Errorf("hits = %+v, want the replaced SKU-1 only", r.Hits)
	}
}

func TestCorruptIndex(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "idx")
	x := open(t, dir)
	if err := x.Put(context.Background(), catalog...); err != nil {
		t.Fatal(err)
	}
	_ = x.Close()
	if err := os.WriteFile(filepath.Join(dir, "index_meta.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := bleveindex.Open(dir)
	if !errors.Is(err, search.ErrCorrupt) {
		t.Fatalf("open corrupt index: err = %v, want ErrCorrupt", err)
	}
	if err := bleveindex.Reset(dir); err != nil {
		t.Fatal(err)
	}
	x = open(t, dir)
	defer func() { _ = x.Close() }()
	if n, _ := x.Count(context.Background()); n != 0 {
		t.Errorf("count after reset = %d, want 0", n)
	}
}

func TestEveryWordMustMatch(t *testing.T) {
	ctx := context.Background()
	x := open(t, filepath.Join(t.TempDir(), "idx"))
	defer func() { _ = x.Close() }()
	if err := x.Put(ctx, catalog...); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		text string
		want []string
	}{
		{"garden hose", []string{"SKU-1", "SKU-5"}}, // SKU-5's "garden" is its category
		{"leather gloves", []string{"SKU-2"}},
		{"leather hose", []string{}},
	} {
		t.Run(tt.text, func(t *testing.T) {
			r, err := x.Search(ctx, search.Query{Text: tt.text, Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, skus(r)); diff != "" {
				t.Errorf("hits (-want +got):\n%s", diff)
			}
		})
	}
}

// Compact merges while the documents stay searchable, and queries answer
// the same afterwards.
func TestCompact(t *testing.T) {
	ctx := context.Background()
	x := open(t, filepath.Join(t.TempDir(), "idx"))
	defer func() { _ = x.Close() }()
	for _, d := range catalog { // one batch, one segment each
		if err := x.Put(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	q := search.Query{Text: "garden", Sort: search.SortPrice, Limit: 10}
	before, err := x.Search(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := x.Search(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(skus(before), skus(after)); diff != "" || len(skus(after)) != 5 {
		t.Errorf("hits after compaction (-before +after):\n%s (%d hits)", diff, len(skus(after)))
	}
	if n, _ := x.Count(ctx); n != len(catalog) {
		t.Errorf("count after compaction = %d, want %d", n, len(catalog))
	}
}
