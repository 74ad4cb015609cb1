package mesh

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestForwarding runs the same exchanges through the mesh's own HTTP/1.1
// pool and through net/http's Transport.
func TestForwarding(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	sum := func(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }
	for _, std := range []bool{false, true} {
		t.Run(fmt.Sprintf("std=%v", std), func(t *testing.T) {
			m := newTestMesh(t, Config{StdTransport: std, StdServer: std})
			closed := make(chan struct{}, 10)
			up := newUpstream(t, "u", func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/echo":
					b, _ := io.ReadAll(r.Body)
					w.Header().Set("X-Sum", sum(b))
					_, _ = w.Write(b)
				case "/stream":
					w.Header().Set("Trailer", "X-Done")
					for i := range 5 {
						fmt.Fprintf(w, "chunk %d\n", i)
						if err := http.NewResponseController(w).Flush(); err != nil {
							t.Error(err)
							return
						}
					}
					w.Header().Set("X-Done", "yes")
				case "/close":
					// A complete response, then the connection is closed
					// without saying so: the pooled connection goes stale.
					c, bw, err := http.NewResponseController(w).Hijack()
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, r.Body)
					_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
					_ = bw.Flush()
					_ = c.Close()
					closed <- struct{}{}
				default:
					w.Header().Set("X-Method", r.Method)
					_, _ = io.WriteString(w, "hello")
				}
			})
			url := addService(t, m, ServiceConfig{Name: "cart-service"}, Subset{Name: "v1", Endpoints: []string{up.addr()}})

			r := do(t, "POST", url+"/echo", nil, string(big))
			if r.status != 200 || sum([]byte(r.body)) != sum(big) {
				t.Errorf("1 MiB echo: status %d, %d bytes", r.status, len(r.body))
			}
			resp, err := testClient.Get(url + "/stream")
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(resp.Body)
			lines := 0
			for sc.Scan() {
				lines++
			}
			_ = resp.Body.Close()
			if lines != 5 || resp.Trailer.Get("X-Done") != "yes" {
				t.Errorf("stream: %d lines, trailer %q", lines, resp.Trailer.Get("X-Done"))
			}
			req, _ := http.NewRequest("HEAD", url+"/head", nil)
			hr, err := testClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = hr.Body.Close()
			if hr.StatusCode != 200 || hr.Header.Get("X-Method") != "HEAD" {
				t.Errorf("HEAD: %d %v", hr.StatusCode, hr.Header)
			}
			if std {
				// net/http's Transport notices a closed idle connection
				// only if its reader goroutine ran first: a POST can hit
				// the stale connection and fail. The mesh's own pool
				// peeks before every reuse.
				return
			}
			for i := range 6 {
				method := "GET"
				if i%2 == 1 {
					method = "POST"
				}
				if r := do(t, method, url+"/close", nil, `{"n":1}`); r.status != 200 || r.body != "ok" {
					t.Errorf("%s %d after the upstream closed its connection: %d %q", method, i, r.status, strings.TrimSpace(r.body))
				}
				// The next request starts once the close has happened (a
				// close racing a reuse cannot be told apart by anyone).
				<-closed
			}
		})
	}
}

func BenchmarkProxy(b *testing.B) {
	for _, v := range []struct {
		name              string
		server, transport bool
	}{{"lean", false, false}, {"std-server", true, false}, {"std-both", true, true}} {
		b.Run(v.name, func(b *testing.B) {
			m, err := New(Config{StdServer: v.server, StdTransport: v.transport, Logger: quietLogger()})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = m.Close(b.Context()) }()
			up := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "hello") })}
			ln := listen(b)
			go func() { _ = up.Serve(ln) }() // ErrServerClosed once the benchmark is done
			defer func() { _ = up.Close() }()
			addr, err := m.AddService(b.Context(), ServiceConfig{Name: "product-service"})
			if err != nil {
				b.Fatal(err)
			}
			if err := m.SetSubset(b.Context(), "product-service", Subset{Name: "v1", Endpoints: []string{ln.Addr().String()}}); err != nil {
				b.Fatal(err)
			}
			url := "http://" + addr + "/products/1"
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				resp, err := testClient.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		})
	}
}

func listen(b *testing.B) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	return ln
}
