package manifest

import (
	"cmp"
	"hash/maphash"
	"slices"
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
// The entries that had problems of their own have no jobs: a {from} that
// may name one of their jobs is left unresolved rather than reported as
// unknown.
func (p *parser) link() {
	l := &linker{p: p, m: p.m, seen: map[string]bool{}, shown: map[int]int{}, more: map[int]*moreProblems{}}
	for k := range l.m.parts {
		if pl := l.m.parts[k].pl; pl != nil && pl.maxIn > 0 {
			pl.rowSize = make([]int32, 2*pl.rows)
			if pl.dynIn {
				pl.rowFrom = make([]int32, pl.rows*pl.maxIn)
				for i := range pl.rowFrom {
					pl.rowFrom[i] = -1
				}
			}
		}
	}
	l.resolve()
	l.walk()
	l.bodies()
	for _, mp := range l.more {
		p.addAt(mp.line, mp.col, "%s: %d more problems with the image inputs of its rows", mp.path, mp.n)
	}
}

// moreProblems counts the input problems of an entry past maxRowProblems.
type moreProblems struct {
	n         int
	line, col int
	path      string
}

// linker holds the dependency graph of the jobs of one manifest.
type linker struct {
	p *parser
	m *Manifest
	// src holds, for each input of each job, the index of the job it is
	// from; -1 for a file or a from that did not resolve. Job i's inputs
	// are at src[off[i]:off[i+1]].
	src   []int32
	off   []int32
	state []uint8 // per job: unvisited, on the walk's stack, or sized
	ids   idLookup
	seen  map[string]bool
	shown map[int]int           // problems reported per entry
	more  map[int]*moreProblems // problems past maxRowProblems per entry
	cands []string              // ids for suggestions, built on first use
}

// mayBeFailed reports whether id may name a job of an entry that had
// problems: its explicit id or one of its matrix rows', or any id when
// such an entry has no explicit id (its derived id is not known).
func (l *linker) mayBeFailed(id string) bool {
	if l.p.anyFail {
		return true
	}
	for _, f := range l.p.failed {
		if strings.EqualFold(id, f) || len(id) > len(f) && strings.EqualFold(id[:len(f)+1], f+"-") {
			return true
		}
	}
	return false
}

// inputs returns job i's image inputs: a plain job's own, in place; a
// matrix row's, shared by the plan's rows when they do not vary, else
// built afresh.
func (l *linker) inputs(i int) []Input {
	m := l.m
	pt := m.partOf(i)
	if pt.pl == nil {
		rec := &m.recs[pt.rec+i-pt.first]
		n := m.shapes[rec.shape].nIn
		return m.ins[rec.in : int(rec.in)+n : int(rec.in)+n]
	}
	pl := pt.pl
	if pl.maxIn == 0 {
		return nil
	}
	if !pl.dynIn {
		return pl.proto.Inputs
	}
	idx := make([]int, len(pl.e.keys))
	pl.rowIndex(i-pt.first, idx)
	info, _ := pl.opOf(idx)
	return pl.appendInputs(nil, info, idx)
}

// idLookup finds a job by its id: it sorts a 64-bit hash of each job's id
// with the job's index, and checks a match against the job's id.
type idLookup struct {
	seed maphash.Seed
	hs   []idHash
}

type idHash struct {
	h uint64
	i int32
}

// index builds the lookup over every job.
func (l *linker) index() {
	m := l.m
	l.ids.seed = maphash.MakeSeed()
	l.ids.hs = make([]idHash, 0, m.Len())
	var buf, scratch []byte
	for k := range m.parts {
		pt := &m.parts[k]
		if pt.pl == nil {
			for r := range pt.n {
				l.ids.hs = append(l.ids.hs, idHash{maphash.String(l.ids.seed, m.recs[pt.rec+r].id), int32(pt.first + r)})
			}
			continue
		}
		pl := pt.pl
		idx := make([]int, len(pl.e.keys))
		for r := range pt.n {
			var ok bool
			buf, ok = appendRowID(buf[:0], pl.base, pl.e.keys, idx)
			if !ok || m.isMoved(pt.first+r) {
				buf, scratch = pl.appendHashID(buf[:0], scratch, idx)
			}
			l.ids.hs = append(l.ids.hs, idHash{maphash.Bytes(l.ids.seed, buf), int32(pt.first + r)})
			pl.next(idx)
		}
	}
	slices.SortFunc(l.ids.hs, func(a, b idHash) int { return cmp.Compare(a.h, b.h) })
}

// find returns the index of the job whose id is id.
func (l *linker) find(id string) (int, bool) {
	h := maphash.String(l.ids.seed, id)
	k, _ := slices.BinarySearchFunc(l.ids.hs, h, func(x idHash, h uint64) int { return cmp.Compare(x.h, h) })
	for ; k < len(l.ids.hs) && l.ids.hs[k].h == h; k++ {
		if i := int(l.ids.hs[k].i); l.m.id(i) == id {
			return i, true
		}
	}
	return 0, false
}

// id is job i's id.
func (m *Manifest) id(i int) string {
	pt := m.partOf(i)
	if pt.pl == nil {
		return m.recs[pt.rec+i-pt.first].id
	}
	idx := make([]int, len(pt.pl.e.keys))
	pt.pl.rowIndex(i-pt.first, idx)
	return m.rowID(pt.pl, i, idx)
}

// samples is how many images job i makes.
func (m *Manifest) samples(i int) int {
	pt := m.partOf(i)
	if pt.pl == nil {
		return m.plain(&m.recs[pt.rec+i-pt.first]).Samples
	}
	pl := pt.pl
	idx := make([]int, len(pl.e.keys))
	pl.rowIndex(i-pt.first, idx)
	j := pl.proto
	pl.setKeys(&j, idx)
	return j.Samples
}

// The states of a job in walk.
const (
	unvisited uint8 = iota
	onStack
	sized
)

// resolve finds the job each {from} names.
func (l *linker) resolve() {
	m := l.m
	n := m.Len()
	l.off = make([]int32, n+1)
	l.state = make([]uint8, n)
	var bases map[string]*plan
	for i := 0; i < n; i++ {
		if l.p.interrupted() {
			return
		}
		ins := l.inputs(i)
		l.off[i+1] = l.off[i] + int32(len(ins))
		for _, in := range ins {
			if in.From == "" {
				l.src = append(l.src, -1)
				continue
			}
			if bases == nil {
				l.index()
				bases = map[string]*plan{}
				for k := range m.parts {
					if pl := m.parts[k].pl; pl != nil {
						bases[pl.base] = pl
					}
				}
			}
			s, ok := l.find(in.From)
			switch {
			case !ok && bases[in.From] != nil:
				l.report(i, in.Field, l.baseProblem(bases[in.From]))
			case !ok && l.mayBeFailed(in.From):
				// an entry with problems of its own may have the id
			case !ok:
				l.report(i, in.Field, "no job has the id "+clip(in.From, 100)+l.suggest(in.From, m.id(i)))
			case s == i:
				l.report(i, in.Field, "a job cannot take its own image ("+in.From+")")
			case in.Index > m.samples(s):
				l.report(i, in.Field, "index "+strconv.Itoa(in.Index)+" is past the images of job "+in.From+", which makes "+plural(m.samples(s), "image"))
			default:
				l.src = append(l.src, int32(s))
				continue
			}
			l.src = append(l.src, -1)
		}
	}
}

// baseProblem says that a from names a matrix entry, not one of its jobs.
func (l *linker) baseProblem(pl *plan) string {
	names := make([]string, 0, min(pl.rows, 5))
	for r := range min(pl.rows, 5) {
		names = append(names, l.m.id(pl.first+r))
	}
	list := strings.Join(names, ", ")
	if pl.rows > 5 {
		list += ", …"
	}
	if pl.rows == 1 {
		return pl.base + " is a matrix entry of 1 job; name it: " + list
	}
	return pl.base + " is a matrix entry of " + strconv.Itoa(pl.rows) + " jobs; name one: " + list
}

// candidates are the ids an unknown id is compared with: every job's in a
// manifest of up to 10,000 jobs, the entries' base ids in a bigger one.
func (l *linker) candidates() []string {
	if l.cands != nil {
		return l.cands
	}
	m := l.m
	if m.Len() <= 10_000 {
		for i := range m.Len() {
			l.cands = append(l.cands, m.id(i))
		}
		return l.cands
	}
	for k := range m.parts {
		pt := &m.parts[k]
		if pt.pl != nil {
			l.cands = append(l.cands, pt.pl.base)
			continue
		}
		for r := range pt.n {
			l.cands = append(l.cands, m.recs[pt.rec+r].id)
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
	for i := range l.state {
		if l.off[i+1] == l.off[i] || l.state[i] != unvisited {
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
			case l.state[s] == unvisited && l.off[s+1] == l.off[s]:
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
		names = append(names, l.m.id(int(ring[(first+q)%len(ring)].job)))
	}
	names = append(names, names[0])
	a := ring[first].job
	in := &l.inputs(int(a))[ring[first].next-1] // the edge being followed from a
	l.report(int(a), in.Field, "a cycle: each job takes the image of the next: "+strings.Join(names, " → "))
}

// size gives job a's inputs from other jobs their sources' sizes and
// indexes, checks them against a's limits and computes a's output size.
func (l *linker) size(a int) {
	m := l.m
	pt := m.partOf(a)
	ins := l.inputs(a)
	var service string
	var params []Param
	var idx []int
	if pt.pl == nil {
		j := m.plain(&m.recs[pt.rec+a-pt.first])
		service, params = j.Service, j.Params
	} else {
		pl := pt.pl
		idx = make([]int, len(pl.e.keys))
		pl.rowIndex(a-pt.first, idx)
		info, _ := pl.opOf(idx)
		service, params = info.op.Service, pl.proto.Params
		if len(pl.pkeys) > 0 {
			params = pl.appendParams(nil, info, idx)
		}
	}
	info := l.p.opInfos[service]
	main := info.op.Input()
	var in catalog.Size
	for k := range ins {
		put := &ins[k]
		if s := l.src[int(l.off[a])+k]; s >= 0 {
			put.Width, put.Height = 0, 0
			if l.state[s] == sized {
				put.Width, put.Height = m.size(int(s))
			}
			put.FromIndex = int(s)
			if pt.pl != nil && pt.pl.dynIn {
				pt.pl.rowFrom[(a-pt.first)*pt.pl.maxIn+k] = s
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
		for _, put := range ins {
			if put.Field == name {
				return put.Field
			}
		}
		for _, pa := range params {
			if pa.Name == name {
				return pa.Value
			}
		}
		return ""
	}
	out, ok := info.op.OutputSize(get, in)
	if !ok {
		out = catalog.Size{}
	}
	if pt.pl == nil {
		rec := &m.recs[pt.rec+a-pt.first]
		rec.w, rec.h = int32(out.W), int32(out.H)
		return
	}
	r := a - pt.first
	pt.pl.rowSize[2*r], pt.pl.rowSize[2*r+1] = int32(out.W), int32(out.H)
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
	m := l.m
	for i := range l.state {
		if l.off[i+1] == l.off[i] {
			continue
		}
		if l.p.interrupted() {
			return
		}
		j := m.Job(i)
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
		if at := l.valueAt(i, field); at.written != "" {
			name = clip(at.written, 80)
		}
		l.report(i, field, name+" is "+sizeText(biggest)+" ("+strconv.FormatInt(biggest, 10)+" bytes); with the job's other "+others+
			" the request would be over the "+strconv.Itoa(catalog.MaxBody)+" bytes (10 MiB) the API accepts")
	}
}

// valuePos is where the value of an image input was written.
type valuePos struct {
	line, col int
	path      string
	written   string // the image input as written; "" when unknown
	byRow     bool   // the problem depends on the row
	ok        bool   // found
}

// valueAt returns where the value that set the image input field of job i
// was written: the job's (or its defaults') or the matrix value of its row.
func (l *linker) valueAt(i int, field string) valuePos {
	m := l.m
	pt := m.partOf(i)
	if pt.pl == nil {
		rec := &m.recs[pt.rec+i-pt.first]
		for k := range m.shapes[rec.shape].nIn {
			if m.ins[int(rec.in)+k].Field != field {
				continue
			}
			at := &l.p.inPos[int(rec.in)+k]
			path := field
			switch at.org {
			case fromJob:
				path = "jobs[" + strconv.Itoa(int(rec.entry)) + "]." + field
			case fromDefaults:
				path = "defaults." + field
			}
			return valuePos{line: int(at.line), col: int(at.col), path: path, written: at.written, ok: true}
		}
		return valuePos{}
	}
	pl, row := pt.pl, i-pt.first
	s := settings.byName[field]
	var v *value
	if d := pl.e.keyOf(s); d < 0 {
		v = pl.r.ptr(s)
	} else {
		stride := 1
		for _, k := range pl.e.keys[d+1:] {
			stride *= len(k.vals)
		}
		v = &pl.e.keys[d].vals[row/stride%len(pl.e.keys[d].vals)]
	}
	if v == nil {
		return valuePos{}
	}
	vp := valuePos{line: v.node.Line, col: v.node.Column, path: pl.e.pathOf(v), ok: true}
	if v.img != nil {
		vp.written = v.img.written
	}
	vp.byRow = pl.svcKey >= 0 || v.img != nil && v.img.from.parts != nil
	return vp
}

// report records a problem with the input field of job i at the value that
// set it, once however many rows share it, and at most maxRowProblems per
// manifest entry. When the problem depends on the row (the service or the
// from's placeholders vary) it names the row.
func (l *linker) report(i int, field, msg string) {
	m := l.m
	pt := m.partOf(i)
	var entry, line, col int
	var path string
	if pt.pl == nil {
		rec := &m.recs[pt.rec+i-pt.first]
		entry, line, col = int(rec.entry), int(rec.line), int(rec.col)
		path = "jobs[" + strconv.Itoa(entry) + "]"
	} else {
		e := pt.pl.e
		entry, line, col, path = e.index, e.node.Line, e.node.Column, e.path
	}
	eline, ecol, epath := line, col, path
	if v := l.valueAt(i, field); v.ok {
		line, col, path = v.line, v.col, v.path
		if v.byRow {
			pl, row := pt.pl, i-pt.first
			idx := make([]int, len(pl.e.keys))
			pl.rowIndex(row, idx)
			path += " (row " + strconv.Itoa(row+1) + " of " + strconv.Itoa(pl.rows) + ": " + varsText(pl.vars(idx)) + ")"
		}
	}
	key := strconv.Itoa(line) + ":" + strconv.Itoa(col) + ":" + path + ": " + msg
	if l.seen[key] {
		return
	}
	l.seen[key] = true
	if l.shown[entry] == maxRowProblems {
		mp := l.more[entry]
		if mp == nil {
			mp = &moreProblems{line: eline, col: ecol, path: epath}
			l.more[entry] = mp
		}
		mp.n++
		return
	}
	l.shown[entry]++
	l.p.addAt(line, col, "%s: %s", path, msg)
}

// plural is "1 image", "2 images".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
