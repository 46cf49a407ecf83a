package runner

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

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
// ("60/s", "1000/m") means one of that unit.
func ParseRate(s string) (Rate, error) {
	ns, ds, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want N/DURATION, e.g. 150/10s", s)
	}
	n, err := strconv.Atoi(ns)
	if err != nil || n < 1 {
		return Rate{}, fmt.Errorf("rate %q: count must be a positive integer", s)
	}
	if ds != "" && (ds[0] < '0' || ds[0] > '9') {
		ds = "1" + ds
	}
	d, err := time.ParseDuration(ds)
	if err != nil || d <= 0 {
		return Rate{}, fmt.Errorf("rate %q: window must be a positive duration such as 10s", s)
	}
	return Rate{N: n, Window: d}, nil
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
// keep the later end.
func (g *gate) pause(d time.Duration) {
	until := time.Now().Add(d)
	g.mu.Lock()
	if until.After(g.notBefore) {
		g.notBefore = until
	}
	g.mu.Unlock()
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
