package manifest

import (
	"hash/maphash"
	"slices"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/engine"
	"gopkg.in/yaml.v3"
)

// maxRowProblems caps the problems reported for the rows of one matrix.
const maxRowProblems = 10

// plan is an entry resolved against defaults and the top level, ready to
// expand into rows.
type plan struct {
	e       *entry
	r       layer          // resolved settings (job > defaults > top level)
	slots   []slot         // the prompts, in the order they are sent
	index   map[string]int // matrix key name → index in e.keys
	proto   Job            // every field that does not vary by row
	rows    int
	first   int  // index of the plan's first job in Manifest.Jobs
	safe    bool // its row ids cannot collide with any other id (see safeRows)
	varies  bool // the matrix sets engine, width, height or steps
	dynText bool // some prompt text depends on the row
	base    string
}

// slot is one prompt of a job: a template, or the value of a matrix key
// (prompt or negative_prompt in the matrix).
type slot struct {
	t      tmpl
	weight float64
	key    int // index of the matrix key giving the text; -1 for a template
	field  string
	org    origin
}

// expand resolves every entry, assigns ids and expands the matrices.
func (p *parser) expand(entries []*entry, top, def *layer, jobsKey *yaml.Node) []Job {
	p.checkExplicitIDs(entries)
	plans := make([]*plan, 0, len(entries))
	total := 0
	for _, e := range entries {
		if !e.ok {
			continue
		}
		pl := p.resolve(e, top, def)
		if pl == nil {
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
	if len(p.probs) > 0 {
		// Still expand, so row problems are reported too, but do not
		// bother building ids for a manifest that will be rejected.
		for _, pl := range plans {
			if len(pl.e.keys) > 0 {
				p.rowsOf(pl, nil)
			}
		}
		return nil
	}
	jobs := make([]Job, 0, total)
	for _, pl := range plans {
		pl.first = len(jobs)
		if len(pl.e.keys) == 0 {
			j := pl.proto
			j.ID = pl.base
			jobs = append(jobs, j)
		} else {
			jobs = p.rowsOf(pl, jobs)
		}
	}
	if len(p.probs) > 0 {
		return nil
	}
	markSafe(plans, jobs)
	p.uniqueIDs(plans, jobs)
	if len(p.probs) > 0 {
		return nil
	}
	return jobs
}

// markSafe marks the matrix plans whose row ids need no uniqueness check:
// every row got its candidate id, each key's values slug to distinct texts
// with as many '-' each (so base-v1-v2 splits back into its values), no other
// base id extends this one with '-' or is extended by it (so no other job
// can produce the same text). This spares a million-row matrix a million
// map operations.
func markSafe(plans []*plan, jobs []Job) {
	bases := make([]string, len(plans))
	isBase := make(map[string]bool, len(plans))
	for i, pl := range plans {
		bases[i] = pl.base
		isBase[pl.base] = true
	}
	slices.Sort(bases)
	for _, pl := range plans {
		if len(pl.e.keys) == 0 || !distinctSlugs(pl.e.keys) {
			continue
		}
		prefix := pl.base + "-"
		i, _ := slices.BinarySearch(bases, prefix)
		if i < len(bases) && strings.HasPrefix(bases[i], prefix) {
			continue
		}
		clash := false
		for i := range len(pl.base) {
			if pl.base[i] == '-' && isBase[pl.base[:i]] {
				clash = true
				break
			}
		}
		if clash {
			continue
		}
		pl.safe = true
		for _, j := range jobs[pl.first : pl.first+pl.rows] {
			if j.ID == "" {
				pl.safe = false
				break
			}
		}
	}
}

// distinctSlugs reports whether each key's values have distinct, non-empty
// slugs with the same number of '-' (so an id splits back into its values).
func distinctSlugs(keys []mkey) bool {
	for _, k := range keys {
		seen := make(map[string]bool, len(k.slugs))
		dashes := strings.Count(k.slugs[0], "-")
		for _, s := range k.slugs {
			if s == "" || strings.Count(s, "-") != dashes || seen[s] {
				return false
			}
			seen[s] = true
		}
	}
	return true
}

// uniqueIDs settles the ids of matrix rows. A row keeps its candidate id
// (base-values) unless that id is taken by another job or could not be
// built; then it, and any other row that wanted the same id, takes
// base-HASH of its values instead. Plain jobs' ids are unique already.
func (p *parser) uniqueIDs(plans []*plan, jobs []Job) {
	x := idIndex{seed: maphash.MakeSeed(), m: map[uint64]int32{}}
	for _, pl := range plans {
		if len(pl.e.keys) == 0 {
			if prev, taken := x.get(jobs, pl.base); taken {
				p.addf(pl.e.node, "%s: id %s is also the id of the job at %d:%d; give one of them another id", pl.e.path, pl.base, jobs[prev].Line, jobs[prev].Column)
				continue
			}
			x.put(jobs, pl.base, int32(pl.first))
		}
	}
	var rehash []int32
	rehashed := map[int32]bool{}
	for _, pl := range plans {
		if len(pl.e.keys) == 0 || pl.safe {
			continue
		}
		for i := pl.first; i < pl.first+pl.rows; i++ {
			j := &jobs[i]
			if j.ID == "" {
				rehash = append(rehash, int32(i))
				continue
			}
			prev, taken := x.get(jobs, j.ID)
			if !taken {
				x.put(jobs, j.ID, int32(i))
				continue
			}
			if jobs[prev].Vars != nil && !rehashed[prev] {
				rehashed[prev] = true
				rehash = append(rehash, prev)
			}
			rehash = append(rehash, int32(i))
		}
	}
	slices.Sort(rehash)
	for _, i := range rehash {
		j := &jobs[i]
		id := j.Base + "-" + shortHash(varsCanon(j.Vars), 12)
		if _, taken := x.get(jobs, id); taken {
			p.addf(&yaml.Node{Line: j.Line, Column: j.Column}, "jobs: id %s of a matrix row collides with another job's id; give the job a different id", id)
			continue
		}
		j.ID = id
		x.put(jobs, id, i)
	}
}

// idIndex finds the job holding an id. It keys on a 64-bit hash of the id,
// so a million entries hold no pointers for the garbage collector to scan;
// distinct ids with equal hashes go to spill.
type idIndex struct {
	seed  maphash.Seed
	m     map[uint64]int32
	spill map[string]int32
}

func (x *idIndex) get(jobs []Job, id string) (int32, bool) {
	i, ok := x.m[maphash.String(x.seed, id)]
	if !ok {
		return 0, false
	}
	if jobs[i].ID == id {
		return i, true
	}
	i, ok = x.spill[id]
	return i, ok
}

func (x *idIndex) put(jobs []Job, id string, i int32) {
	h := maphash.String(x.seed, id)
	if prev, ok := x.m[h]; ok && jobs[prev].ID != id {
		if x.spill == nil {
			x.spill = map[string]int32{}
		}
		x.spill[id] = i
		return
	}
	x.m[h] = i
}

// checkExplicitIDs reports explicit ids used twice (case-insensitively, as
// file names on some systems are).
func (p *parser) checkExplicitIDs(entries []*entry) {
	seen := map[string]*entry{}
	for _, e := range entries {
		if e.id == "" {
			continue
		}
		key := strings.ToLower(e.id)
		if first, dup := seen[key]; dup {
			p.addf(e.idNode, "%s.id: duplicate id %q (also %s.id at %d:%d)", e.path, e.id, first.path, first.idNode.Line, first.idNode.Column)
			e.ok = false
			continue
		}
		seen[key] = e
	}
}

// resolve applies precedence (job > defaults > top-level engine > engine
// defaults), checks placeholders and the job's own constraints, and builds
// the row prototype. It returns nil after reporting when the job is bad.
func (p *parser) resolve(e *entry, top, def *layer) *plan {
	limit := p.maxJobs + 1
	pl := &plan{e: e, rows: 1, index: make(map[string]int, len(e.keys))}
	var inMatrix [numSettings + 1]int
	for i := range inMatrix {
		inMatrix[i] = -1
	}
	for i, k := range e.keys {
		pl.index[k.name] = i
		if k.s != numSettings {
			inMatrix[k.s] = i
		}
		pl.rows = min(pl.rows*len(k.vals), limit)
	}
	r := &pl.r
	for s := range numSettings {
		switch {
		case e.set[s].set():
			r[s] = e.set[s]
		case def[s].set():
			r[s] = def[s]
		case s == sEngine && top[s].set():
			r[s] = top[s]
		}
	}
	// The prompt texts resolve as a group: prompts in a job replaces every
	// default text; prompt or negative_prompt in a job replaces default prompts.
	switch {
	case e.set[sPrompts].set():
		r[sPrompt], r[sNegative] = value{}, value{}
	case e.set[sPrompt].set() || e.set[sNegative].set() || inMatrix[sPrompt] >= 0 || inMatrix[sNegative] >= 0:
		r[sPrompts] = value{}
	default:
		if def[sPrompts].set() {
			r[sPrompt], r[sNegative] = value{}, value{}
		}
	}
	ok := true
	if r[sPrompts].set() {
		for i, pt := range r[sPrompts].prompts {
			pl.slots = append(pl.slots, slot{t: pt.tmpl, weight: pt.weight, key: -1, field: "prompts[" + strconv.Itoa(i) + "].text", org: r[sPrompts].origin})
		}
	} else {
		for _, s := range []setting{sPrompt, sNegative} {
			w := 1.0
			if s == sNegative {
				w = -1
			}
			if k := inMatrix[s]; k >= 0 {
				pl.slots = append(pl.slots, slot{weight: w, key: k, field: settingNames[s], org: fromMatrix})
			} else if r[s].set() {
				pl.slots = append(pl.slots, slot{t: r[s].tmpl, weight: w, key: -1, field: settingNames[s], org: r[s].origin})
			}
		}
	}
	positive := false
	used := map[string]bool{}
	for _, sl := range pl.slots {
		positive = positive || sl.weight > 0
		if sl.key >= 0 {
			pl.dynText = true
			continue
		}
		if sl.t.parts != nil {
			pl.dynText = true
		}
		for _, name := range sl.t.names() {
			used[name] = true
			if _, defined := pl.index[name]; !defined {
				p.addf(sl.t.node, "%s.%s: undefined placeholder {%s}%s%s", e.path, sl.field, name, fromNote(sl.org), placeholderHint(name, e.keys))
				ok = false
			}
		}
	}
	inheritedBad := p.badDefault[sPrompt] || p.badDefault[sNegative] || p.badDefault[sPrompts]
	switch {
	case (len(pl.slots) == 0 || !positive) && inheritedBad:
		ok = false // defaults' prompt was reported already
	case len(pl.slots) == 0 && e.unknownKey:
		ok = false // most likely a misspelt prompt, reported as an unknown key
	case len(pl.slots) == 0:
		p.addf(e.node, "%s: no prompt: set prompt or prompts in the job or in defaults", e.path)
		ok = false
	case !positive:
		p.addf(e.node, "%s: no prompt with a positive weight: the API needs at least one", e.path)
		ok = false
	}
	for _, k := range e.keys {
		if k.s == numSettings && !used[k.name] {
			p.addf(k.k, "%s.matrix.%s: not a job setting and not used as {%s} in a prompt%s", e.path, k.name, k.name, suggest(k.name, jobKeys))
			ok = false
		}
	}
	if !r[sEngine].set() && inMatrix[sEngine] < 0 && p.badDefault[sEngine] {
		ok = false // the top level's or defaults' engine was reported already
	} else if !r[sEngine].set() && inMatrix[sEngine] < 0 {
		p.addf(e.node, "%s: no engine: set engine at the top level, in defaults or in the job", e.path)
		ok = false
	}
	if !ok {
		return nil
	}
	j := &pl.proto
	j.Base = e.id
	j.Line, j.Column = e.node.Line, e.node.Column
	j.Engine = r[sEngine].str
	j.Width, j.Height, j.Steps = int(r[sWidth].num), int(r[sHeight].num), int(r[sSteps].num)
	j.Samples = 1
	if r[sSamples].set() {
		j.Samples = int(r[sSamples].num)
	}
	j.Seed = uint32(r[sSeed].num)
	if r[sCfg].set() {
		j.CfgScale = &r[sCfg].f
	}
	j.Sampler, j.StylePreset, j.ClipGuidancePreset = r[sSampler].str, r[sStyle].str, r[sClip].str
	if !pl.dynText {
		j.Prompts = make([]Prompt, len(pl.slots))
		for i, sl := range pl.slots {
			j.Prompts[i] = Prompt{Text: sl.t.text, Weight: sl.weight}
		}
	}
	pl.varies = inMatrix[sEngine] >= 0 || inMatrix[sWidth] >= 0 || inMatrix[sHeight] >= 0 || inMatrix[sSteps] >= 0
	if !pl.varies {
		eng, _ := engine.Lookup(j.Engine)
		fillEngineDefaults(j, eng, r[sWidth].set(), r[sHeight].set(), r[sSteps].set())
		if err := eng.CheckSize(j.Width, j.Height); err != nil {
			p.addf(firstFromJob(e.node, &r[sWidth], &r[sHeight], &r[sEngine]), "%s: %v%s", e.path, err, sizeNote(r))
			ok = false
		}
		if err := eng.CheckSteps(j.Steps); err != nil {
			p.addf(firstFromJob(e.node, &r[sSteps], &r[sEngine]), "%s.steps: %v%s", e.path, err, fromNote(r[sSteps].origin))
			ok = false
		}
	}
	if !ok {
		return nil
	}
	return pl
}

// fillEngineDefaults gives width, height and steps the engine's defaults
// where the manifest set none.
func fillEngineDefaults(j *Job, eng engine.Engine, w, h, steps bool) {
	if !w {
		j.Width = eng.DefaultSize[0]
	}
	if !h {
		j.Height = eng.DefaultSize[1]
	}
	if !steps {
		j.Steps = eng.DefaultSteps
	}
}

// firstFromJob returns the node of the first value written in the job
// itself, else the job's own node, so a problem points where it can be fixed.
func firstFromJob(job *yaml.Node, vs ...*value) *yaml.Node {
	for _, v := range vs {
		if v.set() && v.origin == fromJob {
			return v.node
		}
	}
	return job
}

func fromNote(o origin) string {
	switch o {
	case fromDefaults:
		return " (from defaults)"
	case fromTop:
		return " (from the top level)"
	}
	return ""
}

func sizeNote(r *layer) string {
	switch {
	case !r[sWidth].set() && !r[sHeight].set():
		return " (the engine's default size)"
	case r[sWidth].origin == fromDefaults || r[sHeight].origin == fromDefaults:
		return " (size from defaults)"
	}
	return ""
}

func placeholderHint(name string, keys []mkey) string {
	if len(keys) == 0 {
		return "; define it with matrix: {" + name + ": [...]}"
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.name
	}
	if s := suggest(name, names); s != "" {
		return s
	}
	return "; matrix keys: " + strings.Join(names, ", ")
}

// rowsOf expands a plan's matrix, first key varying slowest, appending the
// rows to jobs (when jobs is nil it only checks). A row's ID is its
// candidate id, or "" when it must fall back to a hash. The rows' ids and
// prompt texts are substrings of two strings built once per matrix, which
// keeps a million-row matrix to a handful of allocations.
func (p *parser) rowsOf(pl *plan, jobs []Job) []Job {
	e := pl.e
	k, ns := len(e.keys), len(pl.slots)
	build := jobs != nil
	first := len(jobs)
	var vars []Var
	var text, ids []byte     // rendered prompt texts and row ids, back to back
	var textEnd, idEnd []int // end offsets in text (per prompt) and ids (per row; -1: hash)
	row := make([]Var, k)
	if build {
		vars = make([]Var, pl.rows*k)
		idEnd = make([]int, 0, pl.rows)
		ids = make([]byte, 0, pl.idBytes())
		if pl.dynText {
			textEnd = make([]int, 0, pl.rows*ns)
			text = make([]byte, 0, pl.textBytes())
		}
	}
	var unsetW, unsetH, unsetSteps bool
	if pl.varies {
		var in [numSettings + 1]bool
		for _, key := range e.keys {
			in[key.s] = true
		}
		unsetW = !pl.r[sWidth].set() && !in[sWidth]
		unsetH = !pl.r[sHeight].set() && !in[sHeight]
		unsetSteps = !pl.r[sSteps].set() && !in[sSteps]
	}
	idx := make([]int, k)
	bad := 0
	var scratch Job
	for r := 0; r < pl.rows; r++ {
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
		if pl.dynText {
			for _, sl := range pl.slots {
				start := len(text)
				if sl.key >= 0 {
					text = append(text, row[sl.key].Value...)
				} else {
					text = sl.t.appendTo(text, pl.index, row)
					if msg := checkTextBytes(text[start:]); msg != "" {
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
