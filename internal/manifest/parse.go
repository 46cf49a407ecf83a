package manifest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaxFileSize is the largest manifest Load reads, in bytes: 512 MiB, room
// for a million explicit jobs with long prompts.
const MaxFileSize = 512 << 20

// MaxJobs is the most jobs a manifest may expand to; a matrix past it is a
// problem, not an attempt to allocate billions of jobs.
const MaxJobs = 2_000_000

// aliasBudget caps the YAML nodes reachable through aliases, so that a
// "billion laughs" document cannot make the walk explode.
const aliasBudget = 1 << 20

// Load reads the manifest at path and parses it (see Parse). A relative
// Output or CacheDir is joined to the manifest's folder. A path that is not a regular
// file, or is larger than MaxFileSize, gets an *InputError without being
// read. Once ctx is done Load stops reading or parsing and returns ctx's
// error.
func Load(ctx context.Context, path string) (*Manifest, error) {
	data, err := ReadFile(ctx, path, MaxFileSize)
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.As(err, new(*InputError)):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	m, err := newParser(ctx, path, filepath.Dir(path), MaxJobs).run(data)
	if err != nil {
		return nil, err
	}
	if m.Output != "" && !filepath.IsAbs(m.Output) {
		m.Output = filepath.Join(filepath.Dir(path), m.Output)
	}
	if m.CacheDir != "" && !filepath.IsAbs(m.CacheDir) {
		m.CacheDir = filepath.Join(filepath.Dir(path), m.CacheDir)
	}
	return m, nil
}

// Parse validates and expands the manifest in data; file names it in
// problems, and the image files its jobs take are relative to file's
// folder. Parse reads the header of each of those files (once per path,
// however many jobs name it) to check its format and size. On any problem
// it returns a nil Manifest and a *Errors holding every problem found,
// sorted by position.
func Parse(file string, data []byte) (*Manifest, error) {
	return parse(file, filepath.Dir(file), data, MaxJobs)
}

// parse is Parse with the folder image paths are relative to, and a job
// limit of its own (the fuzz test's is small).
func parse(file, dir string, data []byte, maxJobs int) (*Manifest, error) {
	return newParser(context.Background(), file, dir, maxJobs).run(data)
}

func newParser(ctx context.Context, file, dir string, maxJobs int) *parser {
	return &parser{ctx: ctx, file: file, dir: dir, maxJobs: maxJobs, sizes: map[*yaml.Node]int{},
		badDefault: make([]bool, len(settings.specs)), opInfos: map[string]*opInfo{},
		shapeIDs: map[string]int32{},
		files:    map[string]*fileInfo{}, statFile: statImage}
}

// run parses data, returning the manifest or every problem, or ctx's error
// once ctx is done.
func (p *parser) run(data []byte) (*Manifest, error) {
	if line, col, msg, ok := CheckText(data); !ok {
		// yaml.v3 would report it at 1:1.
		return nil, &Errors{{File: p.file, Line: line, Col: col, Msg: msg}}
	}
	m := p.parse(data)
	if err := p.ctx.Err(); err != nil {
		return nil, err
	}
	if len(p.probs) > 0 {
		errs := sortProblems(p.probs)
		return nil, &errs
	}
	return m, nil
}

// interrupted reports whether the parse must stop because ctx is done. It
// looks at ctx once every 1024 calls, so a loop over a million jobs may
// call it for each.
func (p *parser) interrupted() bool {
	if !p.halted && p.ticks%1024 == 0 {
		p.halted = p.ctx.Err() != nil
	}
	p.ticks++
	return p.halted
}

// parser collects problems while it walks one document.
type parser struct {
	ctx     context.Context // once done, the parse stops (see interrupted)
	halted  bool            // ctx was found done
	ticks   int             // calls of interrupted
	file    string
	maxJobs int // the most jobs the manifest may expand to
	probs   Errors
	// badDefault marks, by setting, what defaults (or, for engine and
	// service, the top level) got wrong, so jobs inheriting it are not
	// blamed again.
	badDefault []bool
	opInfos    map[string]*opInfo          // the Stable Image operations met, by service
	dir        string                      // the folder image paths are relative to
	files      map[string]*fileInfo        // the image files checked, by joined path
	statFile   func(path string) *fileInfo // statImage; a test counts the calls
	inputs     bool                        // some job takes an image input
	sizes      map[*yaml.Node]int          // subtree sizes of anchored nodes
	aliasWork  int                         // nodes reached through aliases so far
	bombed     bool                        // aliasBudget was exceeded and reported

	// What the entries read so far left for the checks that need every
	// job (see keep and finish).
	m        *Manifest
	total    int              // jobs so far
	entries  int              // the entries jobs lists
	ids      idSet            // explicit ids so far
	failed   []string         // explicit ids of entries with problems
	anyFail  bool             // some entry without an explicit id had problems
	inPos    []inputPos       // per plain job input (Manifest.ins): where it was written
	shapeIDs map[string]int32 // shape key → index in Manifest.shapes
	ops      opsSeen          // the operations of the entries, for unusedDefaults
	// Scratch space reused from entry to entry.
	entryBuf   entry  // the entry being read (see entry)
	planBuf    plan   // the plan of a job (see resolve)
	slotBuf    []slot // its prompts
	rBuf       layer  // a job's resolved settings (see resolve)
	pairBuf    []pair // the pairs of a mapping of settings (see settings)
	setBuf     layer  // a job's own settings (see entry)
	ownScratch []*value
	keyScratch []byte
	setScratch []uint32
}

// addf records a problem at n's position (1:1 when n is nil).
func (p *parser) addf(n *yaml.Node, format string, args ...any) {
	line, col := 1, 1
	if n != nil {
		line, col = max(n.Line, 1), max(n.Column, 1)
	}
	p.probs = append(p.probs, Problem{File: p.file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

// addAt records a problem at line and col.
func (p *parser) addAt(line, col int, format string, args ...any) {
	p.probs = append(p.probs, Problem{File: p.file, Line: max(line, 1), Col: max(col, 1), Msg: fmt.Sprintf(format, args...)})
}

var yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (p *parser) parse(data []byte) *Manifest {
	if len(bytes.TrimSpace(data)) == 0 {
		p.addf(nil, "manifest is empty")
		return nil
	}
	dec := yaml.NewDecoder(ctxReader{p.ctx, bytes.NewReader(data)})
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.addf(nil, "manifest is empty")
			return nil
		}
		p.yamlError(err)
		return nil
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		n := &next
		if err != nil {
			n = nil
		}
		p.addf(n, "manifest must be a single YAML document; found another after the first")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			p.addf(nil, "manifest is empty")
			return nil
		}
		root = root.Content[0]
	}
	root = p.deref(root)
	if root == nil {
		return nil
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		p.addf(root, "manifest is empty")
		return nil
	}
	if root.Kind != yaml.MappingNode {
		p.addf(root, "manifest must be a mapping of keys (version, engine, defaults, jobs...), got %s", describe(root))
		return nil
	}
	return p.manifest(root)
}

// yamlError turns a yaml.v3 syntax error into a problem with its line.
func (p *parser) yamlError(err error) {
	msg := err.Error()
	if m := yamlLineErr.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.probs = append(p.probs, Problem{File: p.file, Line: max(line, 1), Col: 1, Msg: "yaml: " + m[2]})
		return
	}
	p.addf(nil, "%s", msg)
}

// deref follows an alias to its anchored node, charging the anchored
// subtree to the alias budget. It returns nil (and reports) once the budget
// is spent.
func (p *parser) deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if n.Alias == nil || i > 8 {
			p.addf(n, "unresolvable alias")
			return nil
		}
		p.aliasWork += p.size(n.Alias, 0)
		if p.aliasWork > aliasBudget {
			if !p.bombed {
				p.addf(n, "too much aliasing: aliases expand to more than %d YAML nodes", aliasBudget)
				p.bombed = true
			}
			return nil
		}
		n = n.Alias
	}
	return n
}

// size counts the nodes under n with aliases expanded, saturating at
// aliasBudget+1 and memoised so a bomb is measured in linear time.
func (p *parser) size(n *yaml.Node, depth int) int {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || depth > 64 {
			return 1
		}
		return p.size(n.Alias, depth+1)
	}
	if len(n.Content) == 0 {
		return 1
	}
	if s, ok := p.sizes[n]; ok {
		return s
	}
	s := 1
	for _, c := range n.Content {
		s = min(s+p.size(c, depth+1), aliasBudget+1)
	}
	p.sizes[n] = s
	return s
}

// pair is one key/value of a mapping, aliases resolved.
type pair struct {
	key  string
	k, v *yaml.Node
}

// pairs lists a mapping's entries, reporting non-string and duplicate keys
// and merge keys (which we do not support).
func (p *parser) pairs(n *yaml.Node, path string) []pair {
	return p.appendPairs(make([]pair, 0, len(n.Content)/2), n, path)
}

// appendPairs is pairs appending to out.
func (p *parser) appendPairs(out []pair, n *yaml.Node, path string) []pair {
	// The keys met: a small mapping's are searched, a big one's mapped.
	var small [16]*yaml.Node
	keys := small[:0]
	var seen map[string]*yaml.Node
	if len(n.Content) > 2*len(small) {
		seen = make(map[string]*yaml.Node, len(n.Content)/2)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := p.deref(n.Content[i])
		if k == nil {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			p.addf(k, "%s: keys must be plain text, got %s", orRoot(path), describe(k))
			continue
		}
		if k.Tag == "!!merge" || k.Value == "<<" {
			p.addf(k, "%s: merge keys (<<) are not supported; put shared settings under defaults", join(path, "<<"))
			continue
		}
		if first := firstKey(keys, seen, k.Value); first != nil {
			p.addf(k, "%s: duplicate key (first at %d:%d)", join(path, k.Value), first.Line, first.Column)
			continue
		}
		if seen != nil {
			seen[k.Value] = k
		} else {
			keys = append(keys, k)
		}
		v := p.deref(n.Content[i+1])
		if v == nil {
			continue
		}
		out = append(out, pair{key: k.Value, k: k, v: v})
	}
	return out
}

// firstKey returns the key node named key met before: in seen when there
// is one, else among keys.
func firstKey(keys []*yaml.Node, seen map[string]*yaml.Node, key string) *yaml.Node {
	if seen != nil {
		return seen[key]
	}
	for _, k := range keys {
		if k.Value == key {
			return k
		}
	}
	return nil
}

func orRoot(path string) string {
	if path == "" {
		return "manifest"
	}
	return path
}

// join appends a key to a field path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// describe names a node's type for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.ShortTag() {
	case "!!null":
		return "null"
	case "!!int":
		return "an integer (" + n.Value + ")"
	case "!!float":
		return "a number (" + n.Value + ")"
	case "!!bool":
		return "a boolean (" + n.Value + ")"
	case "!!str":
		return strconv.Quote(clip(n.Value, 40))
	}
	return n.ShortTag() + " " + strconv.Quote(clip(n.Value, 40))
}

// clip shortens s to at most n runes for messages.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

// isScalar reports whether n is a non-null scalar.
func isScalar(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() != "!!null"
}

// str reads a string scalar.
func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.addf(n, "%s: must be a string, got %s", path, describe(n))
		return "", false
	}
	return n.Value, true
}

// integer reads an integer scalar in [lo, hi].
func (p *parser) integer(n *yaml.Node, path string, lo, hi int64) (int64, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		p.addf(n, "%s: must be an integer, got %s", path, describe(n))
		return 0, false
	}
	v, ok := plainInt(n.Value)
	if !ok {
		var x int64
		if err := n.Decode(&x); err != nil {
			p.addf(n, "%s: must be an integer from %d to %d, got %s", path, lo, hi, n.Value)
			return 0, false
		}
		v = x
	}
	if v < lo || v > hi {
		p.addf(n, "%s: must be from %d to %d, got %d", path, lo, hi, v)
		return 0, false
	}
	return v, true
}

// number reads an integer or decimal scalar in [lo, hi].
func (p *parser) number(n *yaml.Node, path string, lo, hi float64) (float64, bool) {
	tag := n.ShortTag()
	if n.Kind != yaml.ScalarNode || (tag != "!!int" && tag != "!!float") {
		p.addf(n, "%s: must be a number, got %s", path, describe(n))
		return 0, false
	}
	var v float64
	var err error
	if x, ok := plainInt(n.Value); ok && tag == "!!int" {
		v = float64(x) // as yaml.v3 decodes an integer into a float64
	} else if v, err = strconv.ParseFloat(n.Value, 64); err != nil || tag != "!!float" || !plainFloat(n.Value) {
		var x float64
		err = n.Decode(&x)
		v = x
	}
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		p.addf(n, "%s: must be a finite number, got %s", path, n.Value)
		return 0, false
	}
	if v < lo || v > hi {
		p.addf(n, "%s: must be from %g to %g, got %s", path, lo, hi, n.Value)
		return 0, false
	}
	return v, true
}

// plainInt reads a decimal integer written plainly (an optional '-', then
// digits without a leading zero), which yaml.v3 reads as strconv.ParseInt
// does; ok is false for any other form (0x1F, 0o17, 010, +5, 1_000), left
// to yaml.v3.
func plainInt(s string) (int64, bool) {
	d := strings.TrimPrefix(s, "-")
	if d == "" || len(d) > 1 && d[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

// plainFloat reports whether s is a decimal number written plainly
// (digits, '.', '-', '+', 'e', 'E'), which yaml.v3 reads as
// strconv.ParseFloat does.
func plainFloat(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9', c == '.', c == '-', c == '+', c == 'e', c == 'E':
		default:
			return false
		}
	}
	return s != ""
}

var budgetRe = regexp.MustCompile(`^[0-9]+(\.[0-9]{1,6})?$`)

// topKeys are the manifest's top-level keys, in documentation order.
var topKeys = []string{"version", "name", "engine", "service", "pricing", "budget", "output", "cache", "concurrency", "rate", "defaults", "jobs"}

func (p *parser) manifest(root *yaml.Node) *Manifest {
	m := &Manifest{Path: p.file, keyPos: map[string][2]int{}}
	var defaults *yaml.Node
	var jobs, jobsKey *yaml.Node
	var top layer
	for _, kv := range p.pairs(root, "") {
		m.keyPos[kv.key] = [2]int{kv.k.Line, kv.k.Column}
		if kv.key == "defaults" && kv.v.Kind != yaml.MappingNode {
			for i := range p.badDefault {
				p.badDefault[i] = true
			}
		}
		switch kv.key {
		case "version":
			if v, ok := p.integer(kv.v, "version", math.MinInt64, math.MaxInt64); ok && v != 1 {
				p.addf(kv.v, "version: must be 1, got %d", v)
			} else if ok {
				m.Version = 1
			}
		case "name":
			m.Name, _ = p.str(kv.v, "name")
		case "engine", "service":
			s := settings.byName[kv.key]
			if v, ok := p.setting(s, kv.v, kv.key); ok {
				v.origin, v.key = fromTop, kv.k
				top.put(v)
			} else {
				p.badDefault[s] = true
			}
		case "pricing":
			m.Pricing = p.nonBlank(kv.v, "pricing", "must name a price sheet")
		case "budget":
			m.Budget = p.budget(kv.v)
		case "output":
			m.Output = p.nonBlank(kv.v, "output", "must be a folder")
		case "cache":
			m.NoCache, m.CacheDir = p.cache(kv.v)
		case "concurrency":
			m.Concurrency = p.concurrency(kv.v)
		case "rate":
			m.Rate = p.rate(kv.v)
		case "defaults":
			defaults = kv.v
		case "jobs":
			jobs, jobsKey = kv.v, kv.k
		default:
			if _, ok := settings.byName[kv.key]; ok {
				p.addf(kv.k, "%s: unknown top-level key; job settings go under defaults or a job", kv.key)
			} else {
				p.addf(kv.k, "%s: unknown top-level key%s", kv.key, suggest(kv.key, topKeys))
			}
		}
	}
	if _, ok := m.keyPos["version"]; !ok {
		p.addf(root, "version: missing; add version: 1")
	}
	m.Engine, m.Service = top.get(sEngine).str, top.get(sService).str
	var def layer
	if defaults != nil {
		def = p.defaults(defaults)
	}
	p.inheritedOps(top, def)
	if jobs == nil {
		p.addf(root, "jobs: missing; add a list of jobs")
		return m
	}
	if jobs.Kind != yaml.SequenceNode {
		p.addf(jobs, "jobs: must be a list of jobs, got %s", describe(jobs))
		return m
	}
	if len(jobs.Content) == 0 {
		p.addf(jobs, "jobs: must list at least one job")
		return m
	}
	// Each entry is resolved and stored as it is read, and its YAML nodes
	// released, so the tree and the jobs are never held whole side by side.
	p.m = m
	m.recs = make([]plainJob, 0, len(jobs.Content))
	p.entries = len(jobs.Content)
	for i, n := range jobs.Content {
		if p.interrupted() {
			return nil
		}
		if e := p.entry(i, n); e != nil {
			p.explicitID(e)
			p.noteOps(e, top, def)
			p.keep(e, p.resolve(e, top, def))
		}
		jobs.Content[i] = nil
	}
	if p.interrupted() {
		return nil
	}
	p.unusedDefaults(def)
	if !p.finish(jobsKey) {
		m.parts, m.recs, m.shapes, m.own, m.ins = nil, nil, nil, nil, nil
	}
	return m
}

// nonBlank reads a string that must not be blank; want says what it should
// be. It returns "" after reporting a problem.
func (p *parser) nonBlank(n *yaml.Node, field, want string) string {
	s, ok := p.str(n, field)
	if ok && strings.TrimSpace(s) == "" {
		p.addf(n, "%s: %s, got an empty string", field, want)
		return ""
	}
	return s
}

// budget checks a credit ceiling: a non-negative decimal with at most six
// decimals, kept as written.
func (p *parser) budget(n *yaml.Node) string {
	tag := n.ShortTag()
	if n.Kind != yaml.ScalarNode || (tag != "!!int" && tag != "!!float") {
		p.addf(n, "budget: must be a number of credits, got %s", describe(n))
		return ""
	}
	if !budgetRe.MatchString(n.Value) {
		p.addf(n, "budget: must be a non-negative decimal with at most 6 decimals, got %s", n.Value)
		return ""
	}
	return n.Value
}

// cache reads the image cache's setting: false turns it off, true keeps
// the default folder, and a string names a folder. It returns off and the
// folder ("" for true, false or a problem).
func (p *parser) cache(n *yaml.Node) (off bool, dir string) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
		v, err := strconv.ParseBool(n.Value)
		if err == nil {
			return !v, ""
		}
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.addf(n, "cache: must be true, false or a folder, got %s", describe(n))
		return false, ""
	}
	return false, p.nonBlank(n, "cache", "must be true, false or a folder")
}

// concurrency checks "auto" or a positive integer.
func (p *parser) concurrency(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" && n.Value == "auto" {
		return "auto"
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		p.addf(n, "concurrency: must be auto or an integer of at least 1, got %s", describe(n))
		return ""
	}
	v, ok := p.integer(n, "concurrency", 1, math.MaxInt32)
	if !ok {
		return ""
	}
	return strconv.FormatInt(v, 10)
}

// rate checks N/DURATION, e.g. 150/10s.
func (p *parser) rate(n *yaml.Node) string {
	s, ok := p.str(n, "rate")
	if !ok {
		return ""
	}
	if _, _, err := ParseRate(s); err != nil { // the --rate flag's rules too
		p.addf(n, "rate: %v", err)
		return ""
	}
	return s
}
