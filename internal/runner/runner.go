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

// Generator makes one attempt of a request, v1 or Stable Image, streaming
// the images into sink; it never retries and never waits for a rate limit.
// *stability.Client satisfies it. The runner reads its errors only through
// stability.Classify, so it never looks at endpoints or HTTP statuses.
type Generator interface {
	Generate(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error)
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

// Failure says why a job failed; "" for a job that did not fail. The
// values are those of the report's "failure" field.
type Failure string

// Failure kinds. Credits are released (not charged) for the kinds where
// the API said it did no work: moderated, rejected, invalid, rate-limited,
// unauthorized, no-credit, and server when no attempt had an unknown
// outcome.
const (
	// FailBudget: not sent, the job's price would take spending past the
	// budget.
	FailBudget Failure = "budget"
	// FailModerated: the API refused the request as content moderation
	// (403 content_moderation); never retried.
	FailModerated Failure = "moderated"
	// FailRejected: the API refused the request (422, e.g. a public
	// figure or an unsupported language); never retried.
	FailRejected Failure = "rejected"
	// FailInvalid: the API found the request invalid (400, 404, 413);
	// never retried.
	FailInvalid Failure = "invalid"
	// FailRateLimited: answered 429 more than a job accepts.
	FailRateLimited Failure = "rate-limited"
	// FailUnauthorized: the API refused the key; the run stopped.
	FailUnauthorized Failure = "unauthorized"
	// FailNoCredit: the account cannot pay; the run stopped.
	FailNoCredit Failure = "no-credit"
	// FailServer: 5xx answers or connection failures until the attempts
	// ran out.
	FailServer Failure = "server"
	// FailUnknown: the last attempt was sent and its outcome is unknown
	// (no answer in time, a dropped connection, cancelled in flight); it
	// is counted as possibly billed.
	FailUnknown Failure = "unknown"
	// FailAnswer: the API answered 2xx but the answer was unusable: an
	// image finished with ERROR or none came (charged), or the answer
	// broke the contract (counted as possibly billed).
	FailAnswer Failure = "answer"
	// FailLocal: an image could not be written here; the run stopped.
	FailLocal Failure = "local"
)

// Errors that stop the whole run; Run wraps the API's error in them.
var (
	ErrUnauthorized = errors.New("the API rejected the key")
	ErrNoCredit     = errors.New("the account balance is insufficient")
)

// Defaults for zero Config fields.
const (
	DefaultLockout     = 60 * time.Second
	DefaultMaxAttempts = 5
	DefaultBackoffBase = time.Second
	DefaultBackoffCap  = 30 * time.Second
	// DefaultAttemptTimeout bounds one request, answer body included. It
	// must stay at 180 s or more: the synchronous Stable Image services
	// send nothing until the image is ready, and live Ultra
	// image-to-image and edit calls took 12–35 s before the first byte, a
	// creative upscale 45 s (github.com/aself101/stability-ai-api,
	// docs/LIVE-BATTERY-2026-09-22.md at 10fe5ea, finding 1, which moved
	// that client to 180 s). A request cut short has an unknown outcome:
	// it may be billed, and it is sent again.
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
	Failure  Failure      // why it failed; "" unless Status is Failed
	Credits  cost.Credits // charged: the job's price when the API completed it, else zero
	Unknown  cost.Credits // credits of attempts whose outcome is unknown (possibly billed)
	Attempts int          // requests sent, retries included (from the journal when resumed)
	Resumed  bool         // finished by an earlier run, per the journal; nothing was sent
	Error    string       // why it failed or was skipped; "" on success
	// Params is the generation parameters text, written into PNG files
	// (JPEG and WebP files carry none; the report holds it for them).
	Params string
	Images []Image // files written, in artifact order
}

// Run executes jobs, v1 and Stable Image alike, whose prices (per-image
// price × samples) are given in the same order, and returns their results
// in manifest order. Jobs the journal in cfg.OutDir records as succeeded or
// filtered with the same Key are not sent again. Per-job failures are in
// the results; the error is non-nil only when the run could not start (a
// job whose request cannot be built: nothing is sent) or was stopped by a
// fatal error (ErrUnauthorized, ErrNoCredit, an image or journal line that
// cannot be written). When ctx is cancelled, no new job starts, requests
// in flight finish and are recorded (bounded by AttemptTimeout), and
// Result.Interrupted is set.
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
		if r.keys[i], err = jobKey(j); err != nil {
			return Result{}, fmt.Errorf("run: job %s: %w", j.ID, err)
		}
		if _, err := outputFormat(j); err != nil {
			return Result{}, fmt.Errorf("run: job %s: %w", j.ID, err)
		}
		if e, ok := done[j.ID]; ok && e.resumes(r.keys[i]) {
			resumed[i] = true
			r.results[i] = JobResult{ID: j.ID, Status: e.Status, Failure: e.Failure, Credits: e.Credits, Attempts: e.Attempts,
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
		e := entry{ID: res.ID, Key: r.keys[i], Status: res.Status, Failure: res.Failure, Credits: res.Credits, Unknown: res.Unknown,
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
// What each failed attempt means comes from stability.Classify: the runner
// decides on retries, pauses and money by class alone.
func (r *run) attempts(sched, reqs context.Context, i int) JobResult {
	job, price := r.jobs[i], r.prices[i]
	res := JobResult{ID: job.ID, Status: Skipped}
	if sched.Err() != nil {
		res.Error = notStarted(sched)
		return res
	}
	req, err := RequestFor(job)
	if err != nil { // Run checked every job before starting
		return failed(res, FailInvalid, err)
	}
	format, err := outputFormat(job)
	if err != nil {
		return failed(res, FailInvalid, err)
	}
	rateLimited, failures := 0, 0
	for {
		if err := r.gate.wait(sched); err != nil {
			res.Error = stoppedBefore(sched, err, res.Attempts)
			return res
		}
		if err := r.ledger.reserve(sched, price); err != nil {
			if errors.Is(err, ErrOverBudget) {
				return failed(res, FailBudget, fmt.Errorf("%w: needs %v credits", err, price))
			}
			res.Error = stoppedBefore(sched, err, res.Attempts)
			return res
		}
		res.Attempts++
		sink := &attemptFiles{outDir: r.cfg.OutDir, job: job, format: format}
		actx, cancel := context.WithTimeout(reqs, r.cfg.AttemptTimeout)
		arts, err := r.gen.Generate(actx, req, sink)
		cancel()
		if err == nil {
			r.ledger.settle(price, charged)
			res.Credits = price
			res.Params = Parameters(job, firstSeed(arts, job.Seed))
			images, err := sink.commit()
			if err != nil {
				err = fmt.Errorf("generated but not saved: %w", err)
				r.fatal(fmt.Errorf("job %s: %w", job.ID, err))
				return failed(res, FailLocal, err)
			}
			res.Images = images
			res.Status, res.Error = outcome(images)
			if res.Status == Failed {
				res.Failure = FailAnswer
			}
			return res
		}
		sink.discard()

		class := stability.Classify(err)
		switch {
		case sink.local != nil:
			// The answer was streaming in, so the work was done.
			r.ledger.settle(price, unknown)
			res.Unknown += price
			err = fmt.Errorf("image not saved: %w", sink.local)
			r.fatal(fmt.Errorf("job %s: %w", job.ID, err))
			return failed(res, FailLocal, err)
		case reqs.Err() != nil && (class == stability.ClassUnknown || class == stability.ClassNotSent):
			// a fatal error elsewhere cancelled the request mid-flight
			r.ledger.settle(price, unknown)
			res.Unknown += price
			return failed(res, FailUnknown, fmt.Errorf("cancelled in flight (outcome unknown): %v", stopReason(reqs)))
		}
		switch class {
		case stability.ClassRateLimited:
			r.ledger.settle(price, released) // the API did no work
			var d time.Duration
			if e, ok := errors.AsType[*stability.APIError](err); ok {
				d = e.RetryAfter
			}
			if d <= 0 {
				d = r.cfg.Lockout
			}
			r.gate.pause(d)
			if rateLimited++; rateLimited > maxRateLimited {
				return failed(res, FailRateLimited, fmt.Errorf("rate limited %d times: %w", rateLimited, err))
			}
			continue
		case stability.ClassUnauthorized:
			r.ledger.settle(price, released)
			r.fatal(fmt.Errorf("%w: %w", ErrUnauthorized, err))
			return failed(res, FailUnauthorized, err)
		case stability.ClassNoCredit:
			r.ledger.settle(price, released)
			r.fatal(fmt.Errorf("%w: %w", ErrNoCredit, err))
			return failed(res, FailNoCredit, err)
		case stability.ClassModerated:
			r.ledger.settle(price, released)
			return failed(res, FailModerated, err)
		case stability.ClassRejected:
			r.ledger.settle(price, released)
			return failed(res, FailRejected, err)
		case stability.ClassInvalid:
			r.ledger.settle(price, released)
			if tooLarge(err) {
				err = fmt.Errorf("%w (the request was too large for the API: a validation bug in batch, please report it)", err)
			}
			return failed(res, FailInvalid, err)
		case stability.ClassServer, stability.ClassNotSent:
			r.ledger.settle(price, released) // no work done: retry
		case stability.ClassUnknown:
			r.ledger.settle(price, unknown) // possibly billed: retry
			res.Unknown += price
			if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("no answer within %v: %w", r.cfg.AttemptTimeout, err)
			}
		default:
			// a 2xx answer we cannot use: the work was done
			r.ledger.settle(price, unknown)
			res.Unknown += price
			return failed(res, FailAnswer, err)
		}
		if failures++; failures >= r.cfg.MaxAttempts {
			kind := FailServer
			if class == stability.ClassUnknown {
				kind = FailUnknown
			}
			return failed(res, kind, fmt.Errorf("giving up after %d attempt(s): %w", res.Attempts, err))
		}
		if err := sleep(sched, backoff(r.cfg.BackoffBase, r.cfg.BackoffCap, failures)); err != nil {
			res.Error = fmt.Sprintf("%s; last error: %v", stoppedBefore(sched, err, res.Attempts), err)
			return res
		}
	}
}

// tooLarge reports a 413 answer. The class (invalid) decides what happens;
// this only words the error, since batch checks sizes before sending and a
// 413 means that check is wrong.
func tooLarge(err error) bool {
	e, ok := errors.AsType[*stability.APIError](err)
	return ok && e.Status == http.StatusRequestEntityTooLarge
}

func failed(res JobResult, kind Failure, err error) JobResult {
	res.Status, res.Failure, res.Error = Failed, kind, err.Error()
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
