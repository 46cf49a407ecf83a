package manifest

import (
	"crypto/sha256"
	"encoding/binary"
	"sort"
	"strconv"
)

// A manifest keeps its jobs compact, so that its memory follows what the
// manifest wrote rather than the number of jobs: a plain job (one without a
// matrix) is a small record with the values it sets itself and a shared
// shape holding everything it inherits; a matrix entry keeps its plan, and
// Job builds each row from it on demand.

// segment is a run of consecutive jobs: plain jobs, or the rows of one matrix
// entry.
type segment struct {
	first int   // index of its first job
	n     int   // its jobs
	rec   int   // plain jobs: index in Manifest.recs of the first
	pl    *plan // a matrix entry's plan; nil for plain jobs
}

// partOf returns the segment holding job i.
func (m *Manifest) partOf(i int) *segment {
	k := sort.Search(len(m.parts), func(k int) bool { return m.parts[k].first+m.parts[k].n > i })
	if k == len(m.parts) || i < 0 {
		panic("manifest: job index " + strconv.Itoa(i) + " out of range [0, " + strconv.Itoa(m.Len()) + ")")
	}
	return &m.parts[k]
}

// plainJob is a job written without a matrix: what it sets itself, with
// what it inherits in its shape.
type plainJob struct {
	id        string // its id: the explicit id lowercased, or its derived base id
	shape     int32  // index in Manifest.shapes
	own       int32  // index in Manifest.own of its first value
	in        int32  // index in Manifest.ins of its first image input
	entry     int32  // its index in jobs, for problems
	line, col int32  // position of the entry
	w, h      int32  // Width and Height
	canon     uint32 // a derived id's hash of its settings (see plan.canon); 0 with an explicit id
	derived   bool   // it has no explicit id
}

// shape is what every plain job that sets the same settings on the same
// operation shares: the job with every inherited field filled in, and
// where each value the job sets itself goes.
type shape struct {
	proto   Job        // every field but those the job sets
	nOwn    int        // values each job sets itself, in Manifest.own
	nIn     int        // image inputs each job takes, in Manifest.ins
	fields  []ownField // own values that go to Job's v1 fields or Seed
	prompts []pslot    // the prompts, when some text or weight is the job's own; nil otherwise
	params  []pparam   // the Params, when some value is the job's own; nil otherwise
}

// ownField is an own value of a plain job that sets a field of Job.
type ownField struct {
	s  setting
	at int // index among the job's own values
}

// pslot is one prompt of a shape: a text and weight, each fixed or the
// job's own.
type pslot struct {
	text   string
	weight float64
	own    int // index of the own text; -1 when fixed
	ownW   int // index of the own weight, as text; -1 when fixed
}

// pparam is one Param of a shape: a fixed value or the job's own.
type pparam struct {
	name, value string
	own         int // index of the own value; -1 when fixed
}

// plain builds the plain job rec.
func (m *Manifest) plain(rec *plainJob) Job {
	sh := m.shapes[rec.shape]
	j := sh.proto
	j.ID, j.Base = rec.id, rec.id
	j.Line, j.Column = int(rec.line), int(rec.col)
	j.Width, j.Height = int(rec.w), int(rec.h)
	own := m.own[rec.own : int(rec.own)+sh.nOwn]
	for _, f := range sh.fields {
		setField(&j, f.s, own[f.at])
	}
	if sh.prompts != nil {
		j.Prompts = make([]Prompt, len(sh.prompts))
		for i, sl := range sh.prompts {
			j.Prompts[i] = Prompt{Text: sl.text, Weight: sl.weight}
			if sl.own >= 0 {
				j.Prompts[i].Text = own[sl.own]
			}
			if sl.ownW >= 0 {
				j.Prompts[i].Weight, _ = strconv.ParseFloat(own[sl.ownW], 64)
			}
		}
	}
	if sh.params != nil {
		j.Params = make([]Param, len(sh.params))
		for i, pp := range sh.params {
			j.Params[i] = Param{Name: pp.name, Value: pp.value}
			if pp.own >= 0 {
				j.Params[i].Value = own[pp.own]
			}
		}
	}
	if sh.nIn > 0 {
		j.Inputs = m.ins[rec.in : int(rec.in)+sh.nIn : int(rec.in)+sh.nIn]
	}
	return j
}

// setField sets the field of j that setting s fills from its canonical
// text (which Parse produced, so it parses).
func setField(j *Job, s setting, text string) {
	n, _ := strconv.ParseInt(text, 10, 64)
	switch s {
	case sSteps:
		j.Steps = int(n)
	case sSeed:
		j.Seed = uint32(n)
	case sSamples:
		j.Samples = int(n)
	case sCfg:
		f, _ := strconv.ParseFloat(text, 64)
		j.CfgScale = &f
	case sSampler:
		j.Sampler = text
	case sStyle:
		j.StylePreset = text
	case sClip:
		j.ClipGuidancePreset = text
	}
}

// keepPlain stores the job of a plan without a matrix as a plain job: its
// own values, a shape shared with the jobs that set the same settings, and
// its image inputs. The plan is dropped afterwards, and with it the
// entry's YAML nodes.
func (p *parser) keepPlain(pl *plan) {
	m, e := p.m, pl.e
	own := p.ownScratch[:0]
	for i := range pl.r {
		if v := &pl.r[i]; v.origin == fromJob && v.s != sEngine && v.s != sService {
			own = append(own, v)
		}
	}
	// Own values in setting order, so the order keys are written in does
	// not make a new shape.
	for i := 1; i < len(own); i++ {
		for k := i; k > 0 && own[k].s < own[k-1].s; k-- {
			own[k], own[k-1] = own[k-1], own[k]
		}
	}
	p.ownScratch = own
	key := p.shapeKey(pl, own)
	at, ok := p.shapeIDs[string(key)]
	if !ok {
		at = int32(len(m.shapes))
		m.shapes = append(m.shapes, newShape(pl, own))
		p.shapeIDs[string(key)] = at
	}
	sh := m.shapes[at]
	if m.own == nil {
		// Most manifests' jobs set what the first sets.
		m.own = make([]string, 0, p.entries*min(sh.nOwn, 4))
	}
	rec := plainJob{
		shape: at, own: int32(len(m.own)), in: int32(len(m.ins)), entry: int32(e.index),
		line: int32(e.node.Line), col: int32(e.node.Column),
		w: int32(pl.proto.Width), h: int32(pl.proto.Height),
	}
	for _, v := range own {
		switch v.s.spec().kind {
		case kImage:
		case kPrompts:
			for _, pt := range v.prompts {
				m.own = append(m.own, pt.tmpl.text, strconv.FormatFloat(pt.weight, 'g', -1, 64))
			}
		default:
			m.own = append(m.own, v.text)
		}
	}
	if len(m.own)-int(rec.own) != sh.nOwn || len(pl.proto.Inputs) != sh.nIn {
		panic("manifest: a plain job does not fit its shape")
	}
	for _, in := range pl.proto.Inputs {
		m.ins = append(m.ins, in)
		v := pl.r.ptr(settings.byName[in.Field])
		p.inPos = append(p.inPos, inputPos{line: int32(v.node.Line), col: int32(v.node.Column), org: v.origin, written: v.img.written})
	}
	rec.id = pl.base
	if e.id == "" {
		sum := sha256.Sum256([]byte(pl.canon()))
		rec.canon, rec.derived = binary.BigEndian.Uint32(sum[:4]), true
	}
	if n := len(m.parts); n > 0 && m.parts[n-1].pl == nil {
		m.parts[n-1].n++
	} else {
		m.parts = append(m.parts, segment{first: p.total, n: 1, rec: len(m.recs)})
	}
	m.recs = append(m.recs, rec)
	p.total++
}

// inputPos is where the value of a plain job's image input was written, for
// problems found once every job is known.
type inputPos struct {
	line, col int32
	org       origin
	written   string // the path or from as written
}

// shapeKey is the text that tells shapes apart: the operation and, in
// setting order, each resolved setting with where it comes from (the job's
// own values have their count where it varies).
func (p *parser) shapeKey(pl *plan, own []*value) []byte {
	b := append(p.keyScratch[:0], pl.proto.Engine...)
	b = append(b, 0)
	b = append(b, pl.proto.Service...)
	b = append(b, 0)
	rs := p.setScratch[:0]
	for i := range pl.r {
		rs = append(rs, uint32(pl.r[i].s)<<8|uint32(pl.r[i].origin))
	}
	for i := 1; i < len(rs); i++ {
		for k := i; k > 0 && rs[k] < rs[k-1]; k-- {
			rs[k], rs[k-1] = rs[k-1], rs[k]
		}
	}
	p.setScratch = rs
	for _, x := range rs {
		b = append(b, byte(x>>16), byte(x>>8), byte(x))
	}
	for _, v := range own {
		if v.s == sPrompts {
			b = append(b, 'p', byte(len(v.prompts)), byte(len(v.prompts)>>8))
		}
	}
	p.keyScratch = b
	return b
}

// newShape builds the shape of pl's job, whose own values are own (in
// setting order).
func newShape(pl *plan, own []*value) *shape {
	pl.setPrompts()
	sh := &shape{proto: pl.proto}
	j := &sh.proto
	j.ID, j.Base, j.Line, j.Column, j.Width, j.Height, j.Inputs = "", "", 0, 0, 0, 0, nil
	if j.CfgScale != nil {
		f := *j.CfgScale
		j.CfgScale = &f
	}
	at := map[setting]int{} // own setting → index of its (first) own value
	n := 0
	for _, v := range own {
		switch v.s.spec().kind {
		case kImage:
			continue
		case kPrompts:
			at[v.s] = n
			n += 2 * len(v.prompts)
			continue
		}
		at[v.s] = n
		n++
		switch {
		case v.s == sPrompt || v.s == sNegative:
		case pl.si && v.s == sSeed, !pl.si && v.s != sWidth && v.s != sHeight:
			sh.fields = append(sh.fields, ownField{s: v.s, at: at[v.s]})
		}
	}
	sh.nOwn, sh.nIn = n, len(pl.proto.Inputs)
	ownPrompts := false
	for _, sl := range pl.slots {
		ownPrompts = ownPrompts || sl.org == fromJob
	}
	if ownPrompts {
		j.Prompts = nil
		k := 0 // the prompt within an own prompts list
		for _, sl := range pl.slots {
			ps := pslot{text: sl.t.text, weight: sl.weight, own: -1, ownW: -1}
			switch {
			case sl.org != fromJob:
			case sl.field == "prompt" || sl.field == "negative_prompt":
				ps.text, ps.own = "", at[settings.byName[sl.field]]
			default:
				base := at[sPrompts]
				ps.text, ps.weight, ps.own, ps.ownW = "", 0, base+2*k, base+2*k+1
				k++
			}
			sh.prompts = append(sh.prompts, ps)
		}
	}
	var params []Param
	if pl.si {
		params = pl.appendParams(nil, pl.info, nil)
	}
	j.Params = nil
	if len(params) > 0 {
		j.Params = params[:len(params):len(params)]
	}
	ownParams := false
	for _, pa := range params {
		_, mine := at[settings.byName[pa.Name]]
		ownParams = ownParams || mine
	}
	if ownParams {
		j.Params = nil
		for _, pa := range params {
			pp := pparam{name: pa.Name, value: pa.Value, own: -1}
			if k, mine := at[settings.byName[pa.Name]]; mine {
				pp.value, pp.own = "", k
			}
			sh.params = append(sh.params, pp)
		}
	}
	for _, f := range sh.fields {
		switch f.s {
		case sCfg:
			j.CfgScale = nil
		case sSteps:
			j.Steps = 0
		case sSeed:
			j.Seed = 0
		case sSamples:
			j.Samples = 0
		case sSampler:
			j.Sampler = ""
		case sStyle:
			j.StylePreset = ""
		case sClip:
			j.ClipGuidancePreset = ""
		}
	}
	return sh
}
