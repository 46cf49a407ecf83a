package sandbox

import (
	"fmt"
	"testing"
	"time"
)

func TestLimiterForgetsIdleKeys(t *testing.T) {
	l := limiter{limit: 2, window: time.Second, lockout: time.Minute, keys: map[string]*keyWindow{}}
	now := time.Unix(0, 0)
	l.allow("busy", now)
	l.allow("locked", now)
	l.allow("locked", now)
	if ok, _ := l.allow("locked", now); ok {
		t.Fatal("third request in the window allowed, want refused")
	}
	now = now.Add(500 * time.Millisecond)
	l.allow("busy", now)
	for i := range maxIdleKeys {
		l.allow(fmt.Sprint("idle", i), now.Add(-500*time.Millisecond)) // at t=0
	}
	now = now.Add(800 * time.Millisecond) // t=1.3s: busy's t=0.5s request is still in its window
	l.allow("new", now)
	if len(l.keys) > 4 {
		t.Errorf("limiter remembers %d keys after forgetting idle ones, want at most 4", len(l.keys))
	}
	for _, key := range []string{"busy", "locked", "new"} {
		if l.keys[key] == nil {
			t.Errorf("key %q was forgotten", key)
		}
	}
	if ok, _ := l.allow("locked", now); ok {
		t.Error("locked key allowed after the sweep, want still locked out")
	}
}
