package runner

import (
	"bytes"
	"context"
	"flag"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/golden"
	"github.com/batch-tool/batch/internal/stability"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func TestTerminalProgress(t *testing.T) {
	var b bytes.Buffer
	p := &TerminalProgress{W: &b}
	p.Update(Snapshot{Total: 10, Done: 2, Spent: 2 * cost.Credit, Elapsed: time.Second})
	p.Update(Snapshot{Total: 10, Done: 10, Failed: 1, Spent: 9 * cost.Credit, Elapsed: 5 * time.Second})
	want := "\r2/10 jobs (20%)  2.0 jobs/s  2.0 credits charged or possibly billed  ETA 4s" +
		"\r10/10 jobs (100%)  2.0 jobs/s  9.0 credits charged or possibly billed  1 failed, 0 filtered\n"
	if got := b.String(); got != want {
		t.Errorf("output = %q, want %q", got, want)
	}
}

func TestLineProgress(t *testing.T) {
	var b bytes.Buffer
	p := &LineProgress{W: &b}
	// 100 jobs, one every 0.5 s: a line at the start, every 10 jobs (5 s,
	// before the 10 s interval) and at the end
	for done := 0; done <= 100; done++ {
		p.Update(Snapshot{Total: 100, Done: done, Elapsed: time.Duration(done) * 500 * time.Millisecond})
	}
	if got := strings.Count(b.String(), "\n"); got != 11 {
		t.Errorf("%d lines for 100 fast jobs, want 11:\n%s", got, b.String())
	}
	// 1000 jobs, one every 2 s: the 10 s interval comes first
	b.Reset()
	p = &LineProgress{W: &b}
	for done := 0; done <= 100; done++ {
		p.Update(Snapshot{Total: 1000, Done: done, Elapsed: time.Duration(done) * 2 * time.Second})
	}
	if got := strings.Count(b.String(), "\n"); got != 21 {
		t.Errorf("%d lines for 200 s of slow jobs, want 21:\n%s", got, b.String())
	}
	if first := strings.SplitN(b.String(), "\n", 2)[0]; first != "0/1000 jobs (0%)  0.0 jobs/s  0.0 credits charged or possibly billed" {
		t.Errorf("first line = %q", first)
	}
}

// recorder is a Progress that keeps every snapshot.
type recorder struct{ got []Snapshot }

func (r *recorder) Update(s Snapshot) { r.got = append(r.got, s) }

func TestRunReportsProgress(t *testing.T) {
	jobs, prices := testJobs(5)
	cfg := fastConfig(t)
	rec := &recorder{}
	cfg.Progress = rec
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var ticks atomic.Int64
	cfg.Now = func() time.Time { return start.Add(time.Duration(ticks.Add(1)) * time.Second) }
	if _, err := runJobs(t.Context(), cfg, &fakeGen{fn: succeed}, jobs, prices); err != nil {
		t.Fatal(err)
	}
	if len(rec.got) != 6 {
		t.Fatalf("%d progress updates, want 6 (start + 5 jobs)", len(rec.got))
	}
	last := rec.got[5]
	if last.Done != 5 || last.Succeeded != 5 || last.Spent != 5*cost.Credit || last.Elapsed <= 0 {
		t.Errorf("last snapshot = %+v", last)
	}
}

func TestProgressWaiting(t *testing.T) {
	s := Snapshot{Total: 4, Done: 1, Failed: 1, Waiting: 2, Spent: 62 * cost.Credit, Elapsed: 2 * time.Second}
	want := "1/4 jobs (25%)  0.5 jobs/s  62.0 credits charged or possibly billed  1 failed, 0 filtered  2 waiting on the server  ETA 6s"
	var b bytes.Buffer
	(&TerminalProgress{W: &b}).Update(s)
	if got := b.String(); got != "\r"+want {
		t.Errorf("terminal = %q, want %q", got, "\r"+want)
	}
	b.Reset()
	(&LineProgress{W: &b}).Update(s)
	if got := b.String(); got != want+"\n" {
		t.Errorf("line = %q, want %q", got, want+"\n")
	}
	s.Waiting = 0
	if got := line(s); strings.Contains(got, "waiting") {
		t.Errorf("line without waiting jobs = %q", got)
	}
}

func TestPauseString(t *testing.T) {
	at := time.Date(2026, 11, 25, 19, 42, 10, 0, time.UTC)
	tests := []struct {
		p    Pause
		want string
	}{
		{Pause{}, ""},
		{Pause{Reason: "rate limited (429)", Until: at}, "paused: rate limited (429) until 19:42:10"},
		{Pause{Job: "cat-3", Reason: "a 502", Until: at.Add(-5 * time.Second)}, "retrying job cat-3 after a 502 at 19:42:05"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.p, got, tt.want)
		}
	}
}

// bothProgress feeds a TerminalProgress and a LineProgress.
type bothProgress struct{ term, line Progress }

func (b bothProgress) Update(s Snapshot) {
	b.term.Update(s)
	b.line.Update(s)
}

// TestProgressShowsPauses runs one job through a 429 whose Retry-After is
// eleven days and a 502: both pauses are capped by MaxPause (which also
// makes the random backoff exact) and show, with their end, on the
// terminal line and as plain lines.
func TestProgressShowsPauses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		jobs, prices := testJobs(2)
		var mu sync.Mutex
		attempts := 0
		var sends []time.Duration
		start := time.Now()
		gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
			mu.Lock()
			attempts++
			n := attempts
			sends = append(sends, time.Since(start).Round(time.Millisecond)) // the limiter spaces requests by microseconds
			mu.Unlock()
			switch n {
			case 1:
				return nil, &stability.APIError{Status: 429, Name: "rate_limit_exceeded", RetryAfter: 1000000 * time.Second}
			case 2:
				return nil, &stability.APIError{Status: 502, Message: "bad gateway"}
			}
			return succeed(ctx, req, sink)
		}}
		var term, lines bytes.Buffer
		cfg := fastConfig(t)
		cfg.Concurrency = 1
		cfg.MaxPause = 5 * time.Second
		cfg.BackoffBase, cfg.BackoffCap = 10*time.Second, 10*time.Second // [5 s, 10 s], capped to 5 s
		cfg.Now = func() time.Time { return time.Now().UTC() }
		cfg.Progress = bothProgress{&TerminalProgress{W: &term}, &LineProgress{W: &lines, Interval: time.Hour}}
		res, err := runJobs(t.Context(), cfg, gen, jobs, prices)
		if err != nil {
			t.Fatal(err)
		}
		for i, j := range res.Jobs {
			if j.Status != Succeeded {
				t.Errorf("job %d: %s (%s), want succeeded", i, j.Status, j.Error)
			}
		}
		if want := []time.Duration{0, 5 * time.Second, 10 * time.Second, 10 * time.Second}; !slicesEqual(sends, want) {
			t.Errorf("attempts sent at %v, want %v", sends, want)
		}
		golden.Check(t, filepath.Join("testdata", "pause_terminal.golden"), term.Bytes(), *update)
		golden.Check(t, filepath.Join("testdata", "pause_lines.golden"), lines.Bytes(), *update)
	})
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestLineProgressPrintsEachPauseOnce checks that plain lines show a pause
// when it starts, and that later updates carrying the same pause do not
// print again before they are due.
func TestLineProgressPrintsEachPauseOnce(t *testing.T) {
	at := time.Date(2026, 11, 25, 19, 42, 10, 0, time.UTC)
	pause := Pause{Reason: "rate limited (429)", Until: at}
	var b bytes.Buffer
	p := &LineProgress{W: &b}
	p.Update(Snapshot{Total: 100, Done: 1, Elapsed: time.Second})
	p.Update(Snapshot{Total: 100, Done: 1, Elapsed: 2 * time.Second, Pause: pause})
	p.Update(Snapshot{Total: 100, Done: 2, Elapsed: 3 * time.Second, Pause: pause})
	p.Update(Snapshot{Total: 100, Done: 2, Elapsed: 4 * time.Second, Pause: Pause{Job: "job-7", Reason: "a 503", Until: at}})
	p.Update(Snapshot{Total: 100, Done: 3, Elapsed: 5 * time.Second})
	want := "1/100 jobs (1%)  1.0 jobs/s  0.0 credits charged or possibly billed  ETA 1m39s\n" +
		"1/100 jobs (1%)  0.5 jobs/s  0.0 credits charged or possibly billed  ETA 3m18s  paused: rate limited (429) until 19:42:10\n" +
		"2/100 jobs (2%)  0.5 jobs/s  0.0 credits charged or possibly billed  ETA 3m16s  retrying job job-7 after a 503 at 19:42:10\n"
	if got := b.String(); got != want {
		t.Errorf("lines:\n%s\nwant:\n%s", got, want)
	}
}

// TestRetryAfterCapped checks that a 429 with an enormous Retry-After holds
// every request for MaxPause only.
func TestRetryAfterCapped(t *testing.T) {
	for _, tt := range []struct {
		name     string
		maxPause time.Duration
		want     time.Duration
	}{{"default", 0, DefaultMaxPause}, {"configured", 90 * time.Second, 90 * time.Second}} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				jobs, prices := testJobs(3)
				var mu sync.Mutex
				var sends []time.Duration
				start := time.Now()
				gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
					mu.Lock()
					sends = append(sends, time.Since(start).Round(time.Millisecond)) // the limiter spaces requests by microseconds
					first := len(sends) == 1
					mu.Unlock()
					if first {
						return nil, &stability.APIError{Status: 429, RetryAfter: 1000000 * time.Second}
					}
					return succeed(ctx, req, sink)
				}}
				cfg := fastConfig(t)
				cfg.Concurrency = 1
				cfg.MaxPause = tt.maxPause
				if _, err := runJobs(t.Context(), cfg, gen, jobs, prices); err != nil {
					t.Fatal(err)
				}
				if want := []time.Duration{0, tt.want, tt.want, tt.want}; !slicesEqual(sends, want) {
					t.Errorf("requests sent at %v, want %v", sends, want)
				}
			})
		})
	}
}
