package runner

import (
	"fmt"
	"io"
	"time"

	"github.com/batch-tool/batch/internal/cost"
)

// Progress is told about the run's state once at the start and then
// whenever a job finishes, is submitted to an async service, or is polled.
// Calls never overlap.
type Progress interface {
	Update(Snapshot)
}

// Snapshot is the run's state at one moment.
type Snapshot struct {
	Total     int           // jobs in the run
	Done      int           // jobs finished, resumed ones included
	Resumed   int           // jobs finished by an earlier run
	Succeeded int           // jobs with status succeeded
	Failed    int           // jobs with status failed
	Filtered  int           // jobs with status filtered
	Waiting   int           // async jobs submitted and waiting on the server for their result, apart from requests in flight; not in Done
	Spent     cost.Credits  // credits charged or possibly spent so far, resumed jobs included
	Elapsed   time.Duration // since the run started, by Config.Now
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
	r.cfg.Progress.Update(Snapshot{
		Total: len(r.jobs), Done: t.done, Resumed: t.resumed,
		Succeeded: t.succeeded, Failed: t.failed, Filtered: t.filtered, Waiting: r.s.nOnServer,
		Spent: spent, Elapsed: r.cfg.Now().Sub(r.start),
	})
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
	l := fmt.Sprintf("%d/%d jobs (%d%%)  %.1f jobs/s  %s credits", s.Done, s.Total, pct, perSec, s.Spent)
	if s.Failed+s.Filtered > 0 {
		l += fmt.Sprintf("  %d failed, %d filtered", s.Failed, s.Filtered)
	}
	if s.Waiting > 0 {
		l += fmt.Sprintf("  %d waiting on the server", s.Waiting)
	}
	if eta > 0 {
		l += "  ETA " + eta.String()
	}
	return l
}

// TerminalProgress redraws one status line with \r: jobs done/total, jobs
// per second, credits spent, failures, jobs waiting on the server and ETA;
// it ends the line when every job is done. Use it when the writer is a terminal.
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
// or every 10% of the jobs, whichever comes first, and one when every job
// is done. Use it when the writer is not a terminal (CI logs).
type LineProgress struct {
	W        io.Writer
	Interval time.Duration // zero means 10 s

	printed  bool
	lastAt   time.Duration // Elapsed at the last line
	lastTens int           // tenths of the jobs done at the last line
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
	due := !p.printed || s.Done >= s.Total || tens > p.lastTens || s.Elapsed-p.lastAt >= interval
	if !due {
		return
	}
	p.printed, p.lastAt, p.lastTens = true, s.Elapsed, tens
	fmt.Fprintln(p.W, line(s))
}
