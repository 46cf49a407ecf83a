package runner

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"

	"github.com/batch-tool/batch/internal/cost"
)

// TestLedgerCommitted checks that credits committed to a submitted async
// job are never waited for: they can only be kept, so a job that fits only
// if they were released fails at once.
func TestLedgerCommitted(t *testing.T) {
	const c = cost.Credit
	nothing := func(*ledger) {}
	tests := []struct {
		name                   string
		charged, unknown, held cost.Credits    // what earlier runs spent
		setup                  func(l *ledger) // before the reserve under test
		release                func(l *ledger) // while it waits; nil: it must not wait
		want                   error
	}{
		{"held by an earlier run", 0, 0, 6 * c, nothing, nil, ErrOverBudget},
		{"possibly billed by an earlier run", 0, 6 * c, 0, nothing, nil, ErrOverBudget},
		{"charged by an earlier run", 6 * c, 0, 0, nothing, nil, ErrOverBudget},
		{"charged by an earlier run, room left", 5 * c, 0, 0, nothing, nil, nil},
		{"pending found late", 0, 6 * c, 0, func(l *ledger) { l.adopt(6*c, 6*c) }, nil, ErrOverBudget},
		{"committed by a submit", 0, 0, 0, func(l *ledger) { l.reserve(context.Background(), 6*c); l.commit(6 * c) }, nil, ErrOverBudget},
		{"in flight, then released", 0, 0, 0, func(l *ledger) { l.reserve(context.Background(), 6*c) }, func(l *ledger) { l.settle(6*c, released) }, nil},
		{"in flight, then committed", 0, 0, 0, func(l *ledger) { l.reserve(context.Background(), 6*c) }, func(l *ledger) { l.commit(6 * c) }, ErrOverBudget},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				budget := 10 * c
				l := newLedger(&budget, tt.charged, tt.unknown, tt.held)
				tt.setup(l)
				done := make(chan error)
				go func() { done <- l.reserve(t.Context(), 5*c) }()
				if tt.release != nil {
					synctest.Wait()
					select {
					case err := <-done:
						t.Fatalf("reserve returned %v before the reservation in flight ended", err)
					default:
					}
					tt.release(l)
				}
				if err := <-done; !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
					t.Errorf("reserve = %v, want %v", err, tt.want)
				}
			})
		})
	}
	budget := 10 * c
	l := newLedger(&budget, 2*c, c, 6*c)
	l.settleCommitted(6*c, released) // never released: kept as possibly spent
	if charged, spent := l.totals(); charged != 2*c || spent != 9*c {
		t.Errorf("totals = %v, %v; want 2.0, 9.0", charged, spent)
	}
	l = newLedger(&budget, 0, 6*c, 0)
	l.adopt(6*c, 6*c)
	l.settleCommitted(6*c, charged) // fetched: charged, no longer possibly spent
	if charged, spent := l.totals(); charged != 6*c || spent != 6*c {
		t.Errorf("totals after adopting and fetching = %v, %v; want 6.0, 6.0", charged, spent)
	}
}
