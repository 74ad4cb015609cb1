// Package store is the local trace store of `flotilla up`: an OTLP/HTTP
// receiver (POST /v1/traces, protobuf or OTLP's JSON, gzip or not) that
// keeps recent traces in memory, bounded by span count and size with the
// oldest traces evicted first, as .NET Aspire's dashboard does for local
// development; queries over them (by service, version, duration, errors,
// time); and the analysis a waterfall shows: the tree of spans, with a
// bus consumer hung under the producer it is linked to as an async
// branch, the critical path, and each service's self-time, so the slow
// hop is named.
//
// A payload that does not decode is refused whole (400, nothing stored);
// a trace the store does not have is ErrNotFound.
package store
