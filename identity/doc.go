// Package identity gives every workload of a flotilla platform an X.509
// identity and the mutual TLS that proves it, in SPIFFE's terms and
// Istio's naming, so a policy written against the local platform reads the
// same on Kubernetes.
//
// The control plane is the certificate authority ([CA]): an ECDSA P-256
// root whose key and certificate live in the data directory
// (identity/ca/key.pem with mode 0600, identity/ca/root.pem). It issues
// short-lived X.509-SVIDs whose one URI SAN is a SPIFFE ID of the form
//
//	spiffe://<trust-domain>/ns/<namespace>/sa/<service>
//
// (the trust domain is cluster.local and the services' namespace default
// unless configured, as on an Istio cluster; the platform's own
// workloads, the mesh, the gateway, the readiness probes and the smoke
// checks, are service accounts of the flotilla-system namespace).
//
// # How certificates reach processes
//
// [Workloads] writes each identity's SVID to a directory of its own under
// identity/workloads/<namespace>.<name>/: svid.pem (the certificate
// followed by its PKCS#8 key, mode 0600, so certificate and key are
// replaced together by one rename) and bundle.pem (the roots to trust).
// The process is told the directory by an environment variable
// (FLOTILLA_IDENTITY_DIR for a shop service) and reads it with a [Source],
// which looks at the files' modification time at most once a second when
// a handshake needs them and reloads what changed: a renewal or a
// rotation reaches every process without a restart, and connections made
// before it keep working (TLS checks a certificate when a connection is
// made). The control plane renews an SVID when half of its lifetime has
// passed ([Workloads.Renew]); `flotilla certs rotate` renews every one at
// once, and `flotilla certs rotate --ca` makes a new root, trusted beside
// the old one until the old one's last SVID has expired.
//
// # Mutual TLS
//
// [ServerConfig] and [ClientConfig] build tls.Configs from a Source with
// go-spiffe's tlsconfig helpers: the peer's chain is verified against the
// bundle and its SPIFFE ID authorized. [Listen] wraps a listener so each
// connection does its handshake on its first read (on the server's own
// goroutine for it), counts the outcome in [Stats] by reason
// (no_certificate, unknown_authority, expired, not_allowed,
// bad_certificate, plaintext, handshake), and in [Permissive] mode lets a
// plaintext connection through and counts it, as Istio's
// PeerAuthentication does; [PeerOf] is the verified identity of a
// connection. [Dialer] makes client connections that do the handshake
// before any HTTP is written, so http:// URLs keep working underneath.
package identity
