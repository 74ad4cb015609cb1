//go:build tools

// Package tools pins the etcd that the test plane runs (the release Kubernetes 1.36 is built against).
package tools

import _ "go.etcd.io/etcd/server/v3"
