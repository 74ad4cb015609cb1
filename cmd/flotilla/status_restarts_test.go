package main

import (
	"testing"

	"github.com/flotilla-ci/flotilla/deploy"
)

func TestRestartsColumn(t *testing.T) {
	for _, tc := range []struct {
		insts []deploy.Instance
		want  string
	}{
		{nil, "0"},
		{[]deploy.Instance{{Restarts: 1, State: deploy.StateReady}, {Restarts: 2, State: deploy.StateReady}}, "3"},
		{[]deploy.Instance{{Restarts: 4, State: deploy.StateCrashLoop}}, "4, crash loop"},
	} {
		if got := restartsColumn(tc.insts); got != tc.want {
			t.Errorf("restartsColumn(%+v) = %q, want %q", tc.insts, got, tc.want)
		}
	}
}
