package sandbox

import (
	"fmt"
	"time"
)

// limiter enforces the API's rate limit per key: at most limit requests in
// any window; the request that would exceed it locks the key out for lockout.
// It is not safe for concurrent use; Server guards it with its mutex.
type limiter struct {
	limit   int
	window  time.Duration
	lockout time.Duration
	keys    map[string]*keyWindow
}

type keyWindow struct {
	times       []time.Time // accepted requests inside the window, oldest first
	lockedUntil time.Time
}

// allow records a request by key at now. When the key is over its limit it
// returns false and how long the lock-out still lasts.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	if l.limit <= 0 {
		return true, 0
	}
	k := l.keys[key]
	if k == nil {
		if len(l.keys) >= maxIdleKeys {
			l.forgetIdle(now)
		}
		k = &keyWindow{}
		l.keys[key] = k
	}
	if now.Before(k.lockedUntil) {
		return false, k.lockedUntil.Sub(now)
	}
	cutoff := now.Add(-l.window)
	drop := 0
	for drop < len(k.times) && !k.times[drop].After(cutoff) {
		drop++
	}
	k.times = k.times[drop:]
	if len(k.times) >= l.limit {
		k.times = nil
		k.lockedUntil = now.Add(l.lockout)
		return false, l.lockout
	}
	k.times = append(k.times, now)
	return true, 0
}

// maxIdleKeys bounds how many keys the limiter remembers before it forgets
// those with nothing in their window and no lock-out (a sandbox without a
// Key accepts any token, so a client could otherwise grow the map forever).
const maxIdleKeys = 1024

func (l *limiter) forgetIdle(now time.Time) {
	cutoff := now.Add(-l.window)
	for key, k := range l.keys {
		if !now.Before(k.lockedUntil) && (len(k.times) == 0 || !k.times[len(k.times)-1].After(cutoff)) {
			delete(l.keys, key)
		}
	}
}

// message is the 429 text, worded as the API words it.
func (l *limiter) message() string {
	return fmt.Sprintf("You have exceeded the rate limit of %d requests within a %s period, and have been timed out for %s.",
		l.limit, seconds(l.window, false), seconds(l.lockout, true))
}

// seconds writes whole seconds as the API does ("10 second", "60 seconds")
// and anything else as a Go duration ("250ms").
func seconds(d time.Duration, plural bool) string {
	if d%time.Second != 0 {
		return d.String()
	}
	n := int64(d / time.Second)
	if plural && n != 1 {
		return fmt.Sprintf("%d seconds", n)
	}
	return fmt.Sprintf("%d second", n)
}
