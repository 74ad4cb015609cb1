package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

func TestLoadCommand(t *testing.T) {
	// A catalog upstream: enough for the browse flow.
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/products" {
			_, _ = w.Write([]byte(`{"items":[{"sku":"SKU-0001","name":"Blue Kettle"},{"sku":"SKU-0002","name":"Red Mug"}],"total":2}`))
			return
		}
		if r.URL.Path == "/products/SKU-0002" {
			http.Error(w, `{"error":{"code":"not_found","message":"gone"}}`, http.StatusNotFound)
			return
		}
		_, _ = w.Write([]byte(`{"sku":"SKU-0001"}`))
	}))
	defer srv.Close()
	cfg := filepath.Join(t.TempDir(), "load.yaml")
	if err := os.WriteFile(cfg, []byte("targets: {product: "+srv.URL+"}\nflows: {browse: 1}\nusers: 2\nspeeed: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	flowCfg := filepath.Join(t.TempDir(), "flows.yaml")
	if err := os.WriteFile(flowCfg, []byte("targets: {product: "+srv.URL+"}\nflows: {browse: 1}\nmode: open\nflow_rate: 5\nduration: 1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	open := []string{"load", "--product-url", srv.URL, "--flows", "browse=1", "--mode", "open", "--duration", "1s", "--format", "json", "--allow-errors"}

	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		stdout   []string
		stderr   []string
		requests int
	}{
		{"open loop needs a rate", []string{"load", "--product-url", srv.URL, "--flows", "browse=1", "--mode", "open"}, 2, nil, []string{"rate: 0", "requests per second"}, 0},
		{"one rate at a time", slices.Concat(open, []string{"--rate", "10", "--flow-rate", "5"}), 2, nil, []string{"rate 10 and flow_rate 5: set one"}, 0},
		{"a rate needs the open loop", []string{"load", "--product-url", srv.URL, "--flows", "browse=1", "--rate", "10"}, 2, nil, []string{"closed loop has no rate", "mode: open"}, 0},
		{"open loop at a request rate", slices.Concat(open, []string{"--rate", "40"}), 0, []string{`"offered": 40`, `"requestsPerFlow": 2`}, nil, 0},
		// browse sends two requests: 10 flows/s offer 20 requests/s.
		{"open loop at a flow rate", slices.Concat(open, []string{"--flow-rate", "10"}), 0, []string{`"offered": 20`, `"requestsPerFlow": 2`}, nil, 0},
		{"--rate replaces the config's flow_rate", []string{"load", "--config", flowCfg, "--rate", "30", "--format", "json", "--allow-errors"}, 0, []string{`"offered": 30`}, nil, 0},
		{"flows need their targets", []string{"load", "--product-url", srv.URL, "--flows", "checkout=1"}, 2, nil, []string{"checkout needs targets.user"}, 0},
		{"bad flows flag", []string{"load", "--product-url", srv.URL, "--flows", "browse"}, 2, nil, []string{"name=weight"}, 0},
		{"config with an unknown key names the file", []string{"load", "--config", cfg}, 2, nil, []string{"load.yaml", "speeed"}, 0},
		{"unreachable shop", []string{"load", "--gateway", "http://127.0.0.1:1", "--flows", "browse=1", "--requests", "5"}, 3, nil, []string{"read the catalog"}, 0},
		{"a request count, errors counted", []string{"load", "--product-url", srv.URL, "--flows", "browse=1", "--users", "2", "--requests", "40", "--format", "json"}, 1,
			[]string{`"requests": 40`, `"errorsByStatus"`, `"404"`}, nil, 40},
		{"errors allowed", []string{"load", "--product-url", srv.URL, "--flows", "browse=1", "--users", "1", "--requests", "10", "--allow-errors"}, 0,
			[]string{"10 requests", "latency p50", "errors by status 404="}, nil, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			code, out, errOut := runCLI(t, tc.args...)
			if code != tc.code {
				t.Fatalf("code %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if tc.requests > 0 {
				// The catalog read at setup is not a load request.
				if got := hits.Load() - before - 1; got != int64(tc.requests) {
					t.Errorf("upstream saw %d load requests, want %d", got, tc.requests)
				}
			}
			if tc.code != 2 && strings.Contains(strings.Join(tc.args, " "), "json") {
				var s map[string]any
				if err := json.Unmarshal([]byte(out), &s); err != nil {
					t.Errorf("json summary: %v", err)
				}
			}
		})
	}
}

// TestLoadInterrupted: Ctrl-C in a run's first seconds still prints the
// summary of what ran, and exits 130 as every interrupted command does.
func TestLoadInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var reads atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/products" {
			_, _ = w.Write([]byte(`{"items":[{"sku":"SKU-0001","name":"Blue Kettle"}],"total":1}`))
			return
		}
		if reads.Add(1) == 5 {
			cancel() // as Ctrl-C does through main's signal context
		}
		_, _ = w.Write([]byte(`{"sku":"SKU-0001"}`))
	}))
	defer srv.Close()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"load", "--product-url", srv.URL, "--flows", "browse=1", "--users", "1", "--duration", "1h"}, strings.NewReader(""), &out, &errb)
	if code != exitInterrupted || !strings.Contains(out.String(), "interrupted after") || !strings.Contains(out.String(), "latency p50") ||
		!strings.Contains(errb.String(), "load interrupted") {
		t.Errorf("code %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
	}
}
