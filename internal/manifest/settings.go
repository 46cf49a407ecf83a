package manifest

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/batch-tool/batch/internal/catalog"
	"github.com/batch-tool/batch/internal/engine"
	"gopkg.in/yaml.v3"
)

// setting is one job setting, named as the API names it. The v1 settings
// and service have fixed numbers; every other field of the Stable Image
// catalogue follows, numbered in the order the catalogue first lists it.
type setting uint16

const (
	sEngine setting = iota
	sPrompt
	sNegative
	sPrompts
	sWidth
	sHeight
	sSteps
	sCfg
	sSeed
	sSamples
	sSampler
	sStyle
	sClip
	sService
	numFixed // the first catalogue-only field

	// noSetting marks a matrix key that is only a {placeholder}.
	noSetting setting = math.MaxUint16
)

// kind is how a setting's value is written.
type kind uint8

const (
	kEngine  kind = iota + 1 // a v1 engine id
	kService                 // a Stable Image service
	kPrompt                  // prompt or negative_prompt: text with {placeholders}
	kPrompts                 // the v1 text_prompts list
	kInt                     // a whole number
	kNum                     // a decimal number
	kEnum                    // one of a list of values
	kText                    // any other text, sent as written
	kImage                   // an image input: a file path or {from: JOB_ID, index: N}
	kDerived                 // a field batch computes from others
)

// spec says how to read one setting anywhere in a manifest. Its bounds and
// values are the widest that any v1 engine or Stable Image service accepts,
// so a value outside them is wrong for every job; the operation a job runs
// then checks its own (see stableimage.go and expand.go).
type spec struct {
	name   string
	kind   kind
	v1     bool     // v1 engines take it
	si     bool     // some Stable Image service takes it
	lo, hi float64  // kInt, kNum: the widest bounds
	enum   []string // kEnum: every value some operation accepts
	// refused says why batch refuses the key wherever it is written (a
	// derived field); "" when it does not.
	refused string
}

// table is every setting: the v1 ones, service, and each field of the
// Stable Image catalogue.
type table struct {
	specs  []spec
	byName map[string]setting
}

// settings is the setting table, built once from the v1 enumerations and
// the catalogue; it is read-only.
var settings = newTable(catalog.All())

// newTable builds the setting table: the v1 settings as the v1 API bounds
// them, widened (and joined) by the catalogue's fields of the same name, and
// every other catalogue field after them.
func newTable(ops []catalog.Operation) *table {
	t := &table{specs: []spec{
		sEngine:   {name: "engine", kind: kEngine, v1: true},
		sPrompt:   {name: "prompt", kind: kPrompt, v1: true},
		sNegative: {name: "negative_prompt", kind: kPrompt, v1: true},
		sPrompts:  {name: "prompts", kind: kPrompts, v1: true},
		sWidth:    {name: "width", kind: kInt, v1: true, lo: 1, hi: maxSide},
		sHeight:   {name: "height", kind: kInt, v1: true, lo: 1, hi: maxSide},
		sSteps:    {name: "steps", kind: kInt, v1: true, lo: 1, hi: 10000},
		sCfg:      {name: "cfg_scale", kind: kNum, v1: true, lo: 0, hi: 35},
		sSeed:     {name: "seed", kind: kInt, v1: true, lo: 0, hi: maxSeed},
		sSamples:  {name: "samples", kind: kInt, v1: true, lo: 1, hi: 10},
		sSampler:  {name: "sampler", kind: kEnum, v1: true, enum: engine.Samplers()},
		sStyle:    {name: "style_preset", kind: kEnum, v1: true, enum: engine.StylePresets()},
		sClip:     {name: "clip_guidance_preset", kind: kEnum, v1: true, enum: engine.ClipGuidancePresets()},
		sService:  {name: "service", kind: kService},
	}, byName: map[string]setting{}}
	for i, sp := range t.specs {
		t.byName[sp.name] = setting(i)
	}
	for _, op := range ops {
		for _, f := range op.Fields {
			s, ok := t.byName[f.Name]
			if !ok {
				s = setting(len(t.specs))
				t.specs = append(t.specs, spec{name: f.Name, kind: kindOf(f), lo: f.Min, hi: f.Max})
				t.byName[f.Name] = s
			}
			sp := &t.specs[s]
			sp.si = true
			sp.lo, sp.hi = min(sp.lo, f.Min), max(sp.hi, f.Max)
			for _, v := range f.Enum {
				if !slices.Contains(sp.enum, v) {
					sp.enum = append(sp.enum, v)
				}
			}
		}
	}
	for i := range t.specs {
		t.specs[i].refused = refusal(t.specs[i], ops)
	}
	return t
}

// kindOf is how the manifest writes a catalogue field.
func kindOf(f catalog.Field) kind {
	switch {
	case f.Derived:
		return kDerived
	case f.Type == catalog.Integer:
		return kInt
	case f.Type == catalog.Number:
		return kNum
	case f.Type == catalog.Enum:
		return kEnum
	case f.Type == catalog.Image:
		return kImage
	}
	return kText
}

// spec returns the setting's spec.
func (s setting) spec() *spec { return &settings.specs[s] }

// name returns the setting's manifest key.
func (s setting) name() string { return settings.specs[s].name }

// names returns every setting's key, in setting order.
func (t *table) names() []string {
	out := make([]string, len(t.specs))
	for i, sp := range t.specs {
		out[i] = sp.name
	}
	return out
}

// Limits of the API's fields.
const (
	maxPromptRunes = 2000 // a v1 text prompt
	maxSeed        = math.MaxUint32
	maxSide        = 1 << 16 // no engine accepts a side this long; keeps products small
)

// origin says where a setting's value was written.
type origin uint8

const (
	fromJob origin = iota
	fromDefaults
	fromTop
	fromMatrix
)

// value is one parsed setting value.
type value struct {
	s       setting
	node    *yaml.Node // where it was written; nil when unset
	key     *yaml.Node // its key (for a matrix value, the matrix key)
	item    int        // for a matrix value, its index in the written list
	origin  origin
	text    string    // canonical text: the Var value, the slug source, the value sent
	str     string    // engine, service, enums, text
	num     int64     // integers
	f       float64   // decimal numbers
	tmpl    tmpl      // prompt, negative_prompt and the other text fields
	prompts []ptmpl   // prompts
	img     *imageRef // an image input; nil for every other setting
}

func (v value) set() bool { return v.node != nil }

// layer holds the settings written in one place (the top level, defaults or
// a job), or a job's resolved settings: a short list, since a job sets few.
type layer []value

// get returns the value of s, or an unset value.
func (l layer) get(s setting) value {
	for i := range l {
		if l[i].s == s {
			return l[i]
		}
	}
	return value{}
}

// ptr returns a pointer to the value of s in l, or nil.
func (l layer) ptr(s setting) *value {
	for i := range l {
		if l[i].s == s {
			return &l[i]
		}
	}
	return nil
}

// has reports whether l sets s.
func (l layer) has(s setting) bool { return l.ptr(s) != nil }

// put sets v, replacing any value of the same setting.
func (l *layer) put(v value) {
	if p := l.ptr(v.s); p != nil {
		*p = v
		return
	}
	*l = append(*l, v)
}

// drop removes s.
func (l *layer) drop(s setting) {
	*l = slices.DeleteFunc(*l, func(v value) bool { return v.s == s })
}

// tmpl is a prompt text with its {placeholders} split out.
type tmpl struct {
	text  string
	parts []part // nil when the text has no placeholder
	node  *yaml.Node
}

// part is a literal run of text, or a placeholder when name is not "".
type part struct {
	lit  string
	name string
}

// ptmpl is one entry of prompts.
type ptmpl struct {
	tmpl
	weight float64
}

// parseTmpl splits {name} placeholders out of a prompt text. Braces that do
// not enclose an identifier are literal text.
func parseTmpl(s string, n *yaml.Node) tmpl {
	t := tmpl{text: s, node: n}
	rest, lit := s, 0
	for i := 0; i < len(rest); i++ {
		if rest[i] != '{' {
			continue
		}
		j := i + 1
		for j < len(rest) && isIdent(rest[j], j == i+1) {
			j++
		}
		if j == i+1 || j >= len(rest) || rest[j] != '}' {
			continue
		}
		t.parts = append(t.parts, part{lit: rest[lit:i]}, part{name: rest[i+1 : j]})
		lit = j + 1
		i = j
	}
	if t.parts != nil && lit < len(rest) {
		t.parts = append(t.parts, part{lit: rest[lit:]})
	}
	return t
}

func isIdent(c byte, first bool) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || !first && '0' <= c && c <= '9'
}

// names lists the template's placeholders in order of appearance.
func (t *tmpl) names() []string {
	var out []string
	for _, p := range t.parts {
		if p.name != "" && !slices.Contains(out, p.name) {
			out = append(out, p.name)
		}
	}
	return out
}

// appendTo appends the template to b with values (found by key name
// through index) substituted for its placeholders.
func (t *tmpl) appendTo(b []byte, index map[string]int, vals []Var) []byte {
	if t.parts == nil {
		return append(b, t.text...)
	}
	for _, p := range t.parts {
		if p.name != "" {
			b = append(b, vals[index[p.name]].Value...)
		} else {
			b = append(b, p.lit...)
		}
	}
	return b
}

// checkText reports what is wrong with a prompt text of at most limit
// characters, or "".
func checkText(s string, limit int) string {
	if strings.TrimSpace(s) == "" {
		return "must not be blank"
	}
	return checkLength(utf8.RuneCountInString(s), limit)
}

// checkTextBytes is checkText for a rendered text.
func checkTextBytes(b []byte, limit int) string {
	if len(bytes.TrimSpace(b)) == 0 {
		return "must not be blank"
	}
	return checkLength(utf8.RuneCount(b), limit)
}

// checkLength reports a text of n characters that is longer than limit.
func checkLength(n, limit int) string {
	if n > limit {
		return "is " + strconv.Itoa(n) + " characters long; the API accepts at most " + strconv.Itoa(limit)
	}
	return ""
}

// setting parses one setting's value, reporting problems under path. The
// checks are those that hold for every job; the job's operation checks the
// rest when the job is resolved.
func (p *parser) setting(s setting, n *yaml.Node, path string) (value, bool) {
	sp := s.spec()
	v := value{s: s, node: n, text: n.Value, item: -1}
	ok := false
	switch sp.kind {
	case kEngine:
		if v.str, ok = p.str(n, path); ok {
			if _, known := engine.Lookup(v.str); !known {
				p.addf(n, "%s: unknown engine %q%s; known engines: %s", path, v.str, suggest(v.str, engine.IDs()), strings.Join(engine.IDs(), ", "))
				ok = false
			}
		}
	case kService:
		if v.str, ok = p.str(n, path); ok {
			ok = p.service(n, path, v.str)
		}
	case kPrompt:
		var text string
		if text, ok = p.str(n, path); ok {
			if strings.TrimSpace(text) == "" {
				p.addf(n, "%s: must not be blank", path)
				ok = false
			}
			v.tmpl = parseTmpl(text, n)
		}
	case kPrompts:
		v.prompts, ok = p.prompts(n, path)
	case kInt:
		if v.num, ok = p.integer(n, path, int64(sp.lo), int64(sp.hi)); ok {
			var buf [20]byte
			if canon := strconv.AppendInt(buf[:0], v.num, 10); string(canon) != n.Value {
				v.text = string(canon)
			}
		}
	case kNum:
		if v.f, ok = p.number(n, path, sp.lo, sp.hi); ok {
			v.text = strconv.FormatFloat(v.f, 'f', -1, 64)
		}
	case kEnum:
		if v.str, ok = p.enum(n, path, sp.enum); ok {
			v.text = v.str
		}
	case kText:
		if v.str, ok = p.str(n, path); ok {
			v.tmpl = parseTmpl(v.str, n)
		}
	case kImage:
		if v.img, ok = p.image(n, path); ok {
			v.str, v.text = v.img.written, v.img.canon()
		}
	}
	return v, ok
}

// enum reads a string that must be one of allowed. A scalar of another type
// whose text is allowed (true for a "true"/"false" enum) is accepted as it.
func (p *parser) enum(n *yaml.Node, path string, allowed []string) (string, bool) {
	if isScalar(n) && n.ShortTag() != "!!str" && slices.Contains(allowed, n.Value) {
		return n.Value, true
	}
	s, ok := p.str(n, path)
	if !ok {
		return "", false
	}
	if !slices.Contains(allowed, s) {
		p.addf(n, "%s: unknown value %q%s; allowed: %s", path, s, suggest(s, allowed), strings.Join(allowed, ", "))
		return "", false
	}
	return s, true
}

// prompts reads the API's text_prompts: a non-empty list of {text, weight}.
func (p *parser) prompts(n *yaml.Node, path string) ([]ptmpl, bool) {
	if n.Kind != yaml.SequenceNode {
		p.addf(n, "%s: must be a list of {text, weight}, got %s", path, describe(n))
		return nil, false
	}
	if len(n.Content) == 0 {
		p.addf(n, "%s: must list at least one prompt", path)
		return nil, false
	}
	out := make([]ptmpl, 0, len(n.Content))
	ok := true
	for i, item := range n.Content {
		ipath := path + "[" + strconv.Itoa(i) + "]"
		item = p.deref(item)
		if item == nil {
			ok = false
			continue
		}
		if item.Kind != yaml.MappingNode {
			p.addf(item, "%s: must be a mapping {text, weight}, got %s", ipath, describe(item))
			ok = false
			continue
		}
		pt := ptmpl{weight: 1}
		hasText, itemOK := false, true
		for _, kv := range p.pairs(item, ipath) {
			switch kv.key {
			case "text":
				hasText = true
				text, good := p.str(kv.v, ipath+".text")
				if good {
					// prompts is v1's alone, so its limit is v1's.
					if msg := checkText(text, maxPromptRunes); msg != "" {
						p.addf(kv.v, "%s.text: %s", ipath, msg)
						good = false
					}
				}
				pt.tmpl = parseTmpl(text, kv.v)
				itemOK = itemOK && good
			case "weight":
				w, good := p.number(kv.v, ipath+".weight", -math.MaxFloat64, math.MaxFloat64)
				pt.weight = w
				itemOK = itemOK && good
			default:
				p.addf(kv.k, "%s: unknown key%s; a prompt has text and weight", join(ipath, kv.key), suggest(kv.key, []string{"text", "weight"}))
				itemOK = false
			}
		}
		if !hasText {
			p.addf(item, "%s: missing text", ipath)
			itemOK = false
		}
		ok = ok && itemOK
		out = append(out, pt)
	}
	return out, ok
}

// settings parses the job settings of a mapping into l. Keys that are not
// settings are passed to other (which reports them when it returns false).
// It reports whether every setting was valid.
func (p *parser) settings(n *yaml.Node, path string, l *layer, org origin, other func(kv pair) bool, known []string) bool {
	// settings is never called within itself, so its pairs can reuse
	// scratch space.
	kvs := p.appendPairs(p.pairBuf[:0], n, path)
	p.pairBuf = kvs
	ok := len(kvs)*2 == len(n.Content) // a bad key was reported
	for _, kv := range kvs {
		s, isSetting := settings.byName[kv.key]
		if !isSetting {
			if !other(kv) {
				// An unknown key is reported but does not stop the checks of
				// the settings beside it, so every problem shows at once.
				p.addf(kv.k, "%s: unknown key%s", join(path, kv.key), suggest(kv.key, known))
			}
			continue
		}
		if why := s.spec().refused; why != "" {
			p.addf(kv.k, "%s: %s", join(path, kv.key), why)
			p.markBad(org, s)
			ok = false
			continue
		}
		v, good := p.setting(s, kv.v, join(path, kv.key))
		if !good {
			p.markBad(org, s)
			ok = false
			continue
		}
		v.origin, v.key = org, kv.k
		l.put(v)
	}
	if pr := l.get(sPrompts); pr.set() && (l.has(sPrompt) || l.has(sNegative)) {
		bad, name := l.get(sPrompt).node, "prompt"
		if bad == nil {
			bad, name = l.get(sNegative).node, "negative_prompt"
		}
		p.addf(bad, "%s: cannot be used together with prompts (at %d:%d); put every text in prompts", join(path, name), pr.node.Line, pr.node.Column)
		p.markBad(org, sPrompt)
		p.markBad(org, sPrompts)
		ok = false
	}
	return ok
}

// markBad records a setting that defaults (or the top level) got wrong, so
// that jobs inheriting it are not blamed again.
func (p *parser) markBad(org origin, s setting) {
	if org == fromDefaults || org == fromTop {
		p.badDefault[s] = true
	}
}

// defaults parses the defaults mapping.
func (p *parser) defaults(n *yaml.Node) layer {
	var l layer
	if n.Kind != yaml.MappingNode {
		p.addf(n, "defaults: must be a mapping of job settings, got %s", describe(n))
		return l
	}
	p.settings(n, "defaults", &l, fromDefaults, func(kv pair) bool {
		if kv.key == "id" || kv.key == "matrix" {
			p.addf(kv.k, "defaults.%s: not allowed in defaults; set it on each job", kv.key)
			return true
		}
		return false
	}, settings.names())
	return l
}

// suggest returns " (did you mean X?)" for the closest candidate, or "".
func suggest(s string, candidates []string) string {
	best, bestD := "", 1<<30
	ls := strings.ToLower(s)
	for _, c := range candidates {
		lc := strings.ToLower(c)
		d := distance(ls, lc)
		if len(ls) >= 3 && strings.HasPrefix(lc, ls) {
			d = min(d, 1)
		}
		if d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" || bestD > max(1, len(best)/3) {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// distance is the optimal-string-alignment distance between a and b, in
// bytes: insertions, deletions, substitutions and adjacent transpositions
// ("stlye" is one edit from "style").
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 20
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
