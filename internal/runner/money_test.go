package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/stability"
)

// TestBudgetAcrossRuns runs three times with a budget of 1.0 against a
// server that reads every request and then drops the connection: each
// attempt may have been billed, so the three runs together send no more
// than 1.0 credits of them (before, each run forgot the others' and sent
// 3.0 in all).
func TestBudgetAcrossRuns(t *testing.T) {
	drop := func(w http.ResponseWriter, _ string, _ int) bool {
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
		return true
	}
	srv := newAPIServer(t, drop, 0, "")
	jobs, _ := testJobs(4)
	const price = cost.Credit / 4
	prices := []cost.Credits{price, price, price, price}
	budget := cost.Credit
	cfg := fastConfig(t)
	cfg.Concurrency = 2
	cfg.Budget = &budget
	for run := 1; run <= 3; run++ {
		res, err := runJobs(t.Context(), cfg, newClient(t, srv.URL), jobs, prices)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if res.Spent != budget || res.Charged != 0 {
			t.Errorf("run %d: spent %v, charged %v; want 1.0 possibly billed, nothing charged", run, res.Spent, res.Charged)
		}
		if wantPrior := min(cost.Credits(run-1), 1) * budget; res.PriorPossiblyBilled != wantPrior || res.PriorCharged != 0 {
			t.Errorf("run %d: prior %v charged, %v possibly billed; want 0, %v", run, res.PriorCharged, res.PriorPossiblyBilled, wantPrior)
		}
		for _, r := range res.Jobs {
			if r.Status != Failed || r.Failure != FailUnknown && r.Failure != FailBudget {
				t.Errorf("run %d: %s = %s %q, want failed unknown or budget (%s)", run, r.ID, r.Status, r.Failure, r.Error)
			}
		}
		checkStanding(t, cfg.OutDir, jobs, prices, res.Result)
	}
	sent := 0
	for _, n := range srv.requests() {
		sent += n
	}
	if billed := cost.Credits(sent) * price; billed != budget {
		t.Errorf("the server got %d requests over three runs: %v credits possibly billed, want the budget's 1.0", sent, billed)
	}
}

// TestRetryUnknown checks that attempts whose outcome is unknown are
// retried at most RetryUnknown times, within MaxAttempts, and that each
// one counts as possibly billed, in the run and in the journal.
func TestRetryUnknown(t *testing.T) {
	sent := &stability.TransportError{Sent: true, Err: errors.New("connection reset")}
	s500 := apiErr(500, "server_error", "")
	tests := []struct {
		name        string
		retry       *int
		maxAttempts int
		answers     []error // per attempt; after the list: sent
		attempts    int
		unknown     int // attempts with unknown outcome
	}{
		{"default: one retry", nil, 0, nil, 2, 2},
		{"none", new(0), 0, nil, 1, 1},
		{"negative is none", new(-3), 0, nil, 1, 1},
		{"three", new(3), 0, nil, 4, 4},
		{"bounded by MaxAttempts", new(10), 3, nil, 3, 3},
		{"5xx between them do not count", nil, 0, []error{s500, sent, s500}, 4, 2},
		{"then success", nil, 0, []error{sent, nil}, 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				jobs, prices := testJobs(1)
				calls := 0
				gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
					calls++
					if calls <= len(tt.answers) {
						if err := tt.answers[calls-1]; err != nil {
							return nil, err
						}
						return succeed(ctx, req, sink)
					}
					return nil, sent
				}}
				cfg := fastConfig(t)
				cfg.RetryUnknown, cfg.MaxAttempts = tt.retry, tt.maxAttempts
				res, err := runJobs(t.Context(), cfg, gen, jobs, prices)
				if err != nil {
					t.Fatal(err)
				}
				r := res.Jobs[0]
				unknown := cost.Credits(tt.unknown) * cost.Credit
				if calls != tt.attempts || r.Attempts != tt.attempts || r.Unknown != unknown || res.Spent-res.Charged != unknown {
					t.Errorf("%d requests, job %s %q after %d attempts, %v possibly billed (run %v); want %d requests, %v possibly billed (%s)",
						calls, r.Status, r.Failure, r.Attempts, r.Unknown, res.Spent-res.Charged, tt.attempts, unknown, r.Error)
				}
				if r.Status == Failed && (r.Failure != FailUnknown || !strings.Contains(r.Error, "giving up")) {
					t.Errorf("job = %s %q, %q; want failed unknown, giving up", r.Status, r.Failure, r.Error)
				}
				attempts := 0
				for _, e := range journalEntries(t, cfg.OutDir) {
					if e.Status == attempt {
						attempts++
					}
				}
				if attempts != calls {
					t.Errorf("journal holds %d attempt lines for %d requests", attempts, calls)
				}
				checkStanding(t, cfg.OutDir, jobs, prices, res.Result)
			})
		})
	}
}

// TestInFlightCounted leaves in the journal what a killed run leaves: the
// attempt lines of requests in flight, with no outcome. The next run
// counts them as possibly billed (against its budget too), says so once,
// and settles them in the journal so they are never counted twice or
// forgotten.
func TestInFlightCounted(t *testing.T) {
	jobs, prices := testJobs(4)
	cfg := fastConfig(t)
	cfg.Concurrency = 1
	keyOf := func(j manifest.Job) string {
		_, key, err := requestKey(j, nil)
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
	for _, e := range []entry{
		{ID: "job-000", Key: keyOf(jobs[0]), Status: attempt, Price: cost.Credit, Attempts: 1},
		// its first attempt's outcome was unknown, its second was in flight
		{ID: "job-001", Key: keyOf(jobs[1]), Status: attempt, Price: cost.Credit, Attempts: 1},
		{ID: "job-001", Key: keyOf(jobs[1]), Status: attempt, Price: cost.Credit, Unknown: cost.Credit, Attempts: 2},
	} {
		line, _ := json.Marshal(e)
		appendJournal(t, cfg.OutDir, string(line))
	}
	st, err := ReadStanding(cfg.OutDir, JobList(jobs), prices, nil)
	if err != nil || !reflect.DeepEqual(st, Standing{Remaining: 4 * cost.Credit, PossiblyBilled: 3 * cost.Credit}) {
		t.Fatalf("ReadStanding = %+v, %v; want 4.0 remaining, 3.0 possibly billed", st, err)
	}
	budget := 5 * cost.Credit
	cfg.Budget = &budget
	var w warnings
	cfg.Warn = w.warn
	gen := &requestLog{}
	res, err := runJobs(t.Context(), cfg, gen, jobs, prices)
	if err != nil {
		t.Fatal(err)
	}
	if res.PriorPossiblyBilled != 3*cost.Credit || res.Spent != budget || len(gen.sent()) != 2 {
		t.Errorf("prior %v possibly billed, spent %v after %d requests; want 3.0, 5.0 after 2", res.PriorPossiblyBilled, res.Spent, len(gen.sent()))
	}
	for i, want := range []Failure{"", "", FailBudget, FailBudget} {
		if r := res.Jobs[i]; r.Failure != want {
			t.Errorf("Jobs[%d] = %s %q, want %q (%s)", i, r.Status, r.Failure, want, r.Error)
		}
	}
	want := "2 request(s) were in flight when an earlier run stopped (jobs job-000, job-001): their 3.0 credits count as possibly billed"
	if w.text() != want {
		t.Errorf("warnings = %q, want %q", w.text(), want)
	}
	checkStanding(t, cfg.OutDir, jobs, prices, res.Result)
	// settled once: the next run neither warns again nor counts them twice
	w = warnings{}
	res, err = runJobs(t.Context(), cfg, gen, jobs, prices)
	if err != nil || res.Spent != budget || w.text() != "" || len(gen.sent()) != 2 {
		t.Errorf("third run: %v, spent %v, warnings %q, %d requests in all; want 5.0, none, 2", err, res.Spent, w.text(), len(gen.sent()))
	}
}

// TestLocalFailureStopsSpending makes writing an image or a journal line
// fail, as a full disk does: no request starts after the failure, requests
// in flight finish and are recorded, the run returns its result with an
// error naming what failed, and a rerun buys nothing that is on disk.
func TestLocalFailureStopsSpending(t *testing.T) {
	full := errors.New("no space left on device")
	tests := []struct {
		name     string
		fail     func(name string, n int) bool // the n-th write (from 1) to name fails
		requests int                           // sent before the run stops
		skipped  int                           // the first job skipped
		errText  string
		failed   string // the job that failed as local
		rerun    int    // requests the rerun sends for the 10 jobs
	}{
		{"image", func(name string, _ int) bool { return name == ImagesDir+"/job-002.png" }, 3, 3, "job job-002: image not saved", "job-002", 8},
		{"journal, an attempt", func(name string, n int) bool { return name == JournalFile && n == 5 }, 2, 3, "job job-002: request not sent, it could not be journaled", "job-002", 8},
		// job-001's image is on disk: the rerun rebuilds its entry
		{"journal, an outcome", func(name string, n int) bool { return name == JournalFile && n == 4 }, 2, 2, "job job-001: outcome not journaled", "", 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jobs, prices := testJobs(10)
			var calls atomic.Int32
			gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
				calls.Add(1)
				return succeed(ctx, req, sink)
			}}
			cfg := fastConfig(t)
			cfg.Concurrency = 1
			writes := map[string]int{}
			cfg.failWrite = func(name string) error {
				writes[name]++
				if tt.fail(name, writes[name]) {
					return fmt.Errorf("write %s: %w", name, full)
				}
				return nil
			}
			res, err := runJobs(t.Context(), cfg, gen, jobs, prices)
			if err == nil || !strings.Contains(err.Error(), tt.errText) || !errors.Is(err, full) {
				t.Errorf("Run error = %v, want one containing %q and the disk's error", err, tt.errText)
			}
			if got := int(calls.Load()); got != tt.requests {
				t.Errorf("%d requests sent, want %d: none after the failure", got, tt.requests)
			}
			if len(res.Jobs) != len(jobs) {
				t.Fatalf("Run returned %d results, want %d for the report", len(res.Jobs), len(jobs))
			}
			for _, r := range res.Jobs[tt.skipped:] {
				if r.Status != Skipped || r.Attempts != 0 {
					t.Errorf("%s = %s after %d attempts, want skipped, never sent", r.ID, r.Status, r.Attempts)
				}
			}
			if tt.failed != "" {
				if r := res.Jobs[2]; r.ID != tt.failed || r.Status != Failed || r.Failure != FailLocal {
					t.Errorf("%s = %s %q, want failed local (%s)", r.ID, r.Status, r.Failure, r.Error)
				}
			}

			cfg.failWrite = nil
			calls.Store(0)
			again, err := runJobs(t.Context(), cfg, gen, jobs, prices)
			if err != nil || int(calls.Load()) != tt.rerun {
				t.Errorf("rerun: %v after %d requests, want %d", err, calls.Load(), tt.rerun)
			}
			for _, r := range again.Jobs {
				if r.Status != Succeeded {
					t.Errorf("rerun: %s = %s (%s)", r.ID, r.Status, r.Error)
				}
			}
			checkStanding(t, cfg.OutDir, jobs, prices, again.Result)
		})
	}
}

// TestLocalFailureLetsInFlightFinish fails the image of one of three
// requests in flight: the other two finish and are saved and journaled,
// and nothing else is sent.
func TestLocalFailureLetsInFlightFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		jobs, prices := testJobs(10)
		entered := make(chan struct{}, 2)
		failed, stopped := make(chan struct{}), make(chan struct{})
		var calls atomic.Int32
		gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
			calls.Add(1)
			switch seedOf(req) {
			case 1: // job-000
				entered <- struct{}{}
				<-failed
				synctest.Wait() // every other goroutine is blocked: the failure has stopped the run
				close(stopped)
			case 2: // job-001
				entered <- struct{}{}
				<-stopped
			case 3: // job-002 fails once the other two are in flight
				<-entered
				<-entered
			}
			if seedOf(req) != 3 { // not job-002
				if ctx.Err() != nil {
					t.Errorf("request context cancelled by a local failure: %v", ctx.Err())
				}
			}
			return succeed(ctx, req, sink)
		}}
		cfg := fastConfig(t)
		cfg.Concurrency = 3
		cfg.failWrite = func(name string) error {
			if name == ImagesDir+"/job-002.png" {
				close(failed)
				return errors.New("no space left on device")
			}
			return nil
		}
		res, err := runJobs(t.Context(), cfg, gen, jobs, prices)
		if err == nil || !strings.Contains(err.Error(), "job job-002: image not saved") {
			t.Errorf("Run error = %v, want job-002's image named", err)
		}
		if n := calls.Load(); n != 3 {
			t.Errorf("%d requests, want the 3 in flight only", n)
		}
		for i, r := range res.Jobs {
			want := Skipped
			switch i {
			case 0, 1:
				want = Succeeded
			case 2:
				want = Failed
			}
			if r.Status != want {
				t.Errorf("%s = %s, want %s (%s)", r.ID, r.Status, want, r.Error)
			}
		}
		done := map[string]bool{}
		for _, e := range journalEntries(t, cfg.OutDir) {
			if e.Status == Succeeded {
				done[e.ID] = true
			}
		}
		if !done["job-000"] || !done["job-001"] || len(done) != 2 {
			t.Errorf("journaled as succeeded: %v, want job-000 and job-001", done)
		}
	})
}
