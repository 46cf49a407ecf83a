package manifest

import (
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
		total = min(total+pl.rows, MaxJobs+1)
	}
	if total > MaxJobs {
		p.addf(jobsKey, "jobs: the manifest expands to more than %d jobs; split it or shrink its matrices", MaxJobs)
		return nil
	}
	p.baseIDs(plans)
	if len(p.probs) > 0 {
		// Still expand, so row problems are reported too, but do not
		// bother building ids for a manifest that will be rejected.
		for _, pl := range plans {
			if pl.rows > 1 || len(pl.e.keys) > 0 {
				p.rowsOf(pl, nil)
			}
		}
		return nil
	}
	jobs := make([]Job, 0, total)
	ids := make(map[string]int32, total)
	for _, pl := range plans {
		if len(pl.e.keys) == 0 {
			ids[pl.base] = -1
		}
	}
	var rehash []int32
	for _, pl := range plans {
		if len(pl.e.keys) == 0 {
			j := pl.proto
			j.ID = pl.base
			jobs = append(jobs, j)
			continue
		}
		start := len(jobs)
		jobs = p.rowsOf(pl, jobs)
		for i := start; i < len(jobs); i++ {
			id := jobs[i].ID
			if id == "" {
				rehash = append(rehash, int32(i))
				continue
			}
			prev, taken := ids[id]
			if !taken {
				ids[id] = int32(i)
				continue
			}
			if prev >= 0 {
				rehash = append(rehash, prev)
				ids[id] = -2
			}
			rehash = append(rehash, int32(i))
		}
	}
	slices.Sort(rehash)
	for _, i := range rehash {
		j := &jobs[i]
		j.ID = j.Base + "-" + shortHash(varsCanon(j.Vars), 12)
		if _, taken := ids[j.ID]; taken {
			p.addf(&yaml.Node{Line: j.Line, Column: j.Column}, "jobs: id %s of a matrix row collides with another job's id; give the job a different id", j.ID)
			continue
		}
		ids[j.ID] = i
	}
	if len(p.probs) > 0 {
		return nil
	}
	return jobs
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
		pl.rows = min(pl.rows*len(k.vals), MaxJobs+1)
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
	switch {
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
	if !r[sEngine].set() && inMatrix[sEngine] < 0 {
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
// candidate id, or "" when it must fall back to a hash.
func (p *parser) rowsOf(pl *plan, jobs []Job) []Job {
	e := pl.e
	k := len(e.keys)
	build := jobs != nil
	var vars []Var
	var prompts []Prompt
	if build {
		vars = make([]Var, pl.rows*k)
	}
	ns := len(pl.slots)
	if build && pl.dynText {
		prompts = make([]Prompt, pl.rows*ns)
	}
	idx := make([]int, k)
	row := make([]Var, k)
	var idBuf []byte
	bad := 0
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
	for r := 0; r < pl.rows; r++ {
		j := pl.proto
		if build {
			row = vars[r*k : r*k+k : r*k+k]
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
			var ps []Prompt
			if build {
				ps = prompts[r*ns : r*ns+ns : r*ns+ns]
			}
			for i, sl := range pl.slots {
				var text string
				if sl.key >= 0 {
					text = row[sl.key].Value
				} else {
					text = sl.t.render(pl.index, row)
					if msg := checkText(text); msg != "" {
						msgs = append(msgs, sl.field+" "+msg)
					}
				}
				if build {
					ps[i] = Prompt{Text: text, Weight: sl.weight}
				}
			}
			j.Prompts = ps
		}
		if pl.varies {
			eng, _ := engine.Lookup(j.Engine)
			fillEngineDefaults(&j, eng, !unsetW, !unsetH, !unsetSteps)
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
			j.Vars = row
			j.ID, idBuf = rowID(idBuf, pl.base, e.keys, idx)
			jobs = append(jobs, j)
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
	return jobs
}

func varsText(row []Var) string {
	parts := make([]string, len(row))
	for i, v := range row {
		parts[i] = v.Key + "=" + clip(v.Value, 30)
	}
	return strings.Join(parts, ", ")
}
