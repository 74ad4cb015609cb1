// Package deploytest is the conformance suite of deploy.Store: every
// implementation runs it (deploy/sqlstore on SQLite always, and on
// PostgreSQL when FLOTILLA_TEST_POSTGRES is set).
package deploytest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/flotilla-ci/flotilla/deploy"
)

// RunStore runs the suite; newStore returns a fresh, empty store.
func RunStore(t *testing.T, newStore func(t *testing.T) deploy.Store) {
	t.Run("releases are numbered upwards", func(t *testing.T) {
		s := newStore(t)
		ctx := context.Background()
		a, err := s.StartRelease(ctx, "alice", []string{"user-service"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.StartRelease(ctx, "bob", nil, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if b <= a {
			t.Errorf("second release id %d, first %d: want increasing", b, a)
		}
	})

	t.Run("records round-trip newest first", func(t *testing.T) {
		s := newStore(t)
		ctx := context.Background()
		rel, err := s.StartRelease(ctx, "alice", []string{"a", "b"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Date(2026, 11, 26, 15, 4, 5, 123456789, time.UTC)
		spec := deploy.Spec{Service: "a", Version: "v2", Build: deploy.Build{Package: "./cmd/a", Flags: []string{"-trimpath"}, Digest: "d2"},
			Env: map[string]string{"MODE": "x"}, Replicas: 2, Health: "/ready", ReadyTimeout: 3 * time.Second}
		in := []deploy.Record{
			{Release: rel, Service: "a", Version: "v1", Action: deploy.RecordDeploy, Result: deploy.Succeeded, Who: "alice", Started: t0, Duration: time.Second, Spec: deploy.Spec{Service: "a", Version: "v1"}},
			{Release: rel, Service: "b", Version: "w1", Action: deploy.RecordDeploy, Result: deploy.Failed, Reason: "smoke \"GET /x\": 500", Who: "alice", Started: t0.Add(time.Second), Duration: 2 * time.Second},
			{Release: rel, Service: "a", Version: "v2", Previous: "v1", Action: deploy.RecordDeploy, Result: deploy.Succeeded, Who: "alice", Started: t0.Add(2 * time.Second), Duration: 1500 * time.Millisecond, Spec: spec},
			{Release: rel, Service: "a", Version: "v3", Previous: "v2", Action: deploy.RecordDeploy, Result: deploy.Failed, Reason: "crash loop", Who: "bob", Started: t0.Add(3 * time.Second)},
		}
		for i := range in {
			id, err := s.Add(ctx, in[i])
			if err != nil {
				t.Fatal(err)
			}
			if i > 0 && id <= in[i-1].ID {
				t.Errorf("record id %d after %d: want increasing", id, in[i-1].ID)
			}
			in[i].ID = id
		}
		all, err := s.List(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		want := []deploy.Record{in[3], in[2], in[1], in[0]}
		if d := cmp.Diff(want, all, cmpopts.EquateEmpty()); d != "" {
			t.Errorf("List (-want +got):\n%s", d)
		}
		tests := []struct {
			name    string
			service string
			limit   int
			want    []deploy.Record
		}{
			{"one service", "a", 0, []deploy.Record{in[3], in[2], in[0]}},
			{"limited", "a", 1, []deploy.Record{in[3]}},
			{"unknown service", "zed", 0, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := s.List(ctx, tt.service, tt.limit)
				if err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); d != "" {
					t.Errorf("List(%q, %d) (-want +got):\n%s", tt.service, tt.limit, d)
				}
			})
		}
		cur, err := s.Current(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(in[2], cur, cmpopts.EquateEmpty()); d != "" {
			t.Errorf("Current(a): the latest success, not the later failure (-want +got):\n%s", d)
		}
		if _, err := s.Current(ctx, "b"); !errors.Is(err, deploy.ErrNoHistory) {
			t.Errorf("Current(b) with only a failure = %v, want ErrNoHistory", err)
		}
		if _, err := s.Current(ctx, "zed"); !errors.Is(err, deploy.ErrNoHistory) {
			t.Errorf("Current(zed) = %v, want ErrNoHistory", err)
		}
	})
}
