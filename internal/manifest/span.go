package manifest

import (
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// span is a matrix key of an integer setting written as a range,
// {from: A, to: B, step: S}: the values A, A+S, A+2S, … up to B. Ranges
// count up (A ≤ B, S ≥ 1), so each value is distinct and the first and
// last lie between the ends.
type span struct {
	node     *yaml.Node // the mapping
	from, to value      // the ends as written, read as the setting
}

// rangeKeys are the keys of a range, for suggestions.
var rangeKeys = []string{"from", "to", "step"}

// intSettings names the integer settings, the ones a range is for, in
// setting order: "width, height, steps, seed, …".
func intSettings() string {
	var names []string
	for _, sp := range settings.specs {
		if sp.kind == kInt && sp.refused == "" {
			names = append(names, sp.name)
		}
	}
	return strings.Join(names, ", ")
}

// notRange reports a mapping written where a list of values is expected
// for a key that is not an integer setting.
func (p *parser) notRange(s setting, n *yaml.Node, kpath string) {
	if s != noSetting && s.spec().kind == kImage {
		p.addf(n, "%s: must be a list of image inputs, e.g. [{from: JOB_A}, {from: JOB_B}]; a mapping here is a range, which is only for integer settings (%s)", kpath, intSettings())
		return
	}
	p.addf(n, "%s: a range is only for integer settings (%s); list the values instead", kpath, intSettings())
}

// rangeValues reads the range n of the integer setting s under kpath, and
// expands it into the key's values (each with text and num, at n's
// position) and their slugs. Both ends must be within the setting's widest
// bounds; the number of values must not pass maxJobs. The texts are
// substrings of one string, so a million values make a handful of
// allocations and no YAML node.
func (p *parser) rangeValues(s setting, key, n *yaml.Node, kpath string) ([]value, []string, *span, bool) {
	rng := &span{node: n}
	var from, to, step *yaml.Node
	kvs := p.pairs(n, kpath)
	ok := len(kvs)*2 == len(n.Content) // a bad key was reported
	for _, kv := range kvs {
		switch kv.key {
		case "from":
			from = kv.v
		case "to":
			to = kv.v
		case "step":
			step = kv.v
		default:
			p.addf(kv.k, "%s: unknown key%s; a range has from, to and step", join(kpath, kv.key), suggest(kv.key, rangeKeys))
			ok = false
		}
	}
	for _, end := range []struct {
		name string
		node *yaml.Node
		v    *value
	}{{"from", from, &rng.from}, {"to", to, &rng.to}} {
		if end.node == nil {
			p.addf(n, "%s: missing %s; a range is {from: 1, to: 600}, with an optional step", kpath, end.name)
			ok = false
			continue
		}
		v, good := p.setting(s, end.node, kpath+"."+end.name)
		if !good {
			ok = false
			continue
		}
		v.origin, v.key = fromMatrix, key
		*end.v = v
	}
	by := int64(1)
	if step != nil {
		switch v, good := p.integer(step, kpath+".step", math.MinInt64, math.MaxInt64); {
		case !good:
			ok = false
		case v < 1:
			p.addf(step, "%s.step: must be at least 1, got %d (ranges count up: from is the smaller end)", kpath, v)
			ok = false
		default:
			by = v
		}
	}
	if !ok {
		return nil, nil, nil, false
	}
	lo, hi := rng.from.num, rng.to.num
	if lo > hi {
		p.addf(to, "%s.to: must be at least from (%d), got %d (ranges count up: from is the smaller end)", kpath, lo, hi)
		return nil, nil, nil, false
	}
	// The ends are within the setting's bounds, far inside int64.
	count := (hi-lo)/by + 1
	if count > int64(p.maxJobs) {
		p.addf(n, "%s: the range has %d values, more than the %d jobs a manifest may expand to; narrow it or take a bigger step", kpath, count, p.maxJobs)
		return nil, nil, nil, false
	}
	var digits [20]byte
	width := func(x int64) int { return len(strconv.AppendInt(digits[:0], x, 10)) }
	size := 0
	for i := range count {
		size += width(lo + i*by)
	}
	buf := make([]byte, 0, size)
	for i := range count {
		buf = strconv.AppendInt(buf, lo+i*by, 10)
	}
	all := string(buf)
	vals := make([]value, count)
	slugs := make([]string, count)
	at := 0
	for i := range vals {
		x := lo + int64(i)*by
		text := all[at : at+width(x)]
		at += len(text)
		vals[i] = value{s: s, node: n, key: key, item: -1, origin: fromMatrix, text: text, num: x}
		slugs[i] = text
		if x < 0 {
			slugs[i] = slug(text) // no integer setting goes below 0 today
		}
	}
	return vals, slugs, rng, true
}
