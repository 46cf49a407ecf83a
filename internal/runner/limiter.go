package runner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/stability"
)

// DefaultMaxPause is Config.MaxPause when zero. A server's Retry-After
// could otherwise hold every worker for days (Retry-After: 1000000 is 11
// days); a minute is the API's own lock-out after a 429, so a longer wait
// would only be asked for by a server we should not trust that far. A
// request sent too early gets another 429, and pauses again.
const DefaultMaxPause = time.Minute

// Rate is a request limit: at most N requests in any window of length
// Window. The zero value means DefaultRate.
type Rate struct {
	N      int           // requests per window, ≥ 1
	Window time.Duration // window length, > 0
}

// DefaultRate is the Stability API's documented limit: 150 requests in any
// 10-second window.
var DefaultRate = Rate{N: 150, Window: 10 * time.Second}

// String formats r as N/DURATION, e.g. "150/10s".
func (r Rate) String() string { return fmt.Sprintf("%d/%s", r.N, r.Window) }

// ParseRate reads N/DURATION such as "150/10s" or "2/1m". A bare unit
// ("60/s", "1000/m") means one of that unit. It follows the rules of the
// manifest's rate (manifest.ParseRate), so the flag and the manifest accept
// the same text.
func ParseRate(s string) (Rate, error) {
	n, w, err := manifest.ParseRate(s)
	if err != nil {
		return Rate{}, err
	}
	return Rate{N: n, Window: w}, nil
}

// rateMargin slows the limiter below N/Window so that requests whose
// departure or arrival is delayed by less than rateMargin×Window (200 ms
// for a 10 s window) still never put N+1 requests into one of the
// server's windows.
const rateMargin = 0.02

// interval is the least time between two sends under r: W·(1+m)/N.
//
// Why it keeps every window at N or fewer: every send leaves at a slot
// that RateState.Take returned, and consecutive slots, taken by any run
// sharing the state, are at least one interval apart. So k sends whose
// slots lie within a window of length W need (k−1)·interval ≤ W, that is
// k ≤ 1 + W/interval = 1 + N/(1+m), and since k is whole and N/(1+m) < N,
// k ≤ N, for every N ≥ 1. A send delayed after its slot by less than m·W
// keeps the bound too: k sends arriving within W then have slots within
// W + m·W, so (k−1)·interval < W(1+m), k−1 < N. Taking the later of now and
// the next slot lets no burst through after an idle spell (a token bucket
// of burst N would let 2N into one window: a full bucket, then a refill),
// and a saturated limiter sends at N/(W·(1+m)), 98% of the limit, whether
// one run or many share it. Runs sharing a state at different rates space
// their slots at least the shortest of their intervals apart, so every
// window stays within the largest of their N.
func (r Rate) interval() time.Duration {
	return time.Duration(float64(r.Window) * (1 + rateMargin) / float64(r.N))
}

// RateState is where the limiter keeps its schedule: the next free send
// slot and the end of a pause after a 429. Config.RateState nil keeps it
// in memory, for one run alone; a sharedrate.File keeps it in a file that
// every run using the same API key on the machine shares, so that their
// sends are spaced as one stream and the bound of interval holds between
// them. Times are wall-clock times; an implementation is safe for
// concurrent use and keeps this contract:
//   - Take(now, interval) returns a slot no earlier than now, than the end
//     of the pause, and than the previous slot plus the interval its taker
//     asked for; the slot is spent whether or not a request leaves at it.
//   - Pause(now, d) stops every slot until now+d, unless a pause already
//     runs longer.
//   - PausedUntil(now) returns the end of the pause (not after now when
//     none runs).
type RateState interface {
	Take(now time.Time, interval time.Duration) (time.Time, error)
	Pause(now time.Time, d time.Duration) error
	PausedUntil(now time.Time) (time.Time, error)
}

// memState is the RateState of a run that shares its limit with no other.
type memState struct {
	mu          sync.Mutex
	next, pause time.Time
}

func (m *memState) Take(now time.Time, interval time.Duration) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	slot := now
	for _, t := range []time.Time{m.next, m.pause} {
		if t.After(slot) {
			slot = t
		}
	}
	m.next = slot.Add(interval)
	return slot, nil
}

func (m *memState) Pause(now time.Time, d time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if until := now.Add(d); until.After(m.pause) {
		m.pause = until
	}
	return nil
}

func (m *memState) PausedUntil(time.Time) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pause, nil
}

// gate is what every attempt and poll passes before it is sent: the pause
// after a 429 and the slots of the RateState. It is safe for concurrent
// use.
type gate struct {
	interval time.Duration
	state    RateState
	// turn lets one waiter of the run at a time hold a slot: the others
	// wait here, not on slots of their own, so a run holds at most one
	// slot ahead of now, runs sharing a state take turns slot by slot, and
	// a run that stops or dies leaves at most one slot unused.
	turn chan struct{}

	mu sync.Mutex
	// notBefore is the end of this run's own latest pause: it tells which
	// pauses are news, and holds the run even when the state could not
	// store the pause.
	notBefore time.Time
	err       error // the first error storing a pause; wait returns it
}

// newGate returns the gate of a run limited to r, its schedule in state
// (nil: in memory).
func newGate(r Rate, state RateState) *gate {
	if state == nil {
		state = &memState{}
	}
	return &gate{interval: r.interval(), state: state, turn: make(chan struct{}, 1)}
}

// WaitTurn waits, as each of Run's attempts does, until one request sent
// outside Run (the balance check before it) may leave under r, taking its
// slot from state; with a nil state (no other run to share the limit with)
// it returns at once.
func WaitTurn(ctx context.Context, r Rate, state RateState) error {
	if state == nil {
		return ctx.Err()
	}
	if r.N <= 0 || r.Window <= 0 {
		r = DefaultRate
	}
	return newGate(r, state).wait(ctx)
}

// pause stops every attempt from leaving for d from now, in every run
// sharing the state; overlapping pauses keep the later end. It reports
// whether the pause is news to this run: none of its own was running, or
// this one ends at least a second after it (so that the workers answered
// 429 at the same moment show one pause, not one each).
func (g *gate) pause(d time.Duration) bool {
	now := time.Now()
	until := now.Add(d)
	err := g.state.Pause(now, d)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil && g.err == nil {
		g.err = fmt.Errorf("rate limiter: %w", err)
	}
	news := !g.notBefore.After(now) || until.Sub(g.notBefore) >= time.Second
	if until.After(g.notBefore) {
		g.notBefore = until
	}
	return news
}

// ownPause returns the end of this run's own latest pause, and the first
// error storing one.
func (g *gate) ownPause() (time.Time, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.notBefore, g.err
}

// wait blocks until a request may leave: it takes its turn, waits out any
// pause of this run, takes a slot and waits for it. A pause set meanwhile
// (by this run or another sharing the state) spends the slot, and it takes
// another after the pause.
func (g *gate) wait(ctx context.Context) error {
	select {
	case g.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-g.turn }()
	for {
		own, err := g.ownPause()
		if err != nil {
			return err
		}
		if err := sleep(ctx, time.Until(own)); err != nil {
			return err
		}
		now := time.Now()
		slot, err := g.state.Take(now, g.interval)
		if err != nil {
			return fmt.Errorf("rate limiter: %w", err)
		}
		if !slot.After(now) {
			// Take saw every shared pause set by now, and there is no
			// wait in which another could be set: only this run's own
			// pause (one the state could not store) may hold it.
			if own, _ := g.ownPause(); !own.After(now) {
				return nil
			}
			continue
		}
		if err := sleep(ctx, slot.Sub(now)); err != nil {
			return err
		}
		shared, err := g.state.PausedUntil(time.Now())
		if err != nil {
			return fmt.Errorf("rate limiter: %w", err)
		}
		own, _ = g.ownPause()
		if now := time.Now(); !shared.After(now) && !own.After(now) {
			return nil
		}
	}
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// pauseAll pauses every request after a 429: for the answer's Retry-After,
// or Config.Lockout without one, and never longer than Config.MaxPause. A
// pause that is news shows in the progress line.
func (r *run) pauseAll(err error) {
	d := min(r.retryAfter(err), r.cfg.MaxPause)
	if r.gate.pause(d) {
		r.showPause(Pause{Reason: "rate limited (429)", Until: r.cfg.Now().Add(d)})
	}
}

// retryWait waits before retry n (1-based) of job id after err, a backoff
// of at most Config.MaxPause, and shows it in the progress line.
func (r *run) retryWait(ctx context.Context, id string, err error, n int) error {
	d := min(backoff(r.cfg.BackoffBase, r.cfg.BackoffCap, n), r.cfg.MaxPause)
	r.showPause(Pause{Job: id, Reason: retryReason(err), Until: r.cfg.Now().Add(d)})
	return sleep(ctx, d)
}

// retryReason names the failure an attempt is retried after, for the
// progress line: "a 502", "a timeout", "a connection failure".
func retryReason(err error) string {
	if e, ok := errors.AsType[*stability.APIError](err); ok {
		return fmt.Sprintf("a %d", e.Status)
	}
	if _, ok := errors.AsType[*stability.TimeoutError](err); ok {
		return "a timeout"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "the attempt timeout"
	}
	if e, ok := errors.AsType[*stability.TransportError](err); ok {
		if e.Sent {
			return "a dropped connection"
		}
		return "a connection failure"
	}
	return "an error"
}
