package mesh

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func rawConn(t *testing.T, url string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second)) // a hang fails instead of stalling the suite
	return c, bufio.NewReader(c)
}

func TestConnServer(t *testing.T) {
	m := newTestMesh(t, Config{})
	up := newUpstream(t, "u", nil)
	url := addService(t, m, ServiceConfig{Name: "user-service"}, Subset{Name: "v1", Endpoints: []string{up.addr()}})

	t.Run("malformed request is 400", func(t *testing.T) {
		c, br := rawConn(t, url)
		_, _ = io.WriteString(c, "GARBAGE\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		if resp.StatusCode != 400 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("huge headers are 431", func(t *testing.T) {
		c, br := rawConn(t, url)
		go func() {
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
			line := "X-Filler: " + strings.Repeat("a", 1000) + "\r\n"
			for range 1200 { // 1.2 MB of headers
				if _, err := io.WriteString(c, line); err != nil {
					return
				}
			}
		}()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		if resp.StatusCode != 431 {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("pipelined requests answer in order", func(t *testing.T) {
		c, br := rawConn(t, url)
		_, _ = io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /c HTTP/1.1\r\nHost: x\r\n\r\n")
		for i, method := range []string{"GET", "POST", "GET"} {
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatalf("response %d: %v", i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "u" {
				t.Errorf("response %d: %d %q", i, resp.StatusCode, b)
			}
		}
	})
	t.Run("HTTP/1.0 closes after the response", func(t *testing.T) {
		c, br := rawConn(t, url)
		_, _ = io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if string(b) != "u" {
			t.Errorf("body %q", b)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("connection still open after an HTTP/1.0 response: %v", err)
		}
	})
	t.Run("Connection: close is honoured", func(t *testing.T) {
		c, br := rawConn(t, url)
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if !resp.Close {
			t.Error("response does not say Connection: close")
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("connection still open: %v", err)
		}
	})
	t.Run("Expect: 100-continue", func(t *testing.T) {
		c, br := rawConn(t, url)
		_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
			t.Fatalf("first line %q, %v; want 100 Continue", line, err)
		}
		_, _ = br.ReadString('\n')
		_, _ = io.WriteString(c, "{}")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("final response: %v %v", resp, err)
		}
		_ = resp.Body.Close()
	})
}

func TestRemoveServiceDrainsInFlight(t *testing.T) {
	m := newTestMesh(t, Config{})
	gate := make(chan struct{})
	var held atomic.Int64
	up := newUpstream(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		held.Add(1)
		<-gate
		_, _ = io.WriteString(w, "finished")
	})
	url := addService(t, m, ServiceConfig{Name: "order-service"}, Subset{Name: "v1", Endpoints: []string{up.addr()}})
	got := make(chan result, 1)
	go func() {
		r, err := doErr("GET", url, nil, "")
		if err != nil {
			r.body = err.Error()
		}
		got <- r
	}()
	waitFor(t, "request in flight", func() bool { return held.Load() == 1 })
	removed := make(chan error, 1)
	go func() { removed <- m.RemoveService(context.Background(), "order-service") }()
	// New connections are refused once the listener is closed.
	waitFor(t, "listener closed", func() bool {
		c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err == nil {
			_ = c.Close()
		}
		return err != nil
	})
	select {
	case err := <-removed:
		t.Fatalf("RemoveService returned (%v) with a request in flight", err)
	default:
	}
	close(gate)
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.status != 200 || r.body != "finished" {
		t.Errorf("in-flight request: %d %q", r.status, r.body)
	}
}

func TestUpgradeThroughTheMesh(t *testing.T) {
	for _, std := range []bool{false, true} {
		t.Run(map[bool]string{false: "own server", true: "net/http"}[std], func(t *testing.T) {
			m := newTestMesh(t, Config{StdServer: std, StdTransport: std})
			up := newUpstream(t, "echo", func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Upgrade") != "echo" {
					http.Error(w, "want an upgrade", 400)
					return
				}
				c, brw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				defer func() { _ = c.Close() }()
				_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
				_ = brw.Flush()
				buf := make([]byte, 4)
				if _, err := io.ReadFull(brw, buf); err == nil {
					_, _ = c.Write(buf)
				}
			})
			url := addService(t, m, ServiceConfig{Name: "notification-service"}, Subset{Name: "v1", Endpoints: []string{up.addr()}})
			c, br := rawConn(t, url)
			_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close() // a 101 has no body: the connection is now the echo stream
			if resp.StatusCode != 101 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			_, _ = io.WriteString(c, "ping")
			buf := make([]byte, 4)
			if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
				t.Errorf("echo over the upgraded connection: %q, %v", buf, err)
			}
		})
	}
}
