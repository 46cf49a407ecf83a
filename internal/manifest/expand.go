package manifest

import (
	"strings"
	"unicode/utf8"

	"github.com/batch-tool/batch/internal/engine"
	"gopkg.in/yaml.v3"
)

// maxRowProblems caps the problems reported for the rows of one matrix.
const maxRowProblems = 10

// expand resolves every entry, assigns ids and expands the matrices.
func (p *parser) expand(entries []*entry, top, def layer, jobsKey *yaml.Node) []Job {
	p.checkExplicitIDs(entries)
	plans := make([]*plan, 0, len(entries))
	var failed []*entry // entries with problems: no plan, no jobs
	total := 0
	for _, e := range entries {
		if p.interrupted() {
			return nil
		}
		pl := p.resolve(e, top, def) // nil for an entry with problems
		if pl == nil {
			failed = append(failed, e)
			continue
		}
		plans = append(plans, pl)
		total = min(total+pl.rows, p.maxJobs+1)
	}
	if total > p.maxJobs {
		p.addf(jobsKey, "jobs: the manifest expands to more than %d jobs; split it or shrink its matrices", p.maxJobs)
		return nil
	}
	p.baseIDs(plans)
	if p.interrupted() {
		return nil
	}
	if len(p.probs) > 0 {
		if p.inputs {
			// Link the good jobs too, so a manifest's {from} problems are
			// reported with its other ones.
			p.expandAndLink(plans, failed, total)
			return nil
		}
		// Still expand, so row problems are reported too, but do not
		// bother building ids for a manifest that will be rejected.
		for _, pl := range plans {
			if len(pl.e.keys) > 0 {
				p.rowsOf(pl, nil)
			}
		}
		return nil
	}
	return p.expandAndLink(plans, nil, total)
}

// expandAndLink builds the jobs of the plans, gives them unique ids and
// links their image inputs. failed are the entries that had problems: a
// {from} that may name one of their jobs is not reported as unknown. It
// returns nil when there are problems.
func (p *parser) expandAndLink(plans []*plan, failed []*entry, total int) []Job {
	before := len(p.probs)
	jobs := make([]Job, 0, total)
	for _, pl := range plans {
		if p.interrupted() {
			return nil
		}
		pl.first = len(jobs)
		if len(pl.e.keys) == 0 {
			j := pl.proto
			j.ID = pl.base
			jobs = append(jobs, j)
		} else {
			jobs = p.rowsOf(pl, jobs)
		}
	}
	if len(p.probs) > before || p.interrupted() {
		return nil
	}
	markSafe(plans, jobs)
	p.uniqueIDs(plans, jobs)
	if len(p.probs) > before || p.interrupted() {
		return nil
	}
	if p.inputs {
		p.link(plans, jobs, failed)
	}
	if len(p.probs) > 0 {
		return nil
	}
	return jobs
}

// rowsOf expands a plan's matrix, first key varying slowest, appending the
// rows to jobs (when jobs is nil it only checks). A row's ID is its
// candidate id, or "" when it must fall back to a hash. The rows' ids and
// prompt texts are substrings of two strings built once per matrix, and
// rows that agree on every key that changes Params share one Params slice,
// which keeps a million-row matrix to a handful of allocations.
func (p *parser) rowsOf(pl *plan, jobs []Job) []Job {
	e := pl.e
	k, ns := len(e.keys), len(pl.slots)
	build := jobs != nil
	first := len(jobs)
	var vars []Var
	var text, ids []byte     // rendered prompt texts and row ids, back to back
	var textEnd, idEnd []int // end offsets in text (per prompt) and ids (per row; -1: hash)
	var params *paramRows
	var inputs []Input // the rows' inputs, back to back, when they vary by row
	var scratchText []byte
	row := make([]Var, k)
	if build {
		if pl.dynIn {
			inputs = make([]Input, 0, pl.rows*pl.maxIn)
		}
		vars = make([]Var, pl.rows*k)
		idEnd = make([]int, 0, pl.rows)
		ids = make([]byte, 0, pl.idBytes())
		if pl.dynText {
			textEnd = make([]int, 0, pl.rows*ns)
			text = make([]byte, 0, pl.textBytes())
		}
		if pl.si && len(pl.pkeys) > 0 {
			params = pl.newParamRows()
		}
	}
	var unsetW, unsetH, unsetSteps bool
	if pl.varies {
		unsetW = !pl.r.has(sWidth) && e.keyOf(sWidth) < 0
		unsetH = !pl.r.has(sHeight) && e.keyOf(sHeight) < 0
		unsetSteps = !pl.r.has(sSteps) && e.keyOf(sSteps) < 0
	}
	idx := make([]int, k)
	bad := 0
	var scratch Job
	for r := 0; r < pl.rows; r++ {
		if p.interrupted() {
			return jobs
		}
		j := &scratch
		if build {
			jobs = append(jobs, pl.proto)
			j = &jobs[len(jobs)-1]
			row = vars[r*k : r*k+k : r*k+k]
			j.Vars = row
		} else {
			scratch = pl.proto
		}
		for d := range e.keys {
			key := &e.keys[d]
			v := &key.vals[idx[d]]
			row[d] = Var{Key: key.name, Value: v.text}
			if pl.si {
				switch key.s {
				case sService:
					j.Service = v.str
				case sSeed:
					j.Seed = uint32(v.num)
				}
				continue
			}
			switch key.s {
			case sEngine:
				j.Engine = v.str
			case sWidth:
				j.Width = int(v.num)
			case sHeight:
				j.Height = int(v.num)
			case sSteps:
				j.Steps = int(v.num)
			case sCfg:
				j.CfgScale = &v.f
			case sSeed:
				j.Seed = uint32(v.num)
			case sSamples:
				j.Samples = int(v.num)
			case sSampler:
				j.Sampler = v.str
			case sStyle:
				j.StylePreset = v.str
			case sClip:
				j.ClipGuidancePreset = v.str
			}
		}
		var msgs []string
		info, vi := pl.info, 0
		if pl.si && pl.svcKey >= 0 {
			vi = idx[pl.svcKey]
			info = pl.infos[vi]
			msgs = append(msgs, pl.static[vi]...)
			for d := range e.keys {
				key := &e.keys[d]
				if key.s == noSetting || key.s == sService {
					continue
				}
				if f := info.field(key.s); f != nil {
					if msg := fieldProblem(info.op, f, &key.vals[idx[d]]); msg != "" {
						msgs = append(msgs, msg)
					}
				}
			}
		}
		if pl.dynText {
			for i, sl := range pl.slots {
				start := len(text)
				if sl.key >= 0 {
					text = append(text, row[sl.key].Value...)
				} else {
					text = sl.t.appendTo(text, pl.index, row)
					if msg := checkTextBytes(text[start:], pl.limits[vi][i]); msg != "" {
						msgs = append(msgs, sl.field+" "+msg)
					}
				}
				if build {
					textEnd = append(textEnd, len(text))
				} else {
					text = text[:0]
				}
			}
		}
		if pl.varies {
			eng, _ := engine.Lookup(j.Engine)
			fillEngineDefaults(j, eng, !unsetW, !unsetH, !unsetSteps)
			if err := eng.CheckSize(j.Width, j.Height); err != nil {
				msgs = append(msgs, err.Error())
			}
			if err := eng.CheckSteps(j.Steps); err != nil {
				msgs = append(msgs, "steps: "+err.Error())
			}
		}
		for _, i := range pl.texts {
			v := &pl.r[i]
			if info.field(v.s) == nil {
				continue
			}
			scratchText = v.tmpl.appendTo(scratchText[:0], pl.index, row)
			if msg := checkLength(utf8.RuneCount(scratchText), info.limit(v.s.name())); msg != "" {
				msgs = append(msgs, v.s.name()+" "+msg)
			}
		}
		if params != nil {
			params.fill(j, pl, jobs[first:], r, idx, info)
		}
		if build && pl.dynIn {
			start := len(inputs)
			inputs = pl.appendInputs(inputs, info, idx)
			j.Inputs = nil
			if len(inputs) > start {
				j.Inputs = inputs[start:len(inputs):len(inputs)]
			}
		}
		if len(msgs) > 0 {
			bad++
			if bad <= maxRowProblems {
				p.addf(e.mnode, "%s.matrix (row %d of %d: %s): %s", e.path, r+1, pl.rows, varsText(row), strings.Join(msgs, "; "))
			}
		}
		if build {
			var ok bool
			if ids, ok = appendRowID(ids, pl.base, e.keys, idx); ok {
				idEnd = append(idEnd, len(ids))
			} else {
				idEnd = append(idEnd, -1)
			}
		}
		for d := k - 1; d >= 0; d-- {
			idx[d]++
			if idx[d] < len(e.keys[d].vals) {
				break
			}
			idx[d] = 0
		}
	}
	if bad > maxRowProblems {
		p.addf(e.mnode, "%s.matrix: %d more rows have problems", e.path, bad-maxRowProblems)
	}
	if !build {
		return jobs
	}
	allIDs, from := string(ids), 0
	for r, end := range idEnd {
		if end >= 0 {
			jobs[first+r].ID = allIDs[from:end]
			from = end
		}
	}
	if pl.dynText {
		allText, from := string(text), 0
		prompts := make([]Prompt, pl.rows*ns)
		for i, end := range textEnd {
			prompts[i] = Prompt{Text: allText[from:end], Weight: pl.slots[i%ns].weight}
			from = end
		}
		for r := range pl.rows {
			jobs[first+r].Prompts = prompts[r*ns : r*ns+ns : r*ns+ns]
		}
	}
	return jobs
}

// paramRows gives a Stable Image matrix's rows their Params and size: the
// rows that agree on every key that changes them (a combination) share one
// Params slice, cut from one backing array with a fixed stride per
// combination.
type paramRows struct {
	rep    []int32 // per combination: the row (from the plan's first) that has it first; -1 before
	buf    []Param
	stride int
}

func (pl *plan) newParamRows() *paramRows {
	combos := 1
	for _, d := range pl.pkeys {
		combos *= len(pl.e.keys[d].vals) // at most pl.rows
	}
	infos := pl.infos
	if pl.info != nil {
		infos = []*opInfo{pl.info}
	}
	stride := 0
	for _, info := range infos {
		stride = max(stride, pl.paramCount(info))
	}
	rep := make([]int32, combos)
	for i := range rep {
		rep[i] = -1
	}
	return &paramRows{rep: rep, buf: make([]Param, combos*stride), stride: stride}
}

// fill gives j, row r (idx) of the plan on info's operation, its Params and
// size; rows holds the plan's rows so far.
func (x *paramRows) fill(j *Job, pl *plan, rows []Job, r int, idx []int, info *opInfo) {
	c := 0
	for _, d := range pl.pkeys {
		c = c*len(pl.e.keys[d].vals) + idx[d]
	}
	if at := x.rep[c]; at >= 0 {
		j.Params, j.Width, j.Height = rows[at].Params, rows[at].Width, rows[at].Height
		return
	}
	x.rep[c] = int32(r)
	lo := c * x.stride
	ps := pl.appendParams(x.buf[lo:lo:lo+x.stride], info, idx)
	j.Params = nil
	if len(ps) > 0 {
		j.Params = ps[:len(ps):len(ps)]
	}
	j.Width, j.Height = pl.size(info, idx)
}

// idBytes is the length of all the plan's candidate row ids together:
// each value of a key appears in rows/len(values) rows.
func (pl *plan) idBytes() int {
	n := pl.rows * len(pl.base)
	for _, k := range pl.e.keys {
		per := pl.rows / len(k.vals)
		for _, s := range k.slugs {
			n += per * (1 + len(s))
		}
	}
	return n
}

// textBytes is the length of all the plan's rendered prompt texts together.
func (pl *plan) textBytes() int {
	n := 0
	for _, sl := range pl.slots {
		if sl.key >= 0 {
			n += pl.valueBytes(sl.key)
			continue
		}
		if sl.t.parts == nil {
			n += pl.rows * len(sl.t.text)
			continue
		}
		for _, part := range sl.t.parts {
			if part.name != "" {
				n += pl.valueBytes(pl.index[part.name])
			} else {
				n += pl.rows * len(part.lit)
			}
		}
	}
	return n
}

// valueBytes is the length of matrix key k's values over all rows.
func (pl *plan) valueBytes(k int) int {
	key := &pl.e.keys[k]
	n := 0
	for _, v := range key.vals {
		n += len(v.text)
	}
	return n * (pl.rows / len(key.vals))
}

func varsText(row []Var) string {
	parts := make([]string, len(row))
	for i, v := range row {
		parts[i] = v.Key + "=" + clip(v.Value, 30)
	}
	return strings.Join(parts, ", ")
}
