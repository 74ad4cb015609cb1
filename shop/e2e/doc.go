// Package e2e holds the shop's whole-system tests: the six order-path
// services run as real processes built from shop/cmd/*, killed at crash
// points and restarted, while an invariant checker proves the scenario's
// data-consistency incident (payment failed, stock stayed deducted) cannot
// happen. Run with -short to skip them; CI runs them.
package e2e
