package manifest

import (
	"sort"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/catalog"
)

// formOverhead is what a request body holds besides its files and the
// job's texts: multipart boundaries, part headers and short fields, counted
// generously.
const formOverhead = 4 << 10

// maxCycleIDs is the most ids a cycle's message names.
const maxCycleIDs = 10

// link finishes the jobs that take image inputs, once every job has its
// id: it resolves each {from} to the job it names (reporting unknown ids,
// matrix entries named by their base id, self-references, indexes past a
// source's images and cycles), then, sources first, gives each input from
// another job that job's output size, checks it against the dependent's
// limits and computes the dependent's own output size (so upscale/fast of
// a 1024×1024 image is 4096×4096, and whatever takes that image knows it
// before anything is paid). Last it checks that each job's files leave
// its request under the API's body limit (an image from another job is
// not known in bytes before the run, so only files count).
//
// failed are the entries that had problems of their own and so have no
// jobs: a {from} that may name one of their jobs is left unresolved rather
// than reported as unknown.
func (p *parser) link(plans []*plan, jobs []Job, failed []*entry) {
	l := &linker{p: p, plans: plans, jobs: jobs, failed: failed, seen: map[string]bool{}, shown: map[*plan]int{}, more: map[*plan]int{}}
	l.resolve()
	l.walk()
	l.bodies()
	for _, pl := range plans {
		if n := l.more[pl]; n > 0 {
			p.addf(pl.e.node, "%s: %d more problems with the image inputs of its rows", pl.e.path, n)
		}
	}
}

// linker holds the dependency graph of the jobs of one manifest.
type linker struct {
	p     *parser
	plans []*plan // in manifest order, each with its first job's index
	jobs  []Job
	// src holds, for each input of each job, the index of the job it is
	// from; -1 for a file or a from that did not resolve. Job i's inputs
	// are at src[off[i]:off[i+1]].
	src   []int32
	off   []int32
	state []uint8 // per job: unvisited, on the walk's stack, or sized
	seen  map[string]bool
	shown map[*plan]int // problems reported per plan
	more  map[*plan]int // problems past maxRowProblems per plan
	cands []string      // ids for suggestions, built on first use
	// failed are entries with problems, whose jobs are missing from jobs.
	failed []*entry
}

// mayBeFailed reports whether id may name a job of an entry that had
// problems: its explicit id or one of its matrix rows', or any id when
// such an entry has no explicit id (its derived id is not known).
func (l *linker) mayBeFailed(id string) bool {
	for _, e := range l.failed {
		if e.id == "" || strings.EqualFold(id, e.id) || len(id) > len(e.id) && strings.EqualFold(id[:len(e.id)+1], e.id+"-") {
			return true
		}
	}
	return false
}

// The states of a job in walk.
const (
	unvisited uint8 = iota
	onStack
	sized
)

// resolve finds the job each {from} names.
func (l *linker) resolve() {
	n := len(l.jobs)
	l.off = make([]int32, n+1)
	hasFrom := false
	for i := range l.jobs {
		l.off[i+1] = l.off[i] + int32(len(l.jobs[i].Inputs))
		for _, in := range l.jobs[i].Inputs {
			hasFrom = hasFrom || in.From != ""
		}
	}
	l.src = make([]int32, l.off[n])
	for i := range l.src {
		l.src[i] = -1
	}
	l.state = make([]uint8, n)
	if !hasFrom {
		return
	}
	ids := make(map[string]int32, n)
	for i := range l.jobs {
		ids[l.jobs[i].ID] = int32(i)
	}
	bases := map[string]*plan{}
	for _, pl := range l.plans {
		if len(pl.e.keys) > 0 {
			bases[pl.base] = pl
		}
	}
	for i := range l.jobs {
		for k, in := range l.jobs[i].Inputs {
			if in.From == "" {
				continue
			}
			s, ok := ids[in.From]
			switch {
			case !ok && bases[in.From] != nil:
				l.report(i, in.Field, l.baseProblem(bases[in.From]))
			case !ok && l.mayBeFailed(in.From):
				// an entry with problems of its own may have the id
			case !ok:
				l.report(i, in.Field, "no job has the id "+clip(in.From, 100)+l.suggest(in.From, l.jobs[i].ID))
			case int(s) == i:
				l.report(i, in.Field, "a job cannot take its own image ("+in.From+")")
			case in.Index > l.jobs[s].Samples:
				l.report(i, in.Field, "index "+strconv.Itoa(in.Index)+" is past the images of job "+in.From+", which makes "+plural(l.jobs[s].Samples, "image"))
			default:
				l.src[int(l.off[i])+k] = s
			}
		}
	}
}

// baseProblem says that a from names a matrix entry, not one of its jobs.
func (l *linker) baseProblem(pl *plan) string {
	rows := l.jobs[pl.first : pl.first+pl.rows]
	names := make([]string, 0, min(len(rows), 5))
	for _, j := range rows[:min(len(rows), 5)] {
		names = append(names, j.ID)
	}
	list := strings.Join(names, ", ")
	if len(rows) > 5 {
		list += ", …"
	}
	if len(rows) == 1 {
		return pl.base + " is a matrix entry of 1 job; name it: " + list
	}
	return pl.base + " is a matrix entry of " + strconv.Itoa(len(rows)) + " jobs; name one: " + list
}

// candidates are the ids an unknown id is compared with: every job's in a
// manifest of up to 10,000 jobs, the entries' base ids in a bigger one.
func (l *linker) candidates() []string {
	if l.cands != nil {
		return l.cands
	}
	if len(l.jobs) <= 10_000 {
		for i := range l.jobs {
			l.cands = append(l.cands, l.jobs[i].ID)
		}
	} else {
		for _, pl := range l.plans {
			l.cands = append(l.cands, pl.base)
		}
	}
	return l.cands
}

// suggest is suggest over the candidates, never the job's own id.
func (l *linker) suggest(id, own string) string {
	cands := l.candidates()
	if s := suggest(id, cands); s != " (did you mean "+own+"?)" {
		return s
	}
	others := make([]string, 0, len(cands))
	for _, c := range cands {
		if c != own {
			others = append(others, c)
		}
	}
	return suggest(id, others)
}

// frame is a job on the walk's stack and the next of its inputs to follow.
type frame struct {
	job  int32
	next int32
}

// walk visits the jobs that take inputs depth first, sources before the
// jobs that take their images, sizing each as it is finished, and reports
// every cycle it closes.
func (l *linker) walk() {
	var stack []frame
	for i := range l.jobs {
		if len(l.jobs[i].Inputs) == 0 || l.state[i] != unvisited {
			continue
		}
		l.state[i] = onStack
		stack = append(stack[:0], frame{job: int32(i)})
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			a := top.job
			if top.next == l.off[a+1]-l.off[a] {
				l.size(int(a))
				l.state[a] = sized
				stack = stack[:len(stack)-1]
				continue
			}
			k := top.next
			top.next++
			s := l.src[l.off[a]+k]
			switch {
			case s < 0:
			case l.state[s] == onStack:
				l.cycle(stack, s)
			case l.state[s] == unvisited && len(l.jobs[s].Inputs) == 0:
				l.state[s] = sized // its size is known from its plan
			case l.state[s] == unvisited:
				l.state[s] = onStack
				stack = append(stack, frame{job: s})
			}
		}
	}
}

// cycle reports the cycle that the edge from the top of stack to s closes,
// at the input of its first job in manifest order.
func (l *linker) cycle(stack []frame, s int32) {
	pos := len(stack) - 1
	for stack[pos].job != s {
		pos--
	}
	ring := stack[pos:]
	first := 0
	for q := range ring {
		if ring[q].job < ring[first].job {
			first = q
		}
	}
	names := make([]string, 0, min(len(ring), maxCycleIDs)+2)
	for q := range len(ring) {
		if q == maxCycleIDs {
			names = append(names, "…")
			break
		}
		names = append(names, l.jobs[ring[(first+q)%len(ring)].job].ID)
	}
	names = append(names, names[0])
	a := ring[first].job
	in := &l.jobs[a].Inputs[ring[first].next-1] // the edge being followed from a
	l.report(int(a), in.Field, "a cycle: each job takes the image of the next: "+strings.Join(names, " → "))
}

// size gives job a's inputs from other jobs their sources' sizes, checks
// them against a's limits and computes a's output size.
func (l *linker) size(a int) {
	j := &l.jobs[a]
	info := l.p.ops[j.Service]
	main := info.op.Input()
	var in catalog.Size
	for k := range j.Inputs {
		put := &j.Inputs[k]
		if s := l.src[int(l.off[a])+k]; s >= 0 {
			put.Width, put.Height = 0, 0
			if l.state[s] == sized {
				put.Width, put.Height = l.jobs[s].Width, l.jobs[s].Height
			}
			if f, ok := info.op.Field(put.Field); ok && put.Width > 0 && put.Height > 0 {
				if msg := f.Limits.Check(put.Width, put.Height); msg != "" {
					l.report(a, put.Field, sourceName(put)+" "+msg)
				}
			}
		}
		if put.Field == main {
			in = catalog.Size{W: put.Width, H: put.Height}
		}
	}
	get := func(name string) string {
		for _, put := range j.Inputs {
			if put.Field == name {
				return put.Field
			}
		}
		v, _ := j.Param(name)
		return v
	}
	out, ok := info.op.OutputSize(get, in)
	if !ok {
		out = catalog.Size{}
	}
	j.Width, j.Height = out.W, out.H
}

// sourceName names the image an input takes from another job.
func sourceName(in *Input) string {
	if in.Index > 1 {
		return "image " + strconv.Itoa(in.Index) + " of job " + in.From
	}
	return "the image of job " + in.From
}

// bodies checks that each job's files, texts and fields fit in a request
// body the API accepts.
func (l *linker) bodies() {
	for i := range l.jobs {
		j := &l.jobs[i]
		var files, biggest int64
		field, n := "", 0
		for _, in := range j.Inputs {
			if in.Path == "" {
				continue
			}
			fi := l.p.files[in.Path]
			files += fi.size
			n++
			if fi.size > biggest || field == "" {
				biggest, field = fi.size, in.Field
			}
		}
		if n == 0 {
			continue
		}
		body := files + formOverhead
		for _, pr := range j.Prompts {
			body += int64(len(pr.Text))
		}
		for _, pa := range j.Params {
			body += int64(len(pa.Name) + len(pa.Value))
		}
		if body <= catalog.MaxBody {
			continue
		}
		others := "fields"
		if n > 1 {
			others = "files and fields"
		}
		name := field
		if v := l.valueAt(i, field); v != nil && v.img != nil {
			name = clip(v.img.written, 80)
		}
		l.report(i, field, name+" is "+sizeText(biggest)+" ("+strconv.FormatInt(biggest, 10)+" bytes); with the job's other "+others+
			" the request would be over the "+strconv.Itoa(catalog.MaxBody)+" bytes (10 MiB) the API accepts")
	}
}

// planOf returns the plan job i came from and its row in that plan.
func (l *linker) planOf(i int) (*plan, int) {
	k := sort.Search(len(l.plans), func(k int) bool { return l.plans[k].first > i }) - 1
	return l.plans[k], i - l.plans[k].first
}

// valueAt returns the value that set the image input field of job i: the
// job's (or its defaults') or the matrix value of its row.
func (l *linker) valueAt(i int, field string) *value {
	pl, row := l.planOf(i)
	s := settings.byName[field]
	d := pl.e.keyOf(s)
	if d < 0 {
		return pl.r.ptr(s)
	}
	stride := 1
	for _, k := range pl.e.keys[d+1:] {
		stride *= len(k.vals)
	}
	return &pl.e.keys[d].vals[row/stride%len(pl.e.keys[d].vals)]
}

// report records a problem with the input field of job i at the value that
// set it, once however many rows share it, and at most maxRowProblems per
// manifest entry. When the problem depends on the row (the service or the
// from's placeholders vary) it names the row.
func (l *linker) report(i int, field, msg string) {
	pl, row := l.planOf(i)
	v := l.valueAt(i, field)
	node, path := pl.e.node, pl.e.path
	if v != nil {
		node, path = v.node, pl.e.pathOf(v)
		if pl.svcKey >= 0 || v.img != nil && v.img.from.parts != nil {
			path += " (row " + strconv.Itoa(row+1) + " of " + strconv.Itoa(pl.rows) + ": " + varsText(l.jobs[i].Vars) + ")"
		}
	}
	key := strconv.Itoa(node.Line) + ":" + strconv.Itoa(node.Column) + ":" + path + ": " + msg
	if l.seen[key] {
		return
	}
	l.seen[key] = true
	if l.shown[pl] == maxRowProblems {
		l.more[pl]++
		return
	}
	l.shown[pl]++
	l.p.addf(node, "%s: %s", path, msg)
}

// plural is "1 image", "2 images".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
