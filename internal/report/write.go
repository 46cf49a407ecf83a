package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

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
//
// Every format but html streams: it reads p.Jobs in a pass or a few and
// writes as it goes, holding at most MaxJobRows jobs (html lists every job
// on one page, so it holds them). An error from p.Jobs may thus come after
// part of the output is written.
func WritePlanWidth(w io.Writer, format string, p *Plan, width int) error {
	var err error
	switch format {
	case FormatTable:
		err = planTable(w, p, width)
	case FormatJSON:
		err = planJSON(w, p)
	case FormatMarkdown:
		err = planMarkdown(w, p)
	case FormatCSV:
		err = planCSV(w, p)
	case FormatHTML:
		var buf bytes.Buffer
		if err = planHTML(&buf, p); err == nil {
			_, err = w.Write(buf.Bytes())
		}
	default:
		return fmt.Errorf("plan report: unknown format %q (want %s)", format, strings.Join(PlanFormats, ", "))
	}
	if err != nil {
		return fmt.Errorf("plan report: %s: %w", format, err)
	}
	return nil
}

// planJSON writes p as indented JSON whose last field is "jobs", each job
// compact on a line of its own (as json.Marshal writes it), as
// writeJobsJSON does, reading the jobs in one pass.
func planJSON(w io.Writer, p *Plan) error {
	h, err := json.MarshalIndent(p, "", "  ") // Jobs is not marshalled
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	bw.Write(h[:len(h)-len("\n}")])
	bw.WriteString(",\n  \"jobs\": [")
	var line []byte
	n := 0
	err = eachJob(p, func(_ int64, j *PlanJob) error {
		if n > 0 {
			bw.WriteByte(',')
		}
		n++
		bw.WriteString("\n    ")
		line = appendPlanJob(line[:0], j)
		_, err := bw.Write(line)
		return err
	})
	if err != nil {
		return err
	}
	if n > 0 {
		bw.WriteString("\n  ")
	}
	bw.WriteString("]\n}\n")
	return bw.Flush() // bufio keeps the first write error and returns it here
}

// WriteRun renders r to w in format: table, json (report.json itself),
// markdown, csv, junit or html. The output is the same for the same run;
// times come only from r. It writes as it reads r's jobs, one at a time
// when r.Rows holds them, so an error reading them may come after part of
// the output is written.
func WriteRun(w io.Writer, format string, r *Run) error {
	var err error
	switch format {
	case FormatTable:
		err = runTable(w, r)
	case FormatJSON:
		err = runJSON(w, r)
	case FormatMarkdown:
		err = runMarkdown(w, r)
	case FormatCSV:
		err = runCSV(w, r)
	case FormatJUnit:
		err = runJUnit(w, r)
	case FormatHTML:
		bw := bufio.NewWriterSize(w, 64<<10)
		if err = runHTML(bw, r); err == nil {
			err = bw.Flush()
		}
	default:
		return fmt.Errorf("run report: unknown format %q (want %s)", format, strings.Join(RunFormats, ", "))
	}
	if err != nil {
		return fmt.Errorf("run report: %s: %w", format, err)
	}
	return nil
}

// WriteDiff renders d to w in format: table, json or markdown (for a pull
// request comment: the single line "no cost change" when nothing changed).
// The table and Markdown come from what Diff summed; json lists every job
// that differs, reading both plans again (d.Each) as it writes.
func WriteDiff(w io.Writer, format string, d *DiffResult) error {
	var buf bytes.Buffer
	switch format {
	case FormatTable:
		diffTable(&buf, d)
	case FormatJSON:
		if err := diffJSON(w, d); err != nil {
			return fmt.Errorf("diff report: json: %w", err)
		}
		return nil
	case FormatMarkdown:
		diffMarkdown(&buf, d)
	default:
		return fmt.Errorf("diff report: unknown format %q (want %s)", format, strings.Join(DiffFormats, ", "))
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// diffJSON writes d as indented JSON, as json.Encoder with an indent of two
// spaces does, its "jobs" last and written as d.Each yields them.
func diffJSON(w io.Writer, d *DiffResult) error {
	h, err := json.MarshalIndent(d, "", "  ") // the jobs are not marshalled
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(h[:len(h)-len("\n}")])
	bw.WriteString(",\n  \"jobs\": [")
	n := 0
	err = d.Each(func(j *DiffJob) error {
		b, err := json.MarshalIndent(j, "    ", "  ")
		if err != nil {
			return err
		}
		if n > 0 {
			bw.WriteByte(',')
		}
		n++
		bw.WriteString("\n    ")
		_, err = bw.Write(b)
		return err
	})
	if err != nil {
		return err
	}
	if n > 0 {
		bw.WriteString("\n  ")
	}
	bw.WriteString("]\n}\n")
	return bw.Flush()
}

// writeJobsJSON streams an indented JSON object whose last field is "jobs":
// head (with Jobs nil) for every other field, then each of the n jobs
// compact on a line of its own, as row(i) returns it (JSON of one job, which
// writeJobsJSON does not keep). Plans and runs of a million jobs are written
// in a second or two without the whole document in memory, and stay easy to
// diff.
func writeJobsJSON(w io.Writer, head any, n int, row func(i int) ([]byte, error)) error {
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
	for i := range n {
		b, err := row(i)
		if err != nil {
			return err
		}
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString("\n    ")
		bw.Write(b)
	}
	if n > 0 {
		bw.WriteString("\n  ")
	}
	bw.WriteString("]\n}\n")
	return bw.Flush() // bufio keeps the first write error and returns it here
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

func planFacts(jobs []PlanJob) []jobFacts {
	out := make([]jobFacts, len(jobs))
	for i, j := range jobs {
		out[i] = jobFacts{j.ID, j.Group, j.op(), sizeText(j.Width, j.Height, j.AspectRatio), j.Steps, j.Samples, j.Credits, "", j.DependsOn}
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
		g.add(&j, groupOf)
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

func size(w, h int) string { return strconv.Itoa(w) + "x" + strconv.Itoa(h) }

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

// oneLine flattens s to a single line of at most max runes (0: no limit):
// its words joined by single blanks.
func oneLine(s string, max int) string {
	if !isOneLine(s) {
		s = strings.Join(strings.Fields(s), " ")
	}
	if max > 0 && len(s) > max && utf8.RuneCountInString(s) > max {
		r := []rune(s)
		return string(r[:max-1]) + "…"
	}
	return s
}

// isOneLine reports whether s is its words joined by single blanks, as
// oneLine would make it: most prompts are, and are then kept as they are.
func isOneLine(s string) bool {
	blank := true // a blank first would be cut
	for _, r := range s {
		switch {
		case r == ' ':
			if blank {
				return false
			}
			blank = true
		case unicode.IsSpace(r):
			return false
		default:
			blank = false
		}
	}
	return !blank || s == ""
}
