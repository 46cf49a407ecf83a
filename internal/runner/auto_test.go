package runner

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/batch-tool/batch/internal/stability"
)

// TestAutoConcurrencyReachesRate runs whole batches with the default rate
// and concurrency against generators that take 0.1 s and 10 s: without any
// tuning, the warm request rate must reach 95% of 150/10s, and no 10-second
// window may hold more than 150 requests.
func TestAutoConcurrencyReachesRate(t *testing.T) {
	for _, latency := range []time.Duration{100 * time.Millisecond, 10 * time.Second} {
		t.Run(latency.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				var sends []time.Time
				gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
					mu.Lock()
					sends = append(sends, time.Now())
					mu.Unlock()
					time.Sleep(latency)
					return generate(req, sink, stability.FinishSuccess)
				}}
				jobs, prices := testJobs(900) // about a minute at the limit
				res, err := runJobs(t.Context(), Config{OutDir: t.TempDir()}, gen, jobs, prices)
				if err != nil {
					t.Fatal(err)
				}
				if res.Concurrency != 300 {
					t.Errorf("auto concurrency = %d, want 300", res.Concurrency)
				}
				slices.SortFunc(sends, func(a, b time.Time) int { return a.Compare(b) })
				if got := maxInWindow(sends, 10*time.Second); got > 150 {
					t.Errorf("%d requests in one 10 s window, limit 150", got)
				}
				// Warm: from the end of the first window to the last send.
				warm := sends[0].Add(10 * time.Second)
				n := 0
				for _, s := range sends {
					if !s.Before(warm) {
						n++
					}
				}
				span := sends[len(sends)-1].Sub(warm).Seconds()
				rate := float64(n-1) / span
				if rate < 0.95*15 {
					t.Errorf("warm rate %.2f requests/s with %v generations, want ≥ %.2f (95%% of 150/10s)", rate, latency, 0.95*15)
				}
				t.Logf("latency %v: warm rate %.2f requests/s (%.1f%% of 15/s)", latency, rate, rate/15*100)
			})
		})
	}
}
