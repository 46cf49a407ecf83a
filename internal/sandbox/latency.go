package sandbox

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Latency is the distribution of the extra time the sandbox waits before it
// answers a generation (v1 text-to-image or Stable Image): uniform between
// Min and Max inclusive (a fixed delay when they are equal). The zero value
// adds no delay.
type Latency struct {
	Min, Max time.Duration
}

// ParseLatency reads a latency as a Go duration ("2s", a fixed delay) or a
// range of two durations ("1s-5s", uniform). "" and "0" mean no delay.
func ParseLatency(s string) (Latency, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Latency{}, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	minD, err := time.ParseDuration(strings.TrimSpace(lo))
	if err != nil {
		return Latency{}, fmt.Errorf("latency %q: %w", s, err)
	}
	maxD := minD
	if isRange {
		if maxD, err = time.ParseDuration(strings.TrimSpace(hi)); err != nil {
			return Latency{}, fmt.Errorf("latency %q: %w", s, err)
		}
	}
	l := Latency{Min: minD, Max: maxD}
	if err := l.validate(); err != nil {
		return Latency{}, fmt.Errorf("latency %q: %w", s, err)
	}
	return l, nil
}

func (l Latency) validate() error {
	if l.Min < 0 || l.Max < l.Min {
		return fmt.Errorf("want 0 ≤ min ≤ max, got %v-%v", l.Min, l.Max)
	}
	return nil
}

// String formats l the way ParseLatency reads it.
func (l Latency) String() string {
	if l.Min == l.Max {
		return l.Min.String()
	}
	return l.Min.String() + "-" + l.Max.String()
}

// draw picks one delay from the distribution.
func (l Latency) draw(r *rand.Rand) time.Duration {
	if l.Max <= l.Min {
		return l.Min
	}
	return l.Min + time.Duration(r.Int64N(int64(l.Max-l.Min)+1))
}
