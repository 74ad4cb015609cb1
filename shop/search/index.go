package search

import (
	"context"
	"errors"
)

// Doc is one product as the index holds it. Prices are minor units.
type Doc struct {
	SKU         string `json:"sku"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Category    string `json:"category"`
	Price       int64  `json:"price"`
	Currency    string `json:"currency"`
	Popularity  int64  `json:"popularity"`
}

// Sort orders results.
type Sort string

// Sorts.
const (
	SortRelevance  Sort = "relevance"  // best text match first (then popularity)
	SortPrice      Sort = "price"      // cheapest first
	SortPriceDesc  Sort = "-price"     // dearest first
	SortPopularity Sort = "popularity" // most ordered first
)

// Query is a parsed search request (ParseQuery builds it from a URL).
type Query struct {
	Text       string   // free text over name, description and category; "" matches all
	Categories []string // any of these (exact); empty means all
	MinPrice   *int64   // inclusive, minor units
	MaxPrice   *int64   // inclusive, minor units
	Sort       Sort
	Limit      int
	Offset     int
	Facets     bool // count categories and price bands over all matches
}

// Hit is one result.
type Hit struct {
	Doc
	Score float64 `json:"score"`
}

// FacetCount is one category and how many matches it has.
type FacetCount struct {
	Value string `json:"value"`
	Count int    `json:"count"`
}

// PriceBand is one price range (minor units, Max exclusive; nil = open).
type PriceBand struct {
	Name  string `json:"name"`
	Min   *int64 `json:"min,omitempty"`
	Max   *int64 `json:"max,omitempty"`
	Count int    `json:"count"`
}

// Facets are counts over every match of a query, not just one page.
type Facets struct {
	Category []FacetCount `json:"category"`
	Price    []PriceBand  `json:"price"`
}

// Result is one page of matches.
type Result struct {
	Total  int     `json:"total"`
	Hits   []Hit   `json:"hits"`
	Facets *Facets `json:"facets,omitempty"`
}

// PriceBands are the price facet's ranges, in minor units.
var PriceBands = []PriceBand{
	{Name: "under 10", Max: ptr(1000)},
	{Name: "10 to 25", Min: ptr(1000), Max: ptr(2500)},
	{Name: "25 to 50", Min: ptr(2500), Max: ptr(5000)},
	{Name: "50 to 100", Min: ptr(5000), Max: ptr(10000)},
	{Name: "100 and over", Min: ptr(10000)},
}

func ptr(v int64) *int64 { return &v }

// Index is the search engine behind search-service: Bleve embedded
// (package bleveindex) by default; an Elasticsearch or OpenSearch backend
// implements the same four methods where one machine's index is not
// enough.
type Index interface {
	// Put adds or replaces documents by SKU, durably: once it returns nil
	// the documents survive a crash.
	Put(ctx context.Context, docs ...Doc) error
	// Delete removes documents by SKU; unknown SKUs are not an error.
	Delete(ctx context.Context, skus ...string) error
	// Search answers q. It returns an error wrapping ErrBadQuery for a
	// query the engine rejects.
	Search(ctx context.Context, q Query) (Result, error)
	// Count is how many documents the index holds.
	Count(ctx context.Context) (int, error)
	// Close releases the index.
	Close() error
}

// ErrBadQuery marks a query the engine cannot run (a 400, not a 500).
var ErrBadQuery = errors.New("bad query")

// ErrCorrupt marks an index that cannot be opened; search-service then
// starts a fresh one and rebuilds it from product-service.
var ErrCorrupt = errors.New("index corrupt")
