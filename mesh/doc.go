// Package mesh is flotilla's built-in L7 service mesh and edge gateway: what
// Istio's VirtualService and DestinationRule, and Kong in front of them, do
// for the shop when it runs on one machine.
//
// A [Mesh] gives every service one stable local address (what a Kubernetes
// Service is). Behind it are subsets, one per version, of instances
// (host:port endpoints). Traffic is split between subsets by weights that
// change atomically at runtime (a smooth weighted round robin, so a split
// is exact over every period rather than on average), and two headers win
// over the weights:
//
//	X-Canary: true              → the subset marked Canary (the scenario's header lane)
//	X-Flotilla-Version: 3f2a1b  → the subset named 3f2a1b (a version pin)
//
// The response carries X-Flotilla-Upstream-Version naming the subset that
// served it.
//
// Each request gets a timeout (per service or per path prefix), retries on
// another endpoint when the request never reached one (connection failed)
// or, for idempotent methods without a body, on a transport error or a
// 502/503/504 (bounded by a retry budget: 20% of requests plus 10/s by
// default), and passive outlier ejection (consecutive failures take an
// endpoint out for a while; never the last one of a subset). Removing a
// subset or an endpoint drains it: it gets no new requests, and the call
// returns once its in-flight requests have finished, so the orchestrator
// can stop the process.
//
// # Driving it
//
// The control plane and the deploy orchestrator drive a [Mesh] with:
//
//	m, _ := mesh.New(mesh.Config{Authz: mesh.AuthzConfig{Mode: mesh.AuthzEnforce, Policy: mesh.PolicyFromManifest(man)}})
//	addr, _ := m.AddService(ctx, mesh.ServiceConfig{Name: "order-service"})       // the stable address callers use
//	m.SetSubset(ctx, "order-service", mesh.Subset{Name: "3f2a1b", Endpoints: eps}) // first subset: weight 100
//	m.SetSubset(ctx, "order-service", mesh.Subset{Name: "9c0d7e", Canary: true, Endpoints: eps2}) // weight 0
//	m.SetWeights(ctx, "order-service", map[string]int{"3f2a1b": 0, "9c0d7e": 100})  // atomic switch
//	m.RemoveSubset(ctx, "order-service", "3f2a1b") // returns once drained: stop its processes now
//	m.AddEndpoint(ctx, "order-service", "9c0d7e", addr3) // scale out; RemoveEndpoint drains one
//
// and serve [Mesh.MetricsHandler] at /metrics. A [Gateway] is built over
// the mesh with [NewGateway] from a [GatewayConfig] ([ParseGatewayConfig]).
//
// Each service's listener speaks HTTP/1.1 with its own keep-alive loop and
// forwards over its own connection pool, both on the request's goroutine
// (Config.StdServer and Config.StdTransport switch back to net/http's):
// that cuts what the hop adds by about a third compared with a plain
// ReverseProxy on a small machine (bench/README.md). The process embedding
// the mesh should raise GOGC (debug.SetGCPercent(400), as the benchmark
// does) or set a memory limit: at the default a busy mesh collects many
// times a second.
//
// # Caller identity and authorization
//
// With [Config].TLS (a platform's default), every service's listener
// speaks mutual TLS (package identity): a caller presents an X.509-SVID
// of the trust domain, and the mesh knows it by its SPIFFE ID, never by a
// header. The listener removes any X-Flotilla-Peer ([PeerHeader]) a
// client sent and sets it to the verified ID
// (spiffe://cluster.local/ns/default/sa/order-service), and the mesh
// forwards it to the instance over mutual TLS of its own (the instance
// must present its service's SVID); the edge gateway sets its own ID
// (.../ns/flotilla-system/sa/gateway) the same way. A service believes
// X-Flotilla-Peer only on a connection whose peer certificate is the
// mesh's (shop/kit's Peer), and then knows who called it through the
// mesh. In [identity.Permissive] mode a listener also accepts plaintext,
// whose caller is unknown, and the mesh speaks plaintext to an instance
// that answers its handshake in plaintext (Istio's auto mTLS); flotilla_mesh_mtls_handshakes_total,
// _plaintext_accepted_total and _refused_total{reason} count what each
// listener accepted and refused.
//
// Without TLS, every shop service sets X-Flotilla-Caller to its own name
// on every call it makes through the mesh (shop/kit does this), and the
// mesh takes it at its word: an assertion, not a proof.
//
// With a [Policy] built from the graph ([PolicyFromManifest]), a call
// from a service to one it does not depends_on is counted in
// flotilla_mesh_authz_denied_total and, in [AuthzEnforce] mode, refused
// with 403; [AuthzWarn] lets it through. Calls from no known caller are
// allowed or refused per [AuthzConfig].Unknown. The edge gateway calls as
// [GatewayCaller] and the smoke checks as [SmokeCaller], both allowed
// everywhere.
//
// # Metrics
//
// [Mesh.MetricsHandler] serves Prometheus exposition:
// flotilla_mesh_requests_total and flotilla_mesh_request_duration_seconds
// by destination, version, source and status_class, plus retries,
// ejections, unroutable requests and authorization refusals. The mesh
// implements canary.Router (SetWeights, Weights) and canary.Metrics (Stats)
// on its own state and measurements.
//
// # Gateway
//
// A [Gateway] is the public edge: path-prefix routes to services, which
// may be split by method (reads public, writes behind a token), JWT
// validation against a JWKS URL (RS256 and EdDSA, keys cached and refetched
// on an unknown kid), public routes, token-bucket rate limits per client
// and route (429 with Retry-After), X-Request-Id, traceparent passed
// through, and access logs.
package mesh
