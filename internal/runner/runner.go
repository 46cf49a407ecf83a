// Package runner executes a manifest's jobs against the image API: a shared
// rate limiter and 429 pause, bounded concurrency, retries by error class,
// budget reservation per attempt, atomic image files, and a journal that
// lets a rerun resume where a crash or Ctrl-C left off.
package runner

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/stability"
)

// Generator sends one text-to-image attempt, streaming the images into
// sink. *stability.Client satisfies it. A non-2xx answer is a
// *stability.APIError; a connection failure is a *stability.TransportError
// (Sent false: the request never left).
type Generator interface {
	TextToImage(ctx context.Context, engine string, req stability.TextToImageRequest, sink stability.Sink) ([]stability.Artifact, error)
}

// Status is a job's outcome; the values match the report's.
type Status string

// Job statuses.
const (
	Succeeded Status = "succeeded" // every image came back SUCCESS
	Failed    Status = "failed"    // the job will not produce images in this run
	Filtered  Status = "filtered"  // some image came back CONTENT_FILTERED
	Skipped   Status = "skipped"   // not run to the end: interrupted or stopped by a fatal error
)

// Errors that stop the whole run; Run wraps the API's error in them.
var (
	ErrUnauthorized = errors.New("the API rejected the key")
	ErrNoCredit     = errors.New("the account balance is insufficient")
)

// Defaults for zero Config fields.
const (
	DefaultLockout        = 60 * time.Second
	DefaultMaxAttempts    = 5
	DefaultBackoffBase    = time.Second
	DefaultBackoffCap     = 30 * time.Second
	DefaultAttemptTimeout = 5 * time.Minute
)

// maxRateLimited bounds the 429 answers one job accepts before failing;
// they do not count against MaxAttempts.
const maxRateLimited = 10

// Config tunes a run. The zero value of every field picks its default.
type Config struct {
	// Concurrency is the most jobs in flight; 0 means AutoConcurrency.
	Concurrency int
	// Rate is the request limit shared by every attempt; zero means DefaultRate.
	Rate Rate
	// Budget caps the credits the run may spend, counting the jobs resumed
	// from the journal; nil means no cap (spending is still tracked).
	Budget *cost.Credits
	// OutDir receives images/, filtered/ and journal.jsonl; required.
	OutDir string
	// Lockout is how long every worker pauses after a 429 without
	// Retry-After; zero means DefaultLockout (the API's 60 s).
	Lockout time.Duration
	// MaxAttempts bounds the attempts per job on 5xx answers and connection
	// failures (429s are not counted); zero means DefaultMaxAttempts.
	MaxAttempts int
	// BackoffBase and BackoffCap shape the retry wait: attempt n waits a
	// random time in [d/2, d] with d = min(BackoffCap, BackoffBase·2^(n-1));
	// zero means DefaultBackoffBase, DefaultBackoffCap.
	BackoffBase, BackoffCap time.Duration
	// AttemptTimeout bounds one request, also after an interrupt lets the
	// requests in flight finish; zero means DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// Now is the clock for journal times and progress, called from several
	// goroutines; nil means time.Now.
	Now func() time.Time
	// Progress is told about every finished job; nil means no progress.
	Progress Progress
}

// AutoConcurrency is the concurrency used when Config.Concurrency is 0:
// 2×N for a rate of N per window, capped by the number of jobs. By Little's
// law the jobs in flight needed to keep the limiter busy are rate × latency,
// so 2×N keeps the rate limit reached for generations lasting up to two
// windows (20 s at the default 150/10s) without tuning; slower generations
// run below the rate but never above it.
func AutoConcurrency(r Rate, jobs int) int {
	if r.N <= 0 {
		r = DefaultRate
	}
	return max(1, min(2*r.N, jobs))
}

// Result is the outcome of a run.
type Result struct {
	Jobs        []JobResult  // one per job, in manifest order
	Charged     cost.Credits // credits of jobs the API completed, resumed ones included
	Spent       cost.Credits // Charged plus attempts whose outcome is unknown: the most that may have been billed
	Concurrency int          // the concurrency used
	Interrupted bool         // ctx was cancelled: unstarted jobs are Skipped, a rerun resumes
}

// JobResult is one job's outcome.
type JobResult struct {
	ID       string
	Status   Status
	Credits  cost.Credits // charged: the job's price when the API completed it, else zero
	Unknown  cost.Credits // credits of attempts whose outcome is unknown (possibly billed)
	Attempts int          // requests sent, retries included (from the journal when resumed)
	Resumed  bool         // finished by an earlier run, per the journal; nothing was sent
	Error    string       // why it failed or was skipped; "" on success
	Params   string       // the generation parameters text written into the PNGs
	Images   []Image      // files written, in artifact order
}

// Run executes jobs, whose prices (per-image price × samples) are given in
// the same order, and returns their results in manifest order. Jobs the
// journal in cfg.OutDir records as succeeded or filtered with the same Key
// are not sent again. Per-job failures are in the results; the error is
// non-nil only when the run could not start or was stopped by a fatal
// error (ErrUnauthorized, ErrNoCredit, a journal failure). When ctx is
// cancelled, no new job starts, requests in flight finish and are recorded
// (bounded by AttemptTimeout), and Result.Interrupted is set.
func Run(ctx context.Context, cfg Config, gen Generator, jobs []manifest.Job, prices []cost.Credits) (Result, error) {
	if len(prices) != len(jobs) {
		return Result{}, fmt.Errorf("run: %d prices for %d jobs", len(prices), len(jobs))
	}
	if cfg.OutDir == "" {
		return Result{}, errors.New("run: no output folder")
	}
	if err := ctx.Err(); err != nil {
		return Result{Interrupted: true}, fmt.Errorf("run: %w", err)
	}
	cfg = withDefaults(cfg, len(jobs))
	if err := prepareOut(cfg.OutDir); err != nil {
		return Result{}, fmt.Errorf("run: %w", err)
	}
	jnl, done, err := openJournal(cfg.OutDir)
	if err != nil {
		return Result{}, fmt.Errorf("run: %w", err)
	}
	defer jnl.close()

	r := &run{cfg: cfg, gen: gen, jobs: jobs, prices: prices, gate: newGate(cfg.Rate), journal: jnl, start: cfg.Now()}
	r.results = make([]JobResult, len(jobs))
	r.keys = make([]string, len(jobs))
	var prior cost.Credits
	resumed := make([]bool, len(jobs))
	for i, j := range jobs {
		if r.keys[i], err = Key(j.Engine, RequestFor(j)); err != nil {
			return Result{}, fmt.Errorf("run: job %s: %w", j.ID, err)
		}
		if e, ok := done[j.ID]; ok && e.resumes(r.keys[i]) {
			resumed[i] = true
			r.results[i] = JobResult{ID: j.ID, Status: e.Status, Credits: e.Credits, Attempts: e.Attempts,
				Resumed: true, Params: e.Params, Images: e.Images, Error: e.Error}
			prior += e.Credits
			r.tally.add(r.results[i])
		}
	}
	r.ledger = newLedger(cfg.Budget, prior)
	r.report()

	// sched stops scheduling and waiting (interrupt or fatal); reqs cancels
	// requests in flight (fatal only: an interrupt lets them finish).
	sched, stopSched := context.WithCancelCause(ctx)
	defer stopSched(nil)
	reqs, stopReqs := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopReqs(nil)
	r.fatal = func(err error) {
		r.fatalOnce.Do(func() {
			r.fatalErr = err
			stopSched(err)
			stopReqs(err)
		})
	}

	var g errgroup.Group
	g.SetLimit(cfg.Concurrency) // ≥ 1, see withDefaults
	for i := range jobs {
		if resumed[i] {
			continue
		}
		if sched.Err() != nil {
			r.results[i] = JobResult{ID: jobs[i].ID, Status: Skipped, Error: notStarted(sched)}
			continue
		}
		g.Go(func() error {
			r.runJob(sched, reqs, i)
			return nil
		})
	}
	_ = g.Wait() // jobs record their own errors; fatal ones go through r.fatal

	res := Result{Jobs: r.results, Concurrency: cfg.Concurrency}
	res.Charged, res.Spent = r.ledger.totals()
	if r.fatalErr != nil {
		return res, fmt.Errorf("run stopped: %w", r.fatalErr)
	}
	res.Interrupted = ctx.Err() != nil
	if err := jnl.close(); err != nil {
		return res, fmt.Errorf("run: close journal: %w", err)
	}
	return res, nil
}

func withDefaults(cfg Config, jobs int) Config {
	if cfg.Rate.N <= 0 || cfg.Rate.Window <= 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = AutoConcurrency(cfg.Rate, jobs)
	}
	if cfg.Lockout <= 0 {
		cfg.Lockout = DefaultLockout
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = DefaultBackoffBase
	}
	if cfg.BackoffCap <= 0 {
		cfg.BackoffCap = DefaultBackoffCap
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = DefaultAttemptTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg
}

// run is the state of one Run call.
type run struct {
	cfg     Config
	gen     Generator
	jobs    []manifest.Job
	prices  []cost.Credits
	keys    []string
	gate    *gate
	ledger  *ledger
	journal *journal
	start   time.Time
	results []JobResult // each index written by one goroutine only

	fatal     func(error)
	fatalOnce sync.Once
	fatalErr  error // set once, read after every job finished

	mu    sync.Mutex // guards tally and Progress calls
	tally tally
}

func notStarted(ctx context.Context) string {
	return "not started: " + stopReason(ctx)
}

func stopReason(ctx context.Context) string {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c.Error()
	}
	return "interrupted"
}

// runJob runs job i to its end and records, journals and reports it.
func (r *run) runJob(sched, reqs context.Context, i int) {
	res := r.attempts(sched, reqs, i)
	if res.Status != Skipped {
		e := entry{ID: res.ID, Key: r.keys[i], Status: res.Status, Credits: res.Credits, Unknown: res.Unknown,
			Attempts: res.Attempts, Images: res.Images, Params: res.Params, Error: res.Error, Time: r.cfg.Now().UTC()}
		if err := r.journal.append(e); err != nil {
			r.fatal(err)
			res.Error = strings.TrimPrefix(res.Error+"; ", "; ") + err.Error()
		}
	}
	r.results[i] = res
	r.mu.Lock()
	r.tally.add(res)
	r.mu.Unlock()
	r.report()
}

// attempts sends job i until it succeeds, fails for good, or is stopped.
func (r *run) attempts(sched, reqs context.Context, i int) JobResult {
	job, price := r.jobs[i], r.prices[i]
	res := JobResult{ID: job.ID, Status: Skipped}
	if sched.Err() != nil {
		res.Error = notStarted(sched)
		return res
	}
	req := RequestFor(job)
	rateLimited, failures := 0, 0
	for {
		if err := r.gate.wait(sched); err != nil {
			res.Error = stoppedBefore(sched, err, res.Attempts)
			return res
		}
		if err := r.ledger.reserve(sched, price); err != nil {
			if errors.Is(err, ErrOverBudget) {
				res.Status = Failed
				res.Error = fmt.Sprintf("%v: needs %v credits", err, price)
				return res
			}
			res.Error = stoppedBefore(sched, err, res.Attempts)
			return res
		}
		res.Attempts++
		sink := &attemptFiles{outDir: r.cfg.OutDir, job: job}
		actx, cancel := context.WithTimeout(reqs, r.cfg.AttemptTimeout)
		arts, err := r.gen.TextToImage(actx, job.Engine, req, sink)
		cancel()
		if err == nil {
			r.ledger.settle(price, charged)
			res.Credits = price
			res.Params = Parameters(job, firstSeed(arts, job.Seed))
			images, err := sink.commit()
			if err != nil {
				res.Status, res.Error = Failed, fmt.Sprintf("generated but not saved: %v", err)
				return res
			}
			res.Images = images
			res.Status, res.Error = outcome(images)
			return res
		}
		sink.discard()

		var apiErr *stability.APIError
		var te *stability.TransportError
		switch {
		case errors.As(err, &apiErr):
			r.ledger.settle(price, released) // the API answered: it did no work
			switch {
			case apiErr.Status == http.StatusTooManyRequests:
				d := apiErr.RetryAfter
				if d <= 0 {
					d = r.cfg.Lockout
				}
				r.gate.pause(d)
				if rateLimited++; rateLimited > maxRateLimited {
					return failed(res, fmt.Errorf("rate limited %d times: %w", rateLimited, err))
				}
				continue
			case apiErr.Status == http.StatusUnauthorized || apiErr.Status == http.StatusForbidden:
				r.fatal(fmt.Errorf("%w: %w", ErrUnauthorized, err))
				return failed(res, err)
			case isNoCredit(apiErr):
				r.fatal(fmt.Errorf("%w: %w", ErrNoCredit, err))
				return failed(res, err)
			case apiErr.Status < 500:
				return failed(res, err) // the request itself is wrong: never retried
			}
		case reqs.Err() != nil:
			// a fatal error elsewhere cancelled the request mid-flight
			r.ledger.settle(price, unknown)
			res.Unknown += price
			return failed(res, fmt.Errorf("cancelled in flight (outcome unknown): %v", stopReason(reqs)))
		case errors.As(err, &te):
			if te.Sent {
				r.ledger.settle(price, unknown)
				res.Unknown += price
			} else {
				r.ledger.settle(price, released)
			}
		case errors.Is(err, context.DeadlineExceeded):
			r.ledger.settle(price, unknown)
			res.Unknown += price
			err = fmt.Errorf("no answer within %v: %w", r.cfg.AttemptTimeout, err)
		default:
			// an error we cannot classify may have come after the request left
			r.ledger.settle(price, unknown)
			res.Unknown += price
			return failed(res, err)
		}
		// 5xx, connection failure or timeout: back off and retry
		if failures++; failures >= r.cfg.MaxAttempts {
			return failed(res, fmt.Errorf("giving up after %d attempt(s): %w", res.Attempts, err))
		}
		if err := sleep(sched, backoff(r.cfg.BackoffBase, r.cfg.BackoffCap, failures)); err != nil {
			res.Error = fmt.Sprintf("%s; last error: %v", stoppedBefore(sched, err, res.Attempts), err)
			return res
		}
	}
}

func failed(res JobResult, err error) JobResult {
	res.Status, res.Error = Failed, err.Error()
	return res
}

func stoppedBefore(ctx context.Context, err error, attempts int) string {
	reason := err.Error()
	if ctx.Err() != nil {
		reason = stopReason(ctx)
	}
	if attempts == 0 {
		return "not started: " + reason
	}
	return fmt.Sprintf("stopped before attempt %d: %s", attempts+1, reason)
}

// outcome derives a finished job's status from its images.
func outcome(images []Image) (Status, string) {
	st, msg := Succeeded, ""
	for i, img := range images {
		switch img.FinishReason {
		case stability.FinishSuccess:
		case stability.FinishContentFiltered:
			if st == Succeeded {
				st, msg = Filtered, fmt.Sprintf("image %d was content filtered", i+1)
			}
		default:
			return Failed, fmt.Sprintf("image %d finished with %s", i+1, img.FinishReason)
		}
	}
	if len(images) == 0 {
		return Failed, "the API returned no images"
	}
	return st, msg
}

func firstSeed(arts []stability.Artifact, fallback uint32) uint32 {
	if len(arts) > 0 {
		return arts[0].Seed
	}
	return fallback
}

// isNoCredit reports an answer saying the account cannot pay. The v1 API
// documents no status for it, so the name and message are checked too.
func isNoCredit(e *stability.APIError) bool {
	if e.Status == http.StatusPaymentRequired {
		return true
	}
	text := strings.ToLower(e.Name + " " + e.Message)
	for _, s := range []string{"insufficient_balance", "insufficient balance", "insufficient credit", "not have enough balance", "not enough balance", "not enough credits", "out of credits", "insufficient_credits"} {
		if strings.Contains(text, s) {
			return true
		}
	}
	return false
}

// backoff returns the wait before retry n (1-based): a random duration in
// [d/2, d] with d = min(ceiling, base·2^(n-1)).
func backoff(base, ceiling time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return d/2 + rand.N(d/2+1)
}
