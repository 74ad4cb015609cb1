package mesh

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
)

// The hop's benchmark drives one mesh service over real loopback
// connections with a client and an upstream that speak HTTP/1.1 by hand
// and allocate nothing per request, so what the benchmark counts is the
// mesh's own work for one proxied request: read the request, route,
// authorize, forward, read the response, write it back, record metrics.

var (
	hopBody     = []byte(`{"id":"9f1c2d3e","sku":"SKU-1234","name":"Espresso beans 1kg","price_cents":2450,"stock":118}` + "\n")
	hopResponse = append([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Mon, 07 Dec 2026 12:00:00 GMT\r\nContent-Length: "+
		strconv.Itoa(len(hopBody))+"\r\n\r\n"), hopBody...)
	hopRequest = []byte("GET /products/1 HTTP/1.1\r\nHost: product-service\r\nUser-Agent: bench\r\nAccept: */*\r\nX-Flotilla-Caller: order-service\r\n\r\n")
)

// rawUpstream answers every request on every connection with
// hopResponse; requests have no body.
func rawUpstream(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				br := bufio.NewReaderSize(c, 4096)
				for {
					if err := skipHead(br); err != nil {
						return
					}
					if _, err := c.Write(hopResponse); err != nil {
						return
					}
				}
			}()
		}
	}()
	tb.Cleanup(func() { _ = ln.Close() })
	return ln.Addr().String()
}

// skipHead reads a request or response head up to its empty line and
// returns the Content-Length it gave (0 when none).
func skipHeadLen(br *bufio.Reader) (int, error) {
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			return n, nil
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			n = 0
			for _, c := range bytes.TrimSpace(v) {
				n = n*10 + int(c-'0')
			}
		}
	}
}

func skipHead(br *bufio.Reader) error { _, err := skipHeadLen(br); return err }

// hopClient sends hopRequest on one keep-alive connection and reads the
// response.
type hopClient struct {
	c   net.Conn
	br  *bufio.Reader
	buf []byte
}

func newHopClient(tb testing.TB, addr string) *hopClient {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return &hopClient{c: c, br: bufio.NewReaderSize(c, 4096), buf: make([]byte, 4096)}
}

var errHopStatus = errors.New("hop: not a 200")

func (h *hopClient) do() error {
	if _, err := h.c.Write(hopRequest); err != nil {
		return err
	}
	line, err := h.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return errHopStatus
	}
	n, err := skipHeadLen(h.br)
	if err != nil {
		return err
	}
	_, err = io.ReadFull(h.br, h.buf[:n])
	return err
}

// newHop starts a mesh with product-service over a raw upstream, the
// graph's authz enforced, and returns the service's address.
func newHop(tb testing.TB) string {
	tb.Helper()
	m, err := New(Config{Logger: quietLogger(), Authz: AuthzConfig{Mode: AuthzEnforce, Unknown: UnknownDeny, Policy: NewPolicy(map[string][]string{"order-service": {"product-service"}})}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Close(tb.Context()) })
	addr, err := m.AddService(tb.Context(), ServiceConfig{Name: "product-service"})
	if err != nil {
		tb.Fatal(err)
	}
	if err := m.SetSubset(tb.Context(), "product-service", Subset{Name: "v1", Endpoints: []string{rawUpstream(tb)}}); err != nil {
		tb.Fatal(err)
	}
	return addr
}

// BenchmarkHop is one proxied request through the mesh; allocs/op is the
// mesh's alone (the client and upstream allocate nothing per request).
func BenchmarkHop(b *testing.B) {
	h := newHopClient(b, newHop(b))
	if err := h.do(); err != nil { // the upstream connection is made
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := h.do(); err != nil {
			b.Fatal(err)
		}
	}
}

// hopAllocCeiling is what one proxied request may allocate in the mesh
// (BenchmarkHop measures 51 on go1.26); a change that adds allocations to
// the hop fails TestHopAllocations and must raise it knowingly.
const hopAllocCeiling = 54
