package runner

import (
	"bytes"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cost"
)

func TestTerminalProgress(t *testing.T) {
	var b bytes.Buffer
	p := &TerminalProgress{W: &b}
	p.Update(Snapshot{Total: 10, Done: 2, Spent: 2 * cost.Credit, Elapsed: time.Second})
	p.Update(Snapshot{Total: 10, Done: 10, Failed: 1, Spent: 9 * cost.Credit, Elapsed: 5 * time.Second})
	want := "\r2/10 jobs (20%)  2.0 jobs/s  2.0 credits  ETA 4s" +
		"\r10/10 jobs (100%)  2.0 jobs/s  9.0 credits  1 failed, 0 filtered\n"
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
	if first := strings.SplitN(b.String(), "\n", 2)[0]; first != "0/1000 jobs (0%)  0.0 jobs/s  0.0 credits" {
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
	if _, err := Run(t.Context(), cfg, &fakeGen{fn: succeed}, jobs, prices); err != nil {
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
	want := "1/4 jobs (25%)  0.5 jobs/s  62.0 credits  1 failed, 0 filtered  2 waiting on the server  ETA 6s"
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
