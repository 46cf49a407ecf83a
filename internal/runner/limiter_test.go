package runner

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/batch-tool/batch/internal/sharedrate"
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

// openShared opens runs sharedrate.Files on one path in dir, as runs in
// separate processes would; nil for runs 0, the in-memory state of a run
// alone.
func openShared(t *testing.T, dir string, runs int) []RateState {
	t.Helper()
	if runs == 0 {
		return []RateState{nil}
	}
	path := filepath.Join(dir, sharedrate.Name("sk-test"))
	states := make([]RateState, runs)
	for i := range states {
		f, err := sharedrate.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		states[i] = f
	}
	return states
}

// sendLog records send times from many goroutines.
type sendLog struct {
	mu    sync.Mutex
	times []time.Time
	runs  []int // the run of each send
}

func (l *sendLog) add(run int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.times = append(l.times, time.Now())
	l.runs = append(l.runs, run)
}

// TestLimiterNeverExceedsWindow is a property test: for random limits and
// random request patterns (bursts after idle periods, steady streams,
// many waiters), no window of length W ever holds more than N sends, for
// a run alone (its state in memory) and for several runs sharing one
// state file, each with its own gate and workers.
func TestLimiterNeverExceedsWindow(t *testing.T) {
	for seed := range 40 {
		rng := rand.New(rand.NewPCG(uint64(seed), 42))
		n := 1 + rng.IntN(30)
		if seed%5 == 0 {
			n = 150
		}
		w := time.Duration(1+rng.IntN(20000)) * time.Millisecond
		workers := 1 + rng.IntN(3*n)
		for _, runs := range []int{0, 1 + rng.IntN(4)} {
			t.Run(fmt.Sprintf("seed%d_%d_per_%v_runs%d", seed, n, w, runs), func(t *testing.T) {
				dir := t.TempDir()
				synctest.Test(t, func(t *testing.T) {
					states := openShared(t, dir, runs)
					gates := make([]*gate, len(states))
					for i, st := range states {
						gates[i] = newGate(Rate{N: n, Window: w}, st)
					}
					var sends sendLog
					var wg sync.WaitGroup
					for k := range workers {
						g := gates[k%len(gates)]
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
								sends.add(k % len(gates))
							}
						})
					}
					wg.Wait()
					if got := maxInWindow(sends.times, w); got > n {
						t.Errorf("%d sends in one window of %v, limit %d (%d sends in all)", got, w, n, len(sends.times))
					}
				})
			})
		}
	}
}

// TestLimiterThroughput checks that a saturated limiter sustains at least
// 95% of N/W once warm, for a run alone and for runs sharing a state file
// together, and that runs sharing it get even shares (each within 10% of
// its part), so that runs started together finish together.
func TestLimiterThroughput(t *testing.T) {
	for _, r := range []Rate{{1, 10 * time.Second}, {2, time.Second}, {10, 10 * time.Second}, {150, 10 * time.Second}, {1000, time.Minute}} {
		for _, runs := range []int{0, 1, 3} {
			t.Run(fmt.Sprintf("%v_runs%d", r, runs), func(t *testing.T) {
				dir := t.TempDir()
				synctest.Test(t, func(t *testing.T) {
					states := openShared(t, dir, runs)
					ctx, cancel := context.WithCancel(context.Background())
					var sends sendLog
					var wg sync.WaitGroup
					for i, st := range states {
						g := newGate(r, st)
						for range 2 * r.N {
							wg.Go(func() {
								for g.wait(ctx) == nil {
									sends.add(i)
								}
							})
						}
					}
					start := time.Now()
					time.Sleep(20 * r.Window)
					cancel()
					wg.Wait()
					warm, end := start.Add(r.Window), start.Add(20*r.Window)
					count, perRun := 0, make([]int, len(states))
					for k, s := range sends.times {
						if !s.Before(warm) && s.Before(end) {
							count++
							perRun[sends.runs[k]]++
						}
					}
					want := 0.95 * float64(r.N) * 19
					if float64(count) < want {
						t.Errorf("%d sends in 19 warm windows, want ≥ %.0f (95%% of %v)", count, want, r)
					}
					if got := maxInWindow(sends.times, r.Window); got > r.N {
						t.Errorf("%d sends in one window, limit %d", got, r.N)
					}
					share := float64(count) / float64(len(states))
					for i, c := range perRun {
						if float64(c) < 0.9*share-1 {
							t.Errorf("run %d sent %d of %d, want about %.0f", i, c, count, share)
						}
					}
				})
			})
		}
	}
}

// TestStoppedRunWastesOneSlot checks that a run sharing the state that
// stops (cancelled, as a crash would stop it) while its workers wait
// leaves a gap of one slot in the shared stream, after which the other run
// takes every slot: a run holds one slot at a time, not one per waiting
// worker.
func TestStoppedRunWastesOneSlot(t *testing.T) {
	r := Rate{N: 10, Window: time.Second}
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		states := openShared(t, dir, 2)
		ctxA, stopA := context.WithCancel(context.Background())
		ctxB, stopB := context.WithCancel(context.Background())
		var sends sendLog
		var wg sync.WaitGroup
		for i, ctx := range []context.Context{ctxA, ctxB} {
			g := newGate(r, states[i])
			for range 50 {
				wg.Go(func() {
					for g.wait(ctx) == nil {
						sends.add(i)
					}
				})
			}
		}
		time.Sleep(3*time.Second + r.interval()/2) // run A holds a slot in the future
		stopA()
		stopped := time.Now()
		time.Sleep(3 * time.Second)
		stopB()
		wg.Wait()
		i := r.interval()
		for k := 1; k < len(sends.times); k++ {
			prev, cur := sends.times[k-1], sends.times[k]
			gap := cur.Sub(prev)
			switch {
			case gap > 2*i:
				t.Errorf("sends %d and %d are %v apart, want ≤ 2 intervals (%v)", k-1, k, gap, 2*i)
			case prev.After(stopped.Add(i)) && gap > i:
				t.Errorf("sends %d and %d, after run A stopped, are %v apart, want one interval (%v)", k-1, k, gap, i)
			}
		}
		if n := len(sends.times); n < 55 {
			t.Errorf("%d sends in 6 s at %v, want ≥ 55", n, r)
		}
	})
}

func TestGatePause(t *testing.T) {
	for _, runs := range []int{0, 2} {
		t.Run(fmt.Sprintf("runs%d", runs), func(t *testing.T) {
			dir := t.TempDir()
			synctest.Test(t, func(t *testing.T) {
				states := openShared(t, dir, runs)
				g := newGate(Rate{N: 1000, Window: time.Second}, states[0])
				other := g // the run that did not get the 429
				if runs > 1 {
					other = newGate(Rate{N: 1000, Window: time.Second}, states[1])
				}
				start := time.Now()
				g.pause(30 * time.Second)
				g.pause(5 * time.Second) // a shorter pause does not shorten the first
				if err := other.wait(context.Background()); err != nil {
					t.Fatal(err)
				}
				if got := time.Since(start); got < 30*time.Second {
					t.Errorf("wait returned after %v, want ≥ 30s", got)
				}
				ctx, cancel := context.WithCancel(context.Background())
				g.pause(time.Hour)
				go func() { time.Sleep(time.Second); cancel() }()
				if err := other.wait(ctx); err != context.Canceled {
					t.Errorf("wait during pause after cancel = %v, want context.Canceled", err)
				}
			})
		})
	}
}

// TestGatePauseDuringWait checks that a pause set while a worker waits for
// its slot, by its own run or another sharing the state, holds that
// worker until the pause ends.
func TestGatePauseDuringWait(t *testing.T) {
	r := Rate{N: 1, Window: 10 * time.Second}
	for _, runs := range []int{0, 2} {
		t.Run(fmt.Sprintf("runs%d", runs), func(t *testing.T) {
			dir := t.TempDir()
			synctest.Test(t, func(t *testing.T) {
				states := openShared(t, dir, runs)
				g := newGate(r, states[0])
				pauser := g
				if runs > 1 {
					pauser = newGate(r, states[1])
				}
				if err := g.wait(context.Background()); err != nil { // the first slot: now
					t.Fatal(err)
				}
				start := time.Now()
				done := make(chan time.Time)
				go func() {
					if err := g.wait(context.Background()); err != nil {
						t.Error(err)
					}
					done <- time.Now()
				}()
				time.Sleep(time.Second) // the worker holds the slot 10.2 s on
				pauser.pause(time.Minute)
				if got, want := (<-done).Sub(start), time.Minute+time.Second; got < want {
					t.Errorf("the worker sent %v after the last send, want ≥ %v (the pause's end)", got, want)
				}
			})
		})
	}
}

// brokenState is a RateState whose file cannot be written.
type brokenState struct{ memState }

func (b *brokenState) Pause(time.Time, time.Duration) error { return errors.New("disk on fire") }

// TestGatePauseStoreError checks that a pause the state could not store
// still holds the run, and that its error reaches the next waiter.
func TestGatePauseStoreError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate(Rate{N: 1000, Window: time.Second}, &brokenState{})
		g.pause(time.Minute)
		err := g.wait(context.Background())
		if err == nil || !strings.Contains(err.Error(), "disk on fire") {
			t.Errorf("wait after a pause that was not stored = %v, want its error", err)
		}
	})
}

// TestWaitTurn checks that a request outside Run takes a slot of the
// shared state, and that without a state it waits for nothing.
func TestWaitTurn(t *testing.T) {
	r := Rate{N: 1, Window: 10 * time.Second}
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if err := WaitTurn(context.Background(), r, nil); err != nil || time.Since(start) != 0 {
			t.Errorf("WaitTurn without a state = %v after %v, want nil at once", err, time.Since(start))
		}
		states := openShared(t, dir, 2)
		for range 2 {
			if err := WaitTurn(context.Background(), r, states[0]); err != nil {
				t.Fatal(err)
			}
		}
		if err := newGate(r, states[1]).wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got, want := time.Since(start), 2*r.interval(); got != want {
			t.Errorf("the third send left %v after the first, want %v", got, want)
		}
	})
}

// TestGatePauseNews checks which pauses are news for the progress line: a
// pause when none of the run's own runs, or one that moves the end by a
// second or more; another run's pause in the shared state is not the
// run's own.
func TestGatePauseNews(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		states := openShared(t, dir, 2)
		g := newGate(Rate{N: 1000, Window: time.Second}, states[0])
		other := newGate(Rate{N: 1000, Window: time.Second}, states[1])
		steps := []struct {
			g     *gate
			after time.Duration // since the previous step
			pause time.Duration
			want  bool
		}{
			{g, 0, time.Minute, true},                                    // the first 429
			{g, time.Millisecond, time.Minute, false},                    // the other workers' 429s
			{g, 0, 10 * time.Second, false},                              // a shorter one changes nothing
			{other, 0, time.Minute, true},                                // another run's 429 is news to it
			{g, 2 * time.Second, time.Minute, true},                      // it moves the end by 2 s
			{g, time.Minute + time.Second, 500 * time.Millisecond, true}, // the pause is over: a new one
		}
		for i, s := range steps {
			time.Sleep(s.after)
			if got := s.g.pause(s.pause); got != s.want {
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
