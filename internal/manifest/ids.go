package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/catalog"
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

// named is a plan that has a base id: a plain job (rec ≥ 0, its index in
// Manifest.recs) or a matrix part's plan (rec < 0).
type named struct {
	part int32
	rec  int32
}

// baseIDs settles the base ids derived from prompts: derived ids that
// collide (with each other or an explicit id) get a hash of the job's
// settings; two derived jobs with the same settings are reported as
// duplicates. (Each plan got its base id, the explicit id lowercased or a
// slug of its first positive prompt, when it was kept.)
func (p *parser) baseIDs() {
	m := p.m
	var derived []named
	for k := range m.parts {
		pt := &m.parts[k]
		if pt.pl != nil {
			if pt.pl.e.id == "" {
				derived = append(derived, named{int32(k), -1})
			}
			continue
		}
		for r := pt.rec; r < pt.rec+pt.n; r++ {
			if m.recs[r].derived {
				derived = append(derived, named{int32(k), int32(r)})
			}
		}
	}
	base := func(x named) string {
		if x.rec >= 0 {
			return m.recs[x.rec].id
		}
		return m.parts[x.part].pl.base
	}
	slices.SortStableFunc(derived, func(a, b named) int { return strings.Compare(base(a), base(b)) })
	for lo := 0; lo < len(derived); {
		d := base(derived[lo])
		hi := lo + 1
		for hi < len(derived) && base(derived[hi]) == d {
			hi++
		}
		group := derived[lo:hi]
		lo = hi
		if seen := p.ids.find(d); len(group) == 1 && (seen == nil || !seen.kept) {
			continue
		}
		byHash := map[string]named{}
		for _, x := range group {
			h := p.settingsHash(x)
			if first, dup := byHash[h]; dup {
				line, col, path := p.where(x)
				fl, fc, fpath := p.where(first)
				p.addAt(line, col, "%s: duplicate job: same settings as %s at %d:%d; remove one or give them ids", path, fpath, fl, fc)
				continue
			}
			byHash[h] = x
			if x.rec >= 0 {
				m.recs[x.rec].id = d + "-" + h
			} else {
				pl := m.parts[x.part].pl
				pl.base = d + "-" + h
				pl.proto.Base = pl.base
			}
		}
	}
}

// settingsHash is the short hash of a derived job's settings that tells it
// from others with the same derived id.
func (p *parser) settingsHash(x named) string {
	if x.rec >= 0 {
		return fmt.Sprintf("%08x", p.m.recs[x.rec].canon)
	}
	return shortHash(p.m.parts[x.part].pl.canon(), 8)
}

// where is the position and path of a named plan's entry.
func (p *parser) where(x named) (line, col int, path string) {
	if x.rec >= 0 {
		r := &p.m.recs[x.rec]
		return int(r.line), int(r.col), "jobs[" + strconv.Itoa(int(r.entry)) + "]"
	}
	e := p.m.parts[x.part].pl.e
	return e.node.Line, e.node.Column, e.path
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
// every row gets its candidate id, each key's values slug to distinct texts
// with as many '-' each (so base-v1-v2 splits back into its values), no other
// base id extends this one with '-' or is extended by it (so no other job
// can produce the same text). This spares a million-row matrix a million
// hashes.
func (p *parser) markSafe() {
	m := p.m
	var bases []string
	for k := range m.parts {
		pt := &m.parts[k]
		if pt.pl != nil {
			bases = append(bases, pt.pl.base)
			continue
		}
		if len(m.parts) == 1 {
			return // no matrix
		}
		for r := pt.rec; r < pt.rec+pt.n; r++ {
			bases = append(bases, m.recs[r].id)
		}
	}
	slices.Sort(bases)
	isBase := func(s string) bool {
		_, found := slices.BinarySearch(bases, s)
		return found
	}
	for k := range m.parts {
		pl := m.parts[k].pl
		if pl == nil || !distinctSlugs(pl.e.keys) || !pl.allCandidates() {
			continue
		}
		prefix := pl.base + "-"
		i, _ := slices.BinarySearch(bases, prefix)
		if i < len(bases) && strings.HasPrefix(bases[i], prefix) {
			continue
		}
		clash := false
		for i := range len(pl.base) {
			if pl.base[i] == '-' && isBase(pl.base[:i]) {
				clash = true
				break
			}
		}
		pl.safe = !clash
	}
}

// allCandidates reports whether every row of the plan gets its candidate
// id: no value slugs to nothing, and the longest values make an id short
// enough.
func (pl *plan) allCandidates() bool {
	n := len(pl.base)
	for _, k := range pl.e.keys {
		longest := 0
		for _, s := range k.slugs {
			if s == "" {
				return false
			}
			longest = max(longest, len(s))
		}
		n += 1 + longest
	}
	return n <= maxIDLen
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

// idJob is a job whose id takes part in the uniqueness check.
type idJob struct {
	i    int    // its index
	pl   *plan  // a matrix row's plan; nil for a plain job
	rec  int32  // a plain job's record
	id   string // its id: a plain job's, a row's candidate or, when that cannot be built, its hash id
	cand bool   // a row's id is its candidate
}

// eachID calls f with the id of every plain job and of every row of a
// matrix plan that is not safe, in job order; the bytes are reused.
func (p *parser) eachID(f func(j idJob, id []byte) bool) {
	m := p.m
	var buf, scratch []byte
	for k := range m.parts {
		pt := &m.parts[k]
		if pt.pl == nil {
			for r := range pt.n {
				buf = append(buf[:0], m.recs[pt.rec+r].id...)
				if !f(idJob{i: pt.first + r, rec: int32(pt.rec + r)}, buf) {
					return
				}
			}
			continue
		}
		pl := pt.pl
		if pl.safe {
			continue
		}
		idx := make([]int, len(pl.e.keys))
		for r := range pt.n {
			if p.interrupted() {
				return
			}
			var ok bool
			buf, ok = appendRowID(buf[:0], pl.base, pl.e.keys, idx)
			if !ok {
				buf, scratch = pl.appendHashID(buf[:0], scratch, idx)
			}
			if !f(idJob{i: pt.first + r, pl: pl, rec: -1, cand: ok}, buf) {
				return
			}
			pl.next(idx)
		}
	}
}

// uniqueIDs settles the ids of matrix rows. A row keeps its candidate id
// (base-values) unless that id is taken by another job or could not be
// built; then it, and any other row that wanted the same id, takes
// base-HASH of its values instead (Manifest.moved lists the rows whose
// candidate was taken). Plain jobs' ids are unique already, but for a
// derived id that meets an explicit one.
//
// It keeps no id: it sorts a 64-bit hash of each, and only when two hashes
// meet does a second pass collect the jobs whose ids have them, to settle
// those with their texts.
func (p *parser) uniqueIDs() {
	seed := maphash.MakeSeed()
	n := 0
	for k := range p.m.parts {
		if pl := p.m.parts[k].pl; pl == nil || !pl.safe {
			n += p.m.parts[k].n
		}
	}
	hs := make([]uint64, 0, n)
	p.eachID(func(_ idJob, id []byte) bool {
		hs = append(hs, maphash.Bytes(seed, id))
		return true
	})
	slices.Sort(hs)
	var suspect []uint64
	for i := 1; i < len(hs); i++ {
		if hs[i] == hs[i-1] && (len(suspect) == 0 || suspect[len(suspect)-1] != hs[i]) {
			suspect = append(suspect, hs[i])
		}
	}
	for len(suspect) > 0 && !p.interrupted() {
		var jobs []idJob
		p.eachID(func(j idJob, id []byte) bool {
			if _, found := slices.BinarySearch(suspect, maphash.Bytes(seed, id)); found {
				j.id = string(id)
				jobs = append(jobs, j)
			}
			return true
		})
		probs, moved, given := p.settleIDs(jobs)
		// A hash id given to a row whose candidate was taken may meet an
		// id outside the suspects: settle again with it among them.
		more := false
		for _, id := range given {
			h := maphash.String(seed, id)
			if _, found := slices.BinarySearch(hs, h); found {
				if _, known := slices.BinarySearch(suspect, h); !known {
					suspect = append(suspect, h)
					slices.Sort(suspect)
					more = true
				}
			}
		}
		if !more {
			p.probs = append(p.probs, probs...)
			p.m.moved = moved
			return
		}
	}
}

// settleIDs gives the jobs (in job order; every other job's id is unlike
// theirs) their ids as uniqueIDs says, returning the problems, the rows
// whose candidate was taken, and the hash ids it gave them.
func (p *parser) settleIDs(jobs []idJob) (probs Errors, moved []int32, given []string) {
	x := make(map[string]int, len(jobs)) // id → the job in jobs that holds it
	cur := make([]string, len(jobs))     // each job's id as it is now; "" before a row gets one
	taken := func(id string) (int, bool) {
		k, ok := x[id]
		return k, ok && cur[k] == id
	}
	for k, j := range jobs {
		if j.pl == nil || j.cand {
			cur[k] = j.id
		}
		if j.pl != nil {
			continue
		}
		if prev, ok := taken(j.id); ok {
			rec, first := &p.m.recs[j.rec], &p.m.recs[jobs[prev].rec]
			probs = append(probs, Problem{File: p.file, Line: int(rec.line), Col: int(rec.col),
				Msg: fmt.Sprintf("jobs[%d]: id %s is also the id of the job at %d:%d; give one of them another id", rec.entry, j.id, first.line, first.col)})
			continue
		}
		x[j.id] = k
	}
	var rehash []int
	rehashed := map[int]bool{}
	for k, j := range jobs {
		if j.pl == nil {
			continue
		}
		if !j.cand {
			rehash = append(rehash, k)
			continue
		}
		prev, ok := taken(j.id)
		if !ok {
			x[j.id] = k
			continue
		}
		if jobs[prev].pl != nil && !rehashed[prev] {
			rehashed[prev] = true
			rehash = append(rehash, prev)
		}
		rehash = append(rehash, k)
	}
	slices.Sort(rehash)
	for _, k := range rehash {
		j := &jobs[k]
		id := j.id
		if j.cand {
			idx := make([]int, len(j.pl.e.keys))
			j.pl.rowIndex(j.i-j.pl.first, idx)
			b, _ := j.pl.appendHashID(nil, nil, idx)
			id = string(b)
		}
		if _, ok := taken(id); ok {
			e := j.pl.e
			probs = append(probs, Problem{File: p.file, Line: max(e.node.Line, 1), Col: max(e.node.Column, 1),
				Msg: "jobs: id " + id + " of a matrix row collides with another job's id; give the job a different id"})
			continue
		}
		cur[k] = id
		x[id] = k
		if j.cand {
			moved = append(moved, int32(j.i))
			given = append(given, id)
		}
	}
	return probs, moved, given
}

// appendHashID appends the hash id of the row idx to b: base, '-' and the
// first 12 hex digits of the SHA-256 of key=value and a zero byte for each
// of its values. It uses scratch, returned for reuse.
func (pl *plan) appendHashID(b, scratch []byte, idx []int) ([]byte, []byte) {
	scratch = scratch[:0]
	for d := range pl.e.keys {
		scratch = append(scratch, pl.e.keys[d].name...)
		scratch = append(scratch, '=')
		scratch = append(scratch, pl.e.keys[d].vals[idx[d]].text...)
		scratch = append(scratch, 0)
	}
	sum := sha256.Sum256(scratch)
	b = append(b, pl.base...)
	b = append(b, '-')
	return hex.AppendEncode(b, sum[:6]), scratch
}

// idSeen is the first entry with an explicit id.
type idSeen struct {
	id        string // as written
	key       string // lowercased
	entry     int32  // index in jobs
	line, col int32  // position of the id
	kept      bool   // the entry has no problems: its jobs are in the manifest
}

// idSet holds the explicit ids met, lowercased. It maps a 64-bit hash of
// each to its idSeen, so a million ids make a map without pointers; an id
// whose hash another holds goes to spill.
type idSet struct {
	seed  maphash.Seed
	at    map[uint64]int32
	spill map[string]int32
	seen  []idSeen
}

// find returns the idSeen of key (lowercased), or nil.
func (x *idSet) find(key string) *idSeen {
	if x.at == nil {
		return nil
	}
	k, ok := x.at[maphash.String(x.seed, key)]
	if ok && x.seen[k].key != key {
		k, ok = x.spill[key]
	}
	if !ok {
		return nil
	}
	return &x.seen[k]
}

// add adds s, whose key find does not know.
func (x *idSet) add(s idSeen, capacity int) {
	if x.at == nil {
		x.seed, x.at = maphash.MakeSeed(), make(map[uint64]int32, capacity)
		x.seen = make([]idSeen, 0, capacity)
	}
	k := int32(len(x.seen))
	x.seen = append(x.seen, s)
	h := maphash.String(x.seed, s.key)
	if _, taken := x.at[h]; !taken {
		x.at[h] = k
		return
	}
	if x.spill == nil {
		x.spill = map[string]int32{}
	}
	x.spill[s.key] = k
}

// explicitID reports an explicit id used twice, also one that differs only
// in case: ids name image files, and macOS and Windows file names ignore
// case. The later entry is marked bad.
func (p *parser) explicitID(e *entry) {
	if e.id == "" {
		return
	}
	key := strings.ToLower(e.id)
	first := p.ids.find(key)
	switch {
	case first == nil:
		p.ids.add(idSeen{id: e.id, key: key, entry: int32(e.index), line: int32(e.idNode.Line), col: int32(e.idNode.Column)}, p.entries)
		return
	case first.id == e.id:
		p.addf(e.idNode, "%s.id: duplicate id %q (also jobs[%d].id at %d:%d)", e.path, e.id, first.entry, first.line, first.col)
	default:
		p.addf(e.idNode, "%s.id: %q differs only in case from jobs[%d].id %q at %d:%d, and file names on macOS and Windows ignore case; use another id, e.g. %q",
			e.path, e.id, first.entry, first.id, first.line, first.col, e.id+"-2")
	}
	e.ok = false
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
