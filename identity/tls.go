package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Mode is PeerAuthentication's mTLS mode for a listener.
type Mode string

// The modes.
const (
	// Strict refuses every connection without a client certificate of
	// the trust domain.
	Strict Mode = "strict"
	// Permissive accepts plaintext beside mutual TLS, and counts it.
	Permissive Mode = "permissive"
)

// ParseMode parses strict or permissive.
func ParseMode(s string) (Mode, error) {
	switch Mode(strings.ToLower(s)) {
	case Strict:
		return Strict, nil
	case Permissive:
		return Permissive, nil
	}
	return "", fmt.Errorf("mtls mode %q: want strict or permissive", s)
}

// The reasons a connection is refused, the label of Stats' counters.
const (
	ReasonNoCertificate    = "no_certificate"
	ReasonUnknownAuthority = "unknown_authority"
	ReasonExpired          = "expired"
	ReasonNotAllowed       = "not_allowed"
	ReasonBadCertificate   = "bad_certificate"
	ReasonPlaintext        = "plaintext"
	ReasonHandshake        = "handshake"
)

// ErrNotAllowed is what an authorizer returns for a verified identity it
// does not let in.
var ErrNotAllowed = errors.New("identity not allowed")

// AllowIDs authorizes the listed IDs only.
func AllowIDs(ids ...spiffeid.ID) tlsconfig.Authorizer {
	set := map[spiffeid.ID]bool{}
	for _, id := range ids {
		set[id] = true
	}
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		if set[id] {
			return nil
		}
		return fmt.Errorf("%w: %s", ErrNotAllowed, id)
	}
}

// AllowTrustDomain authorizes any ID of td.
func AllowTrustDomain(td spiffeid.TrustDomain) tlsconfig.Authorizer {
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		if id.MemberOf(td) {
			return nil
		}
		return fmt.Errorf("%w: %s is not of trust domain %s", ErrNotAllowed, id, td)
	}
}

// ServerConfig is a listener's mutual TLS: it presents src's SVID and
// requires a client SVID that verifies against src's bundle and that
// authorize accepts. TLS 1.3 only, no session tickets (connections are
// long-lived; a ticket on an idle pooled connection would read as data).
func ServerConfig(src *Source, authorize tlsconfig.Authorizer) *tls.Config {
	c := tlsconfig.MTLSServerConfig(src, src, authorize)
	c.MinVersion = tls.VersionTLS13
	c.SessionTicketsDisabled = true
	return c
}

// ClientConfig is a client's mutual TLS: it presents src's SVID and
// accepts a server whose SVID verifies and that authorize accepts.
func ClientConfig(src *Source, authorize tlsconfig.Authorizer) *tls.Config {
	c := tlsconfig.MTLSClientConfig(src, src, authorize)
	c.MinVersion = tls.VersionTLS13
	return c
}

// Reason classifies a failed handshake.
func Reason(err error) string {
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	var rh tls.RecordHeaderError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrNotAllowed):
		return ReasonNotAllowed
	case errors.As(err, &ua):
		return ReasonUnknownAuthority
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return ReasonExpired
	case errors.As(err, &rh) || errors.Is(err, errPlaintext):
		return ReasonPlaintext
	case strings.Contains(err.Error(), "didn't provide a certificate"):
		return ReasonNoCertificate
	case strings.Contains(err.Error(), "x509svid") || strings.Contains(err.Error(), "x509:"):
		return ReasonBadCertificate
	}
	return ReasonHandshake
}

// Stats counts a listener's handshakes and refusals. The zero value is
// ready; it is safe for concurrent use.
type Stats struct {
	handshakes atomic.Int64
	plaintext  atomic.Int64
	mu         sync.Mutex
	refused    map[string]*atomic.Int64
	// OnRefuse, when set, is called for each refused connection (a log
	// line); it must be quick.
	OnRefuse func(reason string, remote net.Addr, err error)
}

func (s *Stats) refuse(reason string, remote net.Addr, err error) {
	s.mu.Lock()
	if s.refused == nil {
		s.refused = map[string]*atomic.Int64{}
	}
	c := s.refused[reason]
	if c == nil {
		c = new(atomic.Int64)
		s.refused[reason] = c
	}
	s.mu.Unlock()
	c.Add(1)
	if s.OnRefuse != nil {
		s.OnRefuse(reason, remote, err)
	}
}

// Handshakes is the number of mutual TLS handshakes that succeeded.
func (s *Stats) Handshakes() int64 { return s.handshakes.Load() }

// Plaintext is the number of plaintext connections accepted (permissive).
func (s *Stats) Plaintext() int64 { return s.plaintext.Load() }

// Refused is the number of connections refused for reason.
func (s *Stats) Refused(reason string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.refused[reason]; c != nil {
		return c.Load()
	}
	return 0
}

// WritePrometheus writes the counters as Prometheus exposition:
// <prefix>_handshakes_total, <prefix>_plaintext_accepted_total and
// <prefix>_refused_total{reason}, each with the extra labels (`a="b"`,
// may be empty).
func (s *Stats) WritePrometheus(w io.Writer, prefix, labels string) {
	join := func(l string) string {
		switch {
		case labels == "" && l == "":
			return ""
		case labels == "":
			return "{" + l + "}"
		case l == "":
			return "{" + labels + "}"
		}
		return "{" + labels + "," + l + "}"
	}
	_, _ = fmt.Fprintf(w, "%s_handshakes_total%s %d\n", prefix, join(""), s.Handshakes())
	_, _ = fmt.Fprintf(w, "%s_plaintext_accepted_total%s %d\n", prefix, join(""), s.Plaintext())
	s.mu.Lock()
	reasons := make([]string, 0, len(s.refused))
	for r := range s.refused {
		reasons = append(reasons, r)
	}
	s.mu.Unlock()
	sort.Strings(reasons)
	for _, r := range reasons {
		_, _ = fmt.Fprintf(w, "%s_refused_total%s %d\n", prefix, join(`reason="`+r+`"`), s.Refused(r))
	}
}

// Listen wraps ln: each accepted connection is a *Conn that does its
// handshake (or, in Permissive mode, notices plaintext) on its first read
// or write, counting the outcome in stats.
func Listen(ln net.Listener, cfg *tls.Config, mode Mode, stats *Stats) net.Listener {
	if stats == nil {
		stats = &Stats{}
	}
	return &listener{Listener: ln, cfg: cfg, mode: mode, stats: stats}
}

type listener struct {
	net.Listener
	cfg   *tls.Config
	mode  Mode
	stats *Stats
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &Conn{raw: c, l: l}, nil
}

var errPlaintext = errors.New("plaintext connection refused: this listener requires mutual TLS")

// Conn is a server connection of a Listen listener.
type Conn struct {
	raw  net.Conn
	l    *listener
	once sync.Once
	c    net.Conn // after the handshake: the TLS conn, or raw (plaintext)
	err  error
	peer spiffeid.ID
	tls  bool
}

// Handshake does the handshake now (it is done on first use otherwise).
func (c *Conn) Handshake() error {
	c.once.Do(c.handshake)
	return c.err
}

func (c *Conn) handshake() {
	var first [1]byte
	if _, err := io.ReadFull(c.raw, first[:]); err != nil {
		c.err = err
		return
	}
	pc := &prefixConn{Conn: c.raw, prefix: first[:]}
	if first[0] != 0x16 { // not a TLS handshake record
		if c.l.mode == Permissive {
			c.l.stats.plaintext.Add(1)
			c.c = pc
			return
		}
		c.err = errPlaintext
		c.l.stats.refuse(ReasonPlaintext, c.raw.RemoteAddr(), c.err)
		_ = c.raw.Close()
		return
	}
	tc := tls.Server(pc, c.l.cfg)
	if err := tc.Handshake(); err != nil {
		c.err = err
		c.l.stats.refuse(Reason(err), c.raw.RemoteAddr(), err)
		_ = c.raw.Close()
		return
	}
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) > 0 {
		c.peer, _ = x509svid.IDFromCert(cs.PeerCertificates[0])
	}
	c.c, c.tls = tc, true
	c.l.stats.handshakes.Add(1)
}

// Peer is the verified identity of the other side (zero for plaintext or
// before the handshake).
func (c *Conn) Peer() spiffeid.ID {
	if c.Handshake() != nil {
		return spiffeid.ID{}
	}
	return c.peer
}

// TLS reports whether the connection is mutual TLS (false: plaintext,
// accepted in permissive mode).
func (c *Conn) TLS() bool { return c.Handshake() == nil && c.tls }

func (c *Conn) Read(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	return c.c.Read(p)
}

func (c *Conn) Write(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	return c.c.Write(p)
}

// Close closes the connection (without TLS's close_notify: it may be
// called while the handshake runs on another goroutine).
func (c *Conn) Close() error                       { return c.raw.Close() }
func (c *Conn) LocalAddr() net.Addr                { return c.raw.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.raw.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.raw.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.raw.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

// NetConn is the TCP connection underneath.
func (c *Conn) NetConn() net.Conn { return c.raw }

// prefixConn replays bytes already read before the connection's own.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// PeerOf is the verified identity of a connection: a *Conn's, or a
// *tls.Conn's peer certificate's. Zero when there is none.
func PeerOf(c net.Conn) spiffeid.ID {
	switch c := c.(type) {
	case *Conn:
		return c.Peer()
	case *tls.Conn:
		cs := c.ConnectionState()
		if len(cs.PeerCertificates) > 0 {
			id, _ := x509svid.IDFromCert(cs.PeerCertificates[0])
			return id
		}
	}
	return spiffeid.ID{}
}

// Dialer dials TCP and does the client handshake before returning, so a
// caller (an http.Transport's DialContext) can speak HTTP over mutual TLS
// to http:// URLs.
type Dialer struct {
	Net    net.Dialer
	Config *tls.Config
	// Fallback (permissive mode's client side, as Istio's auto mTLS):
	// a server that answers the handshake in plaintext (one that does not
	// speak TLS) is dialed again and spoken to in plaintext.
	Fallback bool
}

// DialContext implements http.Transport's DialContext.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	raw, err := d.Net.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc, err := d.Handshake(ctx, raw)
	var rh tls.RecordHeaderError
	if err != nil && d.Fallback && errors.As(err, &rh) {
		return d.Net.DialContext(ctx, network, addr)
	}
	if err != nil {
		return nil, err
	}
	return tc, nil
}

// Handshake runs the client handshake over raw (closed on failure).
func (d *Dialer) Handshake(ctx context.Context, raw net.Conn) (*tls.Conn, error) {
	tc := tls.Client(raw, d.Config)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("mtls handshake with %s: %w", raw.RemoteAddr(), err)
	}
	return tc, nil
}
