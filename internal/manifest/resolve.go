package manifest

import (
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/batch-tool/batch/internal/catalog"
	"github.com/batch-tool/batch/internal/engine"
	"gopkg.in/yaml.v3"
)

// plan is an entry resolved against defaults and the top level, ready to
// expand into rows.
type plan struct {
	e       *entry
	r       layer          // resolved settings (job > defaults > top level) that the job's operation takes
	slots   []slot         // the prompts, in the order they are sent
	index   map[string]int // matrix key name → index in e.keys
	proto   Job            // every field that does not vary by row
	rows    int
	first   int  // index of the plan's first job in Manifest.Job
	safe    bool // its row ids cannot collide with any other id (see safeRows)
	varies  bool // a v1 job whose matrix sets engine, width, height or steps
	dynText bool // some prompt text depends on the row
	base    string

	// Of a Stable Image job:
	si     bool
	info   *opInfo // its operation; nil when the matrix varies service
	svcKey int     // index of the matrix key service; -1 when there is none
	// infos and static hold, for each value of the service key, its
	// operation and the problems its rows share.
	infos  []*opInfo
	static [][]string
	pkeys  []int   // matrix keys whose values change Params, Width and Height (service included)
	limits [][]int // per service value (one when it does not vary) and slot: the longest text taken
	texts  []int   // indexes in r of the text fields other than the prompts that have placeholders
	maxIn  int     // the most image inputs a job of the plan takes
	// dynIn is set when the inputs vary by row: a matrix over an image
	// input or over service, or a from with placeholders.
	dynIn bool

	// Of a matrix plan, to check and build its rows (see prepare):
	unsetW, unsetH, unsetSteps bool      // a v1 row takes the engine's default
	runes                      [][]int32 // per key and value: the characters of its text
	blank                      [][]bool  // per key and value: its text is blank
	slotCounts                 []tcount  // per prompt slot with a template
	textCounts                 []tcount  // per text field in texts
	// cParams and cSize hold, per combination of the values that change
	// Params (see combo), its Params and Width, Height; nil when the plan
	// has too many (see share).
	cParams [][]Param
	cSize   []int32
	// rowFrom holds, per row and image input of a plan whose inputs vary
	// by row, the index of the job the input's from names (-1 for none);
	// rowSize, per row of a plan with inputs, its Width and Height. Both
	// are filled by link.
	rowFrom []int32
	rowSize []int32
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

// issue is a problem of a job on an operation: reported at its position,
// or as a matrix row's problem when the operation varies by row.
type issue struct {
	node *yaml.Node
	path string
	msg  string
	org  origin
}

// pathOf is the field path of where a value was written.
func (e *entry) pathOf(v *value) string {
	switch v.origin {
	case fromDefaults:
		return "defaults." + v.s.name()
	case fromTop:
		return v.s.name()
	case fromMatrix:
		if v.item < 0 { // a value of a range
			return e.path + ".matrix." + v.s.name()
		}
		return e.path + ".matrix." + v.s.name() + "[" + strconv.Itoa(v.item) + "]"
	}
	return e.path + "." + v.s.name()
}

// resolve applies precedence (job > defaults > top level), settles what its
// matrix keys are, checks placeholders and the job against its operation,
// and builds the row prototype. It returns nil after reporting when the job
// is bad; for an entry that has problems already it only settles the keys.
func (p *parser) resolve(e *entry, top, def layer) *plan {
	r := append(p.rBuf[:0], e.set...)
	for _, l := range [...]layer{def, top} {
		for _, v := range l {
			if !r.has(v.s) {
				r = append(r, v)
			}
		}
	}
	// The prompt texts resolve as a group: prompts in a job replaces every
	// default text; prompt or negative_prompt in a job replaces default prompts.
	switch {
	case e.set.has(sPrompts):
		r.drop(sPrompt)
		r.drop(sNegative)
	case e.set.has(sPrompt) || e.set.has(sNegative) || e.keyOf(sPrompt) >= 0 || e.keyOf(sNegative) >= 0:
		r.drop(sPrompts)
	case def.has(sPrompts):
		r.drop(sPrompt)
		r.drop(sNegative)
	}
	var used map[string]bool // nil until a template uses a placeholder
	mark := func(name string) {
		if used == nil {
			used = map[string]bool{}
		}
		used[name] = true
	}
	for i := range r {
		for _, t := range r[i].templates() {
			for _, name := range t.names() {
				mark(name)
			}
		}
	}

	// A job runs a v1 engine or a Stable Image service. A v1 job may still
	// use service as a placeholder, as before Stable Image jobs.
	engKey, svcKey := e.keyOf(sEngine), e.keyOf(sService)
	eng, svc := r.get(sEngine), r.get(sService)
	if (eng.set() || engKey >= 0) && svcKey >= 0 && used[e.keys[svcKey].name] {
		svcKey = -1
	}
	// The more specific of an engine and a service wins, so a job that
	// names a service runs it where the top level names an engine; the two
	// at the same level are a mistake, reported below.
	if er, sr := opRank(eng, engKey), opRank(svc, svcKey); er >= 0 && sr >= 0 && er != sr {
		if er < sr {
			r.drop(sEngine)
			eng = value{}
		} else {
			r.drop(sService)
			svc = value{}
		}
	}
	hasEng := eng.set() || engKey >= 0
	hasSvc := svc.set() || svcKey >= 0
	si := hasSvc && !hasEng
	ok := p.settleKeys(e, si, hasEng && !hasSvc, used)
	if !e.ok {
		return nil
	}
	limit := p.maxJobs + 1
	// The plan is scratch space until keep keeps it (a matrix entry's).
	pl := &p.planBuf
	*pl = plan{e: e, rows: 1, si: si, svcKey: svcKey, slots: p.slotBuf[:0]}
	if len(e.keys) > 0 {
		pl.index = make(map[string]int, len(e.keys))
	}
	for i, k := range e.keys {
		pl.index[k.name] = i
		pl.rows = min(pl.rows*len(k.vals), limit)
	}
	switch {
	case hasEng && hasSvc:
		p.bothOps(e, e.where(eng, engKey), e.where(svc, svcKey))
		ok = false
	case !hasEng && !hasSvc:
		if !p.badDefault[sEngine] && !p.badDefault[sService] {
			p.addf(e.node, "%s: no engine or service: set engine (v1) or service (Stable Image) at the top level, in defaults or in the job", e.path)
		}
		ok = false
	}
	if si {
		ok = p.stableImageSettings(pl, &r, svc) && ok
	} else {
		// v1 engines take no Stable Image field: one written in the job is
		// a problem (when the job is known to be v1), one from defaults
		// does not apply.
		for i := len(r) - 1; i >= 0; i-- {
			v := &r[i]
			if v.s.spec().v1 {
				continue
			}
			if v.origin == fromJob && hasEng && !hasSvc {
				p.addf(v.key, "%s.%s: %s", e.path, v.s.name(), v1Refusal(v.s))
				ok = false
			}
			r = slices.Delete(r, i, i+1)
		}
	}
	pl.r = r

	if r.has(sPrompts) {
		for i, pt := range r.get(sPrompts).prompts {
			pl.slots = append(pl.slots, slot{t: pt.tmpl, weight: pt.weight, key: -1, field: "prompts[" + strconv.Itoa(i) + "].text", org: r.get(sPrompts).origin})
		}
	} else {
		for _, s := range []setting{sPrompt, sNegative} {
			w := 1.0
			if s == sNegative {
				w = -1
			}
			if k := e.keyOf(s); k >= 0 {
				pl.slots = append(pl.slots, slot{weight: w, key: k, field: s.name(), org: fromMatrix})
			} else if v := r.get(s); v.set() {
				pl.slots = append(pl.slots, slot{t: v.tmpl, weight: w, key: -1, field: s.name(), org: v.origin})
			}
		}
	}
	positive := false
	used = nil
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
			mark(name)
			if _, defined := pl.index[name]; !defined {
				p.addf(sl.t.node, "%s.%s: undefined placeholder {%s}%s%s", e.path, sl.field, name, fromNote(sl.org), placeholderHint(name, e.keys))
				ok = false
			}
		}
	}
	if !si {
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
	}
	if si {
		// The other text fields and the from of image inputs take
		// placeholders too.
		for i := range pl.r {
			v := &pl.r[i]
			if v.s == sPrompt || v.s == sNegative {
				continue
			}
			for _, t := range v.templates() {
				field := e.pathOf(v)
				if v.img != nil {
					field += ".from"
				}
				for _, name := range t.names() {
					mark(name)
					if _, defined := pl.index[name]; !defined {
						p.addf(t.node, "%s: undefined placeholder {%s}%s", field, name, placeholderHint(name, e.keys))
						ok = false
					}
				}
			}
		}
	}
	for _, k := range e.keys {
		if k.s == noSetting && !used[k.name] {
			p.addf(k.k, "%s.matrix.%s: not a job setting and not used as {%s} in a prompt%s", e.path, k.name, k.name, suggest(k.name, jobKeys))
			ok = false
		}
	}
	if !ok {
		return nil
	}
	if si {
		return p.stableImagePlan(pl)
	}
	return p.v1Plan(pl)
}

// templates returns the texts of a setting that {placeholders} fill: a
// prompt's, another text field's, an image input's from.
func (v *value) templates() []tmpl {
	switch v.s.spec().kind {
	case kPrompt, kText:
		return []tmpl{v.tmpl}
	case kPrompts:
		out := make([]tmpl, len(v.prompts))
		for i, pt := range v.prompts {
			out[i] = pt.tmpl
		}
		return out
	case kImage:
		if v.img != nil && v.img.path == "" {
			return []tmpl{v.img.from}
		}
	}
	return nil
}

// where is where a job's engine or service was written.
type where struct {
	node *yaml.Node
	path string
	name string
	org  origin
}

// where returns the position of v, or of the matrix key k when k ≥ 0.
func (e *entry) where(v value, k int) where {
	if k >= 0 {
		return where{e.keys[k].k, e.path + ".matrix." + e.keys[k].name, e.keys[k].name, fromMatrix}
	}
	return where{v.key, e.pathOf(&v), v.s.name(), v.origin}
}

// rank orders origins from the least specific (the top level) to the most
// (the matrix).
func rank(o origin) int {
	switch o {
	case fromTop:
		return 0
	case fromDefaults:
		return 1
	case fromJob:
		return 2
	}
	return 3
}

// opRank is how specific an engine or service is: rank of where it was
// written, 3 for a matrix key (k ≥ 0), -1 when the job has none.
func opRank(v value, k int) int {
	switch {
	case k >= 0:
		return 3
	case v.set():
		return rank(v.origin)
	}
	return -1
}

// bothOps reports an engine and a service that meet in one job, at the
// more specific of the two (the later one when they are written alike).
// When both are inherited it was reported with defaults or the top level.
func (p *parser) bothOps(e *entry, a, b where) {
	if rank(a.org) > rank(b.org) || rank(a.org) == rank(b.org) && before(b.node, a.node) {
		a, b = b, a
	}
	if e != nil && b.org != fromJob && b.org != fromMatrix {
		return
	}
	p.addf(b.node, "%s: cannot be used with %s (at %d:%d%s); a job runs on a v1 engine or on a Stable Image service, not both",
		b.path, a.name, a.node.Line, a.node.Column, fromWords(a.org))
}

// before reports whether a is written before b.
func before(a, b *yaml.Node) bool {
	return a.Line < b.Line || a.Line == b.Line && a.Column < b.Column
}

// stableImageSettings drops from r the v1 settings no Stable Image service
// takes (reporting those the job wrote) and, when the service is fixed,
// checks the job against its operation; when the matrix varies service it
// prepares the checks of each service for the rows.
func (p *parser) stableImageSettings(pl *plan, r *layer, svc value) bool {
	e, ok := pl.e, true
	var services []string
	if pl.svcKey >= 0 {
		for _, v := range e.keys[pl.svcKey].vals {
			services = append(services, v.str)
		}
	} else {
		services = []string{svc.str}
	}
	for i := len(*r) - 1; i >= 0; i-- {
		v := &(*r)[i]
		if v.s == sService || v.s.spec().si {
			continue
		}
		if v.origin == fromJob {
			p.addf(v.key, "%s.%s: %s", e.path, v.s.name(), notTaken(services, v.s))
			ok = false
		}
		*r = slices.Delete(*r, i, i+1)
	}
	for _, k := range e.keys {
		if k.s != noSetting && k.s != sService && !k.s.spec().si {
			p.addf(k.k, "%s.matrix.%s: %s", e.path, k.name, notTaken(services, k.s))
			ok = false
		}
	}
	if pl.svcKey < 0 {
		pl.info = p.opInfo(svc.str)
		dropRuled(e, r, pl.info)
		pl.r = *r
		for _, is := range p.checkOp(pl, pl.info, true) {
			p.addf(is.node, "%s: %s", is.path, is.msg)
			ok = false
		}
		// A default the operation does not take does not apply to the job.
		*r = slices.DeleteFunc(*r, func(v value) bool { return v.s != sService && pl.info.field(v.s) == nil })
		return ok
	}
	pl.r = *r
	pl.infos = make([]*opInfo, len(services))
	pl.static = make([][]string, len(services))
	for i, s := range services {
		pl.infos[i] = p.opInfo(s)
		for _, is := range p.checkOp(pl, pl.infos[i], false) {
			msg := is.msg
			if is.org == fromDefaults || is.org == fromTop {
				msg += fromNote(is.org)
			}
			pl.static[i] = append(pl.static[i], msg)
		}
	}
	return ok
}

// dropRuled drops from r the defaults that a combination rule of the
// operation rules out for this job, as a default the operation does not
// take does not apply: a default aspect_ratio beside the job's image (the
// output takes the image's shape), a default strength on a job without an
// image. An inherited image input is never dropped: a job that inherits
// one and breaks a rule with it is told so.
func dropRuled(e *entry, r *layer, info *opInfo) {
	isSet := func(name string) bool {
		s, known := settings.byName[name]
		return known && info.field(s) != nil && (r.has(s) || e.keyOf(s) >= 0)
	}
	inherited := func(name string) (setting, bool) {
		s, known := settings.byName[name]
		v := r.ptr(s)
		return s, known && v != nil && (v.origin == fromDefaults || v.origin == fromTop) && s.spec().kind != kImage
	}
	for _, rule := range info.op.Rules {
		switch rule.Kind {
		case catalog.Excludes:
			if !isSet(rule.If) {
				continue
			}
			for _, name := range rule.Fields {
				if s, ok := inherited(name); ok {
					r.drop(s)
				}
			}
		case catalog.Requires:
			if s, ok := inherited(rule.If); ok && !allSet(rule.Fields, isSet) {
				r.drop(s)
			}
		}
	}
}

// checkOp checks a Stable Image job against one operation: the fields the
// job writes that it does not take, the values of those it takes (with the
// matrix's values when values is true; per row otherwise), its required
// fields and its combination rules.
func (p *parser) checkOp(pl *plan, info *opInfo, values bool) []issue {
	e := pl.e
	var out []issue
	services := []string{info.op.Service}
	for i := range pl.r {
		v := &pl.r[i]
		if v.s == sService {
			continue
		}
		f := info.field(v.s)
		switch {
		case f == nil && v.origin == fromJob:
			out = append(out, issue{v.key, e.path + "." + v.s.name(), notTaken(services, v.s), v.origin})
		case f != nil:
			if msg := fieldProblem(info.op, f, v); msg != "" {
				out = append(out, issue{v.node, e.pathOf(v), msg, v.origin})
			}
		}
	}
	for d := range e.keys {
		k := &e.keys[d]
		if k.s == noSetting || k.s == sService || !k.s.spec().si || k.s.spec().refused != "" {
			continue // a refused key was reported when it was settled
		}
		f := info.field(k.s)
		if f == nil {
			out = append(out, issue{k.k, e.path + ".matrix." + k.name, notTaken(services, k.s), fromMatrix})
			continue
		}
		if k.rng != nil {
			// The field's bounds are an interval: the ends tell.
			for _, end := range [...]struct {
				name string
				v    *value
			}{{"from", &k.rng.from}, {"to", &k.rng.to}} {
				if msg := fieldProblem(info.op, f, end.v); values && msg != "" {
					out = append(out, issue{end.v.node, e.path + ".matrix." + k.name + "." + end.name, msg, fromMatrix})
				}
			}
			continue
		}
		for i := range k.vals {
			if !values {
				break
			}
			if msg := fieldProblem(info.op, f, &k.vals[i]); msg != "" {
				out = append(out, issue{k.vals[i].node, e.pathOf(&k.vals[i]), msg, fromMatrix})
			}
		}
	}
	isSet := func(name string) bool {
		s, known := settings.byName[name]
		return known && info.field(s) != nil && (pl.r.has(s) || e.keyOf(s) >= 0)
	}
	for i := range info.op.Fields {
		f := &info.op.Fields[i]
		if !f.Required || isSet(f.Name) || p.badDefault[info.sets[i]] || e.unknownKey {
			continue // an unknown key is most likely the field misspelt, reported already
		}
		if info.sets[i] == sPrompt && e.set.has(sPrompts) {
			continue // reported as prompts, with what to use instead
		}
		how := "set it"
		if f.Type == catalog.Image {
			how = "set it to a file or {from: JOB_ID}"
		}
		out = append(out, issue{e.node, e.path, "no " + f.Name + ": " + info.op.Service + " requires it; " + how + " in the job or in defaults", fromJob})
	}
	for _, why := range ruleProblems(info.op, isSet) {
		out = append(out, issue{e.node, e.path, why, fromJob})
	}
	return out
}

// v1Plan checks a v1 job's prompt lengths, size and steps on its engine,
// and builds its row prototype. It returns nil after reporting.
func (p *parser) v1Plan(pl *plan) *plan {
	e, r, ok := pl.e, pl.r, true
	for _, sl := range pl.slots {
		if sl.key < 0 && sl.t.parts == nil && (sl.field == "prompt" || sl.field == "negative_prompt") {
			if msg := checkLength(utf8.RuneCountInString(sl.t.text), maxPromptRunes); msg != "" {
				v := value{s: settings.byName[sl.field], origin: sl.org}
				p.addf(sl.t.node, "%s: %s", e.pathOf(&v), msg)
				ok = false
			}
		}
		if sl.key >= 0 {
			for i := range e.keys[sl.key].vals {
				v := &e.keys[sl.key].vals[i]
				if msg := checkLength(utf8.RuneCountInString(v.text), maxPromptRunes); msg != "" {
					p.addf(v.node, "%s: %s", e.pathOf(v), msg)
					ok = false
				}
			}
		}
	}
	j := &pl.proto
	j.Base = e.id
	j.Line, j.Column = e.node.Line, e.node.Column
	j.Engine = r.get(sEngine).str
	j.Width, j.Height, j.Steps = int(r.get(sWidth).num), int(r.get(sHeight).num), int(r.get(sSteps).num)
	j.Samples = 1
	if v := r.get(sSamples); v.set() {
		j.Samples = int(v.num)
	}
	j.Seed = uint32(r.get(sSeed).num)
	if v := r.ptr(sCfg); v != nil {
		j.CfgScale = &v.f
	}
	j.Sampler, j.StylePreset, j.ClipGuidancePreset = r.get(sSampler).str, r.get(sStyle).str, r.get(sClip).str
	if len(e.keys) > 0 { // a plain job's are its shape's (see newShape)
		pl.setPrompts()
	}
	pl.varies = e.keyOf(sEngine) >= 0 || e.keyOf(sWidth) >= 0 || e.keyOf(sHeight) >= 0 || e.keyOf(sSteps) >= 0
	if !pl.varies {
		eng, _ := engine.Lookup(j.Engine)
		w, h, steps := r.get(sWidth), r.get(sHeight), r.get(sSteps)
		fillEngineDefaults(j, eng, w.set(), h.set(), steps.set())
		if err := eng.CheckSize(j.Width, j.Height); err != nil {
			eg := r.get(sEngine)
			p.addf(firstFromJob(e.node, &w, &h, &eg), "%s: %v%s", e.path, err, sizeNote(r))
			ok = false
		}
		if err := eng.CheckSteps(j.Steps); err != nil {
			eg := r.get(sEngine)
			p.addf(firstFromJob(e.node, &steps, &eg), "%s.steps: %v%s", e.path, err, fromNote(steps.origin))
			ok = false
		}
	}
	if !ok {
		return nil
	}
	return pl
}

// stableImagePlan builds a Stable Image job's row prototype: its service,
// Params, size, seed and prompts, with what varies by row left to the rows (see Manifest.row).
func (p *parser) stableImagePlan(pl *plan) *plan {
	e, r := pl.e, pl.r
	infos := pl.infos
	var one [1]*opInfo
	if pl.info != nil {
		one[0] = pl.info
		infos = one[:]
	}
	j := &pl.proto
	j.Base = e.id
	j.Line, j.Column = e.node.Line, e.node.Column
	j.Service = infos[0].op.Service
	j.Samples = 1
	j.Seed = uint32(r.get(sSeed).num)
	if len(e.keys) > 0 { // a plain job's are its shape's (see newShape)
		pl.setPrompts()
	}
	var textKeys map[string]bool // keys that fill a text field's placeholders
	for i := range r {
		if v := &r[i]; isParam(v.s) && v.tmpl.parts != nil {
			pl.texts = append(pl.texts, i)
			for _, name := range v.tmpl.names() {
				if textKeys == nil {
					textKeys = map[string]bool{}
				}
				textKeys[name] = true
			}
		}
	}
	for d, k := range e.keys {
		if k.s == sService || k.s != noSetting && isParam(k.s) || textKeys[k.name] {
			pl.pkeys = append(pl.pkeys, d)
		}
	}
	if len(pl.pkeys) == 0 { // so the service is fixed too
		if len(e.keys) > 0 { // a plain job's are its shape's (see newShape)
			j.Params = pl.appendParams(nil, pl.info, nil)
		}
		j.Width, j.Height = pl.size(pl.info, nil)
	}
	for _, info := range infos {
		pl.maxIn = max(pl.maxIn, pl.inputCount(info))
	}
	if pl.maxIn == 0 {
		return pl
	}
	p.inputs = true
	pl.dynIn = pl.svcKey >= 0
	for _, v := range r {
		pl.dynIn = pl.dynIn || v.img != nil && v.img.from.parts != nil
	}
	for _, k := range e.keys {
		pl.dynIn = pl.dynIn || k.s != noSetting && k.s.spec().kind == kImage
	}
	if !pl.dynIn {
		j.Inputs = pl.appendInputs(nil, pl.info, nil)
	}
	return pl
}

// inputCount is how many image inputs a job of the plan takes on info's
// operation.
func (pl *plan) inputCount(info *opInfo) int {
	n := 0
	for i := range info.op.Fields {
		s := info.sets[i]
		if info.op.Fields[i].Type == catalog.Image && info.field(s) != nil && (pl.e.keyOf(s) >= 0 || pl.r.has(s)) {
			n++
		}
	}
	return n
}

// appendInputs appends the image inputs of a job of the plan on info's
// operation to out, in the catalogue's order, for the row idx (nil when no
// key changes them).
func (pl *plan) appendInputs(out []Input, info *opInfo, idx []int) []Input {
	for i := range info.op.Fields {
		f, s := &info.op.Fields[i], info.sets[i]
		if f.Type != catalog.Image || info.field(s) == nil {
			continue
		}
		var v *value
		if d := pl.e.keyOf(s); d >= 0 && idx != nil {
			v = &pl.e.keys[d].vals[idx[d]]
		} else if v = pl.r.ptr(s); v == nil {
			continue
		}
		in := Input{Field: f.Name}
		if r := v.img; r.path != "" {
			in.Path, in.Width, in.Height = r.path, r.file.w, r.file.h
		} else {
			in.From, in.Index = pl.fromID(&r.from, idx), max(r.index, 1)
		}
		out = append(out, in)
	}
	return out
}

// fromID is the job id a from names in the row idx: its placeholders take
// the row's values in id form (their slugs), and ids are lower-case.
func (pl *plan) fromID(t *tmpl, idx []int) string {
	return strings.ToLower(strings.TrimSpace(pl.fill(t, idx, true)))
}

// render is a text field's template filled with the values of the row idx
// (nil: the template as written).
func (pl *plan) render(t *tmpl, idx []int) string {
	if idx == nil {
		return t.text
	}
	return pl.fill(t, idx, false)
}

// fill fills t's placeholders with the row idx's values, or with their
// slugs.
func (pl *plan) fill(t *tmpl, idx []int, slugs bool) string {
	if t.parts == nil {
		return t.text
	}
	var b strings.Builder
	for _, part := range t.parts {
		if part.name == "" {
			b.WriteString(part.lit)
			continue
		}
		d := pl.index[part.name]
		if slugs {
			b.WriteString(pl.e.keys[d].slugs[idx[d]])
		} else {
			b.WriteString(pl.e.keys[d].vals[idx[d]].text)
		}
	}
	return b.String()
}

// setPrompts gives the prototype its prompts when no text varies by row.
func (pl *plan) setPrompts() {
	if pl.dynText {
		return
	}
	pl.proto.Prompts = make([]Prompt, len(pl.slots))
	for i, sl := range pl.slots {
		pl.proto.Prompts[i] = Prompt{Text: sl.t.text, Weight: sl.weight}
	}
}

// appendParams appends the form fields of a Stable Image job on info's
// operation to out, in the catalogue's order: matrix values of the row idx
// (nil when no key changes Params), then the job's settings, then the
// defaults a job always carries.
func (pl *plan) appendParams(out []Param, info *opInfo, idx []int) []Param {
	for i := range info.op.Fields {
		f, s := &info.op.Fields[i], info.sets[i]
		if info.field(s) == nil || !isParam(s) {
			continue
		}
		if d := pl.e.keyOf(s); d >= 0 && idx != nil {
			out = append(out, Param{Name: f.Name, Value: pl.e.keys[d].vals[idx[d]].text})
		} else if v := pl.r.ptr(s); v != nil {
			val := v.text
			if v.tmpl.parts != nil {
				val = pl.render(&v.tmpl, idx)
			}
			out = append(out, Param{Name: f.Name, Value: val})
		} else if carriesDefault(f) {
			out = append(out, Param{Name: f.Name, Value: f.Default})
		}
	}
	return out
}

// paramCount is how many Params a job of the plan has on info's operation.
func (pl *plan) paramCount(info *opInfo) int {
	n := 0
	for i := range info.op.Fields {
		f, s := &info.op.Fields[i], info.sets[i]
		if info.field(s) != nil && isParam(s) && (pl.e.keyOf(s) >= 0 || pl.r.has(s) || carriesDefault(f)) {
			n++
		}
	}
	return n
}

// size is the output size, in pixels, of a job of the plan on info's
// operation for the row idx (nil: no key changes it), as the catalogue
// computes it; 0×0 when it depends on an input image.
func (pl *plan) size(info *opInfo, idx []int) (w, h int) {
	get := func(name string) string {
		s, known := settings.byName[name]
		if !known || info.field(s) == nil {
			return ""
		}
		if d := pl.e.keyOf(s); d >= 0 && idx != nil {
			return pl.e.keys[d].vals[idx[d]].text
		}
		return pl.r.get(s).text
	}
	out, ok := info.op.OutputSize(get, catalog.Size{})
	if !ok {
		return 0, 0
	}
	return out.W, out.H
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

// fromWords is fromNote inside parentheses of its own.
func fromWords(o origin) string {
	switch o {
	case fromDefaults:
		return ", from defaults"
	case fromTop:
		return ", from the top level"
	}
	return ""
}

func sizeNote(r layer) string {
	w, h := r.get(sWidth), r.get(sHeight)
	switch {
	case !w.set() && !h.set():
		return " (the engine's default size)"
	case w.origin == fromDefaults || h.origin == fromDefaults:
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

// inheritedPath is the field path of a value from defaults or the top level.
func inheritedPath(v *value) string {
	if v.origin == fromDefaults {
		return "defaults." + v.s.name()
	}
	return v.s.name()
}

// inheritedOps reports an engine and a service that jobs would inherit
// together from defaults and the top level, once, and marks both bad so no
// job is blamed for them again.
func (p *parser) inheritedOps(top, def layer) {
	eng, svc := def.get(sEngine), def.get(sService)
	if !eng.set() {
		eng = top.get(sEngine)
	}
	if !svc.set() {
		svc = top.get(sService)
	}
	if !eng.set() || !svc.set() || eng.origin != svc.origin {
		return // the more specific one wins
	}
	p.bothOps(nil, where{eng.key, inheritedPath(&eng), "engine", eng.origin}, where{svc.key, inheritedPath(&svc), "service", svc.origin})
	p.badDefault[sEngine], p.badDefault[sService] = true, true
}

// opsSeen is what unusedDefaults needs of the entries: the operations they
// run.
type opsSeen struct {
	unknown bool       // some entry's operation is unknown (reported with it)
	n       int        // entries seen
	v1      bool       // some entry runs a v1 engine
	infos   []*opInfo  // the Stable Image operations entries run, without repeats
	first   opsOfEntry // the first entry's
}

// opsOfEntry is the operations one entry may run.
type opsOfEntry struct {
	v1   bool
	info *opInfo // its first Stable Image operation when not v1
}

// noteOps records the operations entry e runs, before its matrix keys are
// settled, for unusedDefaults.
func (p *parser) noteOps(e *entry, top, def layer) {
	o := &p.ops
	if o.unknown {
		return
	}
	if e.badOp {
		o.unknown = true
		return
	}
	eng := e.set.has(sEngine) || e.keyOf(sEngine) >= 0 || def.has(sEngine) || top.has(sEngine)
	var services []string
	fromMatrix := false
	switch k := e.keyOf(sService); {
	case e.set.has(sService):
		services = []string{e.set.get(sService).str}
	case k >= 0:
		for _, v := range e.keys[k].vals {
			services = append(services, v.str)
		}
		fromMatrix = true
	case def.has(sService):
		services = []string{def.get(sService).str}
	case top.has(sService):
		services = []string{top.get(sService).str}
	}
	var this opsOfEntry
	switch {
	case eng && (len(services) == 0 || fromMatrix):
		this.v1 = true
		o.v1 = true
	case eng || len(services) == 0:
		o.unknown = true // both, or neither: reported with the job
		return
	default:
		for _, s := range services {
			info := p.opInfo(s)
			if !slices.Contains(o.infos, info) {
				o.infos = append(o.infos, info)
			}
			if this.info == nil {
				this.info = info
			}
		}
	}
	if o.n == 0 {
		o.first = this
	}
	o.n++
}

// unusedDefaults reports, at its position, each default that no job of the
// manifest takes: a default applies only to the jobs whose operation takes
// it, so one that none takes is a mistake (aspect_ratio among v1 jobs,
// steps among Stable Image ones). It says nothing when the operation of
// some job is unknown: that job's problem is reported already.
func (p *parser) unusedDefaults(def layer) {
	o := &p.ops
	if len(def) == 0 || p.badDefault[sEngine] || p.badDefault[sService] || o.unknown || o.n == 0 {
		return
	}
	for i := range def {
		v := &def[i]
		if v.s == sEngine || v.s == sService {
			continue
		}
		if o.v1 && v.s.spec().v1 || slices.ContainsFunc(o.infos, func(info *opInfo) bool { return info.field(v.s) != nil }) {
			continue
		}
		why := v1Refusal(v.s)
		if !o.first.v1 {
			why = notTaken([]string{o.first.info.op.Service}, v.s)
		}
		p.addf(v.key, "defaults.%s: no job of the manifest takes it: %s", v.s.name(), why)
	}
}
