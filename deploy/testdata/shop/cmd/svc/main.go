// Command svc is the test service the deploy tests run. MODE picks how it
// misbehaves:
//
//	""            good: /ready 200, /smoke {"status":"ok"}, / names its version
//	never-ready   /ready always 503
//	crash         exits 3 at once
//	smoke-fail    ready, but /smoke answers 500 {"status":"broken"}
//	ignore-term   good, but ignores SIGTERM (only SIGKILL stops it)
//	chatty        good, and writes numbered lines to stdout without pause
//	              ("line 00000001 …"); on SIGTERM it stops and says how many
//
// POST /toggle-ready makes /ready fail (or pass again).
// It listens on ADDR and answers every request with its FLOTILLA_VERSION.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	mode := os.Getenv("MODE")
	version := os.Getenv("FLOTILLA_VERSION")
	if mode == "crash" {
		fmt.Fprintln(os.Stderr, "svc: cannot open the database: no such file (MODE=crash)")
		os.Exit(3)
	}
	var unready atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("POST /toggle-ready", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "unready:", !unready.Load())
		unready.Store(!unready.Load())
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		if mode == "never-ready" || unready.Load() {
			http.Error(w, "warming up forever", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/smoke", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if mode == "smoke-fail" {
			w.WriteHeader(http.StatusInternalServerError)
			_ = json.NewEncoder(w).Encode(map[string]string{"status": "broken"})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "ok", "data": map[string]any{"version": version}})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		wd, _ := os.Getwd()
		_ = json.NewEncoder(w).Encode(map[string]string{"service": os.Getenv("FLOTILLA_SERVICE"), "version": version,
			"dep": os.Getenv("DEP_URL"), "db": os.Getenv("DATABASE_URL"), "wd": wd})
	})
	srv := &http.Server{Addr: os.Getenv("ADDR"), Handler: mux}
	sigs := []os.Signal{syscall.SIGTERM, os.Interrupt}
	if mode == "ignore-term" {
		signal.Ignore(syscall.SIGTERM)
		sigs = []os.Signal{os.Interrupt}
	}
	ctx, stop := signal.NotifyContext(context.Background(), sigs...)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Printf("svc %s listening on %s (mode %q)\n", version, srv.Addr, mode)
	chatted := make(chan int, 1)
	if mode == "chatty" {
		go func() {
			n := 0
			for ctx.Err() == nil {
				n++
				fmt.Printf("line %08d ................................................................\n", n)
				if n%10 == 0 {
					time.Sleep(100 * time.Microsecond)
				}
			}
			chatted <- n
		}()
	}
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "svc:", err)
		os.Exit(1)
	}
	if mode == "chatty" {
		fmt.Printf("svc: wrote %d lines\n", <-chatted)
	}
	fmt.Println("svc: drained, bye")
}
