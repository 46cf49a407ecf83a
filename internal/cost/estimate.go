package cost

import (
	"errors"
	"fmt"

	"github.com/batch-tool/batch/internal/manifest"
)

// Breakdown is the priced cost of a list of jobs.
type Breakdown struct {
	// Jobs holds each job's credits (its image price × samples), in the
	// order of the jobs given; zero for a job that could not be priced.
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

// priceKey is everything an image's price depends on.
type priceKey struct {
	engine               string
	width, height, steps int
}

// problem is one distinct pricing error and the jobs that hit it.
type problem struct {
	err   error
	first string // id of the first job with this problem
	count int
}

// Estimate prices every job on sheet s. It returns every distinct problem at
// once, joined, each naming the first job it affects and how many others
// share it; the breakdown still holds the jobs that could be priced. Each
// distinct engine, size and steps is priced once, so a million jobs take
// well under a second.
func Estimate(jobs []manifest.Job, s *Sheet) (Breakdown, error) {
	type price struct {
		credits Credits
		problem int // index into problems; -1 when priced
	}
	cache := make(map[priceKey]price)
	var problems []problem
	seen := make(map[string]int) // problem text → index into problems
	note := func(err error, job string) int {
		i, ok := seen[err.Error()]
		if !ok {
			i = len(problems)
			seen[err.Error()] = i
			problems = append(problems, problem{err: err, first: job})
		}
		problems[i].count++
		return i
	}

	b := Breakdown{Jobs: make([]Credits, len(jobs))}
	for i := range jobs {
		j := &jobs[i] // a Job is large; don't copy a million of them
		k := priceKey{j.Engine, j.Width, j.Height, j.Steps}
		p, ok := cache[k]
		switch {
		case !ok:
			c, err := s.ImagePrice(j.Engine, j.Width, j.Height, j.Steps)
			p = price{credits: c, problem: -1}
			if err != nil {
				p.problem = note(err, j.ID)
			}
			cache[k] = p
		case p.problem >= 0:
			problems[p.problem].count++
		}
		if p.problem >= 0 {
			continue
		}
		if j.Samples < 1 {
			note(fmt.Errorf("samples must be at least 1, not %d", j.Samples), j.ID)
			continue
		}
		c := p.credits * Credits(j.Samples)
		if c/Credits(j.Samples) != p.credits || b.Total > maxCredits-c {
			note(errors.New("total is too large to count in micro-credits"), j.ID)
			continue
		}
		b.Jobs[i] = c
		b.Total += c
	}

	errs := make([]error, len(problems))
	for i, p := range problems {
		more := ""
		if p.count > 1 {
			more = fmt.Sprintf(" (and %d more)", p.count-1)
		}
		errs[i] = fmt.Errorf("job %q%s: %w", p.first, more, p.err)
	}
	return b, errors.Join(errs...)
}
