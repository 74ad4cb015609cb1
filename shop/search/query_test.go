package search

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func i64(v int64) *int64 { return &v }

func TestParseQuery(t *testing.T) {
	tests := []struct {
		raw     string
		want    Query
		wantErr string // the parameter named by the error
	}{
		{"", Query{Sort: SortRelevance, Limit: 20, Facets: true}, ""},
		{"q=+red+hose+&category=garden&category=books&category=garden&minPrice=100&maxPrice=2500&sort=-price&limit=5&offset=10&facets=false",
			Query{Text: "red hose", Categories: []string{"books", "garden"}, MinPrice: i64(100), MaxPrice: i64(2500), Sort: SortPriceDesc, Limit: 5, Offset: 10}, ""},
		{"sort=popularity", Query{Sort: SortPopularity, Limit: 20, Facets: true}, ""},
		{"minPrice=5&maxPrice=5", Query{MinPrice: i64(5), MaxPrice: i64(5), Sort: SortRelevance, Limit: 20, Facets: true}, ""},
		{"colour=red", Query{}, "colour"},
		{"q=a&q=b", Query{}, "q"},
		{"q=" + strings.Repeat("x", 201), Query{}, "q"},
		{"q=%00", Query{}, "q"},
		{"q=%ff", Query{}, "q"},
		{"category=", Query{}, "category"},
		{"category=" + strings.Repeat("c", 65), Query{}, "category"},
		{"minPrice=-1", Query{}, "minPrice"},
		{"minPrice=ten", Query{}, "minPrice"},
		{"maxPrice=1e3", Query{}, "maxPrice"},
		{"minPrice=10&maxPrice=9", Query{}, "maxPrice"},
		{"sort=name", Query{}, "sort"},
		{"limit=0", Query{}, "limit"},
		{"limit=101", Query{}, "limit"},
		{"offset=10001", Query{}, "offset"},
		{"facets=maybe", Query{}, "facets"},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			v, err := url.ParseQuery(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseQuery(v)
			if tt.wantErr != "" {
				var qe *QueryError
				if !errors.As(err, &qe) || qe.Param != tt.wantErr {
					t.Fatalf("err = %v, want a *QueryError naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("query (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "q=hose&category=garden&minPrice=1&maxPrice=2&sort=price&limit=3&offset=4&facets=true",
		"q=%ff%00", "minPrice=9&maxPrice=1", "category=a&category=a", "limit=-1&offset=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := ParseQuery(v)
		if err != nil {
			var qe *QueryError
			if !errors.As(err, &qe) || qe.Message == "" {
				t.Fatalf("error %v is not a *QueryError naming a parameter", err)
			}
			return
		}
		if q.Limit < 1 || q.Limit > MaxLimit || q.Offset < 0 || q.Offset > MaxOffset {
			t.Fatalf("limit/offset out of range: %+v", q)
		}
		if q.MinPrice != nil && q.MaxPrice != nil && *q.MinPrice > *q.MaxPrice {
			t.Fatalf("min above max: %+v", q)
		}
		if len([]rune(q.Text)) > MaxText || len(q.Categories) > MaxCategories {
			t.Fatalf("text or categories over the limit: %+v", q)
		}
		switch q.Sort {
		case SortRelevance, SortPrice, SortPriceDesc, SortPopularity:
		default:
			t.Fatalf("sort %q", q.Sort)
		}
	})
}
