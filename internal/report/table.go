package report

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/batch-tool/batch/internal/cost"
)

// table collects rows and writes them to buf as aligned plain-text
// columns, with no trailing spaces.
type table struct {
	buf  *bytes.Buffer
	rows bytes.Buffer
	tw   *tabwriter.Writer
}

func tableWriter(buf *bytes.Buffer) *table {
	t := &table{buf: buf}
	t.tw = tabwriter.NewWriter(&t.rows, 0, 0, tablePadding, ' ', 0)
	return t
}

// Flush writes the aligned rows.
func (t *table) Flush() {
	t.tw.Flush()
	for line := range strings.Lines(t.rows.String()) {
		t.buf.WriteString(strings.TrimRight(line, " \n") + "\n")
	}
}

func row(t *table, cells ...string) {
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func planTable(buf *bytes.Buffer, p *Plan, width int) {
	fmt.Fprintf(buf, "Plan: %s\n", title(p.Name, p.Manifest))
	fmt.Fprintf(buf, "Pricing: %s", p.Pricing)
	if p.Shard != "" {
		fmt.Fprintf(buf, "  Shard: %s", p.Shard)
	}
	buf.WriteString("\n\n")
	deps := p.hasDeps()
	var rows [][]string
	prompts := p.hasPrompts()
	if len(p.Jobs) <= MaxJobRows {
		settings := p.hasSettings()
		rows = append(rows, withText(settings, prompts, withFrom(deps, []string{"JOB", "ENGINE / SERVICE", "SIZE", "STEPS", "SAMPLES", "CREDITS"}, "FROM"), "SETTINGS", "PROMPT"))
		for _, j := range p.Jobs {
			rows = append(rows, withText(settings, prompts, withFrom(deps, []string{j.ID, j.op(), sizeText(j.Width, j.Height, j.AspectRatio), stepsText(j.Steps),
				strconv.Itoa(j.Samples), j.Credits.String()}, fromText(j.DependsOn)), orDash(settingsText(j.Settings, j.OutputFormat)), promptText(j.Prompt, j.NegativePrompt)))
		}
	} else {
		// A group's jobs may differ in prompt (a matrix over it); the
		// first one stands for the group.
		first := p.firstPrompts()
		rows = append(rows, withText(false, prompts, withFrom(deps, []string{"GROUP", "JOBS", "ENGINE / SERVICE", "SIZES", "STEPS", "IMAGES", "CREDITS"}, "FROM"), "", "PROMPT (FIRST JOB)"))
		for _, g := range groups(planFacts(p)) {
			rows = append(rows, withText(false, prompts, withFrom(deps, []string{g.Name, strconv.Itoa(g.Jobs), g.Operation(), g.Sizes(), g.Steps(),
				strconv.Itoa(g.Images), g.Credits.String()}, g.From()), "", first[g.Name]))
		}
	}
	if prompts {
		fitLastColumn(rows, width)
	}
	tw := tableWriter(buf)
	for _, r := range rows {
		row(tw, r...)
	}
	tw.Flush()
	fmt.Fprintf(buf, "\n%s: %s credits (%s) for %s, %s\n", capital(labelEstimated), p.TotalCredits, p.TotalCredits.USD(), plural(len(p.Jobs), "job"), plural(p.images(), "image"))
	fmt.Fprintf(buf, "Budget: %s\n", budgetText(p.TotalCredits, p.Budget))
}

// withText returns cells with the settings cell appended when settingsOn
// and the prompt cell when promptOn: a plan whose jobs set no settings, or
// have no prompts (a plan file written before they were recorded), keeps
// its columns.
func withText(settingsOn, promptOn bool, cells []string, settings, prompt string) []string {
	if settingsOn {
		cells = append(cells, settings)
	}
	if promptOn {
		cells = append(cells, prompt)
	}
	return cells
}

// tablePadding is the number of blanks between two table columns.
const tablePadding = 2

// minFitted is the fewest runes fitLastColumn leaves a cell, however
// narrow the terminal: enough to recognise a prompt.
const minFitted = 24

// fitLastColumn cuts the last cell of every row (prompts, in the plan's
// table) with "…" so that no line of the aligned table is wider than width
// runes, keeping at least minFitted; width 0 means no limit. Every last
// cell is flattened to one line either way.
func fitLastColumn(rows [][]string, width int) {
	if len(rows) == 0 {
		return
	}
	last := len(rows[0]) - 1
	room := 0
	if width > 0 {
		used := 0
		for c := range last {
			w := 0
			for _, r := range rows {
				w = max(w, utf8.RuneCountInString(r[c]))
			}
			used += w + tablePadding
		}
		room = max(width-used, minFitted)
	}
	for _, r := range rows {
		r[last] = oneLine(r[last], room)
	}
}

func runTable(buf *bytes.Buffer, r *Run) {
	fmt.Fprintf(buf, "Run: %s\n", title(r.Name, r.Manifest))
	fmt.Fprintf(buf, "Pricing: %s", r.Pricing)
	if r.Shard != "" {
		fmt.Fprintf(buf, "  Shard: %s", r.Shard)
	}
	if span := timeSpan(r); span != "" {
		fmt.Fprintf(buf, "  Time: %s", span)
	}
	buf.WriteString("\n\n")
	tw := tableWriter(buf)
	deps := r.hasDeps()
	if len(r.Jobs) <= MaxJobRows {
		row(tw, withFrom(deps, []string{"JOB", "STATUS", "ENGINE / SERVICE", "SIZE", "STEPS", "SAMPLES", "ATTEMPTS", "CHARGED", "ERROR"}, "FROM")...)
		for _, j := range r.Jobs {
			row(tw, withFrom(deps, []string{j.ID, statusText(j), j.op(), sizeText(j.Width, j.Height, j.AspectRatio), stepsText(j.Steps),
				strconv.Itoa(j.Samples), strconv.Itoa(j.Attempts), j.Credits.String(), oneLine(j.Error, 60)}, fromText(j.DependsOn))...)
		}
	} else {
		row(tw, withFrom(deps, []string{"GROUP", "JOBS", "SUCCEEDED", "FAILED", "FILTERED", "SKIPPED", "ENGINE / SERVICE", "SIZES", "STEPS", "CHARGED"}, "FROM")...)
		for _, g := range groups(runFacts(r)) {
			t := g.Totals
			row(tw, withFrom(deps, []string{g.Name, strconv.Itoa(g.Jobs), strconv.Itoa(t.Succeeded), strconv.Itoa(t.Failed), strconv.Itoa(t.Filtered),
				strconv.Itoa(t.Skipped), g.Operation(), g.Sizes(), g.Steps(), g.Credits.String()}, g.From())...)
		}
	}
	tw.Flush()
	buf.WriteString("\n")
	fmt.Fprintf(buf, "Jobs: %s\n", statusCounts(r.Totals))
	fmt.Fprintf(buf, "%s: %s\n", capital(labelCharged), creditsText(r.ChargedCredits))
	fmt.Fprintf(buf, "%s: %s\n", capital(labelPossiblyBilled), creditsText(r.PossiblyBilledCredits))
	fmt.Fprintf(buf, "%s: %s\n", capital(labelEstimated), creditsText(r.EstimatedCredits))
	fmt.Fprintf(buf, "Budget: %s\n", runBudgetText(r))
	if r.BalanceBefore != nil {
		fmt.Fprintf(buf, "%s: %s credits\n", capital(labelBalanceBefore), r.BalanceBefore)
	}
	if r.Interrupted {
		buf.WriteString("Interrupted: rerun with the same --out to resume\n")
	}
}

func diffTable(buf *bytes.Buffer, d *DiffResult) {
	if d.Base == d.Head {
		fmt.Fprintf(buf, "Diff: %s (base → head)\n", d.Head)
	} else {
		fmt.Fprintf(buf, "Diff: %s → %s\n", d.Base, d.Head)
	}
	if d.BasePricing != d.HeadPricing {
		fmt.Fprintf(buf, "Pricing: %s → %s\n", d.BasePricing, d.HeadPricing)
	}
	buf.WriteString("\n")
	if len(d.Jobs) > 0 {
		tw := tableWriter(buf)
		if len(d.Jobs) <= MaxJobRows {
			row(tw, "JOB", "CHANGE", "BASE", "HEAD", "DELTA", "DETAIL")
			for _, j := range d.Jobs {
				row(tw, j.ID, j.Change, j.baseText(), j.headText(), signed(j.DeltaCredits), j.Detail)
			}
		} else {
			row(tw, "GROUP", "ADDED", "REMOVED", "CHANGED", "BASE", "HEAD", "DELTA")
			for _, g := range diffGroups(d) {
				row(tw, g.Name, strconv.Itoa(g.Added), strconv.Itoa(g.Removed), strconv.Itoa(g.Changed),
					g.Base.String(), g.Head.String(), signed(g.Head-g.Base))
			}
		}
		tw.Flush()
		buf.WriteString("\n")
	}
	fmt.Fprintf(buf, "%s: %s → %s credits, %s\n", capital(labelEstimated), d.BaseTotalCredits, d.HeadTotalCredits, deltaText(d))
	if d.HeadBudget != nil {
		fmt.Fprintf(buf, "Budget: %s\n", budgetText(d.HeadTotalCredits, d.HeadBudget))
	}
}

// deltaText describes a diff's total change, e.g. "+4.8 credits (+$0.048,
// +20.0%)" or "no cost change".
func deltaText(d *DiffResult) string {
	if d.TotalDeltaCredits == 0 {
		return "no cost change"
	}
	s := signed(d.TotalDeltaCredits) + " credits (" + signedUSD(d.TotalDeltaCredits)
	if p := percentText(d.TotalDeltaCredits, d.BaseTotalCredits); p != "" {
		s += ", " + p
	}
	return s + ")"
}

// diffGroup sums a diff by group.
type diffGroup struct {
	Name                    string
	Added, Removed, Changed int
	Base, Head              cost.Credits
}

// diffGroups sums the changed jobs of d by group, in order of first mention.
func diffGroups(d *DiffResult) []*diffGroup {
	var out []*diffGroup
	byName := make(map[string]*diffGroup)
	for _, j := range d.Jobs {
		g := byName[j.Group]
		if g == nil {
			g = &diffGroup{Name: j.Group}
			byName[j.Group] = g
			out = append(out, g)
		}
		switch j.Change {
		case ChangeAdded:
			g.Added++
		case ChangeRemoved:
			g.Removed++
		default:
			g.Changed++
		}
		g.Base += j.BaseCredits
		g.Head += j.HeadCredits
	}
	return out
}

// statusText is a job's status, with why it failed ("failed: moderated")
// and marked when an earlier run finished it.
func statusText(j RunJob) string {
	s := j.Status
	if j.Failure != "" {
		s += ": " + j.Failure
	}
	if j.Resumed {
		s += " (resumed)"
	}
	return s
}

// statusCounts is e.g. "12 — 10 succeeded, 1 failed, 1 filtered, 0 skipped".
func statusCounts(t Totals) string {
	return fmt.Sprintf("%d — %d succeeded, %d failed, %d filtered, %d skipped", t.Jobs, t.Succeeded, t.Failed, t.Filtered, t.Skipped)
}

// runBudgetText is a run's budget against what it counts, credits charged
// and possibly billed, e.g. "30.0 credits, 11.5 left, counting charged and
// possibly billed"; "none" when there is no budget.
func runBudgetText(r *Run) string {
	if r.Budget == nil {
		return budgetText(r.spent(), nil)
	}
	return budgetText(r.spent(), r.Budget) + ", " + labelRunBudget
}

// creditsText is e.g. "19.8 credits ($0.198)".
func creditsText(c cost.Credits) string {
	return c.String() + " credits (" + c.USD() + ")"
}

// capital returns s with its first letter upper-case.
func capital(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// timeSpan is the run's start, finish and duration in UTC, e.g.
// "2026-11-25 06:00:00 → 06:05:00 UTC (5m0s)", or "" when unknown.
func timeSpan(r *Run) string {
	if r.StartedAt.IsZero() {
		return ""
	}
	start := r.StartedAt.UTC()
	s := start.Format("2006-01-02 15:04:05")
	if r.FinishedAt.IsZero() {
		return s + " UTC"
	}
	end := r.FinishedAt.UTC()
	layout := "15:04:05"
	if end.YearDay() != start.YearDay() || end.Year() != start.Year() {
		layout = "2006-01-02 15:04:05"
	}
	return fmt.Sprintf("%s → %s UTC (%s)", s, end.Format(layout), end.Sub(start).Round(time.Second))
}

// baseText is the job's base credits, or "—" when it was added.
func (j DiffJob) baseText() string {
	if j.Change == ChangeAdded {
		return "—"
	}
	return j.BaseCredits.String()
}

// headText is the job's head credits, or "—" when it was removed.
func (j DiffJob) headText() string {
	if j.Change == ChangeRemoved {
		return "—"
	}
	return j.HeadCredits.String()
}
