package manifest

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/batch-tool/batch/internal/engine"
	"gopkg.in/yaml.v3"
)

// maxRowProblems caps the problems reported for the rows of one matrix.
const maxRowProblems = 10

// maxSharedCombos is the most combinations of Params-changing matrix values
// whose Params and size a matrix plan computes once and shares between its
// rows; past it, each row builds its own.
const maxSharedCombos = 1 << 16

// keep stores the plan of entry e, or records e as failed when pl is nil
// (e had problems, reported).
func (p *parser) keep(e *entry, pl *plan) {
	// The entry's settings and the plan's resolved ones are scratch space,
	// reused by the next entry.
	p.setBuf, e.set = e.set[:0], nil
	if pl != nil {
		p.rBuf, p.slotBuf = pl.r[:0], pl.slots[:0]
	}
	if pl == nil {
		if e.id == "" {
			p.anyFail = true
		} else {
			p.failed = append(p.failed, e.id)
		}
		return
	}
	if e.id != "" {
		key := strings.ToLower(e.id)
		p.ids.find(key).kept = true
		pl.base = key
	} else {
		pl.base = safeDerived(slugWords(pl.firstText()))
	}
	pl.proto.Base = pl.base
	if len(e.keys) == 0 {
		p.keepPlain(pl)
		return
	}
	kept, ke := *pl, *e
	pl, kept.e = &kept, &ke
	pl.r, pl.slots = slices.Clone(pl.r), slices.Clone(pl.slots)
	if v := pl.r.ptr(sCfg); v != nil && pl.proto.CfgScale != nil {
		pl.proto.CfgScale = &v.f
	}
	pl.prepare()
	pl.first = p.total
	p.m.parts = append(p.m.parts, segment{first: p.total, n: pl.rows, pl: pl})
	p.total += pl.rows
}

// finish runs the checks that need every job: the job count, base ids,
// matrix rows, unique ids and image inputs from other jobs. It reports
// whether the manifest is sound.
func (p *parser) finish(jobsKey *yaml.Node) bool {
	if p.total > p.maxJobs {
		p.addf(jobsKey, "jobs: the manifest expands to more than %d jobs; split it or shrink its matrices", p.maxJobs)
		return false
	}
	p.baseIDs()
	if p.interrupted() {
		return false
	}
	// With problems already, the rows are still checked, so row problems
	// are reported too; ids and inputs only when some job takes an input,
	// so a manifest's {from} problems are reported with its other ones.
	hadProblems := len(p.probs) > 0
	before := len(p.probs)
	for k := range p.m.parts {
		if pl := p.m.parts[k].pl; pl != nil {
			p.checkRows(pl)
		}
	}
	if len(p.probs) > before || hadProblems && !p.inputs || p.interrupted() {
		return false
	}
	p.markSafe()
	p.uniqueIDs()
	if len(p.probs) > before || p.interrupted() {
		return false
	}
	if p.inputs {
		p.link()
	}
	if len(p.probs) > 0 || p.interrupted() {
		return false
	}
	for k := range p.m.parts {
		if pl := p.m.parts[k].pl; pl != nil {
			pl.share()
		}
	}
	return true
}

// tcount is what a template's rendered length and blankness are made of:
// its literal text, and the matrix keys of its placeholders.
type tcount struct {
	lit      int   // characters of the literal text
	litBlank bool  // the literal text is blank
	keys     []int // matrix key of each placeholder, repeats included
}

// prepare readies a matrix plan for checking and building its rows.
func (pl *plan) prepare() {
	e := pl.e
	pl.unsetW = !pl.r.has(sWidth) && e.keyOf(sWidth) < 0
	pl.unsetH = !pl.r.has(sHeight) && e.keyOf(sHeight) < 0
	pl.unsetSteps = !pl.r.has(sSteps) && e.keyOf(sSteps) < 0
	pl.runes = make([][]int32, len(e.keys))
	pl.blank = make([][]bool, len(e.keys))
	for d := range e.keys {
		vals := e.keys[d].vals
		pl.runes[d] = make([]int32, len(vals))
		pl.blank[d] = make([]bool, len(vals))
		for i := range vals {
			pl.runes[d][i] = int32(utf8.RuneCountInString(vals[i].text))
			pl.blank[d][i] = isBlank(vals[i].text)
		}
	}
	infos := pl.infos
	if pl.info != nil {
		infos = []*opInfo{pl.info}
	}
	if !pl.si {
		infos = []*opInfo{nil}
	}
	pl.limits = make([][]int, len(infos))
	for i, info := range infos {
		pl.limits[i] = make([]int, len(pl.slots))
		for k, sl := range pl.slots {
			pl.limits[i][k] = maxPromptRunes
			if info != nil {
				pl.limits[i][k] = info.limit(sl.field)
			}
		}
	}
	pl.slotCounts = make([]tcount, len(pl.slots))
	for i := range pl.slots {
		if pl.slots[i].key < 0 {
			pl.slotCounts[i] = pl.count(&pl.slots[i].t)
		}
	}
	pl.textCounts = make([]tcount, len(pl.texts))
	for i, at := range pl.texts {
		pl.textCounts[i] = pl.count(&pl.r[at].tmpl)
	}
}

// count is t's tcount.
func (pl *plan) count(t *tmpl) tcount {
	c := tcount{litBlank: true}
	if t.parts == nil {
		c.lit, c.litBlank = utf8.RuneCountInString(t.text), isBlank(t.text)
		return c
	}
	for _, part := range t.parts {
		if part.name != "" {
			c.keys = append(c.keys, pl.index[part.name])
			continue
		}
		c.lit += utf8.RuneCountInString(part.lit)
		c.litBlank = c.litBlank && isBlank(part.lit)
	}
	return c
}

// isBlank reports whether s is only white space, as bytes.TrimSpace sees it.
func isBlank(s string) bool {
	return strings.TrimFunc(s, unicode.IsSpace) == ""
}

// measure returns the characters of c's template rendered for the row idx,
// and whether it is blank.
func (pl *plan) measure(c *tcount, idx []int) (n int, blank bool) {
	n, blank = c.lit, c.litBlank
	for _, d := range c.keys {
		n += int(pl.runes[d][idx[d]])
		blank = blank && pl.blank[d][idx[d]]
	}
	return n, blank
}

// rowIndex sets idx to the value of each matrix key in row r (the first
// key varies slowest).
func (pl *plan) rowIndex(r int, idx []int) {
	for d := len(pl.e.keys) - 1; d >= 0; d-- {
		n := len(pl.e.keys[d].vals)
		idx[d] = r % n
		r /= n
	}
}

// next moves idx to the next row, the last key varying fastest.
func (pl *plan) next(idx []int) {
	for d := len(idx) - 1; d >= 0; d-- {
		idx[d]++
		if idx[d] < len(pl.e.keys[d].vals) {
			return
		}
		idx[d] = 0
	}
}

// setKeys sets the fields of j that the matrix values of the row idx give,
// and for a v1 job whose engine or size varies, the engine's defaults.
func (pl *plan) setKeys(j *Job, idx []int) {
	for d := range pl.e.keys {
		key := &pl.e.keys[d]
		v := &key.vals[idx[d]]
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
	if pl.varies {
		eng, _ := engine.Lookup(j.Engine)
		fillEngineDefaults(j, eng, !pl.unsetW, !pl.unsetH, !pl.unsetSteps)
	}
}

// opOf is the Stable Image operation of the row idx, and the index of its
// service among the key's values (0 when service does not vary).
func (pl *plan) opOf(idx []int) (*opInfo, int) {
	if pl.si && pl.svcKey >= 0 {
		vi := idx[pl.svcKey]
		return pl.infos[vi], vi
	}
	return pl.info, 0
}

// checkRows checks every row of a matrix plan: its values against a
// service that varies by row, the rendered texts' lengths, and a v1 row's
// size and steps on its engine. It reports at most maxRowProblems rows.
func (p *parser) checkRows(pl *plan) {
	e := pl.e
	idx := make([]int, len(e.keys))
	bad := 0
	var j Job
	for r := 0; r < pl.rows; r++ {
		if p.interrupted() {
			return
		}
		var msgs []string
		info, vi := pl.opOf(idx)
		if pl.si && pl.svcKey >= 0 {
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
			for i := range pl.slots {
				if pl.slots[i].key >= 0 {
					continue
				}
				n, blank := pl.measure(&pl.slotCounts[i], idx)
				msg := checkLength(n, pl.limits[vi][i])
				if blank {
					msg = "must not be blank"
				}
				if msg != "" {
					msgs = append(msgs, pl.slots[i].field+" "+msg)
				}
			}
		}
		if pl.varies {
			j = pl.proto
			pl.setKeys(&j, idx)
			eng, _ := engine.Lookup(j.Engine)
			if err := eng.CheckSize(j.Width, j.Height); err != nil {
				msgs = append(msgs, err.Error())
			}
			if err := eng.CheckSteps(j.Steps); err != nil {
				msgs = append(msgs, "steps: "+err.Error())
			}
		}
		for i, at := range pl.texts {
			v := &pl.r[at]
			if info.field(v.s) == nil {
				continue
			}
			n, _ := pl.measure(&pl.textCounts[i], idx)
			if msg := checkLength(n, info.limit(v.s.name())); msg != "" {
				msgs = append(msgs, v.s.name()+" "+msg)
			}
		}
		if len(msgs) > 0 {
			bad++
			if bad <= maxRowProblems {
				p.addf(e.mnode, "%s.matrix (row %d of %d: %s): %s", e.path, r+1, pl.rows, varsText(pl.vars(idx)), strings.Join(msgs, "; "))
			}
		}
		pl.next(idx)
	}
	if bad > maxRowProblems {
		p.addf(e.mnode, "%s.matrix: %d more rows have problems", e.path, bad-maxRowProblems)
	}
}

// vars is the row idx's Vars.
func (pl *plan) vars(idx []int) []Var {
	out := make([]Var, len(pl.e.keys))
	for d := range pl.e.keys {
		out[d] = Var{Key: pl.e.keys[d].name, Value: pl.e.keys[d].vals[idx[d]].text}
	}
	return out
}

// share computes, for a Stable Image plan whose matrix changes Params,
// the Params and size of each combination of the values that change them,
// once, so the rows that agree on them share one Params slice; past
// maxSharedCombos combinations each row builds its own.
func (pl *plan) share() {
	if !pl.si || len(pl.pkeys) == 0 {
		return
	}
	combos := 1
	for _, d := range pl.pkeys {
		combos *= len(pl.e.keys[d].vals)
		if combos > maxSharedCombos {
			return
		}
	}
	pl.cParams = make([][]Param, combos)
	pl.cSize = make([]int32, 2*combos)
	idx := make([]int, len(pl.e.keys))
	for c := range combos {
		rest := c
		for k := len(pl.pkeys) - 1; k >= 0; k-- {
			d := pl.pkeys[k]
			n := len(pl.e.keys[d].vals)
			idx[d] = rest % n
			rest /= n
		}
		info, _ := pl.opOf(idx)
		ps := pl.appendParams(nil, info, idx)
		if len(ps) > 0 {
			pl.cParams[c] = ps[:len(ps):len(ps)]
		}
		w, h := pl.size(info, idx)
		pl.cSize[2*c], pl.cSize[2*c+1] = int32(w), int32(h)
	}
}

// combo is the index of the row idx's combination of Params-changing
// values.
func (pl *plan) combo(idx []int) int {
	c := 0
	for _, d := range pl.pkeys {
		c = c*len(pl.e.keys[d].vals) + idx[d]
	}
	return c
}

// rowCache keeps, while All walks a matrix, the texts rendered for the
// previous row, so rows that agree on a text's values share it.
type rowCache struct {
	pl    *plan
	idx   []int    // the values of the row the texts were rendered for
	texts []string // per prompt slot
	ok    bool
}

// row builds row r of the matrix part pt. c, when not nil, shares
// rendered texts with the previous row.
func (m *Manifest) row(pt *segment, r int, c *rowCache) Job {
	pl := pt.pl
	e := pl.e
	var buf [8]int
	idx := buf[:0]
	if len(e.keys) <= len(buf) {
		idx = buf[:len(e.keys)]
	} else {
		idx = make([]int, len(e.keys))
	}
	pl.rowIndex(r, idx)
	j := pl.proto
	pl.setKeys(&j, idx)
	j.Vars = pl.vars(idx)
	info, _ := pl.opOf(idx)
	if pl.dynText {
		j.Prompts = pl.prompts(idx, j.Vars, c)
	}
	if pl.si && len(pl.pkeys) > 0 {
		if pl.cParams != nil {
			k := pl.combo(idx)
			j.Params = pl.cParams[k]
			j.Width, j.Height = int(pl.cSize[2*k]), int(pl.cSize[2*k+1])
		} else {
			j.Params = nil
			if ps := pl.appendParams(nil, info, idx); len(ps) > 0 {
				j.Params = ps[:len(ps):len(ps)]
			}
			j.Width, j.Height = pl.size(info, idx)
		}
	}
	if pl.maxIn > 0 {
		if pl.dynIn {
			j.Inputs = m.rowInputs(pl, r, info, idx)
		}
		if pl.rowSize != nil {
			j.Width, j.Height = int(pl.rowSize[2*r]), int(pl.rowSize[2*r+1])
		}
	}
	j.ID = m.rowID(pl, pt.first+r, idx)
	return j
}

// prompts renders the row idx's prompts (vars are its Vars).
func (pl *plan) prompts(idx []int, vars []Var, c *rowCache) []Prompt {
	ns := len(pl.slots)
	out := make([]Prompt, ns)
	reuse := false
	if c != nil {
		if c.pl != pl {
			*c = rowCache{pl: pl, idx: make([]int, len(idx)), texts: make([]string, ns)}
		}
		reuse = c.ok
	}
	for i := range pl.slots {
		sl := &pl.slots[i]
		out[i].Weight = sl.weight
		switch {
		case sl.key >= 0:
			out[i].Text = vars[sl.key].Value
		case sl.t.parts == nil:
			out[i].Text = sl.t.text
		case reuse && sameKeys(pl.slotCounts[i].keys, idx, c.idx):
			out[i].Text = c.texts[i]
		default:
			out[i].Text = string(sl.t.appendTo(nil, pl.index, vars))
		}
		if c != nil {
			c.texts[i] = out[i].Text
		}
	}
	if c != nil {
		copy(c.idx, idx)
		c.ok = true
	}
	return out
}

// sameKeys reports whether rows a and b agree on the keys ks.
func sameKeys(ks []int, a, b []int) bool {
	for _, d := range ks {
		if a[d] != b[d] {
			return false
		}
	}
	return true
}

// rowInputs builds the image inputs of row r (idx) of a plan whose inputs
// vary by row, with the jobs their froms name and those jobs' sizes.
func (m *Manifest) rowInputs(pl *plan, r int, info *opInfo, idx []int) []Input {
	ins := pl.appendInputs(nil, info, idx)
	if len(ins) == 0 {
		return nil
	}
	for k := range ins {
		if ins[k].From == "" || pl.rowFrom == nil {
			continue
		}
		s := pl.rowFrom[r*pl.maxIn+k]
		if s < 0 {
			continue
		}
		ins[k].FromIndex = int(s)
		ins[k].Width, ins[k].Height = m.size(int(s))
	}
	return ins[:len(ins):len(ins)]
}

// size is the Width and Height of job i, without building it whole.
func (m *Manifest) size(i int) (w, h int) {
	pt := m.partOf(i)
	if pt.pl == nil {
		rec := &m.recs[pt.rec+i-pt.first]
		return int(rec.w), int(rec.h)
	}
	pl, r := pt.pl, i-pt.first
	if pl.rowSize != nil {
		return int(pl.rowSize[2*r]), int(pl.rowSize[2*r+1])
	}
	idx := make([]int, len(pl.e.keys))
	pl.rowIndex(r, idx)
	j := pl.proto
	pl.setKeys(&j, idx)
	if pl.si && len(pl.pkeys) > 0 {
		if pl.cSize != nil {
			k := pl.combo(idx)
			return int(pl.cSize[2*k]), int(pl.cSize[2*k+1])
		}
		info, _ := pl.opOf(idx)
		return pl.size(info, idx)
	}
	return j.Width, j.Height
}

// rowID is the id of row idx (job i) of a plan: its candidate id, base
// plus the values' slugs, unless that could not be built or was taken;
// then base plus a hash of its values.
func (m *Manifest) rowID(pl *plan, i int, idx []int) string {
	var buf, scratch [256]byte
	b, ok := appendRowID(buf[:0], pl.base, pl.e.keys, idx)
	if !ok || m.isMoved(i) {
		b, _ = pl.appendHashID(buf[:0], scratch[:0], idx)
	}
	return string(b)
}

// isMoved reports whether matrix row i takes a hash id because its
// candidate was taken.
func (m *Manifest) isMoved(i int) bool {
	if len(m.moved) == 0 {
		return false
	}
	lo, hi := 0, len(m.moved)
	for lo < hi {
		h := (lo + hi) / 2
		if int(m.moved[h]) < i {
			lo = h + 1
		} else {
			hi = h
		}
	}
	return lo < len(m.moved) && int(m.moved[lo]) == i
}

func varsText(row []Var) string {
	parts := make([]string, len(row))
	for i, v := range row {
		parts[i] = v.Key + "=" + clip(v.Value, 30)
	}
	return strings.Join(parts, ", ")
}
