package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to read while followFile writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogsTailAndFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.log")
	if err := os.WriteFile(path, []byte("one\ntwo\nthree\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		n    int
		want string
	}{
		{2, "two\nthree\n"},
		{0, "one\ntwo\nthree\n"},
		{10, "one\ntwo\nthree\n"},
	}
	for _, tt := range tests {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := printTail(&b, f, tt.n); err != nil || b.String() != tt.want {
			t.Errorf("printTail(%d) = %q, %v; want %q", tt.n, b.String(), err, tt.want)
		}
		_ = f.Close()
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Seek(0, 2); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- followFile(ctx, &out, f) }()
	w, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString("four\n"); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "four") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if out.String() != "four\n" {
		t.Errorf("followed %q, want the appended line", out.String())
	}
}
