package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/catalog"
	"gopkg.in/yaml.v3"
)

// Id lengths, in bytes.
const (
	maxIDLen      = 100 // any job id
	maxDerivedLen = 40  // the prompt-derived part of a base id
)

// slug lowercases s and keeps a-z, 0-9, '.' and '_', turning every other
// run of characters into one '-'; it trims '-' and '.' from both ends.
func slug(s string) string {
	b := make([]byte, 0, len(s))
	dash := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' {
			if dash && len(b) > 0 {
				b = append(b, '-')
			}
			b = append(b, c)
			dash = false
			continue
		}
		dash = true
	}
	return strings.Trim(string(b), "-.")
}

// slugWords makes a base id from a prompt: its first words, slugged and
// joined by '-', at most maxDerivedLen bytes; "job" when nothing is left.
func slugWords(text string) string {
	var b strings.Builder
	for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !('a' <= r && r <= 'z' || '0' <= r && r <= '9')
	}) {
		switch {
		case b.Len() == 0:
			b.WriteString(w[:min(len(w), maxDerivedLen)])
		case b.Len()+1+len(w) <= maxDerivedLen:
			b.WriteByte('-')
			b.WriteString(w)
		default:
			return b.String()
		}
	}
	if b.Len() == 0 {
		return "job"
	}
	return b.String()
}

// shortHash returns the first n hex digits of the SHA-256 of s.
func shortHash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:n]
}

// varsCanon is the text a matrix row's hash id is computed from.
func varsCanon(vars []Var) string {
	var b strings.Builder
	for _, v := range vars {
		b.WriteString(v.Key)
		b.WriteByte('=')
		b.WriteString(v.Value)
		b.WriteByte(0)
	}
	return b.String()
}

// appendRowID appends base-slug1-slug2... for the matrix row idx to buf.
// It reports false, leaving buf as it was, when a value slugs to nothing or
// the id would be too long, so the caller falls back to a hash.
func appendRowID(buf []byte, base string, keys []mkey, idx []int) ([]byte, bool) {
	start := len(buf)
	buf = append(buf, base...)
	for d := range keys {
		s := keys[d].slugs[idx[d]]
		if s == "" || len(buf)-start+1+len(s) > maxIDLen {
			return buf[:start], false
		}
		buf = append(buf, '-')
		buf = append(buf, s...)
	}
	return buf, true
}

// baseIDs gives every plan its base id: the explicit id lowercased, or a
// slug of its first positive prompt. Derived ids that collide (with each
// other or an explicit id) get a hash of the job's settings; two derived
// jobs with the same settings are reported as duplicates.
func (p *parser) baseIDs(plans []*plan) {
	explicit := map[string]bool{}
	for _, pl := range plans {
		if pl.e.id != "" {
			explicit[strings.ToLower(pl.e.id)] = true
		}
	}
	derived := map[string][]*plan{}
	var order []string
	for _, pl := range plans {
		if pl.e.id != "" {
			pl.base = strings.ToLower(pl.e.id)
			continue
		}
		pl.base = safeDerived(slugWords(pl.firstText()))
		if _, seen := derived[pl.base]; !seen {
			order = append(order, pl.base)
		}
		derived[pl.base] = append(derived[pl.base], pl)
	}
	for _, d := range order {
		group := derived[d]
		if len(group) == 1 && !explicit[d] {
			continue
		}
		byHash := map[string]*plan{}
		for _, pl := range group {
			h := shortHash(pl.canon(), 8)
			if first, dup := byHash[h]; dup {
				p.addf(pl.e.node, "%s: duplicate job: same settings as %s at %d:%d; remove one or give them ids", pl.e.path, first.e.path, first.e.node.Line, first.e.node.Column)
				continue
			}
			byHash[h] = pl
			pl.base = d + "-" + h
		}
	}
	for _, pl := range plans {
		pl.proto.Base = pl.base
	}
}

// firstText is the text of the first positive prompt (for a prompt from
// the matrix, its first value). A Stable Image job without one (an
// upscale, a background removal) is named after its service and its first
// image input instead.
func (pl *plan) firstText() string {
	for _, sl := range pl.slots {
		if sl.weight <= 0 {
			continue
		}
		if sl.key >= 0 {
			return pl.e.keys[sl.key].vals[0].text
		}
		return sl.t.text
	}
	if !pl.si {
		return ""
	}
	info := pl.info
	if info == nil {
		info = pl.infos[0]
	}
	text := info.op.Service
	for i := range info.op.Fields {
		s := info.sets[i]
		if info.op.Fields[i].Type != catalog.Image || info.field(s) == nil {
			continue
		}
		if d := pl.e.keyOf(s); d >= 0 {
			return text + " " + pl.e.keys[d].vals[0].img.idText()
		}
		if v := pl.r.ptr(s); v != nil {
			return text + " " + v.img.idText()
		}
	}
	return text
}

// canon is a canonical text of everything that makes the job: it tells
// truly identical jobs apart from ones that merely start alike.
func (pl *plan) canon() string {
	var b strings.Builder
	for _, sl := range pl.slots {
		b.WriteString(sl.t.text)
		b.WriteByte(0)
		b.WriteString(strconv.FormatFloat(sl.weight, 'g', -1, 64))
		b.WriteByte(0)
		b.WriteString(strconv.Itoa(sl.key))
		b.WriteByte(1)
	}
	// The v1 settings, set or not, as ids were made before Stable Image
	// jobs (so a v1 manifest keeps its ids); then whatever else is set.
	for s := range sService {
		if s == sPrompt || s == sNegative || s == sPrompts {
			continue
		}
		b.WriteString(s.name())
		b.WriteByte('=')
		b.WriteString(pl.r.get(s).text)
		b.WriteByte(1)
	}
	rest := make([]value, 0, len(pl.r))
	for _, v := range pl.r {
		if v.s >= sService {
			rest = append(rest, v)
		}
	}
	slices.SortFunc(rest, func(a, b value) int { return int(a.s) - int(b.s) })
	for _, v := range rest {
		b.WriteString(v.s.name())
		b.WriteByte('=')
		b.WriteString(v.text)
		b.WriteByte(1)
	}
	for _, k := range pl.e.keys {
		b.WriteString(k.name)
		for _, v := range k.vals {
			b.WriteByte(0)
			b.WriteString(v.text)
		}
		b.WriteByte(1)
	}
	return b.String()
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
		if k.rng != nil && k.rng.from.num >= 0 {
			continue // distinct integers, as written: no '-' in any
		}
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

// checkExplicitIDs reports explicit ids used twice, also those that differ
// only in case: they name image files, and macOS and Windows file names
// ignore case.
func (p *parser) checkExplicitIDs(entries []*entry) {
	seen := map[string]*entry{}
	for _, e := range entries {
		if e.id == "" {
			continue
		}
		key := strings.ToLower(e.id)
		first, dup := seen[key]
		switch {
		case !dup:
			seen[key] = e
			continue
		case first.id == e.id:
			p.addf(e.idNode, "%s.id: duplicate id %q (also %s.id at %d:%d)", e.path, e.id, first.path, first.idNode.Line, first.idNode.Column)
		default:
			p.addf(e.idNode, "%s.id: %q differs only in case from %s.id %q at %d:%d, and file names on macOS and Windows ignore case; use another id, e.g. %q",
				e.path, e.id, first.path, first.id, first.idNode.Line, first.idNode.Column, e.id+"-2")
		}
		e.ok = false
	}
}

// idHazard says why a file named after id would be unsafe on Windows or
// macOS, with a safer id to suggest, or returns "" when it is safe. An id
// is a file name (with an extension added), so it must not be a name
// Windows reserves for a device (CON, PRN, AUX, NUL, COM1–COM9, LPT1–LPT9,
// in any case and with any extension: nul.txt is the device NUL too), nor
// end in a dot or a space, which Windows drops.
func idHazard(id string) (problem, instead string) {
	if stem, ext, _ := strings.Cut(id, "."); reservedName(stem) {
		if ext != "" {
			ext = "." + ext
		}
		return "is a device name on Windows, which cannot be a file name", stem + "-job" + ext
	}
	if trimmed := strings.TrimRight(id, ". "); trimmed != id {
		return "ends with a dot or space, which Windows drops from file names", trimmed
	}
	return "", ""
}

// reservedName reports whether stem (a file name up to its first dot) is a
// device name on Windows, in any case.
func reservedName(stem string) bool {
	switch strings.ToLower(stem) {
	case "con", "prn", "aux", "nul":
		return true
	}
	if len(stem) != 4 || stem[3] < '1' || stem[3] > '9' {
		return false
	}
	p := strings.ToLower(stem[:3])
	return p == "com" || p == "lpt"
}

// safeDerived returns a derived base id that is safe as a file name: a
// device name on Windows gets "-job" appended ("con" becomes "con-job").
// Derived ids hold only a-z, 0-9 and '-', so nothing else can be unsafe.
func safeDerived(id string) string {
	if reservedName(id) {
		return id + "-job"
	}
	return id
}
