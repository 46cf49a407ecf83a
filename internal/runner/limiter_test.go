package runner

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want Rate
		ok   bool
	}{
		{"150/10s", Rate{150, 10 * time.Second}, true},
		{"1/1m", Rate{1, time.Minute}, true},
		{"60/s", Rate{60, time.Second}, true},
		{" 5/500ms ", Rate{5, 500 * time.Millisecond}, true},
		{"0/10s", Rate{}, false},
		{"10", Rate{}, false},
		{"10/0s", Rate{}, false},
		{"x/10s", Rate{}, false},
		{"10/-1s", Rate{}, false},
	}
	for _, tt := range tests {
		got, err := ParseRate(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// maxInWindow returns the largest number of times within any closed
// window [t, t+w].
func maxInWindow(times []time.Time, w time.Duration) int {
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	best, lo := 0, 0
	for hi := range times {
		for times[hi].Sub(times[lo]) > w {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// TestLimiterNeverExceedsWindow is a property test: for random limits and
// random request patterns (bursts after idle periods, steady streams,
// many waiters), no window of length W ever holds more than N sends.
func TestLimiterNeverExceedsWindow(t *testing.T) {
	for seed := range 40 {
		rng := rand.New(rand.NewPCG(uint64(seed), 42))
		n := 1 + rng.IntN(30)
		if seed%5 == 0 {
			n = 150
		}
		w := time.Duration(1+rng.IntN(20000)) * time.Millisecond
		workers := 1 + rng.IntN(3*n)
		t.Run(fmt.Sprintf("seed%d_%d_per_%v", seed, n, w), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newGate(Rate{N: n, Window: w})
				var mu sync.Mutex
				var sends []time.Time
				var wg sync.WaitGroup
				for k := range workers {
					plan := rand.New(rand.NewPCG(uint64(seed), uint64(k)))
					wg.Go(func() {
						for range 1 + plan.IntN(8) {
							// idle: none, a little, or longer than several windows
							switch plan.IntN(3) {
							case 1:
								time.Sleep(time.Duration(plan.Int64N(int64(w))))
							case 2:
								time.Sleep(time.Duration(plan.Int64N(int64(4 * w))))
							}
							if err := g.wait(context.Background()); err != nil {
								t.Error(err)
								return
							}
							mu.Lock()
							sends = append(sends, time.Now())
							mu.Unlock()
						}
					})
				}
				wg.Wait()
				if got := maxInWindow(sends, w); got > n {
					t.Errorf("%d sends in one window of %v, limit %d (%d sends in all)", got, w, n, len(sends))
				}
			})
		})
	}
}

// TestLimiterThroughput checks that a saturated limiter sustains at least
// 95% of N/W once warm.
func TestLimiterThroughput(t *testing.T) {
	for _, r := range []Rate{{1, 10 * time.Second}, {2, time.Second}, {10, 10 * time.Second}, {150, 10 * time.Second}, {1000, time.Minute}} {
		t.Run(r.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newGate(r)
				ctx, cancel := context.WithCancel(context.Background())
				var mu sync.Mutex
				var sends []time.Time
				var wg sync.WaitGroup
				for range 2 * r.N {
					wg.Go(func() {
						for g.wait(ctx) == nil {
							mu.Lock()
							sends = append(sends, time.Now())
							mu.Unlock()
						}
					})
				}
				start := time.Now()
				time.Sleep(20 * r.Window)
				cancel()
				wg.Wait()
				warm, end := start.Add(r.Window), start.Add(20*r.Window)
				count := 0
				for _, s := range sends {
					if !s.Before(warm) && s.Before(end) {
						count++
					}
				}
				want := 0.95 * float64(r.N) * 19
				if float64(count) < want {
					t.Errorf("%d sends in 19 warm windows, want ≥ %.0f (95%% of %v)", count, want, r)
				}
				if got := maxInWindow(sends, r.Window); got > r.N {
					t.Errorf("%d sends in one window, limit %d", got, r.N)
				}
			})
		})
	}
}

func TestGatePause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate(Rate{N: 1000, Window: time.Second})
		start := time.Now()
		g.pause(30 * time.Second)
		g.pause(5 * time.Second) // a shorter pause does not shorten the first
		if err := g.wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := time.Since(start); got < 30*time.Second {
			t.Errorf("wait returned after %v, want ≥ 30s", got)
		}
		ctx, cancel := context.WithCancel(context.Background())
		g.pause(time.Hour)
		go func() { time.Sleep(time.Second); cancel() }()
		if err := g.wait(ctx); err != context.Canceled {
			t.Errorf("wait during pause after cancel = %v, want context.Canceled", err)
		}
	})
}

// TestGatePauseNews checks which pauses are news for the progress line: a
// pause when none runs, or one that moves the end by a second or more.
func TestGatePauseNews(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate(Rate{N: 1000, Window: time.Second})
		steps := []struct {
			after time.Duration // since the previous step
			pause time.Duration
			want  bool
		}{
			{0, time.Minute, true},                                    // the first 429
			{time.Millisecond, time.Minute, false},                    // the other workers' 429s
			{0, 10 * time.Second, false},                              // a shorter one changes nothing
			{2 * time.Second, time.Minute, true},                      // it moves the end by 2 s
			{time.Minute + time.Second, 500 * time.Millisecond, true}, // the pause is over: a new one
		}
		for i, s := range steps {
			time.Sleep(s.after)
			if got := g.pause(s.pause); got != s.want {
				t.Errorf("step %d: pause(%v) = %v, want %v", i, s.pause, got, s.want)
			}
		}
	})
}

func TestAutoConcurrency(t *testing.T) {
	tests := []struct {
		r    Rate
		jobs int
		want int
	}{
		{DefaultRate, 10000, 300},
		{DefaultRate, 7, 7},
		{Rate{N: 1, Window: time.Second}, 100, 2},
		{Rate{}, 1000, 300},
		{DefaultRate, 0, 1},
	}
	for _, tt := range tests {
		if got := AutoConcurrency(tt.r, tt.jobs); got != tt.want {
			t.Errorf("AutoConcurrency(%v, %d) = %d, want %d", tt.r, tt.jobs, got, tt.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	for n := 1; n <= 8; n++ {
		d := min(time.Second<<(n-1), 30*time.Second)
		for range 50 {
			if got := backoff(time.Second, 30*time.Second, n); got < d/2 || got > d {
				t.Fatalf("backoff(1s, 30s, %d) = %v, want in [%v, %v]", n, got, d/2, d)
			}
		}
	}
}
