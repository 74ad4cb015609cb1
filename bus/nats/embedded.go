package nats

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ServerConfig configures an embedded JetStream server.
type ServerConfig struct {
	Dir  string // JetStream file storage directory (required)
	Host string // default 127.0.0.1
	Port int    // 0 picks a free port
	// MaxStore caps JetStream file storage in bytes; 0 is the server's default.
	MaxStore int64
	// Logger receives the server's own log (nil: none).
	Logger *slog.Logger
}

// Server is an embedded NATS server with JetStream on file storage.
type Server struct {
	srv *server.Server
}

// Embedded starts a NATS server with JetStream in this process, storing to
// cfg.Dir and syncing every write to disk (sync_interval: always): NATS's
// default fsyncs only every two minutes, and Jepsen's analysis of NATS
// 2.12.1 showed acknowledged messages lost because of it.
func Embedded(cfg ServerConfig) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("embedded nats: no storage directory")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	port := cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName:            "flotilla-embedded",
		Host:                  cfg.Host,
		Port:                  port,
		JetStream:             true,
		StoreDir:              cfg.Dir,
		SyncAlways:            true,
		SyncInterval:          time.Second, // ignored when SyncAlways; kept explicit
		JetStreamMaxStore:     cfg.MaxStore,
		NoSigs:                true,
		NoLog:                 true,
		DisableShortFirstPing: true,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if cfg.Logger != nil {
		srv.SetLogger(slogLogger{cfg.Logger}, false, false)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded nats: not ready after 10s")
	}
	return &Server{srv: srv}, nil
}

// URL is the nats:// URL clients connect to.
func (s *Server) URL() string { return s.srv.ClientURL() }

// SyncAlways reports whether the server fsyncs every write (always true for
// servers started by Embedded; tests assert it).
func (s *Server) SyncAlways() bool {
	return s.srv.JetStreamConfig() != nil && s.srv.JetStreamConfig().SyncAlways
}

// Close shuts the server down and waits for it.
func (s *Server) Close() error {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	return nil
}

// slogLogger passes the server's log to slog.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Noticef(format string, v ...any) { s.l.Info(fmt.Sprintf(format, v...)) }
func (s slogLogger) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s slogLogger) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s slogLogger) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s slogLogger) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s slogLogger) Tracef(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
