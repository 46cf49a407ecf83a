package report

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/cost"
)

// Output formats.
const (
	FormatTable    = "table"
	FormatJSON     = "json"
	FormatMarkdown = "markdown"
	FormatCSV      = "csv"
	FormatJUnit    = "junit"
	FormatHTML     = "html"
)

// MaxJobRows is the largest number of jobs the table and Markdown formats
// list one per row; bigger reports get one row per group instead (JSON and
// CSV always list every job).
const MaxJobRows = 40

// PlanFormats and RunFormats list the formats WritePlan and WriteRun accept;
// DiffFormats those WriteDiff accepts.
var (
	PlanFormats = []string{FormatTable, FormatJSON, FormatMarkdown, FormatCSV, FormatHTML}
	RunFormats  = []string{FormatTable, FormatJSON, FormatMarkdown, FormatCSV, FormatJUnit, FormatHTML}
	DiffFormats = []string{FormatTable, FormatJSON, FormatMarkdown}
)

// WritePlan renders p to w in format: table, json, markdown, csv or html
// (without images). The output is the same for the same plan. Prompts are
// shown in full; see WritePlanWidth.
func WritePlan(w io.Writer, format string, p *Plan) error {
	return WritePlanWidth(w, format, p, 0)
}

// WritePlanWidth is WritePlan with the table format's lines fitted to a
// terminal width columns wide: each job's prompt, the table's last column,
// is cut with "…" to fit, down to 24 runes however narrow the terminal
// (so a line may then be wider). A width of 0 means no limit. Widths are counted in runes, so
// East Asian wide characters may still overflow. The other formats always
// show prompts in full.
func WritePlanWidth(w io.Writer, format string, p *Plan, width int) error {
	var buf bytes.Buffer
	var err error
	switch format {
	case FormatTable:
		planTable(&buf, p, width)
	case FormatJSON:
		head := *p
		head.Jobs = nil
		if err := writeJobsJSON(w, &head, p.Jobs); err != nil {
			return fmt.Errorf("plan report: json: %w", err)
		}
		return nil
	case FormatMarkdown:
		planMarkdown(&buf, p)
	case FormatCSV:
		err = planCSV(&buf, p)
	case FormatHTML:
		err = planHTML(&buf, p)
	default:
		return fmt.Errorf("plan report: unknown format %q (want %s)", format, strings.Join(PlanFormats, ", "))
	}
	if err != nil {
		return fmt.Errorf("plan report: %s: %w", format, err)
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// WriteRun renders r to w in format: table, json (report.json itself),
// markdown, csv, junit or html. The output is the same for the same run;
// times come only from r.
func WriteRun(w io.Writer, format string, r *Run) error {
	var buf bytes.Buffer
	var err error
	switch format {
	case FormatTable:
		runTable(&buf, r)
	case FormatJSON:
		head := *r
		head.Jobs = nil
		if err := writeJobsJSON(w, &head, r.Jobs); err != nil {
			return fmt.Errorf("run report: json: %w", err)
		}
		return nil
	case FormatMarkdown:
		runMarkdown(&buf, r)
	case FormatCSV:
		err = runCSV(&buf, r)
	case FormatJUnit:
		err = runJUnit(&buf, r)
	case FormatHTML:
		err = runHTML(&buf, r)
	default:
		return fmt.Errorf("run report: unknown format %q (want %s)", format, strings.Join(RunFormats, ", "))
	}
	if err != nil {
		return fmt.Errorf("run report: %s: %w", format, err)
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// WriteDiff renders d to w in format: table, json or markdown (for a pull
// request comment: the single line "no cost change" when nothing changed).
func WriteDiff(w io.Writer, format string, d *DiffResult) error {
	var buf bytes.Buffer
	switch format {
	case FormatTable:
		diffTable(&buf, d)
	case FormatJSON:
		if err := writeJSON(&buf, d); err != nil {
			return fmt.Errorf("diff report: json: %w", err)
		}
	case FormatMarkdown:
		diffMarkdown(&buf, d)
	default:
		return fmt.Errorf("diff report: unknown format %q (want %s)", format, strings.Join(DiffFormats, ", "))
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// writeJobsJSON streams an indented JSON object whose last field is "jobs":
// head (with Jobs nil) for every other field, then each job compact on a
// line of its own. Plans and runs of a million jobs are written in a second
// or two without the whole document in memory, and stay easy to diff.
func writeJobsJSON[J any](w io.Writer, head any, jobs []J) error {
	h, err := json.MarshalIndent(head, "", "  ")
	if err != nil {
		return err
	}
	const tail = `"jobs": null` + "\n}"
	if !bytes.HasSuffix(h, []byte(tail)) {
		return fmt.Errorf("jobs must be the last field of %T", head)
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	bw.Write(h[:len(h)-len(tail)])
	bw.WriteString(`"jobs": [`)
	for i, j := range jobs {
		b, err := json.Marshal(j)
		if err != nil {
			return err
		}
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString("\n    ")
		bw.Write(b)
	}
	if len(jobs) > 0 {
		bw.WriteString("\n  ")
	}
	bw.WriteString("]\n}\n")
	return bw.Flush() // bufio keeps the first write error and returns it here
}

func writeJSON(buf *bytes.Buffer, v any) error {
	enc := json.NewEncoder(buf)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// jobFacts is what the grouped views need of a plan or run job.
type jobFacts struct {
	id, group, op string // op: engine, or service and model
	size          string // as sizeText shows it
	steps         int    // 0 for a Stable Image job
	samples       int
	credits       cost.Credits
	status        string   // "" for a plan job
	deps          []string // ids of the jobs it takes images from
}

func planFacts(p *Plan) []jobFacts {
	out := make([]jobFacts, len(p.Jobs))
	for i, j := range p.Jobs {
		out[i] = jobFacts{j.ID, j.Group, j.op(), sizeText(j.Width, j.Height, j.AspectRatio), j.Steps, j.Samples, j.Credits, "", j.DependsOn}
	}
	return out
}

func runFacts(r *Run) []jobFacts {
	out := make([]jobFacts, len(r.Jobs))
	for i, j := range r.Jobs {
		out[i] = jobFacts{j.ID, j.Group, j.op(), sizeText(j.Width, j.Height, j.AspectRatio), j.Steps, j.Samples, j.Credits, j.Status, j.DependsOn}
	}
	return out
}

// group summarises the jobs of one manifest entry.
type group struct {
	Name     string
	Jobs     int
	Images   int // samples summed
	Credits  cost.Credits
	Totals   Totals   // by status; zero for a plan
	ops      []string // distinct engines or services, in order of first appearance
	sizes    []string // distinct sizes, in order of first appearance
	from     []string // distinct groups its jobs take images from, in order of first appearance
	minSteps int      // over the v1 jobs; 0 when there are none
	maxSteps int
}

// groups summarises jobs by group, in order of each group's first job.
func groups(jobs []jobFacts) []*group {
	var out []*group
	byName := make(map[string]*group)
	groupOf := sourceGroups(jobs)
	for _, j := range jobs {
		g := byName[j.group]
		if g == nil {
			g = &group{Name: j.group}
			byName[j.group] = g
			out = append(out, g)
		}
		for _, id := range j.deps {
			// A source missing from the report (another shard's job) is
			// named by its id.
			if src := cmp.Or(groupOf[id], id); !slices.Contains(g.from, src) {
				g.from = append(g.from, src)
			}
		}
		g.Jobs++
		g.Images += j.samples
		g.Credits += j.credits
		g.Totals.count(j.status)
		if !slices.Contains(g.ops, j.op) {
			g.ops = append(g.ops, j.op)
		}
		if !slices.Contains(g.sizes, j.size) {
			g.sizes = append(g.sizes, j.size)
		}
		if j.steps > 0 {
			if g.minSteps == 0 {
				g.minSteps, g.maxSteps = j.steps, j.steps
			}
			g.minSteps, g.maxSteps = min(g.minSteps, j.steps), max(g.maxSteps, j.steps)
		}
	}
	return out
}

// sourceGroups maps the id of every job that another job takes images
// from to its group; nil when no job takes any.
func sourceGroups(jobs []jobFacts) map[string]string {
	var sources map[string]string
	for _, j := range jobs {
		for _, id := range j.deps {
			if sources == nil {
				sources = make(map[string]string)
			}
			sources[id] = ""
		}
	}
	if sources == nil {
		return nil
	}
	for _, j := range jobs {
		if g, ok := sources[j.id]; ok && g == "" {
			sources[j.id] = j.group
		}
	}
	return sources
}

// From lists the groups whose images the group's jobs take, e.g.
// "teapot" or "teapot, shelf"; "—" when they take none.
func (g *group) From() string { return orDash(list(g.from)) }

// Operation lists the group's engines and services, e.g. "sdxl" or
// "sdxl, generate/sd3 (sd3.5-flash)".
func (g *group) Operation() string { return list(g.ops) }

// Sizes lists the group's sizes, e.g. "1024x1024, 1344x768 (16:9)".
func (g *group) Sizes() string { return list(g.sizes) }

// Steps is the group's step count or range, e.g. "30" or "20–50"; "—" when
// no job of the group has steps (Stable Image jobs).
func (g *group) Steps() string {
	switch {
	case g.minSteps == 0:
		return "—"
	case g.minSteps == g.maxSteps:
		return strconv.Itoa(g.minSteps)
	}
	return fmt.Sprintf("%d–%d", g.minSteps, g.maxSteps)
}

// list joins up to three items and counts the rest.
func list(items []string) string {
	const shown = 3
	if len(items) <= shown {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s +%d more", strings.Join(items[:shown], ", "), len(items)-shown)
}

func (t *Totals) count(status string) {
	if status == "" {
		return
	}
	t.Jobs++
	switch status {
	case StatusSucceeded:
		t.Succeeded++
	case StatusFailed:
		t.Failed++
	case StatusFiltered:
		t.Filtered++
	case StatusSkipped:
		t.Skipped++
	}
}

func size(w, h int) string { return fmt.Sprintf("%dx%d", w, h) }

// images is the number of images a plan asks for.
func (p *Plan) images() int {
	n := 0
	for _, j := range p.Jobs {
		n += j.Samples
	}
	return n
}

// title names the report's subject: "name (manifest)" or the manifest.
func title(name, manifest string) string {
	switch {
	case name != "" && manifest != "":
		return name + " (" + manifest + ")"
	case name != "":
		return name
	case manifest != "":
		return manifest
	}
	return "batch"
}

// budgetText describes total against budget, e.g. "120.0 credits, 91.2
// left" or "20.0 credits, OVER by 8.8"; "none" when budget is nil.
func budgetText(total cost.Credits, budget *cost.Credits) string {
	switch {
	case budget == nil:
		return "none"
	case total > *budget:
		return fmt.Sprintf("%s credits, OVER by %s", budget, total-*budget)
	}
	return fmt.Sprintf("%s credits, %s left", budget, *budget-total)
}

// spent is what a run counts against its budget: credits charged plus
// those possibly billed, as the runner's ledger does.
func (r *Run) spent() cost.Credits { return r.ChargedCredits + r.PossiblyBilledCredits }

// Labels of the money figures, the same in every renderer (and in the
// README's account of them).
const (
	labelEstimated      = "estimated"
	labelCharged        = "charged (list price of completed results)"
	labelPossiblyBilled = "possibly billed (outcome unknown)"
	labelBalanceBefore  = "balance at start"
	// labelRunBudget says what a run's budget line counts: its "left" or
	// "OVER by" is after credits charged and possibly billed.
	labelRunBudget = "counting charged and possibly billed"
)

// hasDeps reports whether any job of the plan takes images from another
// job: only then do the tables get a "from" column.
func (p *Plan) hasDeps() bool {
	return slices.ContainsFunc(p.Jobs, func(j PlanJob) bool { return len(j.DependsOn) > 0 })
}

// hasPrompts reports whether any job of the plan has a prompt or a
// negative prompt: only then do the tables get a prompt column (plan files
// written before prompts were recorded have none).
func (p *Plan) hasPrompts() bool {
	return slices.ContainsFunc(p.Jobs, func(j PlanJob) bool { return j.Prompt != "" || j.NegativePrompt != "" })
}

// hasSettings reports whether any job of the plan sets a setting the tables
// show in their settings column.
func (p *Plan) hasSettings() bool {
	return slices.ContainsFunc(p.Jobs, func(j PlanJob) bool { return len(j.Settings) > 0 || j.OutputFormat != "" })
}

// firstPrompts maps each group to its first job's prompt text, as
// promptText shows it; nil when no job has a prompt.
func (p *Plan) firstPrompts() map[string]string {
	if !p.hasPrompts() {
		return nil
	}
	first := make(map[string]string)
	for _, j := range p.Jobs {
		if _, ok := first[j.Group]; !ok {
			first[j.Group] = promptText(j.Prompt, j.NegativePrompt)
		}
	}
	return first
}

// hasDeps reports whether any job of the run takes images from another job.
func (r *Run) hasDeps() bool {
	return slices.ContainsFunc(r.Jobs, func(j RunJob) bool { return len(j.DependsOn) > 0 })
}

// withFrom returns cells with from inserted as the second column when on,
// else cells unchanged: the tables of reports without dependencies keep
// their columns.
func withFrom(on bool, cells []string, from string) []string {
	if !on {
		return cells
	}
	return slices.Insert(cells, 1, from)
}

// fromText lists the jobs a job takes images from, e.g. "teapot" or
// "teapot, shelf-teal"; "—" when it takes none.
func fromText(ids []string) string { return orDash(strings.Join(ids, ", ")) }

// plural formats n with a singular or plural noun: "1 job", "3 jobs".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// promptText is a job's prompt and negative prompt in one line, e.g. "a
// red fox — negative: blurry"; "—" when it has neither.
func promptText(prompt, negative string) string {
	switch {
	case negative == "":
		return orDash(oneLine(prompt, 0))
	case prompt == "":
		return "negative: " + oneLine(negative, 0)
	}
	return oneLine(prompt, 0) + " — negative: " + oneLine(negative, 0)
}

// settingsText lists a job's settings, with its output format (which has
// no column of its own in the tables), e.g. "seed 42, style_preset
// photographic, output_format jpeg"; "" when there are none.
func settingsText(settings []Setting, outputFormat string) string {
	var b strings.Builder
	add := func(name, value string) {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(name + " " + oneLine(value, 0))
	}
	for _, s := range settings {
		add(s.Name, s.Value)
	}
	if outputFormat != "" {
		add("output_format", outputFormat)
	}
	return b.String()
}

// settingsCSV lists settings for a CSV cell, e.g. "seed=42;cfg_scale=4.5".
func settingsCSV(settings []Setting) string {
	parts := make([]string, len(settings))
	for i, s := range settings {
		parts[i] = s.Name + "=" + s.Value
	}
	return strings.Join(parts, ";")
}

// oneLine flattens s to a single line of at most max runes (0: no limit).
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); max > 0 && len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}
