package manifest

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/batch-tool/batch/internal/engine"
	"gopkg.in/yaml.v3"
)

// setting is one job setting, named as the API names it.
type setting int

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
	numSettings
)

// settingNames are the manifest keys of the settings, indexed by setting.
var settingNames = [numSettings]string{
	"engine", "prompt", "negative_prompt", "prompts", "width", "height", "steps",
	"cfg_scale", "seed", "samples", "sampler", "style_preset", "clip_guidance_preset",
}

var settingByName = map[string]setting{
	"engine": sEngine, "prompt": sPrompt, "negative_prompt": sNegative, "prompts": sPrompts,
	"width": sWidth, "height": sHeight, "steps": sSteps, "cfg_scale": sCfg, "seed": sSeed,
	"samples": sSamples, "sampler": sSampler, "style_preset": sStyle, "clip_guidance_preset": sClip,
}

// Limits of the API's fields.
const (
	maxPromptRunes = 2000
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
	node    *yaml.Node // where it was written; nil when unset
	origin  origin
	text    string  // canonical text: the Var value and the matrix slug source
	str     string  // engine, enums
	num     int64   // width, height, steps, seed, samples
	f       float64 // cfg_scale
	tmpl    tmpl    // prompt, negative_prompt
	prompts []ptmpl // prompts
}

func (v *value) set() bool { return v.node != nil }

// layer holds the settings of one mapping (top level, defaults or a job).
type layer [numSettings]value

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

// checkText reports what is wrong with a prompt text, or "".
func checkText(s string) string {
	if strings.TrimSpace(s) == "" {
		return "must not be blank"
	}
	if n := utf8.RuneCountInString(s); n > maxPromptRunes {
		return "is " + strconv.Itoa(n) + " characters long; the API accepts at most 2000"
	}
	return ""
}

// checkTextBytes is checkText for a rendered text.
func checkTextBytes(b []byte) string {
	if len(bytes.TrimSpace(b)) == 0 {
		return "must not be blank"
	}
	if n := utf8.RuneCount(b); n > maxPromptRunes {
		return "is " + strconv.Itoa(n) + " characters long; the API accepts at most 2000"
	}
	return ""
}

// setting parses one setting's value, reporting problems under path.
func (p *parser) setting(s setting, n *yaml.Node, path string) (value, bool) {
	v := value{node: n, text: n.Value}
	ok := false
	switch s {
	case sEngine:
		if v.str, ok = p.str(n, path); ok {
			if _, known := engine.Lookup(v.str); !known {
				p.addf(n, "%s: unknown engine %q%s; known engines: %s", path, v.str, suggest(v.str, engine.IDs()), strings.Join(engine.IDs(), ", "))
				ok = false
			}
		}
	case sPrompt, sNegative:
		var text string
		if text, ok = p.str(n, path); ok {
			if msg := checkText(text); msg != "" {
				p.addf(n, "%s: %s", path, msg)
				ok = false
			}
			v.tmpl = parseTmpl(text, n)
		}
	case sPrompts:
		v.prompts, ok = p.prompts(n, path)
	case sWidth, sHeight:
		v.num, ok = p.integer(n, path, 1, maxSide)
	case sSteps:
		v.num, ok = p.integer(n, path, 1, 10000)
	case sSeed:
		v.num, ok = p.integer(n, path, 0, maxSeed)
	case sSamples:
		v.num, ok = p.integer(n, path, 1, 10)
	case sCfg:
		if v.f, ok = p.number(n, path, 0, 35); ok {
			v.text = strconv.FormatFloat(v.f, 'f', -1, 64)
		}
	case sSampler:
		v.str, ok = p.enum(n, path, engine.Samplers())
	case sStyle:
		v.str, ok = p.enum(n, path, engine.StylePresets())
	case sClip:
		v.str, ok = p.enum(n, path, engine.ClipGuidancePresets())
	}
	if ok && (s == sWidth || s == sHeight || s == sSteps || s == sSeed || s == sSamples) {
		v.text = strconv.FormatInt(v.num, 10)
	}
	return v, ok
}

// enum reads a string that must be one of allowed.
func (p *parser) enum(n *yaml.Node, path string, allowed []string) (string, bool) {
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
					if msg := checkText(text); msg != "" {
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
	kvs := p.pairs(n, path)
	ok := len(kvs)*2 == len(n.Content) // a bad key was reported
	for _, kv := range kvs {
		s, isSetting := settingByName[kv.key]
		if !isSetting {
			if !other(kv) {
				// An unknown key is reported but does not stop the checks of
				// the settings beside it, so every problem shows at once.
				p.addf(kv.k, "%s: unknown key%s", join(path, kv.key), suggest(kv.key, known))
			}
			continue
		}
		v, good := p.setting(s, kv.v, join(path, kv.key))
		if !good {
			if org == fromDefaults {
				p.badDefault[s] = true
			}
			ok = false
			continue
		}
		v.origin = org
		l[s] = v
	}
	if l[sPrompts].set() && (l[sPrompt].set() || l[sNegative].set()) {
		bad, name := l[sPrompt].node, "prompt"
		if bad == nil {
			bad, name = l[sNegative].node, "negative_prompt"
		}
		p.addf(bad, "%s: cannot be used together with prompts (at %d:%d); put every text in prompts", join(path, name), l[sPrompts].node.Line, l[sPrompts].node.Column)
		if org == fromDefaults {
			p.badDefault[sPrompt], p.badDefault[sPrompts] = true, true
		}
		ok = false
	}
	return ok
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
	}, settingNames[:])
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
