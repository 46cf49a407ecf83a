package report

import (
	"cmp"
	"hash/maphash"
	"slices"
	"strconv"

	"github.com/batch-tool/batch/internal/cost"
)

// A run is rendered in passes over its jobs (Run.each), never held when
// Run.Rows has them: a first pass (scanRun) counts and notes what the
// renderers need, and sums the groups as they pass; later passes write
// rows, or fold the jobs into groups again. Every pass reads every job
// (from a RunSpill, decodes its row), so the renderers make as few as they
// can. Every run batch writes lists a group's jobs one after another (a
// manifest entry's jobs are consecutive, and Merge orders shards' jobs by
// their index), so a group is summed as its jobs pass; a report whose
// groups interleave (edited by hand) is summed again, the way that holds
// every group.

// runStats is what a first pass over a run tells its renderers.
type runStats struct {
	jobs   int
	images int // image files listed, summed over the jobs
	deps   bool
	vars   bool // some job has matrix values
	// statuses counts the jobs by status, as the jobs list them (r.Totals
	// may be a merge's sum, or hand-made).
	statuses Totals
	// rows holds every job when there are at most MaxJobRows, which the
	// tables list one per row; nil otherwise.
	rows []RunJob
	// ops sums the jobs' credits by operation, in order of first
	// appearance: engines and services are few.
	ops []namedCredits
	// interleaved reports that some group's jobs are not consecutive.
	interleaved bool
	// sources maps every id a job takes images from to its job's group
	// ("" when the report lacks that job); nil when no job takes any.
	sources map[string]string
}

// scanRun makes the first pass over r's jobs, and a second when some job
// takes images from another (to learn the sources' groups). When onGroup
// is not nil, the first pass also sums each run of consecutive jobs of one
// group, as eachGroup would, and calls onGroup with it once its last job
// has passed: the groups eachGroup makes unless st.interleaved, with no
// sources known yet (their From is right only when !st.deps).
func scanRun(r *Run, onGroup func(g *group) error) (*runStats, error) {
	st := &runStats{rows: []RunJob{}}
	seed := maphash.MakeSeed()
	var seen map[uint64]bool // hashes of the groups passed, to spot one that comes back
	prev, started := "", false
	opAt := map[string]int{} // index in st.ops
	var fold *groupRuns
	if onGroup != nil {
		fold = &groupRuns{emit: onGroup}
	}
	err := r.each(func(_ int, j *RunJob) error {
		st.jobs++
		st.images += len(j.Images)
		st.vars = st.vars || len(j.Vars) > 0
		st.statuses.count(j.Status)
		if !started || j.Group != prev {
			if seen == nil {
				seen = map[uint64]bool{}
			}
			h := maphash.String(seed, j.Group)
			st.interleaved = st.interleaved || seen[h]
			seen[h] = true
			prev, started = j.Group, true
		}
		for _, id := range j.DependsOn {
			if st.sources == nil {
				st.sources = map[string]string{}
			}
			st.deps = true
			st.sources[id] = ""
		}
		op := j.op()
		k, ok := opAt[op]
		if !ok {
			k = len(st.ops)
			opAt[op] = k
			st.ops = append(st.ops, namedCredits{name: op})
		}
		st.ops[k].credits += j.Credits
		switch {
		case st.jobs <= MaxJobRows:
			st.rows = append(st.rows, j.clone())
		case st.rows != nil:
			st.rows = nil
		}
		if fold != nil {
			return fold.add(j)
		}
		return nil
	})
	if err == nil && fold != nil {
		err = fold.end()
	}
	if err != nil || st.sources == nil {
		return st, err
	}
	// As sourceGroups does: the first job with the id and a group names it.
	err = r.each(func(_ int, j *RunJob) error {
		if g, ok := st.sources[j.ID]; ok && g == "" {
			st.sources[j.ID] = j.Group
		}
		return nil
	})
	return st, err
}

// clone returns a copy of j that shares no slice with it.
func (j *RunJob) clone() RunJob {
	c := *j
	c.Vars = slices.Clone(j.Vars)
	c.DependsOn = slices.Clone(j.DependsOn)
	c.Inputs = slices.Clone(j.Inputs)
	c.Settings = slices.Clone(j.Settings)
	c.Images = slices.Clone(j.Images)
	return c
}

// facts is what the grouped views need of the job.
func (j *RunJob) facts() jobFacts {
	return jobFacts{j.ID, j.Group, j.op(), sizeText(j.Width, j.Height, j.AspectRatio), j.Steps, j.Samples, j.Credits, j.Status, j.DependsOn}
}

// eachGroup makes a pass over r's jobs, calling fn with each group, in
// order of each group's first job, as groups would sum them (by is the
// field that names a job's group: its group, or its operation).
func (st *runStats) eachGroup(r *Run, by func(f *jobFacts) string, fn func(g *group) error) error {
	if st.interleaved || by == nil {
		// A group may come back: hold them all, as groups does.
		var facts []jobFacts
		err := r.each(func(_ int, j *RunJob) error {
			f := j.facts()
			f.deps = slices.Clone(f.deps)
			if by != nil {
				f.group = by(&f)
			}
			facts = append(facts, f)
			return nil
		})
		if err != nil {
			return err
		}
		for _, g := range groupsWith(facts, st.sources) {
			if err := fn(g); err != nil {
				return err
			}
		}
		return nil
	}
	fold := groupRuns{by: by, sources: st.sources, emit: fn}
	if err := r.each(func(_ int, j *RunJob) error { return fold.add(j) }); err != nil {
		return err
	}
	return fold.end()
}

// groupRuns sums each run of consecutive jobs of one group into a group,
// as groups would sum them, and hands it to emit once its last job has
// passed.
type groupRuns struct {
	by      func(f *jobFacts) string // names a job's group; nil: byGroup
	sources map[string]string        // the groups of the ids jobs take images from
	emit    func(g *group) error
	cur     *group // the group being summed; nil before the first job
}

// add sums j into the group being summed, or, when j starts another,
// hands that one to emit and starts j's.
func (f *groupRuns) add(j *RunJob) error {
	facts := j.facts()
	if f.by != nil {
		facts.group = f.by(&facts)
	}
	if f.cur != nil && f.cur.Name != facts.group {
		if err := f.emit(f.cur); err != nil {
			return err
		}
		f.cur = nil
	}
	if f.cur == nil {
		f.cur = &group{Name: facts.group}
	}
	f.cur.add(&facts, f.sources)
	return nil
}

// end hands the last group to emit.
func (f *groupRuns) end() error {
	if f.cur == nil {
		return nil
	}
	g := f.cur
	f.cur = nil
	return f.emit(g)
}

// byGroup names a job's group by its Group.
func byGroup(f *jobFacts) string { return f.group }

// groupsWith is groups with the sources' groups given (nil when no job
// takes images from another).
func groupsWith(jobs []jobFacts, sources map[string]string) []*group {
	var out []*group
	byName := make(map[string]*group)
	for i := range jobs {
		j := &jobs[i]
		g := byName[j.group]
		if g == nil {
			g = &group{Name: j.group}
			byName[j.group] = g
			out = append(out, g)
		}
		g.add(j, sources)
	}
	return out
}

// add sums job j into g, as groups does; sources maps the ids jobs take
// images from to their groups.
func (g *group) add(j *jobFacts, sources map[string]string) {
	for _, id := range j.deps {
		// A source missing from the report (another shard's job) is named
		// by its id.
		if src := cmp.Or(sources[id], id); !slices.Contains(g.from, src) {
			g.from = append(g.from, src)
		}
	}
	g.Jobs++
	g.Images += j.samples
	g.Credits += j.credits
	g.Totals.count(j.status)
	if !slices.Contains(g.ops, j.op) {
		g.ops = append(g.ops, j.op)
	}
	if !slices.Contains(g.sizes, j.size) {
		g.sizes = append(g.sizes, j.size)
	}
	if j.steps > 0 {
		if g.minSteps == 0 {
			g.minSteps, g.maxSteps = j.steps, j.steps
		}
		g.minSteps, g.maxSteps = min(g.minSteps, j.steps), max(g.maxSteps, j.steps)
	}
}

// topCredits keeps what barChart shows of a stream of named credits: the
// chartMaxBars largest (ties in input order), the count and the sum.
type topCredits struct {
	top []namedCredits // sorted as barChart sorts, at most chartMaxBars
	n   int
	sum cost.Credits
}

func (t *topCredits) add(name string, c cost.Credits) {
	t.n++
	t.sum += c
	// after every item with as many credits or more: ties keep input order
	k, _ := slices.BinarySearchFunc(t.top, c, func(it namedCredits, c cost.Credits) int {
		if it.credits >= c {
			return -1
		}
		return 1
	})
	if k >= chartMaxBars {
		return
	}
	t.top = slices.Insert(t.top, k, namedCredits{name, c})
	if len(t.top) > chartMaxBars {
		t.top = t.top[:chartMaxBars]
	}
}

// chart is barChart of every item added.
func (t *topCredits) chart(title string) htmlChart {
	if t.n <= chartMaxBars {
		return layoutBars(title, t.top)
	}
	items := slices.Clone(t.top[:chartMaxBars-1])
	rest := t.sum
	for _, it := range items {
		rest -= it.credits
	}
	return layoutBars(title, append(items, namedCredits{strconv.Itoa(t.n-(chartMaxBars-1)) + " others", rest}))
}
