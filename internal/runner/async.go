package runner

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/stability"
)

// asyncJob is an async job between its submit and its result: a
// long-running operation whose name, the generation id, is in the journal,
// so that another process can poll it (as cloud.google.com/go/longrunning
// resumes an operation by name).
type asyncJob struct {
	i           int       // the job's index in the run
	res         JobResult // the job so far: attempts, unknown credits, generation id
	key         string    // the job's Key, journaled with its outcome
	id          string    // the generation id
	submittedAt time.Time // by Config.Now, when the submit was answered; from the journal when resumed
	next        time.Time // on the monotonic clock: the earliest the next poll may leave
	failures    int       // failed polls in a row
	rateLimited int       // 429 answers to polls
	// journaled is the part of res.Unknown that the job's submitted line
	// recorded (attempts before the accepted submit), left out of the
	// line that ends the job.
	journaled cost.Credits
}

// resumedAsync is the state of a job the journal holds as submitted. Its
// first poll waits PollInterval from now, since the run that submitted it
// may have polled just before it was killed; one whose result has expired
// is due at once (and ends without a request).
func (r *run) resumedAsync(i int, j *manifest.Job, e *entry) *asyncJob {
	next := time.Now()
	if r.cfg.Now().Sub(e.SubmittedAt) <= ResultLifetime {
		next = next.Add(r.cfg.PollInterval)
	}
	return &asyncJob{
		i: i, res: JobResult{ID: j.ID, DependsOn: j.DependsOn(), Status: Skipped, Attempts: e.Attempts, GenerationID: e.GenerationID},
		key: e.Key, id: e.GenerationID, submittedAt: e.SubmittedAt, next: next,
	}
}

// submit sends async job i until the API accepts it, journals the
// generation id before anything else, and queues the job for its first
// poll. Its price stays reserved until the result is fetched.
func (r *run) submit(sched, reqs context.Context, i int, job *manifest.Job, req stability.Request, key string, res JobResult) event {
	price := r.prices[i]
	var id string
	var answered time.Time
	ok := r.send(sched, reqs, key, price, &res, func(ctx context.Context) (error, error) {
		var err error
		id, err = r.gen.Submit(ctx, req.Service, req.Fields)
		answered = time.Now()
		if err == nil && !stability.ValidGenerationID(id) {
			err = fmt.Errorf("%w: generation id %q is not 1–128 characters of [A-Za-z0-9_-]", stability.ErrMalformedResponse, clip(id, 64))
		}
		return err, nil
	})
	if !ok {
		return r.record(i, key, res, 0)
	}
	res.GenerationID = id
	at := r.cfg.Now().UTC()
	e := entry{ID: job.ID, Key: key, Status: submitted, GenerationID: id, SubmittedAt: at, Unknown: res.Unknown, Price: price, Attempts: res.Attempts, Time: at}
	if err := r.journal.append(e); err != nil {
		// the attempt line stays its job's last: the next run counts the
		// price as possibly billed
		r.ledger.settle(price, unknown)
		res.Unknown += price
		err = fmt.Errorf("generation %s was submitted but could not be journaled: %w", id, err)
		r.failLocal(fmt.Errorf("job %s: %w", job.ID, err))
		return event{i: i, res: failed(res, FailLocal, err)}
	}
	r.ledger.commit(price)
	a := &asyncJob{i: i, res: res, key: key, id: id, submittedAt: at, next: answered.Add(r.cfg.PollInterval), journaled: res.Unknown}
	return event{i: i, a: a}
}

// poll asks once for async job a's result. While the generation runs, the
// job waits for its next poll; once it is done, the image is saved as a
// synchronous answer's would be and the job is charged. A poll's failure
// never submits again: transient ones are retried at the next poll, and
// those after which the result may still be fetched leave the journal's
// submitted entry as the job's last, for a rerun to poll.
func (r *run) poll(sched context.Context, a *asyncJob) event {
	i, job, price := a.i, r.jobs.Job(a.i), r.prices[a.i]
	if sched.Err() != nil {
		return event{i: i, res: r.stopWaiting(a, stopReason(sched))}
	}
	if age := r.cfg.Now().Sub(a.submittedAt); age > ResultLifetime {
		return r.expire(a, fmt.Errorf("generation %s was submitted %v ago, and results are kept %v", a.id, age.Round(time.Second), ResultLifetime))
	}
	if err := r.gate.wait(sched); err != nil {
		reason := err.Error()
		if sched.Err() != nil {
			reason = stopReason(sched)
		}
		return event{i: i, res: r.stopWaiting(a, reason)}
	}
	format, err := outputFormat(job)
	if err != nil { // Run checked every job before starting
		return r.final(a, FailInvalid, err)
	}
	// A poll is free and can be repeated, so an interrupt cancels it.
	sink := &attemptFiles{folder: r.folder, job: job, format: format, key: a.key, failWrite: r.cfg.failWrite, bufs: &r.images}
	kept := r.keeper(&job, a.key) // the cache's copy of the result; nil when none is kept
	defer kept.drop()
	ctx, cancel := context.WithTimeout(sched, r.cfg.AttemptTimeout)
	arts, done, err := r.gen.Result(ctx, a.id, kept.sink(sink))
	cancel()
	a.next = time.Now().Add(r.cfg.PollInterval)
	switch {
	case err == nil && done:
		r.ledger.settleCommitted(price, charged)
		res := kept.commit(price, r.save(job, price, sink, arts, a.res))
		if res.Failure == FailLocal {
			return event{i: i, res: res} // the result is still on the server: a rerun polls it
		}
		return r.record(i, a.key, res, a.journaled)
	case err == nil:
		sink.discard()
		a.failures = 0
		return event{i: i, a: a}
	}
	sink.discard()
	class := stability.Classify(err)
	switch {
	case sink.local != nil:
		r.failLocal(fmt.Errorf("job %s: image not saved: %w", job.ID, sink.local))
		return r.stop(a, FailLocal, fmt.Errorf("image not saved: %w", sink.local))
	case sched.Err() != nil:
		return event{i: i, res: r.stopWaiting(a, stopReason(sched))}
	}
	if e, ok := errors.AsType[*stability.APIError](err); ok && e.Status == http.StatusNotFound {
		return r.expire(a, fmt.Errorf("the API no longer knows generation %s: %w", a.id, err))
	}
	switch class {
	case stability.ClassRateLimited:
		r.pauseAll(err)
		if a.rateLimited++; a.rateLimited > maxRateLimited {
			return r.stop(a, FailRateLimited, fmt.Errorf("polls rate limited %d times: %w", a.rateLimited, err))
		}
		return event{i: i, a: a}
	case stability.ClassUnauthorized:
		r.fatal(fmt.Errorf("%w: %w", ErrUnauthorized, err))
		return r.stop(a, FailUnauthorized, err)
	case stability.ClassNoCredit:
		r.fatal(fmt.Errorf("%w: %w", ErrNoCredit, err))
		return r.stop(a, FailNoCredit, err)
	case stability.ClassModerated:
		return r.final(a, FailModerated, err)
	case stability.ClassRejected:
		return r.final(a, FailRejected, err)
	case stability.ClassInvalid:
		return r.final(a, FailInvalid, err)
	case stability.ClassServer, stability.ClassNotSent, stability.ClassUnknown:
		if a.failures++; a.failures >= r.cfg.MaxAttempts {
			kind := FailServer
			if class == stability.ClassUnknown {
				kind = FailUnknown
			}
			return r.stop(a, kind, fmt.Errorf("giving up after %d failed polls in a row: %w", a.failures, err))
		}
		if d := backoff(r.cfg.BackoffBase, r.cfg.BackoffCap, a.failures); d > r.cfg.PollInterval {
			a.next = time.Now().Add(d)
		}
		return event{i: i, a: a}
	}
	// a 2xx answer we cannot use
	return r.final(a, FailAnswer, err)
}

// final ends async job a as failed for good: its price counts as possibly
// billed, and the journal records the outcome, so a rerun submits it again.
func (r *run) final(a *asyncJob, kind Failure, err error) event {
	r.ledger.settleCommitted(r.prices[a.i], unknown)
	res := a.res
	res.Unknown += r.prices[a.i]
	return r.record(a.i, a.key, failed(res, kind, err), a.journaled)
}

// expire ends async job a whose result is gone.
func (r *run) expire(a *asyncJob, err error) event {
	return r.final(a, FailExpired, err)
}

// stop ends async job a as failed in this run without journaling it: its
// result may still be fetched, and a rerun polls it again.
func (r *run) stop(a *asyncJob, kind Failure, err error) event {
	r.ledger.settleCommitted(r.prices[a.i], unknown)
	res := a.res
	res.Unknown += r.prices[a.i]
	return event{i: a.i, res: failed(res, kind, fmt.Errorf("%w; a rerun polls generation %s again", err, a.id))}
}

// stopWaiting is the result of async job a when the run stops while it
// waits on the server: skipped, its price possibly billed, and left to a
// rerun to poll.
func (r *run) stopWaiting(a *asyncJob, reason string) JobResult {
	r.ledger.settleCommitted(r.prices[a.i], unknown)
	res := a.res
	res.Status, res.Failure = Skipped, ""
	res.Unknown += r.prices[a.i]
	res.Error = fmt.Sprintf("stopped while waiting on the server: %s; a rerun polls generation %s", reason, a.id)
	return res
}

// clip shortens s to at most n bytes for an error message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
