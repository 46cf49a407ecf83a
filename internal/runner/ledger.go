package runner

import (
	"context"
	"errors"
	"sync"

	"github.com/batch-tool/batch/internal/cost"
)

// ErrOverBudget reports a job that was not sent because its credits would
// take spending past the budget.
var ErrOverBudget = errors.New("would exceed budget")

// ledger tracks the run's money. Credits are reserved before each attempt
// and then either released (the API did no work) or kept, as charged (the
// API completed the job) or as possibly spent (the outcome is unknown), so
// charged + unknown + committed + reserved never passes the budget however
// many attempts are in flight. An async job's reservation is committed
// once the API accepts the submit: it can no longer be released, only
// settled as charged or possibly spent when the job ends. It is safe for
// concurrent use.
type ledger struct {
	budget *cost.Credits // nil: unlimited, still tracked

	mu        sync.Mutex
	charged   cost.Credits  // kept for completed work (succeeded, filtered, resumed)
	unknown   cost.Credits  // kept for attempts whose outcome is unknown
	committed cost.Credits  // held by async jobs submitted and not ended
	reserved  cost.Credits  // held by attempts in flight
	changed   chan struct{} // closed and replaced when a reservation ends or is committed
}

// newLedger starts with what earlier runs spent, as the journal records
// it: charged and possibly spent (unknown) credits, and held credits
// committed to async jobs an earlier run submitted, which this run settles
// when it fetches (charged) or gives up on (possibly spent) them.
func newLedger(budget *cost.Credits, charged, unknown, held cost.Credits) *ledger {
	return &ledger{budget: budget, charged: charged, unknown: unknown, committed: held, changed: make(chan struct{})}
}

// reserve holds c credits for one attempt. If c cannot fit even once every
// attempt in flight is released it returns ErrOverBudget at once; if it
// only lacks room because of reservations in flight, it waits for them to
// end. Committed credits are never released, so it never waits for them.
func (l *ledger) reserve(ctx context.Context, c cost.Credits) error {
	for {
		l.mu.Lock()
		spent := l.charged + l.unknown + l.committed
		if l.budget == nil || spent+l.reserved+c <= *l.budget {
			l.reserved += c
			l.mu.Unlock()
			return nil
		}
		if spent+c > *l.budget {
			l.mu.Unlock()
			return ErrOverBudget
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// settle ends a reservation of c credits: released (how == released),
// kept as charged, or kept as possibly spent.
func (l *ledger) settle(c cost.Credits, how settlement) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reserved -= c
	l.keep(c, how)
}

// commit turns a reservation of c credits into a commitment: the API
// accepted an async submit, so the credits will be charged or possibly
// spent, never released.
func (l *ledger) commit(c cost.Credits) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reserved -= c
	l.committed += c
	l.signal()
}

// settleCommitted ends a commitment of c credits, as charged or possibly
// spent (how is never released).
func (l *ledger) settleCommitted(c cost.Credits, how settlement) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.committed -= c
	if how == released {
		how = unknown // the work was accepted: it may be billed
	}
	l.keep(c, how)
}

// adopt turns credits counted as possibly spent by an earlier run (the
// counted price of a generation it submitted) into a commitment of c
// credits, for an async job found pending in the journal only once its
// sources ran again: this run settles it when it fetches or gives up on it.
func (l *ledger) adopt(counted, c cost.Credits) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unknown -= counted
	l.committed += c
	l.signal()
}

// keep adds c to the kept total how says and wakes waiters; l.mu is held.
func (l *ledger) keep(c cost.Credits, how settlement) {
	switch how {
	case charged:
		l.charged += c
	case unknown:
		l.unknown += c
	}
	l.signal()
}

// signal wakes every reserve waiting for room; l.mu is held.
func (l *ledger) signal() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// totals returns the credits charged and those possibly spent (charged
// plus unknown outcomes).
func (l *ledger) totals() (charged, spent cost.Credits) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.charged, l.charged + l.unknown
}

type settlement int

const (
	released settlement = iota // the API did no work
	charged                    // the API completed the work
	unknown                    // the request left; we cannot know
)
