package local

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flotilla-ci/flotilla/deploy"
)

// TestKillOneOrAll kills one replica, then every replica, of a running
// service; each comes back under a new pid with its restart counted.
func TestKillOneOrAll(t *testing.T) {
	ctx := context.Background()
	tg := newTarget(t, t.TempDir(), nil)
	s := spec("kill-service", "k1", "")
	s.Replicas = 2
	insts, err := tg.Apply(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Kill(ctx, "nobody-service", false); !errors.Is(err, deploy.ErrNotFound) {
		t.Errorf("Kill of a service that does not run = %v, want ErrNotFound", err)
	}
	killed, err := tg.Kill(ctx, "kill-service", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(killed) != 1 || killed[0].PID != insts[0].PID {
		t.Fatalf("Kill one = %+v, want instance 0 (pid %d)", killed, insts[0].PID)
	}
	restarts := func(want ...int) []deploy.Instance {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, _ := tg.Status(ctx, "kill-service")
			ok := len(got) == len(want)
			for i := range got {
				ok = ok && got[i].Restarts == want[i] && got[i].State == deploy.StateReady
			}
			if ok {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("instances %+v, want restarts %v and ready", got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	after := restarts(1, 0)
	if after[0].PID == insts[0].PID || after[1].PID != insts[1].PID {
		t.Errorf("after killing one: %+v; want instance 0 under a new pid, instance 1 untouched", after)
	}
	killed, err = tg.Kill(ctx, "kill-service", true)
	if err != nil || len(killed) != 2 {
		t.Fatalf("Kill all = %+v, %v; want both replicas", killed, err)
	}
	restarts(2, 1)
}
