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
	Index  int    // position of the first job with the problem, in the jobs given
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

// Estimate prices every job on sheet s: a job with a Service by
// ServicePrice(service, its model field), once; any other by ImagePrice ×
// samples. It returns every distinct problem at once, joined, each a
// *JobError naming the first job it affects and how many others share it;
// the breakdown still holds the jobs that could be priced. Each distinct
// engine, size and steps, or service and model, is priced once, so a million
// jobs take well under a second.
func Estimate(jobs []manifest.Job, s *Sheet) (Breakdown, error) {
	type price struct {
		credits Credits
		problem int // index into problems; -1 when priced
	}
	cache := make(map[priceKey]price)
	// Whether an engine can be priced at all does not depend on size and
	// steps; asking once per engine keeps a matrix of a retired engine cheap.
	engineErr := make(map[string]error)
	var problems []*JobError
	seen := make(map[string]int) // problem text → index into problems
	note := func(err error, job int) int {
		i, ok := seen[err.Error()]
		if !ok {
			i = len(problems)
			seen[err.Error()] = i
			problems = append(problems, &JobError{Index: job, ID: jobs[job].ID, Others: -1, Err: err})
		}
		problems[i].Others++
		return i
	}

	b := Breakdown{Jobs: make([]Credits, len(jobs))}
	for i := range jobs {
		j := &jobs[i] // a Job is large; don't copy a million of them
		var k priceKey
		if j.Service != "" {
			model, _ := j.Param("model")
			k = priceKey{service: j.Service, model: model}
		} else {
			k = priceKey{engine: j.Engine, width: j.Width, height: j.Height, steps: j.Steps}
		}
		p, ok := cache[k]
		switch {
		case !ok:
			var c Credits
			var err error
			if k.service != "" {
				c, err = s.ServicePrice(k.service, k.model)
			} else {
				var seen bool
				if err, seen = engineErr[k.engine]; !seen {
					err = s.engineProblem(k.engine)
					engineErr[k.engine] = err
				}
				if err == nil {
					c, err = s.ImagePrice(k.engine, k.width, k.height, k.steps)
				}
			}
			p = price{credits: c, problem: -1}
			if err != nil {
				p.problem = note(err, i)
			}
			cache[k] = p
		case p.problem >= 0:
			problems[p.problem].Others++
		}
		if p.problem >= 0 {
			continue
		}
		if j.Service != "" {
			if b.Total > maxCredits-p.credits {
				note(errors.New("total is too large to count in micro-credits"), i)
				continue
			}
			b.Jobs[i] = p.credits
			b.Total += p.credits
			continue
		}
		if j.Samples < 1 {
			note(fmt.Errorf("samples must be at least 1, not %d", j.Samples), i)
			continue
		}
		c := p.credits * Credits(j.Samples)
		if c/Credits(j.Samples) != p.credits || b.Total > maxCredits-c {
			note(errors.New("total is too large to count in micro-credits"), i)
			continue
		}
		b.Jobs[i] = c
		b.Total += c
	}

	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = p
	}
	return b, errors.Join(errs...)
}
