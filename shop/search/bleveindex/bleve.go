// Package bleveindex is search-service's embedded engine: a search.Index
// on Bleve (github.com/blevesearch/bleve/v2, scorch segments on disk).
// Batches are persisted before Put returns, so an acknowledged event's
// document survives a crash.
package bleveindex

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/analysis/analyzer/keyword"
	"github.com/blevesearch/bleve/v2/analysis/lang/en"
	"github.com/blevesearch/bleve/v2/index/scorch"
	"github.com/blevesearch/bleve/v2/index/scorch/mergeplan"
	"github.com/blevesearch/bleve/v2/mapping"
	"github.com/blevesearch/bleve/v2/search/query"

	"github.com/flotilla-ci/flotilla/shop/search"
)

// Index is a Bleve index in one directory.
type Index struct {
	idx bleve.Index
}

var _ search.Index = (*Index)(nil)

// Open opens the index at dir, creating it when dir does not exist. An
// index that exists but cannot be opened is an error wrapping
// search.ErrCorrupt; Reset removes it.
func Open(dir string) (*Index, error) {
	if _, err := os.Stat(filepath.Join(dir, "index_meta.json")); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return nil, fmt.Errorf("create index dir: %w", err)
		}
		_ = os.RemoveAll(dir) // a half-created directory
		idx, err := bleve.New(dir, Mapping())
		if err != nil {
			return nil, fmt.Errorf("create index %s: %w", dir, err)
		}
		return &Index{idx: idx}, nil
	}
	idx, err := openSafe(dir)
	if err != nil {
		return nil, fmt.Errorf("open index %s: %w: %w", dir, search.ErrCorrupt, err)
	}
	if _, err := idx.DocCount(); err != nil {
		_ = idx.Close()
		return nil, fmt.Errorf("open index %s: %w: %w", dir, search.ErrCorrupt, err)
	}
	return &Index{idx: idx}, nil
}

// openSafe turns a panic inside Bleve on a damaged index into an error.
func openSafe(dir string) (idx bleve.Index, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return bleve.Open(dir)
}

// Reset removes the index at dir (a corrupt one) so Open creates it anew.
func Reset(dir string) error { return os.RemoveAll(dir) }

// Mapping is the index mapping: text fields analysed in English, the SKU
// and category as keywords, price and popularity numeric; only what a hit
// shows is stored.
func Mapping() mapping.IndexMapping {
	name := bleve.NewTextFieldMapping()
	name.Analyzer = en.AnalyzerName
	name.IncludeTermVectors = false
	name.IncludeInAll = false
	name.Store = true
	desc := bleve.NewTextFieldMapping()
	desc.Analyzer = en.AnalyzerName
	desc.IncludeTermVectors = false
	desc.IncludeInAll = false
	desc.Store = false
	kw := bleve.NewKeywordFieldMapping()
	kw.IncludeInAll = false
	kw.IncludeTermVectors = false
	stored := bleve.NewKeywordFieldMapping()
	stored.IncludeInAll = false
	stored.IncludeTermVectors = false
	stored.DocValues = false
	num := bleve.NewNumericFieldMapping()
	num.IncludeInAll = false

	doc := bleve.NewDocumentStaticMapping()
	doc.AddFieldMappingsAt("sku", kw)
	doc.AddFieldMappingsAt("name", name)
	doc.AddFieldMappingsAt("description", desc)
	doc.AddFieldMappingsAt("text", desc) // name, description and category: what free text must all match
	doc.AddFieldMappingsAt("category", kw)
	doc.AddFieldMappingsAt("price", num)
	doc.AddFieldMappingsAt("currency", stored)
	doc.AddFieldMappingsAt("popularity", num)
	// One-term keyword copies for sorting and the price facet: Bleve
	// visits every matching document's doc values for those, and a
	// numeric field has one term per precision step, a keyword one.
	doc.AddFieldMappingsAt("price_key", hidden())
	doc.AddFieldMappingsAt("popularity_key", hidden())
	doc.AddFieldMappingsAt("price_band", hidden())

	m := bleve.NewIndexMapping()
	m.DefaultMapping = doc
	m.DefaultAnalyzer = keyword.Name
	m.StoreDynamic = false
	m.IndexDynamic = false
	m.DocValuesDynamic = false
	return m
}

func hidden() *mapping.FieldMapping {
	f := bleve.NewKeywordFieldMapping()
	f.Store = false
	f.IncludeInAll = false
	f.IncludeTermVectors = false
	return f
}

// key renders a non-negative integer so that keys sort as the numbers do.
func key(v int64) string {
	if v < 0 {
		v = 0
	}
	return fmt.Sprintf("%019d", v)
}

// band is the name of the price band p falls in.
func band(p int64) string {
	for _, b := range search.PriceBands {
		if (b.Min == nil || p >= *b.Min) && (b.Max == nil || p < *b.Max) {
			return b.Name
		}
	}
	return ""
}

func fields(d search.Doc) map[string]any {
	return map[string]any{"sku": d.SKU, "name": d.Name, "description": d.Description, "category": d.Category,
		"price": float64(d.Price), "currency": d.Currency, "popularity": float64(d.Popularity),
		"text":      d.Name + "\n" + d.Description + "\n" + d.Category,
		"price_key": key(d.Price), "popularity_key": key(d.Popularity), "price_band": band(d.Price)}
}

// Put implements search.Index.
func (x *Index) Put(ctx context.Context, docs ...search.Doc) error {
	if len(docs) == 0 {
		return nil
	}
	b := x.idx.NewBatch()
	for _, d := range docs {
		if err := b.Index(d.SKU, fields(d)); err != nil {
			return fmt.Errorf("index %s: %w", d.SKU, err)
		}
	}
	if err := x.idx.Batch(b); err != nil {
		return fmt.Errorf("index batch of %d: %w", len(docs), err)
	}
	return nil
}

// Delete implements search.Index.
func (x *Index) Delete(ctx context.Context, skus ...string) error {
	if len(skus) == 0 {
		return nil
	}
	b := x.idx.NewBatch()
	for _, s := range skus {
		b.Delete(s)
	}
	if err := x.idx.Batch(b); err != nil {
		return fmt.Errorf("delete %d documents: %w", len(skus), err)
	}
	return nil
}

// Count implements search.Index.
func (x *Index) Count(ctx context.Context) (int, error) {
	n, err := x.idx.DocCount()
	return int(n), err
}

// Compact merges the index's segments into one, as after a rebuild: a
// query visits each segment's dictionary and postings, so a bulk load's
// dozen segments cost a text query a third more than one. Searches and
// writes go on while it runs.
func (x *Index) Compact(ctx context.Context) error {
	adv, err := x.idx.Advanced()
	if err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	s, ok := adv.(*scorch.Scorch)
	if !ok {
		return nil
	}
	if err := s.ForceMerge(ctx, &mergeplan.SingleSegmentMergePlanOptions); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	return nil
}

// Close implements search.Index.
func (x *Index) Close() error { return x.idx.Close() }

// Search implements search.Index.
func (x *Index) Search(ctx context.Context, q search.Query) (search.Result, error) {
	req := bleve.NewSearchRequestOptions(build(q), q.Limit, q.Offset, false)
	req.Fields = []string{"name", "category", "price", "currency", "popularity"}
	switch q.Sort {
	case search.SortPrice:
		req.SortBy([]string{"price_key", "_id"})
	case search.SortPriceDesc:
		req.SortBy([]string{"-price_key", "_id"})
	case search.SortPopularity:
		req.SortBy([]string{"-popularity_key", "_id"})
	default:
		// Score alone: Bleve breaks ties by the order it found the hits
		// in, stable for one snapshot. A "_id" tie-break would make it
		// read every match's id from doc values: three quarters of a
		// text query's cost at 1,300 matches.
		req.SortBy([]string{"-_score"})
	}
	if q.Facets {
		req.AddFacet("category", bleve.NewFacetRequest("category", 50))
		req.AddFacet("price", bleve.NewFacetRequest("price_band", len(search.PriceBands)))
	}
	res, err := x.idx.SearchInContext(ctx, req)
	if err != nil {
		return search.Result{}, fmt.Errorf("search: %w", err)
	}
	out := search.Result{Total: int(res.Total), Hits: make([]search.Hit, 0, len(res.Hits))}
	for _, h := range res.Hits {
		d := search.Doc{SKU: h.ID}
		d.Name, _ = h.Fields["name"].(string)
		d.Category, _ = h.Fields["category"].(string)
		d.Currency, _ = h.Fields["currency"].(string)
		if p, ok := h.Fields["price"].(float64); ok {
			d.Price = int64(p)
		}
		if p, ok := h.Fields["popularity"].(float64); ok {
			d.Popularity = int64(p)
		}
		score := h.Score
		if math.IsNaN(score) || math.IsInf(score, 0) {
			score = 0
		}
		out.Hits = append(out.Hits, search.Hit{Doc: d, Score: score})
	}
	if q.Facets {
		f := &search.Facets{Category: []search.FacetCount{}, Price: make([]search.PriceBand, 0, len(search.PriceBands))}
		if cf := res.Facets["category"]; cf != nil {
			for _, t := range cf.Terms.Terms() {
				f.Category = append(f.Category, search.FacetCount{Value: t.Term, Count: t.Count})
			}
		}
		counts := map[string]int{}
		if pf := res.Facets["price"]; pf != nil {
			for _, t := range pf.Terms.Terms() {
				counts[t.Term] = t.Count
			}
		}
		for _, b := range search.PriceBands {
			b.Count = counts[b.Name]
			f.Price = append(f.Price, b)
		}
		sort.SliceStable(f.Category, func(i, j int) bool {
			if f.Category[i].Count != f.Category[j].Count {
				return f.Category[i].Count > f.Category[j].Count
			}
			return f.Category[i].Value < f.Category[j].Value
		})
		out.Facets = f
	}
	return out, nil
}

func f64(v *int64) *float64 {
	if v == nil {
		return nil
	}
	f := float64(*v)
	return &f
}

// build turns q into a Bleve query: every word of the text somewhere in
// the name, description or category (a name holding them all scores
// higher), AND the filters.
func build(q search.Query) query.Query {
	var must []query.Query
	if q.Text != "" {
		all := bleve.NewMatchQuery(q.Text)
		all.SetField("text")
		all.SetOperator(query.MatchQueryOperatorAnd)
		name := bleve.NewMatchQuery(q.Text)
		name.SetField("name")
		name.SetOperator(query.MatchQueryOperatorAnd)
		name.SetBoost(3)
		b := bleve.NewBooleanQuery()
		b.AddMust(all)
		b.AddShould(name)
		must = append(must, b)
	}
	if len(q.Categories) > 0 {
		var any []query.Query
		for _, c := range q.Categories {
			t := bleve.NewTermQuery(c)
			t.SetField("category")
			any = append(any, t)
		}
		must = append(must, bleve.NewDisjunctionQuery(any...))
	}
	if q.MinPrice != nil || q.MaxPrice != nil {
		yes := true
		r := bleve.NewNumericRangeInclusiveQuery(f64(q.MinPrice), f64(q.MaxPrice), &yes, &yes)
		r.SetField("price")
		must = append(must, r)
	}
	switch len(must) {
	case 0:
		return bleve.NewMatchAllQuery()
	case 1:
		return must[0]
	default:
		return bleve.NewConjunctionQuery(must...)
	}
}
