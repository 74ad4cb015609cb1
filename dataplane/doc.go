// Package dataplane runs flotilla's data plane as a process of its own:
// the mesh (one stable listener per service, subsets, weights, lanes,
// authorization) and the edge gateway, configured by the control plane
// through snapshots, so users' requests keep flowing while the control
// plane restarts, crashes or is upgraded (as Envoy keeps serving without
// istiod).
//
// The protocol is xDS-like and small. A [Snapshot] is the whole
// configuration with a version the control plane sets; the data plane's
// [Server] validates it, applies it by reconciling (listeners added and
// removed, subsets set, weights set, removed subsets drained, the gateway
// replaced), saves it atomically in its state directory and acknowledges
// the version ([Ack]), or refuses it whole and keeps serving the previous
// one ([RefusedError]). On start it serves the saved snapshot before any
// push.
//
// The control plane's [Client] holds the desired state and implements
// deploy.Router: every change pushes a new snapshot and returns once it is
// acknowledged. After the data plane restarts, [Client.Push] sends the
// whole state again; after the control plane restarts, [Client.Adopt]
// takes what the data plane serves as the desired state.
//
// The listening sockets outlive the process (handover.go): the data
// plane hands copies of them (SCM_RIGHTS) to whoever connects to
// [SocketsIn]: the control plane's [Keeper], which gives them to the next
// data plane it starts ([Config.Inherited], [InheritedListeners]). A
// kill -9 then leaves the ports listening, with connections waiting in
// the backlog for the next process; an upgrade starts the new program on
// the same sockets beside the old one, which drains and exits.
//
// The admin API listens on a unix socket in the state directory
// ([SocketIn]), not on a loopback port: whoever can push a snapshot
// decides where every request goes, and a socket file with mode 0600 in
// a 0700 directory limits that to the user running flotilla, which a
// loopback port cannot; it also takes no port from the platform's block
// and is found from the state directory alone. [Main] is the process
// (`flotilla dataplane --state DIR`).
package dataplane
