// Package contract is flotilla's pure-Go, Pact-compatible contract testing:
// it reads Pact specification v2, v3 and v4 files and writes v4 (or v3),
// matches requests, responses and messages with the specification's
// matching rules and generators, and offers a consumer DSL with a mock
// server, message pacts, a provider verifier and a stub server.
//
// Nothing needs cgo or a native library: CGO_ENABLED=0 builds and tests
// work, and the files it writes are read by the real Pact tools.
//
// # Consumers
//
// A consumer test builds interactions with NewConsumerPact, AddInteraction
// (Given, UponReceiving, WithRequest, WillRespondWith) and terms such as
// Like, EachLike, Regex, Integer, Decimal, Timestamp and Includes, then calls
// Run with a function that drives the consumer's real client against the
// mock server's base URL. Message pacts use ExpectsToReceive, WithContent,
// WithMetadata and Verify with the consumer's real handler. Passing
// interactions are merged into <Dir>/<consumer>-<provider>.json; Dir
// defaults to pacts/ at the module root (DefaultDir), where `flotilla
// contract verify`, `stub` and `coverage` look for them.
//
// `flotilla contract coverage` counts a message interaction for an event
// when its description names the event as a word ("an OrderCreated
// event") or a metadata value equals the event's name.
//
// # Providers
//
// A provider test calls Verify with a Verifier: the provider's base URL, the
// pacts' Sources (FileSource for files, directories and URLs), state
// handlers as Go functions (their returned values feed ProviderState
// generators) and, for messages, producers keyed by description. A broker
// plugs in as another Source (pacts with their results URL and pending
// flag) and a ResultPublisher.
//
// # Matching
//
// Requests are matched strictly (no unexpected query parameters or body
// keys), responses and messages leniently (extra keys and headers are
// allowed); header names are case-insensitive. Rules are found by the V3
// path weighting: the most specific rule path wins, and a name or index
// weighs more than a wildcard. A Mismatch names the part, the path
// ($.items[0].price), what was expected (with the matcher) and the value seen.
package contract
