package deploy

import (
	"context"
	"errors"
	"time"
)

// ErrNoHistory is returned by Store.Current for a service never deployed.
var ErrNoHistory = errors.New("no deployment recorded")

// Store keeps the deployment history: releases, and what each did to each
// service. deploy/sqlstore implements it on SQLite or PostgreSQL.
type Store interface {
	// StartRelease records a release begun by who for services and
	// returns its id (increasing).
	StartRelease(ctx context.Context, who string, services []string, started time.Time) (int64, error)
	// Add records one service's outcome and returns its id.
	Add(ctx context.Context, r Record) (int64, error)
	// List returns records newest first: of one service when service is
	// not empty, at most limit (0: 100).
	List(ctx context.Context, service string, limit int) ([]Record, error)
	// Current returns the service's latest record with a Succeeded result
	// (what serves now), or an error wrapping ErrNoHistory.
	Current(ctx context.Context, service string) (Record, error)
}

// Recorder is told of every deployment the history records, just before
// the history records it: the contract broker's record-deployment (so
// can-i-deploy knows what runs where), a notification. Its errors never
// fail a release that already happened, and are never silent: the
// record's reason, the outcome's warnings and the progress line name
// them. Record.ID is not set yet.
type Recorder interface {
	Record(ctx context.Context, r Record) error
}

// RecorderFunc adapts a function to a Recorder.
type RecorderFunc func(ctx context.Context, r Record) error

// Record implements Recorder.
func (f RecorderFunc) Record(ctx context.Context, r Record) error { return f(ctx, r) }

// Action names what a record did.
const (
	RecordDeploy   = "deploy"
	RecordRollback = "rollback"
	// RecordStart is a version started where nothing served because the
	// platform had been stopped: Previous is what served before the
	// stop (often the same version), not a version it replaced.
	RecordStart = "start"
)

// Record is one deployment of one service, as the history keeps it.
type Record struct {
	ID       int64         `json:"id"`
	Release  int64         `json:"release"`
	Service  string        `json:"service"`
	Version  string        `json:"version"`
	Previous string        `json:"previous,omitempty"`
	Action   string        `json:"action"` // deploy, rollback or start
	Result   Result        `json:"result"`
	Reason   string        `json:"reason,omitempty"`
	Who      string        `json:"who"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration"`
	// Spec is what was started (without the platform's addresses), so a
	// rollback can start the version again.
	Spec Spec `json:"spec"`
}
