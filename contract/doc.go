// Package contract is flotilla's pure-Go, Pact-compatible contract testing:
// it reads Pact specification v2, v3 and v4 files and writes v4 (or v3),
// matches requests, responses and messages with the specification's
// matching rules and generators, and offers a consumer DSL with a mock
// server, message pacts, a provider verifier and a stub server.
//
// Nothing needs cgo or a native library: CGO_ENABLED=0 builds and tests
// work, and the files it writes are read by the real Pact tools.
package contract
