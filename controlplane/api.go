// Package controlplane is what `flotilla up` runs: the pieces of the local
// platform (the deploy orchestrator, its target and the mesh, the registry,
// the broker) behind one HTTP API that the CLI's commands are clients of,
// and the dashboard (package ui) served beside it under /ui/.
//
// The deploy API:
//
//	POST /api/deploys          a deploy.Request (+ "dry_run"); a dry run answers {"plan"};
//	                           otherwise NDJSON: {"event"} lines, then {"report","error"}
//	GET  /api/deploys/current  {"running"}: the release in progress, or null
//	POST /api/rollback         a deploy.RollbackRequest; NDJSON like a deploy
//	GET  /api/status           {"services","running"}
//	GET  /api/history          ?service=NAME&limit=N: {"records"}, newest first
//	GET  /api/canaries         ?service=NAME: {"canaries"}, each service's canary as it stands
//	                           (404 for a service that never had one)
//	POST /api/canaries/{service}/promote  {"who","reason"}: promote its canary (or end its bake) now
//	POST /api/canaries/{service}/abort    {"who","reason"}: roll its canary back now
//	                           (422 when no canary of the service is in progress)
//
// Bad input is 400 with {"error"}; a deploy while another runs is 409 with
// {"error","running"} naming it. A release keeps going when its client
// disconnects: traffic is never left half switched. [Client] is the Go
// client the CLI uses.
//
// [OpenLocal] wires the deploy side on this machine (the local target, the
// mesh as its router, the history, the orchestrator, this API) for
// `flotilla up`.
package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"

	"github.com/flotilla-ci/flotilla/deploy"
)

// DefaultAddr is where `flotilla up` serves the API by default (clear of
// PostgreSQL's, Redis's and NATS's standard ports).
const DefaultAddr = "127.0.0.1:7480"

// DeployRequest is the body of POST /api/deploys.
type DeployRequest struct {
	deploy.Request
	DryRun bool `json:"dry_run,omitempty"`
}

// Line is one line of a streamed deploy or rollback: an event, or the
// last line with the report and the error, if any.
type Line struct {
	Event  *deploy.Event  `json:"event,omitempty"`
	Report *deploy.Report `json:"report,omitempty"`
	Error  string         `json:"error,omitempty"`
	// Failed is true when the error is a failed release (its services were
	// rolled back), false for an error before anything started.
	Failed bool `json:"failed,omitempty"`
	// Busy is true when another release was running.
	Busy bool `json:"busy,omitempty"`
}

// StatusResponse is the body of GET /api/status.
type StatusResponse struct {
	Services []deploy.ServiceStatus `json:"services"`
	Running  *deploy.Running        `json:"running"`
	// Platform are the platform's own processes, when the control plane
	// is a platform's ('flotilla up'); the CLI adds them from
	// GET /api/platform.
	Platform []PlatformProcess `json:"platform,omitempty"`
}

// API serves the control plane's HTTP API over an orchestrator.
type API struct {
	orch   *deploy.Orchestrator
	canary *Canary // nil: no canary routes
	log    *slog.Logger
	// observers are told of every step of the releases the API runs
	// (the dashboard's live view).
	observers []func(deploy.Event)
	wg        sync.WaitGroup
}

// NewAPI returns the API of an orchestrator.
func NewAPI(o *deploy.Orchestrator, log *slog.Logger) *API {
	if log == nil {
		log = slog.Default()
	}
	return &API{orch: o, log: log}
}

// Handler returns the API's routes.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/deploys", a.deploys)
	mux.HandleFunc("GET /api/deploys/current", a.current)
	mux.HandleFunc("POST /api/rollback", a.rollback)
	mux.HandleFunc("GET /api/status", a.status)
	mux.HandleFunc("GET /api/history", a.history)
	mux.HandleFunc("POST /api/gc", a.gc)
	mux.HandleFunc("GET /api/canaries", a.canaries)
	mux.HandleFunc("POST /api/canaries/{service}/promote", a.canaryOverride)
	mux.HandleFunc("POST /api/canaries/{service}/abort", a.canaryOverride)
	return mux
}

// Observe registers f to be told of every step of every release and
// rollback the API runs, before the client is; f must not block. Call it
// before the API serves.
func (a *API) Observe(f func(deploy.Event)) { a.observers = append(a.observers, f) }

// Wait returns once every release the API started has finished (they
// outlive their requests).
func (a *API) Wait() { a.wg.Wait() }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("request body: want one JSON object, and nothing after it")
	}
	return nil
}

func (a *API) deploys(w http.ResponseWriter, r *http.Request) {
	var req DeployRequest
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	req.Who = actor(r.Context(), req.Who)
	plan, err := a.orch.Plan(r.Context(), req.Request)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if req.DryRun {
		writeJSON(w, http.StatusOK, map[string]any{"plan": plan})
		return
	}
	if a.refuseBusy(w) {
		return
	}
	a.stream(w, r, func(ctx context.Context, events func(deploy.Event)) (*deploy.Report, error) {
		return a.orch.Execute(ctx, plan, req.Request, events)
	})
}

func (a *API) rollback(w http.ResponseWriter, r *http.Request) {
	var req deploy.RollbackRequest
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	req.Who = actor(r.Context(), req.Who)
	req, err := a.orch.ResolveRollback(r.Context(), req)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if a.refuseBusy(w) {
		return
	}
	a.stream(w, r, func(ctx context.Context, events func(deploy.Event)) (*deploy.Report, error) {
		return a.orch.Rollback(ctx, req, events)
	})
}

func (a *API) refuseBusy(w http.ResponseWriter) bool {
	run := a.orch.Running()
	if run == nil {
		return false
	}
	writeJSON(w, http.StatusConflict, map[string]any{"error": (&deploy.BusyError{Running: *run}).Error(), "running": run})
	return true
}

// stream runs a release detached from the request (a client that goes
// away does not stop it half way) and streams its events as NDJSON.
func (a *API) stream(w http.ResponseWriter, r *http.Request, run func(context.Context, func(deploy.Event)) (*deploy.Report, error)) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	lines := make(chan Line, 64)
	ctx := context.WithoutCancel(r.Context())
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer close(lines)
		// The writer below drains lines to the end even when the client
		// is gone, so sending never blocks the release for long.
		rep, err := run(ctx, func(e deploy.Event) {
			for _, f := range a.observers {
				f(e)
			}
			lines <- Line{Event: &e}
		})
		last := Line{Report: rep}
		if err != nil {
			last.Error = err.Error()
			last.Failed = errors.Is(err, deploy.ErrReleaseFailed)
			last.Busy = errors.Is(err, deploy.ErrBusy)
		}
		lines <- last
	}()
	enc := json.NewEncoder(w)
	gone := false
	for l := range lines {
		if gone {
			continue
		}
		if err := enc.Encode(l); err != nil {
			gone = true
			a.log.InfoContext(ctx, "deploy client went away; the release goes on", "err", err)
			continue
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}

func (a *API) current(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"running": a.orch.Running()})
}

func (a *API) status(w http.ResponseWriter, r *http.Request) {
	st, err := a.orch.Status(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, StatusResponse{Services: st, Running: a.orch.Running()})
}

// gc prunes the target's artifacts and logs now (deploy.Orchestrator.GC);
// 409 while a release runs.
func (a *API) gc(w http.ResponseWriter, r *http.Request) {
	p, err := a.orch.GC(r.Context())
	var busy *deploy.BusyError
	switch {
	case errors.As(err, &busy):
		writeJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "running": busy.Running})
	case err != nil:
		writeError(w, http.StatusInternalServerError, err)
	default:
		writeJSON(w, http.StatusOK, p)
	}
}

func (a *API) history(w http.ResponseWriter, r *http.Request) {
	limit := 0
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit %q: want a number of records", s))
			return
		}
		limit = n
	}
	recs, err := a.orch.History(r.Context(), r.URL.Query().Get("service"), limit)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if recs == nil {
		recs = []deploy.Record{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"records": recs})
}
