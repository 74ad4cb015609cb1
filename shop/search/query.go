package search

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on a query.
const (
	MaxText       = 200    // characters of free text
	MaxCategories = 20     // category filters
	MaxLimit      = 100    // results per page
	MaxOffset     = 10_000 // deepest page start
	MaxPrice      = 1_000_000_000
)

var queryParams = []string{"q", "category", "minPrice", "maxPrice", "sort", "limit", "offset", "facets"}

// QueryError is a malformed query: the parameter and what to send instead.
type QueryError struct {
	Param   string
	Message string
}

func (e *QueryError) Error() string {
	if e.Param == "" {
		return "parameter with an empty name: " + e.Message
	}
	return e.Param + ": " + e.Message
}

func bad(param, format string, args ...any) error {
	return &QueryError{Param: param, Message: fmt.Sprintf(format, args...)}
}

// ParseQuery reads a search request's URL query:
//
//	q          free text (at most 200 characters)
//	category   exact category; repeat for any of several
//	minPrice   inclusive lower bound, minor units
//	maxPrice   inclusive upper bound, minor units
//	sort       relevance (default), price, -price or popularity
//	limit      1 to 100 (default 20); offset 0 to 10000
//	facets     true (default) or false
//
// Every problem is a *QueryError naming the parameter.
func ParseQuery(v url.Values) (Query, error) {
	q := Query{Sort: SortRelevance, Limit: 20, Facets: true}
	for k := range v {
		if !known(k) {
			return q, bad(k, "unknown parameter; known: %s", strings.Join(queryParams, ", "))
		}
		if k != "category" && len(v[k]) > 1 {
			return q, bad(k, "given %d times; give it once", len(v[k]))
		}
	}
	text := strings.TrimSpace(v.Get("q"))
	if !utf8.ValidString(text) {
		return q, bad("q", "not valid UTF-8")
	}
	if n := utf8.RuneCountInString(text); n > MaxText {
		return q, bad("q", "%d characters; at most %d", n, MaxText)
	}
	if i := strings.IndexFunc(text, unicode.IsControl); i >= 0 {
		return q, bad("q", "control character at byte %d", i)
	}
	q.Text = text
	cats := v["category"]
	if len(cats) > MaxCategories {
		return q, bad("category", "%d given; at most %d", len(cats), MaxCategories)
	}
	seen := map[string]bool{}
	for _, c := range cats {
		c = strings.TrimSpace(c)
		if c == "" || !utf8.ValidString(c) || len(c) > 64 || strings.IndexFunc(c, unicode.IsControl) >= 0 {
			return q, bad("category", "%q: want a category name of 1 to 64 printable characters", c)
		}
		if !seen[c] {
			seen[c] = true
			q.Categories = append(q.Categories, c)
		}
	}
	sort.Strings(q.Categories)
	var err error
	if q.MinPrice, err = price(v, "minPrice"); err != nil {
		return q, err
	}
	if q.MaxPrice, err = price(v, "maxPrice"); err != nil {
		return q, err
	}
	if q.MinPrice != nil && q.MaxPrice != nil && *q.MinPrice > *q.MaxPrice {
		return q, bad("maxPrice", "%d is below minPrice %d", *q.MaxPrice, *q.MinPrice)
	}
	switch s := Sort(v.Get("sort")); s {
	case "":
	case SortRelevance, SortPrice, SortPriceDesc, SortPopularity:
		q.Sort = s
	default:
		return q, bad("sort", "%q: want relevance, price, -price or popularity", string(s))
	}
	if q.Limit, err = integer(v, "limit", 20, 1, MaxLimit); err != nil {
		return q, err
	}
	if q.Offset, err = integer(v, "offset", 0, 0, MaxOffset); err != nil {
		return q, err
	}
	if f := v.Get("facets"); f != "" {
		if q.Facets, err = strconv.ParseBool(f); err != nil {
			return q, bad("facets", "%q: want true or false", f)
		}
	}
	return q, nil
}

func known(k string) bool {
	for _, p := range queryParams {
		if p == k {
			return true
		}
	}
	return false
}

func price(v url.Values, name string) (*int64, error) {
	s := v.Get(name)
	if s == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > MaxPrice {
		return nil, bad(name, "%q: want minor units (cents) from 0 to %d", s, MaxPrice)
	}
	return &n, nil
}

func integer(v url.Values, name string, def, lo, hi int) (int, error) {
	s := v.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, bad(name, "%q: want an integer from %d to %d", s, lo, hi)
	}
	return n, nil
}
