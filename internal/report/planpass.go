package report

import (
	"bytes"
	"cmp"
	"hash/maphash"
	"io"
	"slices"
	"strconv"
	"unicode/utf8"
)

// A plan is rendered in passes over its jobs (Plan.Jobs), never held: a
// first pass counts the jobs and images, notes which columns the tables
// need and measures their widths; later passes write the rows, or the
// groups. A group is a run of consecutive jobs with the same Group (a
// manifest entry's jobs are consecutive in every plan batch writes), summed
// as it passes.

// planStats is what a first pass over a plan tells its renderers.
type planStats struct {
	jobs, images int
	groups       int // runs of consecutive jobs of one group
	// deps, prompts and settings report whether any job takes images from
	// another, has a prompt or negative prompt, or sets a setting the
	// tables show: only then do the tables get that column (plan files
	// written before prompts were recorded have none).
	deps, prompts, settings bool
	// rows holds every job when there are at most MaxJobRows, which the
	// tables list one per row; nil otherwise.
	rows PlanRows
	// sources maps every id a job takes images from to "", for
	// resolveSources to fill in with its group; nil when no job takes any.
	sources map[idKey]string
	ids     *idHasher // the hasher of sources' keys
}

// scanPlan makes the first pass over p's jobs, calling onGroup (when not
// nil) with each group as it ends, its sources not yet resolved.
func scanPlan(p *Plan, onGroup func(g *group) error) (*planStats, error) {
	st := &planStats{rows: PlanRows{}}
	fold := groupFold{emit: func(g *group, _, _ string) error {
		st.groups++
		if onGroup != nil {
			return onGroup(g)
		}
		return nil
	}}
	err := eachJob(p, func(_ int64, j *PlanJob) error {
		st.jobs++
		st.images += j.Samples
		st.prompts = st.prompts || j.Prompt != "" || j.NegativePrompt != ""
		st.settings = st.settings || len(j.Settings) > 0 || j.OutputFormat != ""
		if len(j.DependsOn) > 0 {
			if st.sources == nil {
				st.sources, st.ids = make(map[idKey]string), newIDHasher()
			}
			st.deps = true
			for _, id := range j.DependsOn {
				st.sources[st.ids.key(id)] = ""
			}
		}
		switch {
		case st.jobs <= MaxJobRows:
			st.rows = append(st.rows, j.clone())
		case st.rows != nil:
			st.rows = nil
		}
		return fold.add(j)
	})
	if err != nil {
		return nil, err
	}
	if err := fold.end(); err != nil {
		return nil, err
	}
	return st, nil
}

// resolveSources makes a pass over p's jobs that fills in st.sources with
// the group of each source's job. A source not in the plan (another
// shard's job) keeps "", and groups name it by its id.
func (st *planStats) resolveSources(p *Plan) error {
	if st.sources == nil {
		return nil
	}
	return eachJob(p, func(_ int64, j *PlanJob) error {
		k := st.ids.key(j.ID)
		if g, ok := st.sources[k]; ok && g == "" {
			st.sources[k] = j.Group
		}
		return nil
	})
}

// eachGroup makes a pass over p's jobs, calling fn with each group as it
// ends, with the prompt and negative prompt of its first job; the groups'
// sources are as resolveSources left st.sources.
func (st *planStats) eachGroup(p *Plan, fn func(g *group, prompt, negative string) error) error {
	fold := groupFold{sources: st.sources, ids: st.ids, emit: fn}
	if err := eachJob(p, func(_ int64, j *PlanJob) error { return fold.add(j) }); err != nil {
		return err
	}
	return fold.end()
}

// eachJob calls fn with each of p's jobs; a plan with no Jobs has none.
func eachJob(p *Plan, fn func(pos int64, j *PlanJob) error) error {
	if p.Jobs == nil {
		return nil
	}
	return p.Jobs.Each(fn)
}

// clone returns a copy of j that shares no slice with it.
func (j *PlanJob) clone() PlanJob {
	c := *j
	c.DependsOn = slices.Clone(j.DependsOn)
	c.Inputs = slices.Clone(j.Inputs)
	c.Settings = slices.Clone(j.Settings)
	return c
}

// groupFold sums consecutive jobs of one group into a group, and hands
// each group to emit once its last job has passed.
type groupFold struct {
	// sources maps source ids (keyed by ids) to their groups; nil leaves
	// the groups' from lists empty.
	sources map[idKey]string
	ids     *idHasher
	emit    func(g *group, prompt, negative string) error

	g                *group // the group being summed; nil before the first job
	prompt, negative string // its first job's prompt and negative prompt
	// Sets of ops, sizes and from once a group has many, so that a group
	// with thousands of distinct sizes is not quadratic.
	opSet, sizeSet, fromSet map[string]bool
	// The previous job's operation and size fields, and their text: a
	// matrix's jobs mostly share them, which spares building the text.
	engine, service, model, aspect string
	width, height                  int
	op, size                       string
	prevSet                        bool
}

// add folds j into the current group, first handing on the current group
// when j starts another.
func (f *groupFold) add(j *PlanJob) error {
	if f.g == nil || j.Group != f.g.Name {
		if err := f.end(); err != nil {
			return err
		}
		f.g = &group{Name: j.Group}
		f.prompt, f.negative = j.Prompt, j.NegativePrompt
		f.opSet, f.sizeSet, f.fromSet = nil, nil, nil
	}
	g := f.g
	g.Jobs++
	g.Images += j.Samples
	g.Credits += j.Credits
	if !f.prevSet || j.Engine != f.engine || j.Service != f.service || j.Model != f.model {
		f.op, f.engine, f.service, f.model = j.op(), j.Engine, j.Service, j.Model
	}
	if !f.prevSet || j.Width != f.width || j.Height != f.height || j.AspectRatio != f.aspect {
		f.size, f.width, f.height, f.aspect = sizeText(j.Width, j.Height, j.AspectRatio), j.Width, j.Height, j.AspectRatio
	}
	f.prevSet = true
	addDistinct(&g.ops, &f.opSet, f.op)
	addDistinct(&g.sizes, &f.sizeSet, f.size)
	if j.Steps > 0 {
		if g.minSteps == 0 {
			g.minSteps, g.maxSteps = j.Steps, j.Steps
		}
		g.minSteps, g.maxSteps = min(g.minSteps, j.Steps), max(g.maxSteps, j.Steps)
	}
	if f.sources != nil {
		for _, id := range j.DependsOn {
			// A source missing from the plan (another shard's job) is
			// named by its id.
			addDistinct(&g.from, &f.fromSet, cmp.Or(f.sources[f.ids.key(id)], id))
		}
	}
	return nil
}

// end hands on the current group, if any.
func (f *groupFold) end() error {
	if f.g == nil {
		return nil
	}
	g := f.g
	f.g = nil
	return f.emit(g, f.prompt, f.negative)
}

// addDistinct appends s to list unless it holds it already; past a few
// items it keeps set alongside, to look s up.
func addDistinct(list *[]string, set *map[string]bool, s string) {
	l := *list
	switch {
	case len(l) > 0 && l[len(l)-1] == s:
		return
	case *set != nil:
		if (*set)[s] {
			return
		}
		(*set)[s] = true
	case slices.Contains(l, s):
		return
	case len(l) == 8:
		*set = make(map[string]bool, 16)
		for _, v := range l {
			(*set)[v] = true
		}
		(*set)[s] = true
	}
	*list = append(l, s)
}

// groupCells are a group's cells in the plan's grouped tables, without the
// prompt: GROUP, (FROM when deps,) JOBS, ENGINE / SERVICE, SIZES, STEPS,
// IMAGES, CREDITS.
func groupCells(g *group, deps bool) []string {
	cells := make([]string, 0, 9) // room for FROM and the prompt (withText)
	cells = append(cells, g.Name, strconv.Itoa(g.Jobs), g.Operation(), g.Sizes(), g.Steps(),
		strconv.Itoa(g.Images), g.Credits.String())
	return withFrom(deps, cells, g.From())
}

// cut is s, a text already on one line (as promptText returns it), cut to
// at most max runes as oneLine cuts; max 0 is no limit. Unlike oneLine it
// spends nothing on a text that fits, the usual case.
func cut(s string, max int) string {
	if max <= 0 || utf8.RuneCountInString(s) <= max {
		return s
	}
	return oneLine(s, max)
}

// columns lays table rows out as tableWriter does (each column as wide as
// its widest cell, plus tablePadding; a row's last cell is no column, and
// no line ends in blanks) from widths measured in an earlier pass, so that
// rows are written as they come instead of being held.
type columns []int

// measure widens the columns to hold cells.
func (c *columns) measure(cells []string) {
	for len(*c) < len(cells) {
		*c = append(*c, 0)
	}
	for i, s := range cells {
		(*c)[i] = max((*c)[i], utf8.RuneCountInString(s))
	}
}

// used is the width the columns before the last cell of a row of n cells
// take, padding included.
func (c columns) used(n int) int {
	w := 0
	for i := range n - 1 {
		w += c[i] + tablePadding
	}
	return w
}

// line writes cells as one line of the table to buf.
func (c columns) line(buf *bytes.Buffer, cells []string) {
	start := buf.Len()
	for i, s := range cells {
		buf.WriteString(s)
		if i < len(cells)-1 {
			for range c[i] + tablePadding - utf8.RuneCountInString(s) {
				buf.WriteByte(' ')
			}
		}
	}
	trimmed := bytes.TrimRight(buf.Bytes()[start:], " ")
	buf.Truncate(start + len(trimmed))
	buf.WriteByte('\n')
}

// spillAt is how much a renderer's buffer holds before spill passes it on.
const spillAt = 64 << 10

// spill writes buf to w and empties it once it holds spillAt bytes or
// more, so that a long report streams through a small buffer.
func spill(w io.Writer, buf *bytes.Buffer) error {
	if buf.Len() < spillAt {
		return nil
	}
	_, err := w.Write(buf.Bytes())
	buf.Reset()
	return err
}

// idKey is a 128-bit hash of a job id: a set or map of ids keyed by it
// takes 16 bytes an id, whatever the id's length, and two ids collide with
// a chance of about 2⁻¹²⁸.
type idKey [2]uint64

// idHasher hashes ids into idKeys, with seeds of its own: keys of two
// hashers do not compare.
type idHasher struct{ a, b maphash.Seed }

func newIDHasher() *idHasher { return &idHasher{maphash.MakeSeed(), maphash.MakeSeed()} }

func (h *idHasher) key(id string) idKey {
	return idKey{maphash.String(h.a, id), maphash.String(h.b, id)}
}
