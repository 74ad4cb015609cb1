package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flotilla-ci/flotilla/deploy"
)

func TestRendererTerminalOrNot(t *testing.T) {
	events := []deploy.Event{
		{Wave: 1, Service: "user-service", Version: "3f2a1b9c0d1e", Step: deploy.StepBuild, Msg: "./shop/cmd/user"},
		{Wave: 1, Service: "user-service", Version: "3f2a1b9c0d1e", Step: deploy.StepSmoke, Msg: "ready"},
		{Wave: 1, Service: "user-service", Version: "3f2a1b9c0d1e", Step: deploy.StepDone, Msg: "serving 3f2a1b9c0d1e (was not deployed) in 1.2s"},
		{Wave: 2, Service: "order-service", Version: "77aa00bb11cc-c0ffee", Step: deploy.StepFailed, Msg: "crash loop: exited 4 times\n  last log line"},
		{Step: deploy.StepDone, Msg: "1 succeeded, 1 failed"},
	}
	tests := []struct {
		name     string
		terminal bool
		want     string
	}{
		{"not a terminal: outcomes only", false, "wave 1\n" +
			"  user-service             3f2a1b9c0d1e        done        serving 3f2a1b9c0d1e (was not deployed) in 1.2s\n" +
			"wave 2\n" +
			"  order-service            77aa00bb11cc-c0ffee failed      crash loop: exited 4 times\n  last log line\n"},
		{"a terminal: every step", true, "wave 1\n" +
			"  user-service             3f2a1b9c0d1e        build       ./shop/cmd/user\n" +
			"  user-service             3f2a1b9c0d1e        smoke       ready\n" +
			"  user-service             3f2a1b9c0d1e        done        serving 3f2a1b9c0d1e (was not deployed) in 1.2s\n" +
			"wave 2\n" +
			"  order-service            77aa00bb11cc-c0ffee failed      crash loop: exited 4 times\n  last log line\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			r := newRenderer(&b, tt.terminal)
			for _, e := range events {
				r.event(e)
			}
			if d := cmp.Diff(tt.want, b.String()); d != "" {
				t.Errorf("progress (-want +got):\n%s", d)
			}
		})
	}
	var b bytes.Buffer
	newRenderer(&b, false).report(&deploy.Report{Release: 7, Duration: 1500 * time.Millisecond, Outcomes: []deploy.Outcome{
		{Service: "user-service", Version: "0a1b2c3d4e5f", Result: deploy.Succeeded, Warnings: []string{"recording it failed: record-deployment user-service 0a1b2c3d4e5f to local: connection refused"}},
		{Service: "order-service", Version: "77aa00bb11cc", Result: deploy.Failed, Reason: "crash loop"},
		{Service: "shipping-service", Result: deploy.Skipped},
	}})
	want := "release 7: 1 succeeded, 1 failed, 1 skipped in 1.5s\n" +
		"warning: user-service@0a1b2c3d4e5f succeeded: recording it failed: record-deployment user-service 0a1b2c3d4e5f to local: connection refused\n" +
		"failed: order-service@77aa00bb11cc: crash loop\n"
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("report (-want +got):\n%s", d)
	}
}
