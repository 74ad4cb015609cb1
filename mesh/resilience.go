package mesh

import (
	"sync"
	"sync/atomic"
	"time"
)

// retryBudget caps retries to a ratio of requests plus a small floor per
// second, as Linkerd's budgets and Finagle's RetryBudget do: under an
// outage every request fails, and without a budget each would be tried
// 1+Attempts times, multiplying the load on what is already failing.
type retryBudget struct {
	ratio  float64
	perSec float64
	now    func() time.Time

	deposits atomic.Int64 // requests since the last withdrawal

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// budgetCap bounds the saved-up retries, so a long quiet stretch does not
// allow a burst.
const budgetCap = 100

func newRetryBudget(ratio, perSec float64, now func() time.Time) *retryBudget {
	return &retryBudget{ratio: ratio, perSec: perSec, now: now, tokens: perSec, last: now()}
}

func (b *retryBudget) deposit() { b.deposits.Add(1) }

// withdraw takes one retry from the budget, reporting whether it could.
func (b *retryBudget) withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if el := now.Sub(b.last); el > 0 {
		b.tokens += el.Seconds() * b.perSec
		b.last = now
	}
	b.tokens += float64(b.deposits.Swap(0)) * b.ratio
	if b.tokens > budgetCap {
		b.tokens = budgetCap
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// outlierFailure counts a failure (5xx or no response) against the
// endpoint and ejects it after Consecutive in a row.
func (m *Mesh) outlierFailure(sub *subset, e *endpoint) {
	c := m.cfg.Outlier
	if c.Consecutive < 0 || e.fails.Add(1) < int32(c.Consecutive) {
		return
	}
	now := m.cfg.Now().UnixNano()
	if e.ejected(now) {
		return
	}
	n := len(sub.endpoints)
	out := 0
	for _, o := range sub.endpoints {
		if o != e && o.ejected(now) {
			out++
		}
	}
	limit := n * c.MaxEjectionPercent / 100
	if limit < 1 {
		limit = 1
	}
	if out+1 > limit || out+1 >= n {
		return // never eject the last one standing
	}
	k := e.ejections.Add(1)
	d := c.BaseEjection * time.Duration(k)
	if d > c.MaxEjection || d <= 0 {
		d = c.MaxEjection
	}
	e.ejectedUntil.Store(now + int64(d))
	e.fails.Store(0)
	e.ejectedTotal.inc()
	m.log.Warn("mesh ejected endpoint", "subset", sub.name, "endpoint", e.addr, "for", d.String(), "consecutive_failures", c.Consecutive)
}

// outlierSuccess resets the endpoint's failure run.
func (m *Mesh) outlierSuccess(e *endpoint) {
	if e.fails.Load() != 0 {
		e.fails.Store(0)
	}
	if e.ejections.Load() != 0 && e.ejectedUntil.Load() != 0 && !e.ejected(m.cfg.Now().UnixNano()) {
		e.ejections.Store(0)
		e.ejectedUntil.Store(0)
	}
}
