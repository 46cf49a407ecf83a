// Package runner executes a manifest's jobs against the image API: jobs
// scheduled as a dependency graph (a job starts once the jobs whose images
// it takes have succeeded), a shared rate limiter and 429 pause, bounded
// concurrency, retries by error class, budget reservation per attempt,
// asynchronous services submitted once and polled, atomic image files, and
// a journal that lets a rerun resume where a crash or Ctrl-C left off.
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
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/outdir"
	"github.com/batch-tool/batch/internal/stability"
)

// Generator makes one attempt of a request, v1 or Stable Image; it never
// retries and never waits for a rate limit. *stability.Client satisfies it.
// The runner reads its errors only through stability.Classify, so it never
// looks at endpoints or HTTP statuses (except a poll's 404, which means
// the generation is gone).
type Generator interface {
	// Generate sends a synchronous request and streams its images into
	// sink.
	Generate(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error)
	// Submit sends a request to an asynchronous service (req.Async()) and
	// returns the generation id to poll.
	Submit(ctx context.Context, service string, fields []stability.Field) (string, error)
	// Result polls a generation once: done false while it runs; once done,
	// its image is streamed into sink.
	Result(ctx context.Context, id string, sink stability.Sink) ([]stability.Artifact, bool, error)
}

// Status is a job's outcome; the values match the report's.
type Status string

// Job statuses.
const (
	Succeeded Status = "succeeded" // every image came back SUCCESS
	Failed    Status = "failed"    // the job will not produce images in this run
	Filtered  Status = "filtered"  // some image came back CONTENT_FILTERED
	// Skipped: not run to the end: interrupted, stopped by a fatal error,
	// or not run because a job whose image it takes did not succeed
	// (Failure is then FailSource).
	Skipped Status = "skipped"
)

// Failure says why a job failed, or why it was skipped when a source did
// not succeed (FailSource); "" otherwise. The values are those of the
// report's "failure" field.
type Failure string

// Failure kinds. Credits are released (not charged) for the kinds where
// the API said it did no work: moderated, rejected, invalid, rate-limited,
// unauthorized, no-credit, and server when no attempt had an unknown
// outcome. An async job whose submit was accepted counts its price as
// possibly billed whatever happens to it later, unless its result is
// fetched (charged).
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
	// FailInvalid: the API found the request invalid (400, 404, 413), or
	// it could not be built (an input image of a source that wrote none);
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
	// FailLocal: an image or journal line could not be written here;
	// the run stopped starting requests.
	FailLocal Failure = "local"
	// FailExpired: an async job's result was not fetched within
	// ResultLifetime of its submit, or the API no longer knows its
	// generation (404); the work was done, so its price counts as
	// possibly billed. A rerun submits the job again.
	FailExpired Failure = "expired"
	// FailSource: with Status Skipped, the job was not run, at no cost,
	// because a job whose image it takes failed, was filtered or was
	// skipped itself; Error names that job and its reason.
	FailSource Failure = "source"
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
	// DefaultRetryUnknown is Config.RetryUnknown's default: an attempt
	// whose outcome is unknown is retried once.
	DefaultRetryUnknown = 1
	DefaultBackoffBase  = time.Second
	DefaultBackoffCap   = 30 * time.Second
	// DefaultAttemptTimeout bounds one request, answer body included. It
	// must stay at 180 s or more: the synchronous Stable Image services
	// send nothing until the image is ready, and live Ultra
	// image-to-image and edit calls took 12–35 s before the first byte, a
	// creative upscale 45 s (github.com/aself101/stability-ai-api,
	// docs/LIVE-BATTERY-2026-09-22.md at 10fe5ea, finding 1, which moved
	// that client to 180 s). A request cut short has an unknown outcome:
	// it may be billed, and it is sent again.
	DefaultAttemptTimeout = 5 * time.Minute
	// MinPollInterval is the least time between two polls of an async
	// job's result, and between its submit and its first poll. The API
	// spec (internal/prismtest/stability-v2beta-openapi-2026-09.json, the
	// upscale/creative and replace-background-and-relight operations) says
	// "Rate-limiting or other errors may occur if you poll more than once
	// every 10 seconds". It is also the default of Config.PollInterval.
	MinPollInterval = 10 * time.Second
	// ResultLifetime is how long the API keeps an async result (same spec,
	// GET /v2beta/results/{id}: "Results are stored for 24 hours after
	// generation"). A job whose result was not fetched within it of the
	// submit fails as FailExpired.
	ResultLifetime = 24 * time.Hour
)

// maxRateLimited bounds the 429 answers one job accepts before failing;
// they do not count against MaxAttempts.
const maxRateLimited = 10

// Config tunes a run. The zero value of every field picks its default.
type Config struct {
	// Concurrency is the most requests in flight: the number of workers
	// that take ready jobs and due polls; 0 means AutoConcurrency. A job
	// waiting on the server for an async result holds no worker between
	// its polls.
	Concurrency int
	// Rate is the request limit shared by every attempt and poll; zero
	// means DefaultRate.
	Rate Rate
	// RateState holds the rate limiter's schedule; nil keeps it in memory,
	// for this run alone. A state shared with other runs of the same
	// account (a sharedrate.File) spaces their requests as one.
	RateState RateState
	// Budget caps the credits the output folder may cost: everything the
	// journal records as charged or possibly billed by earlier runs (see
	// Standing) plus what this run spends; nil means no cap (spending is
	// still tracked).
	Budget *cost.Credits
	// OutDir receives images/, filtered/ and journal.jsonl; required.
	OutDir string
	// Lockout is how long every worker pauses after a 429 without
	// Retry-After; zero means DefaultLockout (the API's 60 s).
	Lockout time.Duration
	// MaxPause caps every pause: a 429's Retry-After or Lockout, and a
	// retry's backoff; zero means DefaultMaxPause (a minute).
	MaxPause time.Duration
	// MaxAttempts bounds the attempts per job on 5xx answers and connection
	// failures (429s are not counted), and the failed polls in a row of an
	// async job; zero means DefaultMaxAttempts.
	MaxAttempts int
	// RetryUnknown bounds the retries after attempts whose outcome is
	// unknown (the request left, then no answer came: a dropped
	// connection, a timeout), which also count against MaxAttempts; nil
	// means DefaultRetryUnknown, and 0 (or less) never retries them.
	//
	// Such a retry is the one case that can pay twice for one result, so
	// this bounds what a job can cost within a run: at most
	// (1+RetryUnknown) × its price, charged or possibly billed, however
	// many connections drop (5xx answers, 429s and connections that failed
	// before the request left cost nothing, and are retried up to
	// MaxAttempts). A crash or kill costs at most the prices of the
	// requests in flight: each is journaled (fsynced) as an attempt before
	// it leaves, and the next run counts every such attempt without an
	// outcome as possibly billed. Across runs, every credit the journal
	// records as charged or possibly billed counts against Budget, so
	// reruns of a failed job never take the folder past it.
	RetryUnknown *int
	// BackoffBase and BackoffCap shape the retry wait: attempt n waits a
	// random time in [d/2, d] with d = min(BackoffCap, BackoffBase·2^(n-1));
	// zero means DefaultBackoffBase, DefaultBackoffCap.
	BackoffBase, BackoffCap time.Duration
	// AttemptTimeout bounds one request or poll, also after an interrupt
	// lets the requests in flight finish; zero means DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// PollInterval is the least time between an async job's submit and its
	// first poll and between two polls, measured from when the previous
	// answer arrived on the monotonic clock; zero means MinPollInterval,
	// and a value below MinPollInterval is raised to it unless FastPolls
	// is set.
	PollInterval time.Duration
	// FastPolls lets PollInterval go below MinPollInterval. Set it only for
	// a server that is not the live API (the sandbox, a test server).
	FastPolls bool
	// Now is the clock for journal times, an async result's age and
	// progress, called from several goroutines; nil means time.Now. It
	// need not advance: poll spacing uses the monotonic clock.
	Now func() time.Time
	// Progress is told about the run's state; nil means no progress.
	Progress Progress
	// Replace moves, before anything is sent, the files of the jobs
	// Standing lists as Changed or Removed into a new folder under
	// OutDir/replaced/ (see Replaced), and journals those jobs as replaced;
	// unset, their files stay where they are, and a changed job's images
	// are overwritten when it runs again. Check Standing first.
	Replace bool
	// Manifest is every job of the manifest when the run has only some of
	// them (a shard): what the folder holds of the others is not Removed.
	// Nil for a whole manifest.
	Manifest Jobs
	// Finished is told each job's result once, when the job finishes
	// (resumed and skipped jobs included), with the job's index in the
	// run's Jobs. It is called from Run's goroutine, in the order jobs
	// finish, never twice at once. Run keeps no job's result once it has
	// told it, so what the caller needs of one (a report row) it must keep
	// itself. An error stops the run as a file that cannot be written
	// does: no request starts after it, and Run returns it. Nil discards
	// the results.
	Finished func(i int, res JobResult) error
	// Origin is the manifest the jobs come from. It is journaled when the
	// run starts unless the journal's last run line records the same
	// Origin; the zero Origin records nothing.
	Origin Origin
	// Warn is told, one line each without a trailing newline, what the run
	// worked around before sending anything: journal lines it skipped as
	// damaged (named by line number), entries it rebuilt from images on
	// disk, requests an earlier run left in flight. It is called from
	// Run's goroutine; nil discards them.
	Warn func(string)
	// Cache, when set, serves the cacheable jobs (see Cacheable) whose
	// requests it holds without sending them, and keeps every paid,
	// successful answer of a cacheable request (see cache.go); nil means
	// no cache.
	Cache Cache
	// CacheEndpoint names the API in cache keys (cache.KeyFor): its base
	// URL, or a fixed name for a server whose address changes from run to
	// run (the sandbox); required with Cache.
	CacheEndpoint string

	// failWrite, when set, is asked before each write to an image file or
	// the journal, with the file's name relative to OutDir, and makes the
	// write fail with its error: tests use it for a full disk.
	failWrite func(name string) error
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

// Result is the outcome of a run. Its money covers the output folder, not
// only this run: what the journal recorded before the run started (see
// Standing) plus what the run spent, in credits, so Spent is what the
// budget was checked against, and what the journal records after the run.
type Result struct {
	// Reported is the number of jobs whose results went to
	// Config.Finished: every job, unless Run stopped before it started
	// (then 0).
	Reported int
	// Charged is the list price of the results the API completed: in
	// earlier runs (every charged credit the journal holds, for any job)
	// and in this one.
	Charged cost.Credits
	// Spent is Charged plus the credits possibly billed, earlier runs
	// included: attempts whose outcome is unknown, requests in flight when
	// a run stopped, async jobs submitted and not fetched. It is the most
	// the folder may have cost, and never passes Config.Budget unless
	// earlier runs' spending already did.
	Spent cost.Credits
	// PriorCharged and PriorPossiblyBilled are what the journal recorded
	// when the run started: the shares of Charged and of Spent − Charged
	// that earlier runs spent, as Standing reads them (an async job they
	// submitted and this run fetched moves from possibly billed into
	// Charged).
	PriorCharged, PriorPossiblyBilled cost.Credits
	// Replaced is what Config.Replace moved; the zero Replaced when it
	// was unset or found nothing to move.
	Replaced    Replaced
	Concurrency int  // the concurrency used
	Interrupted bool // ctx was cancelled: unstarted jobs are Skipped, a rerun resumes
}

// JobResult is one job's outcome.
type JobResult struct {
	ID        string
	DependsOn []string // ids of the jobs whose images it takes (manifest.Job.DependsOn); nil when none
	Status    Status
	Failure   Failure      // why it failed, or FailSource; see Failure
	Credits   cost.Credits // charged: the job's price when the API completed it, else zero
	Unknown   cost.Credits // credits of attempts whose outcome is unknown, and of an async job submitted but not fetched (possibly billed)
	Attempts  int          // paid requests sent, retries included, polls not (from the journal when resumed)
	Resumed   bool         // finished by an earlier run, per the journal; nothing was sent
	Error     string       // why it failed or was skipped; "" on success
	// GenerationID is the id an async service answered the submit with,
	// polled for the result; "" for a synchronous job or one never
	// submitted.
	GenerationID string
	// Params is the generation parameters text, written into PNG files
	// (JPEG and WebP files carry none; the report holds it for them).
	Params string
	Images []Image // files written, in artifact order
	// Cached: the images came from Config.Cache (now, or in the run the
	// journal resumes it from); nothing was sent and Credits is zero.
	Cached bool
	// CacheDamaged is why the cache's entry of the job's request was not
	// served (damaged: the cache removed it, and the job was bought); ""
	// when none was found damaged.
	CacheDamaged string
	// CacheError is a failure of Config.Cache that did not fail the job:
	// its entry could not be read (the job was bought), or its paid images
	// could not be kept; "" when none.
	CacheError string
}

// Run executes jobs, v1 and Stable Image alike, whose prices (per-image
// price × samples) are given in the same order, and tells each job's
// result to cfg.Finished as the job finishes. It holds a few bytes per job
// besides the jobs in flight: jobs are fetched from jobs when they are
// scheduled, and results leave as they come.
//
// Jobs are scheduled like the actions of cmd/go's build: each job waits for
// the jobs whose images it takes (its Inputs' From, which may come later
// among the jobs); Concurrency workers take ready jobs, earliest in the manifest
// first, and a job that ends makes its dependents ready, or, unless it
// succeeded, skips them and their own dependents at no cost (FailSource).
// There are no stages: independent chains keep the rate limit busy. An
// input from another job sends the absolute path of that job's image.
//
// An asynchronous service's job reserves its price, is submitted, and has
// its generation id journaled (fsynced) before anything else; it is then
// polled, each poll through the shared limiter, at least PollInterval
// after the submit and after the previous poll, holding no worker in
// between. Jobs the journal in cfg.OutDir records as succeeded or filtered
// with the same Key are not sent again, and a job it records as submitted
// with the same Key is polled, never submitted again (a rerun's first poll
// waits PollInterval from its start, since a killed run may just have
// polled). The Key covers the content of the input images.
//
// Before anything is sent, the journal is recovered (see Standing):
// damaged lines are skipped with a warning each (Config.Warn), a job it
// lost whose images are on disk with their record of its Key is taken as
// done and journaled again, and requests a killed run left in flight are
// settled as possibly billed. Everything the journal records as charged or
// possibly billed counts against the budget. Each paid request is
// journaled as an attempt (fsynced) before it leaves. With cfg.Replace,
// the files of jobs that changed or left the manifest then move under
// OutDir/replaced/ (see Replaced); their money lines stay counted.
//
// Per-job failures are in the results; the error is non-nil only when the
// run could not start (ids that repeat, an unknown source or a cycle, an
// input file that cannot be read, a job whose request cannot be built, a
// journal that cannot be read or mended, an output folder that cannot be
// written, holds a symbolic link where images go, or lacks room for the
// images: nothing is sent) or was stopped by a fatal error
// (ErrUnauthorized, ErrNoCredit: requests in flight are cancelled) or a
// local failure (an image or journal line that cannot be written: no
// request starts after it, requests in flight finish and are recorded if
// they can be); a stopped run's Result is returned with the error, every
// job's result told. When ctx is cancelled, no new job starts, requests in flight
// finish and are recorded (bounded by AttemptTimeout), polls stop (a rerun
// polls again), and Result.Interrupted is set.
func Run(ctx context.Context, cfg Config, gen Generator, jobs Jobs, prices []cost.Credits) (Result, error) {
	n := jobs.Len()
	if len(prices) != n {
		return Result{}, fmt.Errorf("run: %d prices for %d jobs", len(prices), n)
	}
	if cfg.OutDir == "" {
		return Result{}, errors.New("run: no output folder")
	}
	if err := ctx.Err(); err != nil {
		return Result{Interrupted: true}, fmt.Errorf("run: %w", err)
	}
	cfg = withDefaults(cfg, n)
	// One pass over the jobs checks them and reads their input files as
	// it indexes their ids; the graph's errors come first, then the first
	// job that cannot be sent, then the first input that cannot be read.
	sums, inputs := map[string]string{}, &heldInputs{}
	var jobErr, inputErr error
	g, err := newGraph(jobs, func(_ int, j *manifest.Job) {
		if jobErr != nil {
			return
		}
		if _, err := RequestFor(*j, unresolved); err != nil {
			jobErr = fmt.Errorf("job %s: %w", j.ID, err)
		} else if _, err := outputFormat(*j); err != nil {
			jobErr = fmt.Errorf("job %s: %w", j.ID, err)
		} else if inputErr == nil {
			inputErr = addInputs(sums, inputs, j)
		}
	})
	for _, err := range []error{err, jobErr, inputErr} {
		if err != nil {
			return Result{}, fmt.Errorf("run: %w", err)
		}
	}
	outAbs, err := filepath.Abs(cfg.OutDir)
	if err != nil {
		return Result{}, fmt.Errorf("run: %w", err)
	}
	if err := prepareOut(cfg.OutDir, jobs, outdir.Preparer{}); err != nil {
		return Result{}, fmt.Errorf("run: %w", err)
	}
	folder, err := openOutFolder(cfg.OutDir)
	if err != nil {
		return Result{}, fmt.Errorf("run: %w", err)
	}
	defer folder.Close()
	jnl, src, err := openJournal(cfg.OutDir)
	if err != nil {
		return Result{}, fmt.Errorf("run: %w", err)
	}
	defer jnl.close()
	jnl.failWrite = cfg.failWrite
	rec, err := recoverOut(cfg.OutDir, src, jobs, g, sums, prices, cfg.Now().UTC())
	if err != nil {
		return Result{}, fmt.Errorf("run: %w", err)
	}
	for _, w := range rec.warnings {
		cfg.Warn(w)
	}
	if err := jnl.mend(rec.keep, rec.newline); err != nil {
		return Result{}, fmt.Errorf("run: %w", err)
	}
	if err := rec.writeAppends(jnl); err != nil {
		return Result{}, fmt.Errorf("run: %w", err)
	}
	var replacedFiles Replaced
	if cfg.Replace {
		replacedFiles, err = replace(cfg.OutDir, jobs, g, prices, rec, jnl, cfg.Manifest, cfg.Now())
		if err != nil {
			return Result{}, fmt.Errorf("run: replace: %w", err)
		}
	}
	if cfg.Origin != (Origin{}) && cfg.Origin != rec.origin {
		o := cfg.Origin
		if err := jnl.append(entry{Status: runStart, Origin: &o, Time: cfg.Now().UTC()}); err != nil {
			return Result{}, fmt.Errorf("run: %w", err)
		}
	}

	// sched stops scheduling, waiting and polling (interrupt, fatal or
	// local failure); reqs cancels paid requests in flight (fatal only: an
	// interrupt or a local failure lets them finish).
	sched, stopSched := context.WithCancelCause(ctx)
	defer stopSched(nil)
	reqs, stopReqs := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopReqs(nil)

	prior := struct{ charged, possibly cost.Credits }{rec.charged, rec.possibly}
	r := &run{cfg: cfg, gen: gen, jobs: jobs, prices: prices, g: g, sums: sums, held: inputs, outAbs: outAbs, done: rec.log,
		gate: newGate(cfg.Rate, cfg.RateState), journal: jnl, folder: folder, start: cfg.Now()}
	stop := func(err error) {
		r.fatalOnce.Do(func() {
			r.fatalErr = err
			stopSched(err)
		})
	}
	r.fatal = func(err error) {
		stop(err)
		stopReqs(err)
	}
	r.failLocal = stop
	var held cost.Credits
	for _, i := range rec.pendingJobs() {
		held += prices[i]
	}
	r.ledger = newLedger(cfg.Budget, rec.charged, rec.possibly-rec.held, held)
	if err := r.setup(sched, rec); err != nil {
		return Result{}, fmt.Errorf("run: %w", err)
	}
	rec = nil // what setup needed of it is in r.s; the rest goes
	r.report()

	tasks, events := make(chan task), make(chan event)
	var g2 errgroup.Group
	for range min(cfg.Concurrency, n) { // Concurrency ≥ 1, see withDefaults
		g2.Go(func() error {
			for t := range tasks {
				events <- r.do(sched, reqs, t)
			}
			return nil
		})
	}
	r.dispatch(sched, tasks, events)
	_ = g2.Wait() // jobs record their own errors; fatal ones go through r.fatal

	res := Result{Reported: r.reported, Concurrency: cfg.Concurrency, PriorCharged: prior.charged, PriorPossiblyBilled: prior.possibly,
		Replaced: replacedFiles}
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
	if cfg.MaxPause <= 0 {
		cfg.MaxPause = DefaultMaxPause
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
	if cfg.PollInterval <= 0 || cfg.PollInterval < MinPollInterval && !cfg.FastPolls {
		cfg.PollInterval = max(cfg.PollInterval, MinPollInterval)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RetryUnknown == nil {
		cfg.RetryUnknown = new(DefaultRetryUnknown)
	}
	if cfg.Warn == nil {
		cfg.Warn = func(string) {}
	}
	return cfg
}

// run is the state of one Run call.
type run struct {
	cfg     Config
	gen     Generator
	jobs    Jobs
	prices  []cost.Credits
	g       *graph
	sums    map[string]string // input file path → SHA-256 of its content; read-only
	held    *heldInputs       // the content of small input files, as hashed into sums; read-only
	outAbs  string            // cfg.OutDir, absolute
	done    *journalLog       // what the journal held before the run: per job id, its last line that is not an attempt; read-only
	gate    *gate
	ledger  *ledger
	journal *journal
	images  imageBuffers // lends the write buffers of image files (output.go)
	folder  *outFolder   // the output folder, opened for the run's images
	start   time.Time    // by cfg.Now

	s        schedule // the dispatcher's state, see schedule.go
	reported int      // jobs told to cfg.Finished; the dispatcher's

	progress progressState // serializes Progress calls, keeps the pause shown; see progress.go

	// fatal stops the run for an error of the API's (ErrUnauthorized,
	// ErrNoCredit): nothing new starts and requests in flight are
	// cancelled. failLocal stops it for a file that cannot be written
	// here: nothing new starts, and requests in flight finish and are
	// recorded if they can be. The first error of either is the run's.
	fatal, failLocal func(error)
	fatalOnce        sync.Once
	fatalErr         error // set once, read after every job finished
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

// do runs one task on a worker and says how it ended.
func (r *run) do(sched, reqs context.Context, t task) event {
	if t.a != nil {
		return r.poll(sched, t.a)
	}
	return r.startJob(sched, reqs, t.i, t.inputs)
}

// startJob runs ready job i, whose sources wrote inputs (those of its
// k-th source, in DependsOn order, at k): it resolves its inputs from
// them, then generates it, or submits it when its service is asynchronous.
func (r *run) startJob(sched, reqs context.Context, i int, inputs [][]Image) event {
	j := r.jobs.Job(i)
	job := &j
	deps := job.DependsOn()
	res := JobResult{ID: job.ID, DependsOn: deps, Status: Skipped}
	if sched.Err() != nil {
		res.Error = notStarted(sched)
		return event{i: i, res: res}
	}
	files, err := resolveInputs(r.outAbs, job, r.sums, func(from string) []Image {
		if k := slices.Index(deps, from); k >= 0 && k < len(inputs) {
			return inputs[k]
		}
		return nil
	})
	if err != nil {
		return r.record(i, "", failed(res, FailInvalid, err), 0)
	}
	req, key, err := requestKey(*job, files)
	if err != nil {
		return r.record(i, "", failed(res, FailInvalid, err), 0)
	}
	r.held.attach(&req)
	// Sources that ran again may have written the same bytes: the journal
	// then still holds this job's outcome, or its generation to poll.
	ks := sumKey(key)
	if jn, ok := r.done.job(job.ID); ok && (jn.resumes(ks) || jn.pending(ks)) {
		e, err := r.done.line(jn.at)
		switch {
		case err != nil:
			err = fmt.Errorf("job %s: %w", job.ID, err)
			r.failLocal(err)
			res.Error = err.Error()
			return event{i: i, res: res}
		case jn.resumes(ks):
			// its credits are among the journal's, counted from the start
			return event{i: i, res: resumedResult(job, &e)}
		}
		r.ledger.adopt(genPrice(e, r.priceOf), r.prices[i])
		return event{i: i, a: r.resumedAsync(i, job, &e)}
	}
	if ev, ok := r.fromCache(i, job, key, &res); ok {
		return ev
	}
	if req.Async() {
		return r.submit(sched, reqs, i, job, req, key, res)
	}
	return r.record(i, key, r.generate(sched, reqs, i, job, req, key, res), 0)
}

// priceOf is the price of the job with this id, 0 when it is not in the
// run.
func (r *run) priceOf(id string) cost.Credits {
	if i, ok := r.g.ids.find(id); ok {
		return r.prices[i]
	}
	return 0
}

// record journals job i's outcome and returns its event: a finished job,
// and a job skipped after attempts it sent, whose line closes their
// attempt lines with what they possibly billed. The line is written before
// the job's dependents start. An async job's line leaves out the possibly
// billed credits its submitted line journaled (journaled; 0 for other
// jobs).
func (r *run) record(i int, key string, res JobResult, journaled cost.Credits) event {
	if res.Status != Skipped || res.Attempts > 0 {
		e := entry{ID: res.ID, Key: key, Status: res.Status, GenerationID: res.GenerationID, Failure: res.Failure,
			Credits: res.Credits, Unknown: res.Unknown - journaled, Attempts: res.Attempts, Images: res.Images, Params: res.Params, Cached: res.Cached,
			Error: res.Error, Time: r.cfg.Now().UTC()}
		if err := r.journal.append(e); err != nil {
			err = fmt.Errorf("job %s: outcome not journaled: %w", res.ID, err)
			r.failLocal(err)
			res.Error = strings.TrimPrefix(res.Error+"; ", "; ") + err.Error()
		}
	}
	return event{i: i, res: res}
}

// resumedResult is the result of a job the journal records as finished.
func resumedResult(j *manifest.Job, e *entry) JobResult {
	return JobResult{ID: j.ID, DependsOn: j.DependsOn(), Status: e.Status, Failure: e.Failure, Credits: e.Credits,
		Attempts: e.Attempts, Resumed: true, GenerationID: e.GenerationID, Params: e.Params, Images: e.Images, Error: e.Error,
		Cached: e.Cached}
}

// generate sends synchronous job i until it succeeds, fails for good, or
// is stopped.
func (r *run) generate(sched, reqs context.Context, i int, j *manifest.Job, req stability.Request, key string, res JobResult) JobResult {
	job, price := *j, r.prices[i]
	format, err := outputFormat(job)
	if err != nil { // Run checked every job before starting
		return failed(res, FailInvalid, err)
	}
	var sink *attemptFiles
	kept := r.keeper(j, key) // the cache's copy of the answer; nil when none is kept
	defer kept.drop()
	var arts []stability.Artifact
	ok := r.send(sched, reqs, key, price, &res, func(ctx context.Context) (error, error) {
		sink = &attemptFiles{folder: r.folder, job: job, format: format, key: key, failWrite: r.cfg.failWrite, bufs: &r.images}
		a, err := r.gen.Generate(ctx, req, kept.sink(sink))
		if err != nil {
			sink.discard()
			return err, sink.local
		}
		arts = a
		return nil, nil
	})
	if !ok {
		return res
	}
	r.ledger.settle(price, charged)
	return kept.commit(price, r.save(job, price, sink, arts, res))
}

// save makes an answered job's images durable; the caller has settled its
// price as charged.
func (r *run) save(job manifest.Job, price cost.Credits, sink *attemptFiles, arts []stability.Artifact, res JobResult) JobResult {
	res.Credits = price
	res.Params = Parameters(job, firstSeed(arts, job.Seed))
	images, err := sink.commit()
	if err != nil {
		err = fmt.Errorf("generated but not saved: %w", err)
		r.failLocal(fmt.Errorf("job %s: %w", job.ID, err))
		return failed(res, FailLocal, err)
	}
	res.Images = images
	res.Status, res.Error = outcome(images)
	if res.Status == Failed {
		res.Failure = FailAnswer
	} else {
		res.Failure = ""
	}
	return res
}

// send makes attempts of a paid request until one is answered (true: its
// price is still reserved, for the caller to settle) or the job ends
// (false: res says how). Each attempt passes the gate, reserves price and
// is journaled as an attempt of the request with this key first. try
// makes one attempt and returns its error and, apart, a failure to store
// its answer here. What a failed attempt means comes from
// stability.Classify: the runner decides on retries, pauses and money by
// class alone.
func (r *run) send(sched, reqs context.Context, key string, price cost.Credits, res *JobResult, try func(ctx context.Context) (err, local error)) bool {
	rateLimited, failures, unknowns := 0, 0, 0
	for {
		if err := r.gate.wait(sched); err != nil {
			res.Error = stoppedBefore(sched, err, res.Attempts)
			return false
		}
		if err := r.ledger.reserve(sched, price); err != nil {
			if errors.Is(err, ErrOverBudget) {
				*res = failed(*res, FailBudget, fmt.Errorf("%w: needs %v credits", err, price))
				return false
			}
			res.Error = stoppedBefore(sched, err, res.Attempts)
			return false
		}
		// Journaled (fsynced) before it leaves, so that a run killed while
		// it is in flight leaves evidence that it may be billed; the
		// next line of the job replaces it.
		a := entry{ID: res.ID, Key: key, Status: attempt, Price: price, Unknown: res.Unknown, Attempts: res.Attempts + 1, Time: r.cfg.Now().UTC()}
		if err := r.journal.append(a); err != nil {
			r.ledger.settle(price, released) // never sent
			err = fmt.Errorf("request not sent, it could not be journaled: %w", err)
			r.failLocal(fmt.Errorf("job %s: %w", res.ID, err))
			*res = failed(*res, FailLocal, err)
			return false
		}
		res.Attempts++
		actx, cancel := context.WithTimeout(reqs, r.cfg.AttemptTimeout)
		err, local := try(actx)
		cancel()
		if err == nil {
			return true
		}

		class := stability.Classify(err)
		switch {
		case local != nil:
			// The answer was streaming in, so the work was done.
			r.ledger.settle(price, unknown)
			res.Unknown += price
			err = fmt.Errorf("image not saved: %w", local)
			r.failLocal(fmt.Errorf("job %s: %w", res.ID, err))
			*res = failed(*res, FailLocal, err)
			return false
		case reqs.Err() != nil && (class == stability.ClassUnknown || class == stability.ClassNotSent):
			// a fatal error elsewhere cancelled the request mid-flight
			r.ledger.settle(price, unknown)
			res.Unknown += price
			*res = failed(*res, FailUnknown, fmt.Errorf("cancelled in flight (outcome unknown): %v", stopReason(reqs)))
			return false
		}
		switch class {
		case stability.ClassRateLimited:
			r.ledger.settle(price, released) // the API did no work
			r.pauseAll(err)
			if rateLimited++; rateLimited > maxRateLimited {
				*res = failed(*res, FailRateLimited, fmt.Errorf("rate limited %d times: %w", rateLimited, err))
				return false
			}
			continue
		case stability.ClassUnauthorized:
			r.ledger.settle(price, released)
			r.fatal(fmt.Errorf("%w: %w", ErrUnauthorized, err))
			*res = failed(*res, FailUnauthorized, err)
			return false
		case stability.ClassNoCredit:
			r.ledger.settle(price, released)
			r.fatal(fmt.Errorf("%w: %w", ErrNoCredit, err))
			*res = failed(*res, FailNoCredit, err)
			return false
		case stability.ClassModerated:
			r.ledger.settle(price, released)
			*res = failed(*res, FailModerated, err)
			return false
		case stability.ClassRejected:
			r.ledger.settle(price, released)
			*res = failed(*res, FailRejected, err)
			return false
		case stability.ClassInvalid:
			r.ledger.settle(price, released)
			*res = failed(*res, FailInvalid, err)
			return false
		case stability.ClassServer, stability.ClassNotSent:
			r.ledger.settle(price, released) // no work done: retry
		case stability.ClassUnknown:
			r.ledger.settle(price, unknown) // possibly billed: retry at most RetryUnknown times
			res.Unknown += price
			unknowns++
			if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("no answer within %v: %w", r.cfg.AttemptTimeout, err)
			}
			if retries := max(*r.cfg.RetryUnknown, 0); unknowns > retries {
				*res = failed(*res, FailUnknown, fmt.Errorf("giving up after %d attempt(s), %d with unknown outcome (possibly billed, so retried at most %d time(s)): %w",
					res.Attempts, unknowns, retries, err))
				return false
			}
		default:
			// a 2xx answer we cannot use: the work was done
			r.ledger.settle(price, unknown)
			res.Unknown += price
			*res = failed(*res, FailAnswer, err)
			return false
		}
		if failures++; failures >= r.cfg.MaxAttempts {
			kind := FailServer
			if class == stability.ClassUnknown {
				kind = FailUnknown
			}
			*res = failed(*res, kind, fmt.Errorf("giving up after %d attempt(s): %w", res.Attempts, err))
			return false
		}
		if err := r.retryWait(sched, res.ID, err, failures); err != nil {
			res.Error = fmt.Sprintf("%s; last error: %v", stoppedBefore(sched, err, res.Attempts), err)
			return false
		}
	}
}

// retryAfter is how long every request pauses after a 429.
func (r *run) retryAfter(err error) time.Duration {
	if e, ok := errors.AsType[*stability.APIError](err); ok && e.RetryAfter > 0 {
		return e.RetryAfter
	}
	return r.cfg.Lockout
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
	var filtered []int // 1-based numbers of the filtered images
	for i, img := range images {
		switch img.FinishReason {
		case stability.FinishSuccess:
		case stability.FinishContentFiltered:
			filtered = append(filtered, i+1)
		default:
			return Failed, fmt.Sprintf("image %d finished with %s", i+1, img.FinishReason)
		}
	}
	switch {
	case len(images) == 0:
		return Failed, "the API returned no images"
	case len(filtered) == 0:
		return Succeeded, ""
	case len(images) == 1:
		return Filtered, "image 1 was content filtered"
	case len(filtered) == 1:
		return Filtered, fmt.Sprintf("image %d of %d was content filtered", filtered[0], len(images))
	}
	return Filtered, fmt.Sprintf("%d of %d images were content filtered", len(filtered), len(images))
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
