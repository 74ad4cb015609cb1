package user

import (
	"bytes"
	"io"
	"net/http"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// memResponse is a ResponseWriter whose result becomes an *http.Response,
// so the service verifies its own tokens without a network round trip.
type memResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (m *memResponse) Header() http.Header { return m.header }
func (m *memResponse) WriteHeader(s int)   { m.status = s }
func (m *memResponse) Write(b []byte) (int, error) {
	if m.status == 0 {
		m.status = http.StatusOK
	}
	return m.body.Write(b)
}

func (m *memResponse) response(r *http.Request) *http.Response {
	return &http.Response{StatusCode: m.status, Status: http.StatusText(m.status), Header: m.header,
		Body: io.NopCloser(bytes.NewReader(m.body.Bytes())), Request: r}
}
