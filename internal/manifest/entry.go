package manifest

import (
	"slices"
	"strconv"

	"gopkg.in/yaml.v3"
)

// entry is one item of jobs as written, before defaults and expansion.
type entry struct {
	node   *yaml.Node // the job's mapping
	path   string     // "jobs[3]"
	index  int        // 3
	id     string     // explicit id as written; "" when absent
	idNode *yaml.Node
	set    layer      // the job's own settings; nil once the entry is resolved
	keys   []mkey     // matrix keys in written order
	mnode  *yaml.Node // the matrix key; nil when there is none
	ok     bool       // every setting parsed; safe to expand
	// unknownKey is set when the job has a key that is no setting (reported
	// already): its other settings are still checked.
	unknownKey bool
	// badOp is set when the job's own engine or service (or a matrix value
	// of one) was reported: which operation it runs is unknown.
	badOp bool
}

// mkey is one matrix key and its values.
type mkey struct {
	name  string
	k     *yaml.Node
	s     setting // noSetting when the key is only a placeholder
	vals  []value
	slugs []string
	rng   *span // the range the values come from; nil for a list
	// A key named like a Stable Image field may be a v1 job's {placeholder},
	// as it was before Stable Image jobs: which it is depends on the job's
	// operation, known once the job is resolved (see settleKeys). Until then
	// the key keeps its values read both ways, and the problems of each way.
	raw      []value
	rawSlugs []string
	rawProbs Errors // problems of reading it as a placeholder
	deferred Errors // problems of reading it as the field
}

// keyOf returns the index of the matrix key of setting s, or -1.
func (e *entry) keyOf(s setting) int {
	for i := range e.keys {
		if e.keys[i].s == s {
			return i
		}
	}
	return -1
}

// idPattern is what validID accepts, for the schema.
const idPattern = `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`

// validID reports whether s is 1 to 64 letters, digits, '.', '_' or '-',
// starting with a letter or digit (idPattern).
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')) {
			return false
		}
	}
	return true
}

// jobKeys are the keys a job may have, for suggestions.
var jobKeys = append(settings.names(), "id", "matrix")

// entry parses jobs[i].
func (p *parser) entry(i int, n *yaml.Node) *entry {
	path := "jobs[" + strconv.Itoa(i) + "]"
	n = p.deref(n)
	if n == nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.addf(n, "%s: must be a mapping of job settings, got %s", path, describe(n))
		return nil
	}
	// The entry is scratch space until keep keeps it (a matrix entry's).
	e := &p.entryBuf
	*e = entry{node: n, path: path, index: i, set: p.setBuf[:0]}
	var matrix *yaml.Node
	ok := p.settings(n, path, &e.set, fromJob, func(kv pair) bool {
		switch kv.key {
		case "id":
			e.idNode = kv.v
			if s, good := p.str(kv.v, path+".id"); good {
				problem, instead := idHazard(s)
				switch {
				case problem != "" && validID(instead):
					p.addf(kv.v, "%s.id: %q %s; use another id, e.g. %q", path, s, problem, instead)
				case !validID(s):
					p.addf(kv.v, "%s.id: %q is not a safe id: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", path, clip(s, 80))
				case problem != "":
					p.addf(kv.v, "%s.id: %q %s; use another id", path, s, problem)
				default:
					e.id = s
				}
			}
			return true
		case "matrix":
			matrix, e.mnode = kv.v, kv.k
			return true
		}
		e.unknownKey = true
		return false
	}, jobKeys)
	for k := 0; k+1 < len(n.Content); k += 2 {
		if s, isOp := settings.byName[n.Content[k].Value]; isOp && (s == sEngine || s == sService) && !e.set.has(s) {
			e.badOp = true // written, and reported
		}
	}
	if e.idNode != nil && e.id == "" {
		ok = false
	}
	if matrix != nil && !p.matrix(e, matrix) {
		ok = false
	}
	e.ok = ok
	return e
}

// matrix parses a job's matrix: a mapping of key to a non-empty list.
func (p *parser) matrix(e *entry, n *yaml.Node) bool {
	path := e.path + ".matrix"
	if n.Kind != yaml.MappingNode {
		p.addf(n, "%s: must be a mapping of key to a list of values, got %s", path, describe(n))
		return false
	}
	kvs := p.pairs(n, path)
	if len(n.Content) == 0 {
		p.addf(n, "%s: must have at least one key", path)
		return false
	}
	ok := len(kvs)*2 == len(n.Content) // a bad key was reported
	for _, kv := range kvs {
		kpath := path + "." + kv.key
		s, isSetting := settings.byName[kv.key]
		switch {
		case kv.key == "prompts" || kv.key == "id" || kv.key == "matrix":
			p.addf(kv.k, "%s: %s cannot vary in a matrix; use a {placeholder} in the prompt texts", kpath, kv.key)
			ok = false
			continue
		case isSetting && e.set.has(s):
			v := e.set.get(s)
			p.addf(kv.k, "%s: %s is also set in the job (at %d:%d); set it in one place", kpath, kv.key, v.node.Line, v.node.Column)
			ok = false
			continue
		case isSetting && s == sPrompt && e.set.has(sPrompts):
			p.addf(kv.k, "%s: cannot be used together with prompts; put the placeholder in prompts", kpath)
			ok = false
			continue
		case !isSetting:
			s = noSetting
			if !isPlaceholderName(kv.key) {
				p.addf(kv.k, "%s: a matrix key is a job setting or a {placeholder} name (letters, digits and _)", kpath)
				ok = false
				continue
			}
		}
		if kv.v.Kind == yaml.MappingNode {
			good := p.rangeKey(e, s, kv, kpath)
			ok = ok && good
			continue
		}
		if kv.v.Kind != yaml.SequenceNode {
			orRange := ""
			if s != noSetting && s.spec().kind == kInt {
				orRange = " or a range {from: A, to: B}"
			}
			p.addf(kv.v, "%s: must be a list of values%s, got %s", kpath, orRange, describe(kv.v))
			ok = false
			continue
		}
		if len(kv.v.Content) == 0 {
			p.addf(kv.v, "%s: must list at least one value", kpath)
			ok = false
			continue
		}
		items := make([]*yaml.Node, len(kv.v.Content))
		for j, item := range kv.v.Content {
			if items[j] = p.deref(item); items[j] == nil {
				ok = false
			}
		}
		k := mkey{name: kv.key, k: kv.k, s: s}
		if s == noSetting || s.spec().v1 {
			good := true
			k.vals, k.slugs, good = p.values(s, kv.k, items, kpath)
			ok = ok && good
			if !good && (s == sEngine || s == sService) {
				e.badOp = true
			}
		} else {
			mark := len(p.probs)
			k.raw, k.rawSlugs, _ = p.values(noSetting, kv.k, items, kpath)
			k.rawProbs = slices.Clone(p.probs[mark:])
			p.probs = p.probs[:mark]
			if why := s.spec().refused; why != "" {
				p.addf(kv.k, "%s: %s", kpath, why)
			} else {
				k.vals, k.slugs, _ = p.values(s, kv.k, items, kpath)
			}
			k.deferred = slices.Clone(p.probs[mark:])
			p.probs = p.probs[:mark]
			if s == sService && len(k.deferred) > 0 {
				e.badOp = true
			}
		}
		e.keys = append(e.keys, k)
	}
	return ok
}

// rangeKey adds to e the matrix key kv written as a range (see span),
// reporting whether it is sound. A key named like a Stable Image field
// defers its problems, as a list does (see mkey); should the key turn out
// a v1 job's {placeholder}, its values fill it as they are.
func (p *parser) rangeKey(e *entry, s setting, kv pair, kpath string) bool {
	if s == noSetting || s.spec().kind != kInt {
		p.notRange(s, kv.v, kpath)
		if s == sEngine || s == sService {
			e.badOp = true
		}
		return false
	}
	k := mkey{name: kv.key, k: kv.k, s: s}
	if s.spec().v1 {
		var good bool
		k.vals, k.slugs, k.rng, good = p.rangeValues(s, kv.k, kv.v, kpath)
		e.keys = append(e.keys, k)
		return good
	}
	mark := len(p.probs)
	k.vals, k.slugs, k.rng, _ = p.rangeValues(s, kv.k, kv.v, kpath)
	k.deferred = slices.Clone(p.probs[mark:])
	k.rawProbs = k.deferred
	p.probs = p.probs[:mark]
	e.keys = append(e.keys, k)
	return true
}

// values reads the values of a matrix key as setting s (noSetting: as a
// placeholder's plain values), skipping the bad ones and repeats. It
// reports whether all were good.
func (p *parser) values(s setting, key *yaml.Node, items []*yaml.Node, kpath string) ([]value, []string, bool) {
	vals := make([]value, 0, len(items))
	slugs := make([]string, 0, len(items))
	seen := make(map[string]*yaml.Node, len(items))
	ok := true
	for j, item := range items {
		if item == nil {
			ok = false
			continue
		}
		ipath := kpath + "[" + strconv.Itoa(j) + "]"
		var v value
		if s == noSetting {
			if !isScalar(item) {
				p.addf(item, "%s: must be a plain value (text or number), got %s", ipath, describe(item))
				ok = false
				continue
			}
			v = value{s: noSetting, node: item, text: item.Value}
		} else {
			var good bool
			if v, good = p.setting(s, item, ipath); !good {
				ok = false
				continue
			}
		}
		v.origin, v.key, v.item = fromMatrix, key, j
		if first, dup := seen[v.text]; dup {
			p.addf(item, "%s: duplicate value %s (first at %d:%d)", ipath, strconv.Quote(clip(v.text, 40)), first.Line, first.Column)
			ok = false
			continue
		}
		seen[v.text] = item
		vals = append(vals, v)
		if v.img != nil {
			slugs = append(slugs, v.img.slug())
		} else {
			slugs = append(slugs, slug(v.text))
		}
	}
	return vals, slugs, ok
}

// settleKeys decides what each matrix key named like a Stable Image field
// is: the field on a Stable Image job, reporting the problems of its values;
// a {placeholder} on another job that uses it as one, as before Stable Image
// jobs existed; otherwise a field v1 engines do not take (reported when the
// job names an engine). It reports whether every such key is sound.
func (p *parser) settleKeys(e *entry, stableImage, hasEngine bool, used map[string]bool) bool {
	ok := true
	for d := range e.keys {
		k := &e.keys[d]
		if k.s == noSetting || k.s.spec().v1 {
			continue
		}
		switch {
		case stableImage:
			p.probs = append(p.probs, k.deferred...)
			ok = ok && len(k.deferred) == 0
		case used[k.name] && k.rng != nil:
			k.s = noSetting
			for i := range k.vals {
				k.vals[i].s = noSetting
			}
			p.probs = append(p.probs, k.rawProbs...)
			ok = ok && len(k.rawProbs) == 0
		case used[k.name]:
			k.s, k.vals, k.slugs = noSetting, k.raw, k.rawSlugs
			p.probs = append(p.probs, k.rawProbs...)
			ok = ok && len(k.rawProbs) == 0
		default:
			if hasEngine {
				p.addf(k.k, "%s.matrix.%s: %s", e.path, k.name, v1Refusal(k.s))
			}
			ok = false
		}
		k.raw, k.rawSlugs, k.rawProbs, k.deferred = nil, nil, nil, nil
	}
	return ok
}

func isPlaceholderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isIdent(s[i], i == 0) {
			return false
		}
	}
	return true
}
