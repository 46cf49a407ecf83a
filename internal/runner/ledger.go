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
// charged + unknown + reserved never passes the budget however many
// attempts are in flight. It is safe for concurrent use.
type ledger struct {
	budget *cost.Credits // nil: unlimited, still tracked

	mu       sync.Mutex
	charged  cost.Credits  // kept for completed work (succeeded, filtered, resumed)
	unknown  cost.Credits  // kept for attempts whose outcome is unknown
	reserved cost.Credits  // held by attempts in flight
	changed  chan struct{} // closed and replaced when a reservation ends
}

func newLedger(budget *cost.Credits, prior cost.Credits) *ledger {
	return &ledger{budget: budget, charged: prior, changed: make(chan struct{})}
}

// reserve holds c credits for one attempt. If c cannot fit even once every
// attempt in flight is released it returns ErrOverBudget at once; if it
// only lacks room because of reservations in flight, it waits for them to
// end.
func (l *ledger) reserve(ctx context.Context, c cost.Credits) error {
	for {
		l.mu.Lock()
		spent := l.charged + l.unknown
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
	switch how {
	case charged:
		l.charged += c
	case unknown:
		l.unknown += c
	}
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
