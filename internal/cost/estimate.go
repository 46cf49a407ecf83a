package cost

import (
	"errors"
	"fmt"

	"github.com/batch-tool/batch/internal/manifest"
)

// Breakdown is the priced cost of a list of jobs.
type Breakdown struct {
	// Jobs holds each job's credits, in the order of the jobs given: a v1
	// job's image price × samples, a Stable Image job's price per successful
	// result (it has one result); zero for a job that could not be priced.
	Jobs  []Credits
	Total Credits // sum of Jobs
}

// ErrOverBudget reports an estimate above the budget.
var ErrOverBudget = errors.New("over budget")

// CheckBudget returns an error wrapping ErrOverBudget when total exceeds
// budget; a total equal to the budget is allowed.
func CheckBudget(total, budget Credits) error {
	if total > budget {
		return fmt.Errorf("%w: estimate %v credits exceeds budget %v credits", ErrOverBudget, total, budget)
	}
	return nil
}

// priceKey is everything a job's unit price depends on: the engine, size
// and steps of a v1 job, or the service and model of a Stable Image job.
type priceKey struct {
	engine, service, model string
	width, height, steps   int
}

// JobError is one distinct pricing problem of an estimate: the first job
// it hit and how many other jobs share it.
type JobError struct {
	Index  int    // position of the first job with the problem, as given to Price (for Estimate, in the jobs given)
	ID     string // that job's id
	Others int    // how many later jobs have the same problem; zero when none
	Err    error
}

func (e *JobError) Error() string {
	more := ""
	if e.Others > 0 {
		more = fmt.Sprintf(" (and %d more)", e.Others)
	}
	return fmt.Sprintf("job %q%s: %v", e.ID, more, e.Err)
}

func (e *JobError) Unwrap() error { return e.Err }

// Estimate prices every job on sheet s with an Estimator and returns each
// job's credits, the total and every distinct problem (see
// Estimator.Err); the breakdown still holds the jobs that could be priced.
func Estimate(jobs []manifest.Job, s *Sheet) (Breakdown, error) {
	e := NewEstimator(s)
	b := Breakdown{Jobs: make([]Credits, len(jobs))}
	for i := range jobs {
		b.Jobs[i] = e.Price(i, &jobs[i]) // a Job is large; don't copy a million of them
	}
	b.Total = e.Total()
	return b, e.Err()
}

// unitPrice is a cached price of one priceKey.
type unitPrice struct {
	credits Credits
	problem int // index into Estimator.problems; -1 when priced
}

// Estimator prices jobs one at a time on a sheet, so that a manifest's jobs
// are priced as they are built, never held: a job with a Service by
// ServicePrice(service, its model field), once; any other by ImagePrice ×
// samples. Each distinct engine, size and steps, or service and model, is
// priced once, so a million jobs take well under a second. Its zero value
// is not usable; call NewEstimator.
type Estimator struct {
	sheet *Sheet
	cache map[priceKey]unitPrice
	// Whether an engine can be priced at all does not depend on size and
	// steps; asking once per engine keeps a matrix of a retired engine
	// cheap.
	engineErr map[string]error
	problems  []*JobError
	seen      map[string]int // problem text → index into problems
	total     Credits
	// The previous job's key and price: the jobs of a matrix mostly share
	// them, which spares a map lookup.
	lastKey   priceKey
	lastPrice unitPrice
	last      bool // whether lastKey is set
}

// NewEstimator returns an Estimator pricing on sheet s, with a zero total.
func NewEstimator(s *Sheet) *Estimator {
	return &Estimator{sheet: s, cache: make(map[priceKey]unitPrice), engineErr: make(map[string]error), seen: make(map[string]int)}
}

// Price returns job j's credits and adds them to the total: a v1 job's
// image price × samples, a Stable Image job's price per successful result.
// i is the job's position, which a problem reports (JobError.Index). A job
// that cannot be priced costs 0 here; its problem is kept for Err.
func (e *Estimator) Price(i int, j *manifest.Job) Credits {
	var k priceKey
	if j.Service != "" {
		model, _ := j.Param("model")
		k = priceKey{service: j.Service, model: model}
	} else {
		k = priceKey{engine: j.Engine, width: j.Width, height: j.Height, steps: j.Steps}
	}
	p, ok := e.lastPrice, e.last && k == e.lastKey
	if !ok {
		p, ok = e.cache[k]
	}
	switch {
	case !ok:
		p = e.unit(k, i, j.ID)
		e.cache[k] = p
	case p.problem >= 0:
		e.problems[p.problem].Others++
	}
	e.lastKey, e.lastPrice, e.last = k, p, true
	if p.problem >= 0 {
		return 0
	}
	c := p.credits
	if j.Service == "" {
		if j.Samples < 1 {
			e.note(fmt.Errorf("samples must be at least 1, not %d", j.Samples), i, j.ID)
			return 0
		}
		c = p.credits * Credits(j.Samples)
		if c/Credits(j.Samples) != p.credits {
			e.note(errTooLarge, i, j.ID)
			return 0
		}
	}
	if e.total > maxCredits-c {
		e.note(errTooLarge, i, j.ID)
		return 0
	}
	e.total += c
	return c
}

var errTooLarge = errors.New("total is too large to count in micro-credits")

// unit prices key k, first met at job i (id), noting its problem if any.
func (e *Estimator) unit(k priceKey, i int, id string) unitPrice {
	var c Credits
	var err error
	if k.service != "" {
		c, err = e.sheet.ServicePrice(k.service, k.model)
	} else {
		var seen bool
		if err, seen = e.engineErr[k.engine]; !seen {
			err = e.sheet.engineProblem(k.engine)
			e.engineErr[k.engine] = err
		}
		if err == nil {
			c, err = e.sheet.ImagePrice(k.engine, k.width, k.height, k.steps)
		}
	}
	p := unitPrice{credits: c, problem: -1}
	if err != nil {
		p.problem = e.note(err, i, id)
	}
	return p
}

// note counts a job (i, id) with problem err, keeping the first job of
// each distinct problem, and returns the problem's index.
func (e *Estimator) note(err error, i int, id string) int {
	n, ok := e.seen[err.Error()]
	if !ok {
		n = len(e.problems)
		e.seen[err.Error()] = n
		e.problems = append(e.problems, &JobError{Index: i, ID: id, Others: -1, Err: err})
	}
	e.problems[n].Others++
	return n
}

// Total is the sum of the credits Price has returned.
func (e *Estimator) Total() Credits { return e.total }

// Err returns every distinct problem Price met, joined, in the order they
// were first met: each a *JobError naming the first job it affects and how
// many others share it. nil when every job was priced.
func (e *Estimator) Err() error {
	errs := make([]error, len(e.problems))
	for i, p := range e.problems {
		errs[i] = p
	}
	return errors.Join(errs...)
}
