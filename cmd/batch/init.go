package main

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/catalog"
	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/engine"
	"github.com/batch-tool/batch/internal/manifest"
)

// Starter manifests: `batch init` writes one for a Stable Image service or a
// v1 engine. Everything a starter sets comes from the catalogue (required
// fields, image inputs, combination rules, ranges and enums) or the engine
// table; only the example texts are written here. Before a starter is
// written it is parsed and priced as `batch plan` would, so one that would
// not plan is never written.

const (
	defaultInitFile    = "batch.yaml"
	defaultInitService = "generate/core"
	schemaFile         = "batch.schema.json" // the starter's yaml-language-server schema, beside it
	commentColumn      = 34                  // where trailing comments start, as in examples/
)

func (e *env) initCmd(args []string) error {
	fs := newFlagSet("init", "init [--service S | --engine E] [FILE]\n\nWrites a commented starter manifest to FILE (default "+defaultInitFile+"; - for stdout)\nthat plans and runs on the sandbox as it is. It never overwrites a file.", e.stderr)
	service := fs.String("service", "", "a starter for the Stable Image `service`, e.g. generate/sd3 or edit/inpaint (default "+defaultInitService+")")
	engineID := fs.String("engine", "", "a starter for the v1 `engine` instead, e.g. stable-diffusion-xl-1024-v1-0")
	if err := parseFlags(fs, args, 0, 1); err != nil {
		return err
	}
	if *service != "" && *engineID != "" {
		return usageErrorf("init: give --service or --engine, not both")
	}
	file := defaultInitFile
	if fs.NArg() == 1 {
		file = fs.Arg(0)
	}
	sheet, err := cost.LookupSheet(cost.DefaultSheet)
	if err != nil {
		return err
	}
	var st *starter
	if *engineID != "" {
		st, err = engineStarter(*engineID, sheet)
	} else {
		st, err = serviceStarter(cmp.Or(*service, defaultInitService), sheet)
	}
	if err != nil {
		return err
	}
	text, total, err := st.build(file, sheet)
	if err != nil {
		return err
	}
	if file == "-" {
		_, err := e.stdout.Write(text)
		return err
	}
	if err := writeNewFile(file, text); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "batch: wrote %s: %s, %s credits under %s. Next:\n  batch plan %s\n  batch run --sandbox %s\n",
		file, st.what, total, sheet.ID, shellQuote(file), shellQuote(file))
	return nil
}

// writeNewFile creates path with data, and never replaces a file: an
// existing path is a usage error (exit 2).
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	switch {
	case errors.Is(err, fs.ErrExist):
		return usageErrorf("init: %s already exists; it is left as it is (name another FILE, or - for stdout)", path)
	case errors.Is(err, fs.ErrNotExist):
		return usageErrorf("init: %v", err) // its folder does not exist
	case err != nil:
		return fmt.Errorf("init: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path) // a partial starter would not plan
		return fmt.Errorf("init: %w", err)
	}
	return nil
}

// starter is a starter manifest before it is written out.
type starter struct {
	what   string   // e.g. "Stable Image Core (generate/core)", for messages
	top    []entry  // the top-level keys after version and name, budget aside
	notes  []string // header paragraphs about this operation, one per element
	fields []entry  // defaults, when non-empty
	jobs   [][]entry
	// tail are comment lines under the last job: its other settings (a
	// key), ready to uncomment, and prose (no key).
	tail []entry
}

// entry is one "key: value  # comment" line; a key of "" writes the comment
// alone.
type entry struct{ key, value, comment string }

// sourceJob is a job a starter adds to make an image input its service
// needs, on SD 3.5 Flash: 1024×1024, small enough for every service's input
// limits, and the cheapest generation.
type sourceJob struct{ id, prompt, seed string }

// sourceJobs are the source jobs a starter may add, in the order its
// service's image inputs take them.
func sourceJobs() []sourceJob {
	return []sourceJob{
		{"teapot", "a glazed ceramic teapot on a wooden table, product photo", "11"},
		{"painting", "an impressionist oil painting of a flower garden", "12"},
	}
}

// serviceStarter is the starter of a Stable Image service: for a service
// that takes an image, a job that makes one and the service's job taking it
// with {from: …}; for the others, two jobs, one of them a small matrix.
func serviceStarter(service string, sheet *cost.Sheet) (*starter, error) {
	op, ok := catalog.Lookup(service)
	if !ok {
		return nil, usageErrorf("init: unknown service %q (services: %s)", service, strings.Join(catalog.Services(), ", "))
	}
	model := "" // a service with models is priced by its default one
	if f, ok := op.Field("model"); ok {
		model = f.Default
	}
	if _, err := sheet.ServicePrice(service, model); err != nil {
		return nil, usageErrorf("init: --service %s: %v", service, err)
	}
	st := &starter{
		what: fmt.Sprintf("%s (%s)", op.Title, op.Service),
		top:  []entry{{"service", op.Service, "every job's service, unless it names its own"}},
	}
	sources := sourceJobs()
	var main []entry
	set := map[string]bool{}
	images := 0 // image inputs taken from source jobs
	add := func(f *catalog.Field, value, comment string) {
		if f.Type == catalog.Image {
			src := sources[min(images, len(sources)-1)].id
			value, comment = "{from: "+src+"}", "the image job "+src+" makes (or a file beside this manifest)"
			images++
		}
		main = append(main, entry{f.Name, value, comment})
		set[f.Name] = true
	}
	for i := range op.Fields {
		if f := &op.Fields[i]; f.Required && !f.Derived {
			add(f, sampleValue(op.Service, f), "")
		}
	}
	for _, r := range op.Rules {
		if r.Kind != catalog.OneOf || anySet(set, r.Fields) {
			continue
		}
		// The first of the fields, with a value that counts as set (not
		// outpaint's default margin of 0).
		f, _ := op.Field(r.Fields[0])
		add(f, exampleValue(op.Service, f), "or "+strings.Join(r.Fields[1:], ", "))
	}
	if images == 0 {
		// A service that makes images from text: a plain job and a matrix.
		lighthouse := append([]entry{{"id", "lighthouse", ""}}, main...)
		lighthouse = append(lighthouse, entry{"seed", "42", "0, or none: the API picks one"})
		fox := []entry{{"id", "fox", ""}}
		for _, en := range main {
			if en.key == "prompt" {
				en.value = "a red fox sitting in fresh snow, {look}"
			}
			fox = append(fox, en)
		}
		fox = append(fox, entry{"matrix", "", "one job per row: {look} takes each value"},
			entry{"  look", "[wildlife photography, watercolour]", ""})
		st.jobs = [][]entry{lighthouse, fox}
	} else {
		for _, src := range sources[:min(images, len(sources))] {
			st.jobs = append(st.jobs, []entry{
				{"id", src.id, "makes an image for the last job: 1024×1024"},
				{"service", "generate/sd3", ""},
				{"model", "sd3.5-flash", ""},
				{"prompt", yamlText(src.prompt), ""},
				{"seed", src.seed, ""},
			})
		}
		id := sources[0].id + "-" + path.Base(op.Service)
		st.jobs = append(st.jobs, append([]entry{{"id", id, "starts once the job it takes an image from has succeeded"}}, main...))
		st.notes = append(st.notes, fmt.Sprintf("%s takes an image: a job before it makes one, and it takes that with {from: JOB_ID}. A job whose source fails is skipped at no cost.", op.Service))
	}
	if op.Async {
		st.notes = append(st.notes, fmt.Sprintf("%s answers asynchronously: batch submits the job, then polls for its result.", op.Service))
	}
	st.tail = otherSettings(op, st.jobs[len(st.jobs)-1])
	return st, nil
}

func anySet(set map[string]bool, names []string) bool {
	for _, n := range names {
		if set[n] {
			return true
		}
	}
	return false
}

// otherSettings are comment lines listing the settings of op that job does
// not set, each with a value it may take, ready to uncomment; and the
// service's combination rules.
func otherSettings(op *catalog.Operation, job []entry) []entry {
	set := map[string]bool{}
	for _, en := range job {
		set[en.key] = true
	}
	inRequires := map[string]bool{} // fields a rule ties to another; listed as rules
	for _, r := range op.Rules {
		if r.Kind == catalog.Requires {
			inRequires[r.If] = true
			for _, f := range r.Fields {
				inRequires[f] = true
			}
		}
	}
	var lines []entry
	var images []string
	for i := range op.Fields {
		f := &op.Fields[i]
		switch {
		case f.Derived || set[f.Name]:
		case f.Type == catalog.Image:
			images = append(images, f.Name)
		case !inRequires[f.Name]:
			lines = append(lines, entry{f.Name, sampleValue(op.Service, f), describe(f)})
		}
	}
	if len(lines) > 0 {
		lines = append([]entry{prose("Other settings of %s (uncomment to use; the value shown is the API's default where it has one):", op.Service)}, lines...)
	}
	if len(images) > 0 {
		lines = append(lines, prose("Image inputs it may also take: %s (a file beside this manifest, or {from: JOB_ID}).", strings.Join(images, ", ")))
	}
	for _, r := range op.Rules {
		switch r.Kind {
		case catalog.Requires:
			lines = append(lines, prose("With %s, set %s too.", r.If, strings.Join(r.Fields, ", ")))
		case catalog.Excludes:
			lines = append(lines, prose("With %s, leave out %s: %s.", r.If, strings.Join(r.Fields, ", "), r.Why))
		case catalog.OneOf:
			lines = append(lines, prose("Set at least one of %s: %s.", strings.Join(r.Fields, ", "), r.Why))
		}
	}
	return lines
}

// prose is a comment line of a starter's tail.
func prose(format string, a ...any) entry { return entry{comment: fmt.Sprintf(format, a...)} }

// sampleValue is a value of f a starter can use: the API's default, else
// an example.
func sampleValue(service string, f *catalog.Field) string {
	switch f.Type {
	case catalog.Enum:
		if f.Default != "" {
			return yamlText(f.Default)
		}
		return yamlText(f.Enum[0])
	case catalog.Integer, catalog.Number:
		if f.Default != "" {
			return f.Default
		}
		if f.Type == catalog.Integer {
			return number(max(f.Min, min(f.Max, 256))) // e.g. outpaint's margins, in pixels
		}
		return number((f.Min + f.Max) / 2)
	}
	return yamlText(sampleText(service, f.Name))
}

// exampleValue is sampleValue, but a number other than the API's default:
// a value that counts as set.
func exampleValue(service string, f *catalog.Field) string {
	if f.Type == catalog.Integer || f.Type == catalog.Number {
		g := *f
		g.Default = ""
		return sampleValue(service, &g)
	}
	return sampleValue(service, f)
}

// sampleText is an example for a text field of a service.
func sampleText(service, field string) string {
	switch field {
	case "negative_prompt":
		return "blurry, low quality, watermark"
	case "select_prompt":
		return "the teapot"
	case "search_prompt":
		return "teapot"
	case "background_prompt":
		return "a sunlit kitchen counter by a window"
	case "foreground_prompt":
		return "a glazed ceramic teapot"
	}
	switch {
	case strings.HasPrefix(service, "generate/"):
		return "a lighthouse on a rocky coast at sunset, oil painting"
	case service == "edit/inpaint":
		return "a small potted cactus"
	case service == "edit/outpaint":
		return "a wooden table in a bright kitchen"
	case service == "edit/search-and-recolor":
		return "a deep teal glaze"
	case service == "edit/search-and-replace":
		return "a copper kettle"
	case strings.HasPrefix(service, "control/"):
		return "a watercolour painting of a teapot on a kitchen shelf"
	}
	return "a glazed ceramic teapot on a wooden table, crisp detail"
}

// describe says what values f takes, e.g. "from 0 to 1" or "one of png,
// jpeg, webp".
func describe(f *catalog.Field) string {
	switch f.Type {
	case catalog.Enum:
		return oneOf(f.Enum)
	case catalog.Integer, catalog.Number:
		d := "from " + number(f.Min) + " to " + number(f.Max)
		if f.Name == "seed" {
			d += "; 0 picks a random one"
		}
		return d
	}
	return "text"
}

// oneOf lists values, the first six when there are more than nine.
func oneOf(values []string) string {
	if len(values) > 9 {
		return "one of " + strings.Join(values[:6], ", ") + ", … (" + strconv.Itoa(len(values)) + " values; the schema lists them)"
	}
	return "one of " + strings.Join(values, ", ")
}

func number(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// engineStarter is the starter of a v1 engine the sheet prices: two jobs,
// one of them a small matrix, at the engine's default size and steps.
func engineStarter(id string, sheet *cost.Sheet) (*starter, error) {
	var priced []string
	var eng engine.Engine
	for _, en := range engine.All() {
		if _, err := sheet.ImagePrice(en.ID, en.DefaultSize[0], en.DefaultSize[1], en.DefaultSteps); err == nil {
			priced = append(priced, en.ID)
			if en.ID == id {
				eng = en
			}
		}
	}
	if eng.ID == "" {
		return nil, usageErrorf("init: --engine %q: the current price sheet, %s, prices %s", id, sheet.ID, strings.Join(priced, ", "))
	}
	st := &starter{
		what: fmt.Sprintf("%s (%s)", eng.Name, eng.ID),
		top:  []entry{{"engine", eng.ID, "every job's v1 engine, unless it names its own"}},
		fields: []entry{
			{"width", strconv.Itoa(eng.DefaultSize[0]), ""},
			{"height", strconv.Itoa(eng.DefaultSize[1]), ""},
			{"steps", strconv.Itoa(eng.DefaultSteps), "from " + strconv.Itoa(eng.MinSteps) + " to " + strconv.Itoa(eng.MaxSteps)},
		},
		jobs: [][]entry{
			{
				{"id", "lighthouse", ""},
				{"prompt", "a lighthouse on a rocky coast at sunset, oil painting", ""},
				{"seed", "42", "0, or none: the API picks one"},
			},
			{
				{"id", "fox", ""},
				{"prompt", "a red fox sitting in fresh snow, {look}", ""},
				{"matrix", "", "one job per row: {look} takes each value"},
				{"  look", "[wildlife photography, watercolour]", ""},
			},
		},
	}
	st.tail = []entry{
		prose("Other settings of %s (uncomment to use):", eng.ID),
		{"negative_prompt", yamlText(sampleText("", "negative_prompt")), "text"},
		{"samples", "1", "images per request, from 1 to 10; each is paid"},
		{"cfg_scale", "7", "from 0 to 35; 7 when unset"},
		{"sampler", engine.Samplers()[0], oneOf(engine.Samplers())},
		{"style_preset", "photographic", oneOf(engine.StylePresets())},
		{"clip_guidance_preset", "NONE", oneOf(engine.ClipGuidancePresets())},
	}
	if eng.Size == engine.SDXLList {
		var sizes []string
		for _, s := range engine.SDXLSizes() {
			sizes = append(sizes, fmt.Sprintf("%dx%d", s[0], s[1]))
		}
		st.tail = append(st.tail, prose("Sizes (width x height) it takes: %s.", strings.Join(sizes, ", ")))
	}
	return st, nil
}

// build renders the starter for file ("-": stdout), sets its budget to its
// estimate rounded up to a whole credit, and checks that it parses and
// prices as `batch plan` would. It returns the text and the estimate.
func (st *starter) build(file string, sheet *cost.Sheet) ([]byte, cost.Credits, error) {
	total, err := st.check(file, sheet, st.render(file, ""))
	if err != nil {
		return nil, 0, err
	}
	budget := (total + cost.Credit - 1) / cost.Credit
	text := st.render(file, strconv.FormatInt(int64(budget), 10))
	if _, err := st.check(file, sheet, text); err != nil {
		return nil, 0, err
	}
	return text, total, nil
}

// check parses and prices text as the manifest at file.
func (st *starter) check(file string, sheet *cost.Sheet, text []byte) (cost.Credits, error) {
	name := file
	if file == "-" {
		name = defaultInitFile
	}
	m, err := manifest.Parse(name, text)
	if err != nil {
		return 0, fmt.Errorf("init: the starter for %s does not plan (a bug in batch):\n%w", st.what, err)
	}
	est, err := cost.Estimate(slices.Collect(jobsOf(m)), sheet)
	if err != nil {
		return 0, fmt.Errorf("init: the starter for %s cannot be priced (a bug in batch): %w", st.what, err)
	}
	return est.Total, nil
}

// render writes the starter as the manifest at file with the given budget
// ("" for none).
func (st *starter) render(file, budget string) []byte {
	var b strings.Builder
	manifestArg, schemaPath, name, out := "MANIFEST", schemaFile, "starter", "out/NAME (NAME: this file's name without .yaml)"
	if file != "-" {
		manifestArg = shellQuote(file)
		schemaPath = shellQuote(filepath.ToSlash(filepath.Join(filepath.Dir(file), schemaFile)))
		name = strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
		out = "out/" + name + "/"
	}
	comment := func(text string) {
		if text == "" {
			b.WriteString("#\n")
			return
		}
		for _, l := range wrap(text, 76) {
			b.WriteString("# " + l + "\n")
		}
	}
	b.WriteString("# yaml-language-server: $schema=" + schemaFile + "\n#\n")
	comment("A starter manifest for " + st.what + ", written by 'batch init'. It plans, and runs against the sandbox, as it is:")
	comment("")
	cmds := [][2]string{
		{"batch plan " + manifestArg, "what it costs; no key, no network"},
		{"batch run --sandbox " + manifestArg, "the whole run against a local sandbox"},
		{"STABILITY_API_KEY=sk-... batch run " + manifestArg, "for real"},
	}
	for _, c := range cmds {
		b.WriteString("#   " + pad(c[0], len(cmds[2][0])+2) + "# " + c[1] + "\n")
	}
	comment("")
	comment("Images, the report and the journal go to " + out + " beside this file.")
	for _, n := range st.notes {
		comment("")
		comment(n)
	}
	comment("")
	comment("The first line lets editors with a YAML language server (VS Code's YAML extension, for one) check and complete this file as you type, once the schema it names is beside this file:")
	comment("")
	b.WriteString("#   batch schema > " + schemaPath + "\n")
	b.WriteString("version: 1\n")
	b.WriteString(line(entry{"name", yamlText(name), ""}) + "\n")
	for _, en := range st.top {
		b.WriteString(line(en) + "\n")
	}
	if budget != "" {
		b.WriteString(line(entry{"budget", budget, "credits: a plan or run that would cost more is refused"}) + "\n")
	}
	if len(st.fields) > 0 {
		b.WriteString(line(entry{"defaults", "", "settings every job takes, unless it sets its own"}) + "\n")
		for _, en := range st.fields {
			en.key = "  " + en.key
			b.WriteString(line(en) + "\n")
		}
	}
	b.WriteString("jobs:\n")
	for _, job := range st.jobs {
		for i, en := range job {
			prefix := "    "
			if i == 0 {
				prefix = "  - "
			}
			en.key = prefix + en.key
			b.WriteString(line(en) + "\n")
		}
	}
	for _, en := range st.tail {
		if en.key != "" {
			b.WriteString("    # " + line(en) + "\n") // a setting, ready to uncomment
			continue
		}
		for _, w := range wrap(en.comment, 72) {
			b.WriteString("    # " + w + "\n")
		}
	}
	return []byte(b.String())
}

// line writes "key: value" with its comment at commentColumn.
func line(en entry) string {
	s := en.key + ":"
	if en.value != "" {
		s += " " + en.value
	}
	if en.comment == "" {
		return s
	}
	return pad(s, commentColumn) + "# " + en.comment
}

// pad adds spaces to s up to width characters, and at least one.
func pad(s string, width int) string {
	n := width - len([]rune(s))
	return s + strings.Repeat(" ", max(n, 1))
}

// wrap breaks text into lines of at most width characters, at spaces.
func wrap(text string, width int) []string {
	var lines []string
	cur := ""
	for _, w := range strings.Fields(text) {
		switch {
		case cur == "":
			cur = w
		case len([]rune(cur))+1+len([]rune(w)) > width:
			lines = append(lines, cur)
			cur = w
		default:
			cur += " " + w
		}
	}
	return append(lines, cur)
}

// yamlText writes s as a YAML scalar: plain when YAML reads it back as that
// string, else double-quoted.
func yamlText(s string) string {
	plain := s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(" ,.-_", r))
	}) < 0
	first := s
	if plain {
		first = s[:1]
	}
	switch {
	case !plain, strings.ContainsAny(first, "-0123456789.,"), s != strings.TrimSpace(s):
		return strconv.Quote(s)
	}
	switch strings.ToLower(s) {
	case "true", "false", "yes", "no", "on", "off", "y", "n", "null":
		return strconv.Quote(s)
	}
	return s
}
