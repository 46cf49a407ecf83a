package manifest

import (
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

// entry is one item of jobs as written, before defaults and expansion.
type entry struct {
	node   *yaml.Node // the job's mapping
	path   string     // "jobs[3]"
	id     string     // explicit id as written; "" when absent
	idNode *yaml.Node
	set    layer
	keys   []mkey     // matrix keys in written order
	mnode  *yaml.Node // the matrix key; nil when there is none
	ok     bool       // every setting parsed; safe to expand
	// unknownKey is set when the job has a key that is no setting (reported
	// already): its other settings are still checked.
	unknownKey bool
}

// mkey is one matrix key and its values.
type mkey struct {
	name  string
	k     *yaml.Node
	s     setting // numSettings when the key is only a placeholder
	vals  []value
	slugs []string
}

var idRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// jobKeys are the keys a job may have, for suggestions.
var jobKeys = append(settingNames[:len(settingNames):len(settingNames)], "id", "matrix")

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
	e := &entry{node: n, path: path}
	var matrix *yaml.Node
	ok := p.settings(n, path, &e.set, fromJob, func(kv pair) bool {
		switch kv.key {
		case "id":
			e.idNode = kv.v
			if s, good := p.str(kv.v, path+".id"); good {
				if !idRe.MatchString(s) {
					p.addf(kv.v, "%s.id: %q is not a safe id: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", path, clip(s, 80))
				} else {
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
		s, isSetting := settingByName[kv.key]
		switch {
		case kv.key == "prompts" || kv.key == "id" || kv.key == "matrix":
			p.addf(kv.k, "%s: %s cannot vary in a matrix; use a {placeholder} in the prompt texts", kpath, kv.key)
			ok = false
			continue
		case isSetting && e.set[s].set():
			p.addf(kv.k, "%s: %s is also set in the job (at %d:%d); set it in one place", kpath, kv.key, e.set[s].node.Line, e.set[s].node.Column)
			ok = false
			continue
		case isSetting && s == sPrompt && e.set[sPrompts].set():
			p.addf(kv.k, "%s: cannot be used together with prompts; put the placeholder in prompts", kpath)
			ok = false
			continue
		case !isSetting:
			s = numSettings
			if !isPlaceholderName(kv.key) {
				p.addf(kv.k, "%s: a matrix key is a job setting or a {placeholder} name (letters, digits and _)", kpath)
				ok = false
				continue
			}
		}
		if kv.v.Kind != yaml.SequenceNode {
			p.addf(kv.v, "%s: must be a list of values, got %s", kpath, describe(kv.v))
			ok = false
			continue
		}
		if len(kv.v.Content) == 0 {
			p.addf(kv.v, "%s: must list at least one value", kpath)
			ok = false
			continue
		}
		k := mkey{name: kv.key, k: kv.k, s: s, vals: make([]value, 0, len(kv.v.Content))}
		seen := make(map[string]*yaml.Node, len(kv.v.Content))
		for j, item := range kv.v.Content {
			ipath := kpath + "[" + strconv.Itoa(j) + "]"
			item = p.deref(item)
			if item == nil {
				ok = false
				continue
			}
			var v value
			good := true
			if s == numSettings {
				if !isScalar(item) {
					p.addf(item, "%s: must be a plain value (text or number), got %s", ipath, describe(item))
					ok = false
					continue
				}
				v = value{node: item, text: item.Value}
			} else if v, good = p.setting(s, item, ipath); !good {
				ok = false
				continue
			}
			v.origin = fromMatrix
			if first, dup := seen[v.text]; dup {
				p.addf(item, "%s: duplicate value %s (first at %d:%d)", ipath, strconv.Quote(clip(v.text, 40)), first.Line, first.Column)
				ok = false
				continue
			}
			seen[v.text] = item
			k.vals = append(k.vals, v)
			k.slugs = append(k.slugs, slug(v.text))
		}
		e.keys = append(e.keys, k)
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
