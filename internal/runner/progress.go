package runner

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/batch-tool/batch/internal/cost"
)

// Progress is told about the run's state once at the start, whenever a job
// finishes, is submitted to an async service, or is polled, and when a
// pause starts (Snapshot.Pause). Calls never overlap.
type Progress interface {
	Update(Snapshot)
}

// Pause is a wait the run is in: every request held after a 429, or one
// job waiting to retry after a failed attempt.
type Pause struct {
	// Job is the job that waits to retry; "" when every request waits.
	Job string
	// Reason is what caused the pause: "rate limited (429)" when every
	// request waits; for a retry, the failure, e.g. "a 502" or "a timeout".
	Reason string
	// Until is when the pause ends, by Config.Now; the zero Time means no
	// pause.
	Until time.Time
}

// String describes the pause for a progress line, its end as the time of
// day in Until's location: "paused: rate limited (429) until 19:42:10",
// "retrying job cat-3 after a 502 at 19:42:05"; "" for no pause.
func (p Pause) String() string {
	switch {
	case p.Until.IsZero():
		return ""
	case p.Job == "":
		return "paused: " + p.Reason + " until " + p.Until.Format(time.TimeOnly)
	}
	return "retrying job " + p.Job + " after " + p.Reason + " at " + p.Until.Format(time.TimeOnly)
}

// Snapshot is the run's state at one moment.
type Snapshot struct {
	Total     int // jobs in the run
	Done      int // jobs finished, resumed ones included
	Resumed   int // jobs finished by an earlier run
	Succeeded int // jobs with status succeeded
	Failed    int // jobs with status failed
	Filtered  int // jobs with status filtered
	Waiting   int // async jobs submitted and waiting on the server for their result, apart from requests in flight; not in Done
	// NextPoll is when the next of the Waiting jobs is polled, by
	// Config.Now; the zero Time when none waits.
	NextPoll time.Time
	Spent    cost.Credits  // credits charged or possibly spent so far, earlier runs' included (see Result.Spent)
	Elapsed  time.Duration // since the run started, by Config.Now
	// Pause is the latest pause while it lasts: one of every request, or a
	// job's wait to retry (a pause of every request is not hidden by a
	// job's retry); the zero Pause when none.
	Pause Pause
}

// progressState serializes the Progress calls of the dispatcher's reports
// and of workers starting a pause, and keeps the latest pause for the
// reports while it lasts. The zero value is ready to use.
type progressState struct {
	mu    sync.Mutex
	last  Snapshot
	pause Pause
}

// show tells p about s, with the current pause, as of now.
func (ps *progressState) show(p Progress, s Snapshot, now time.Time) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.pause.Until.After(now) {
		s.Pause = ps.pause
	}
	ps.last = s
	p.Update(s)
}

// showPause records pause as the latest, unless it is a job's retry while
// a pause of every request lasts, and shows it with the last state.
func (r *run) showPause(pause Pause) {
	if r.cfg.Progress == nil {
		return
	}
	ps := &r.progress
	now := r.cfg.Now()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if pause.Job != "" && ps.pause.Job == "" && ps.pause.Until.After(now) {
		return
	}
	ps.pause = pause
	s := ps.last
	s.Pause, s.Elapsed = pause, now.Sub(r.start)
	r.cfg.Progress.Update(s)
}

// tally counts finished jobs.
type tally struct {
	done, resumed, succeeded, failed, filtered, skipped int
}

func (t *tally) add(res JobResult) {
	switch res.Status {
	case Skipped:
		t.skipped++
		return
	case Succeeded:
		t.succeeded++
	case Failed:
		t.failed++
	case Filtered:
		t.filtered++
	}
	t.done++
	if res.Resumed {
		t.resumed++
	}
}

// report tells Progress the run's state; only the dispatcher calls it.
func (r *run) report() {
	if r.cfg.Progress == nil {
		return
	}
	t := &r.s.tally
	_, spent := r.ledger.totals()
	now := r.cfg.Now()
	r.progress.show(r.cfg.Progress, Snapshot{
		Total: r.jobs.Len(), Done: t.done, Resumed: t.resumed,
		Succeeded: t.succeeded, Failed: t.failed, Filtered: t.filtered, Waiting: r.s.nOnServer,
		NextPoll: r.nextPoll(now), Spent: spent, Elapsed: now.Sub(r.start),
	}, now)
}

// nextPoll is when the earliest poll queued leaves, by Config.Now (polls
// are timed on the monotonic clock, so this is now plus the wait left);
// the zero Time when none is queued. Only the dispatcher calls it.
func (r *run) nextPoll(now time.Time) time.Time {
	if r.s.waiting.Len() == 0 {
		return time.Time{}
	}
	return now.Add(max(time.Until(r.s.waiting.peek().next), 0))
}

// rateAndETA returns jobs per second finished by this run and the time
// the rest should take at that rate (zero when unknown).
func rateAndETA(s Snapshot) (float64, time.Duration) {
	n := s.Done - s.Resumed
	if n <= 0 || s.Elapsed <= 0 {
		return 0, 0
	}
	perSec := float64(n) / s.Elapsed.Seconds()
	eta := time.Duration(float64(s.Total-s.Done) / perSec * float64(time.Second))
	return perSec, eta.Round(time.Second)
}

func line(s Snapshot) string {
	perSec, eta := rateAndETA(s)
	pct := 100
	if s.Total > 0 {
		pct = s.Done * 100 / s.Total
	}
	l := fmt.Sprintf("%d/%d jobs (%d%%)  %.1f jobs/s  %s credits charged or possibly billed", s.Done, s.Total, pct, perSec, s.Spent)
	if s.Failed+s.Filtered > 0 {
		l += fmt.Sprintf("  %d failed, %d filtered", s.Failed, s.Filtered)
	}
	if s.Waiting > 0 {
		l += "  " + waitingText(s)
	}
	if eta > 0 {
		l += "  ETA " + eta.String()
	}
	if p := s.Pause.String(); p != "" {
		l += "  " + p
	}
	return l
}

// waitingText describes the jobs waiting on the server and when the next
// poll leaves: "2 waiting on the server, next poll 19:42:10", the time of
// day in NextPoll's location.
func waitingText(s Snapshot) string {
	t := fmt.Sprintf("%d waiting on the server", s.Waiting)
	if !s.NextPoll.IsZero() {
		t += ", next poll " + s.NextPoll.Format(time.TimeOnly)
	}
	return t
}

// TerminalProgress redraws one status line with \r: jobs done/total, jobs
// per second, credits spent, failures, jobs waiting on the server, ETA and
// the current pause with its reason and end, and when the next poll of
// the jobs waiting on the server leaves; it ends the line when every job
// is done. Use it when the writer is a terminal.
type TerminalProgress struct {
	W     io.Writer
	width int // length of the last line drawn, to blank leftovers
}

// Update redraws the line.
func (p *TerminalProgress) Update(s Snapshot) {
	l := line(s)
	pad := max(p.width-len(l), 0)
	p.width = len(l)
	fmt.Fprintf(p.W, "\r%s%*s", l, pad, "")
	if s.Done >= s.Total {
		fmt.Fprintln(p.W)
	}
}

// LineProgress prints a plain line at most every Interval (default 10 s)
// or every 10% of the jobs, whichever comes first, one when a pause starts,
// one when jobs start waiting on the server (with the next poll's time),
// and one when every job is done. Use it when the writer is not a terminal
// (CI logs).
type LineProgress struct {
	W        io.Writer
	Interval time.Duration // zero means 10 s

	printed   bool
	lastAt    time.Duration // Elapsed at the last line
	lastTens  int           // tenths of the jobs done at the last line
	lastPause Pause         // the last pause printed
	waiting   bool          // jobs were waiting on the server at the last update
}

// Update prints a line when one is due.
func (p *LineProgress) Update(s Snapshot) {
	interval := p.Interval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	tens := 10
	if s.Total > 0 {
		tens = s.Done * 10 / s.Total
	}
	newPause := !s.Pause.Until.IsZero() && s.Pause != p.lastPause
	newWait := s.Waiting > 0 && !p.waiting
	p.waiting = s.Waiting > 0
	due := !p.printed || s.Done >= s.Total || tens > p.lastTens || s.Elapsed-p.lastAt >= interval || newPause || newWait
	if !due {
		return
	}
	p.printed, p.lastAt, p.lastTens = true, s.Elapsed, tens
	if !s.Pause.Until.IsZero() {
		p.lastPause = s.Pause
	}
	fmt.Fprintln(p.W, line(s))
}
