package kube

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		in, want map[string]int
	}{
		{map[string]int{"a": 95, "b": 5}, map[string]int{"a": 95, "b": 5}},
		{map[string]int{"a": 1}, map[string]int{"a": 100}},
		{map[string]int{"a": 1, "b": 2}, map[string]int{"a": 33, "b": 67}},
		{map[string]int{"a": 1, "b": 1, "c": 1}, map[string]int{"a": 34, "b": 33, "c": 33}},
		{map[string]int{"a": 0, "b": 10}, map[string]int{"b": 100}},
		{map[string]int{"a": 1, "b": 999}, map[string]int{"b": 100}},
		{map[string]int{}, map[string]int{}},
	}
	for _, tt := range tests {
		got := normalize(tt.in)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("normalize(%v) (-want +got):\n%s", tt.in, diff)
		}
		sum := 0
		for _, v := range got {
			sum += v
		}
		if len(got) > 0 && sum != 100 {
			t.Errorf("normalize(%v) sums to %d", tt.in, sum)
		}
	}
}
