package runner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"

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
// departure or arrival is delayed by up to rateMargin×Window (200 ms for a
// 10 s window) still never put N+1 requests into one of the server's
// windows.
const rateMargin = 0.02

// newLimiter returns the token bucket that paces every attempt.
//
// A bucket with burst N and rate N/W lets 2N requests into one window (a
// full burst, then a refill), so we use burst 1 and rate N/(W·(1+m)): with
// burst 1, consecutive requests are at least 1/rate apart, so any window of
// length W holds at most 1+floor(W·rate) = 1+floor(N/(1+m)) ≤ N requests
// (the floor of a number below N is at most N−1), for every N ≥ 1. Once
// warm it sustains N/(W·(1+m)), 98% of the allowed rate.
func newLimiter(r Rate) *rate.Limiter {
	perSec := float64(r.N) / (r.Window.Seconds() * (1 + rateMargin))
	return rate.NewLimiter(rate.Limit(perSec), 1)
}

// gate is what every attempt passes before it is sent: a client-wide pause
// (set after a 429) and then the shared limiter. It is safe for concurrent
// use.
type gate struct {
	limiter *rate.Limiter

	mu        sync.Mutex
	notBefore time.Time // no request leaves before this instant (zero: no pause)
}

func newGate(r Rate) *gate { return &gate{limiter: newLimiter(r)} }

// pause stops every attempt from leaving for d from now; overlapping pauses
// keep the later end. It reports whether the pause is news: no pause was
// running, or this one ends at least a second after it (so that the
// workers answered 429 at the same moment show one pause, not one each).
func (g *gate) pause(d time.Duration) bool {
	now := time.Now()
	until := now.Add(d)
	g.mu.Lock()
	defer g.mu.Unlock()
	news := !g.notBefore.After(now) || until.Sub(g.notBefore) >= time.Second
	if until.After(g.notBefore) {
		g.notBefore = until
	}
	return news
}

// pausedFor returns how long the current pause still lasts.
func (g *gate) pausedFor() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return time.Until(g.notBefore)
}

// wait blocks until a request may leave: after any pause, then a limiter
// token. A pause set while waiting for the token is respected too (the
// token is then spent, which only makes us slower).
func (g *gate) wait(ctx context.Context) error {
	for {
		if d := g.pausedFor(); d > 0 {
			if err := sleep(ctx, d); err != nil {
				return err
			}
		}
		if err := g.limiter.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("rate limiter: %w", err)
		}
		if g.pausedFor() <= 0 {
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
