// Package e2e holds the shop's whole-system tests, skipped under -short and
// run by CI:
//
//   - the consistency test: the six order-path services run as real
//     processes built from shop/cmd/*, killed at crash points and restarted,
//     while an invariant checker proves the scenario's data-consistency
//     incident (payment failed, stock stayed deducted) cannot happen;
//   - TestAllServices: all ten services together under the load generator
//     (flotilla load's library), then cross-service checks: every confirmed
//     order has one shipment and one confirmation mail, search finds every
//     product with its current price and popularity, and analytics' totals
//     equal order-service's own. -e2e.rate and -e2e.duration turn it into
//     the five-minute soak recorded in bench/README.md.
package e2e
