package report

import (
	"bytes"
	"fmt"
	"io"
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

// planTable writes p as a table to w: one row per job when it has at most
// MaxJobRows, else one per group, written as the groups pass.
func planTable(w io.Writer, p *Plan, width int) error {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "Plan: %s\n", title(p.Name, p.Manifest))
	fmt.Fprintf(&buf, "Pricing: %s", p.Pricing)
	if p.Shard != "" {
		fmt.Fprintf(&buf, "  Shard: %s", p.Shard)
	}
	if p.Selection != "" {
		fmt.Fprintf(&buf, "  Selection: %s", p.Selection)
	}
	buf.WriteString("\n\n")
	// The groups' widths, FROM aside (sources are resolved later), are
	// measured in the first pass.
	var cols columns
	st, err := scanPlan(p, func(g *group) error {
		cols.measure(groupCells(g, false))
		return nil
	})
	if err != nil {
		return err
	}
	deps, prompts := st.deps, st.prompts
	if st.rows != nil {
		settings := st.settings
		rows := [][]string{withText(settings, prompts, withFrom(deps, []string{"JOB", "ENGINE / SERVICE", "SIZE", "STEPS", "SAMPLES", "CREDITS"}, "FROM"), "SETTINGS", "PROMPT")}
		for _, j := range st.rows {
			rows = append(rows, withText(settings, prompts, withFrom(deps, []string{j.ID, j.op(), sizeText(j.Width, j.Height, j.AspectRatio), stepsText(j.Steps),
				strconv.Itoa(j.Samples), planCredits(j)}, fromText(j.DependsOn)), orDash(settingsText(j.Settings, j.OutputFormat)), promptText(j.Prompt, j.NegativePrompt)))
		}
		if prompts {
			fitLastColumn(rows, width)
		}
		tw := tableWriter(&buf)
		for _, r := range rows {
			row(tw, r...)
		}
		tw.Flush()
	} else if err := planGroupTable(w, &buf, p, st, cols, width); err != nil {
		return err
	}
	fmt.Fprintf(&buf, "\n%s: %s credits (%s) for %s, %s%s\n", capital(labelEstimated), p.TotalCredits, p.TotalCredits.USD(), plural(st.jobs, "job"), plural(st.images, "image"),
		cacheSaves(p))
	fmt.Fprintf(&buf, "Budget: %s\n", budgetText(p.TotalCredits, p.Budget))
	_, err = w.Write(buf.Bytes())
	return err
}

// planGroupTable writes the table of p's groups to buf, passing it on to w
// as it fills. cols are the groups' widths without FROM; with sources, they
// are resolved and measured again, FROM included.
func planGroupTable(w io.Writer, buf *bytes.Buffer, p *Plan, st *planStats, cols columns, width int) error {
	deps, prompts := st.deps, st.prompts
	head := withFrom(deps, []string{"GROUP", "JOBS", "ENGINE / SERVICE", "SIZES", "STEPS", "IMAGES", "CREDITS"}, "FROM")
	if deps {
		if err := st.resolveSources(p); err != nil {
			return err
		}
		cols = nil
		err := st.eachGroup(p, func(g *group, _, _ string) error {
			cols.measure(groupCells(g, true))
			return nil
		})
		if err != nil {
			return err
		}
	}
	cols.measure(head)
	// A group's jobs may differ in prompt (a matrix over it); the first
	// one stands for the group, cut to fit the width as fitLastColumn cuts.
	room := 0
	if width > 0 {
		room = max(width-cols.used(len(head)+1), minFitted)
	}
	cols.line(buf, withText(false, prompts, head, "", "PROMPT (FIRST JOB)"))
	return st.eachGroup(p, func(g *group, prompt, negative string) error {
		cols.line(buf, withText(false, prompts, groupCells(g, deps), "", cut(promptText(prompt, negative), room)))
		return spill(w, buf)
	})
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

// runTable writes r as a table to w: one row per job when it has at most
// MaxJobRows, else one per group, written as the groups pass (their widths
// measured in the first pass, or, when they need the sources' groups or
// some group's jobs are not consecutive, in a pass of their own).
func runTable(w io.Writer, r *Run) error {
	var cols columns
	st, err := scanRun(r, func(g *group) error {
		cols.measure(runGroupCells(g, false))
		return nil
	})
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "Run: %s\n", title(r.Name, r.Manifest))
	fmt.Fprintf(&buf, "Pricing: %s", r.Pricing)
	if r.Shard != "" {
		fmt.Fprintf(&buf, "  Shard: %s", r.Shard)
	}
	if span := timeSpan(r); span != "" {
		fmt.Fprintf(&buf, "  Time: %s", span)
	}
	buf.WriteString("\n\n")
	deps := st.deps
	if st.rows != nil {
		tw := tableWriter(&buf)
		row(tw, withFrom(deps, []string{"JOB", "STATUS", "ENGINE / SERVICE", "SIZE", "STEPS", "SAMPLES", "ATTEMPTS", "CHARGED", "ERROR"}, "FROM")...)
		for _, j := range st.rows {
			row(tw, withFrom(deps, []string{j.ID, statusText(j), j.op(), sizeText(j.Width, j.Height, j.AspectRatio), stepsText(j.Steps),
				strconv.Itoa(j.Samples), strconv.Itoa(j.Attempts), j.Credits.String(), oneLine(j.Error, 60)}, fromText(j.DependsOn))...)
		}
		tw.Flush()
	} else {
		head := withFrom(deps, []string{"GROUP", "JOBS", "SUCCEEDED", "FAILED", "FILTERED", "SKIPPED", "ENGINE / SERVICE", "SIZES", "STEPS", "CHARGED"}, "FROM")
		if deps || st.interleaved {
			cols = nil
			err := st.eachGroup(r, byGroup, func(g *group) error {
				cols.measure(runGroupCells(g, deps))
				return nil
			})
			if err != nil {
				return err
			}
		}
		cols.measure(head)
		cols.line(&buf, head)
		err = st.eachGroup(r, byGroup, func(g *group) error {
			cols.line(&buf, runGroupCells(g, deps))
			return spill(w, &buf)
		})
		if err != nil {
			return err
		}
	}
	buf.WriteString("\n")
	fmt.Fprintf(&buf, "Jobs: %s\n", statusCounts(r.Totals))
	fmt.Fprintf(&buf, "%s: %s\n", capital(labelCharged), creditsText(r.ChargedCredits))
	fmt.Fprintf(&buf, "%s: %s\n", capital(labelPossiblyBilled), creditsText(r.PossiblyBilledCredits))
	if r.CachedJobs > 0 {
		fmt.Fprintf(&buf, "Cache: %s\n", cacheServed(r))
	}
	fmt.Fprintf(&buf, "%s: %s\n", capital(labelEstimated), creditsText(r.EstimatedCredits))
	fmt.Fprintf(&buf, "Budget: %s\n", runBudgetText(r))
	if r.BalanceBefore != nil {
		fmt.Fprintf(&buf, "%s: %s credits\n", capital(labelBalanceBefore), r.BalanceBefore)
	}
	if r.Interrupted {
		buf.WriteString("Interrupted: rerun with the same --out to resume\n")
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// runGroupCells are a run group's cells in the grouped tables, with its
// From cell when deps.
func runGroupCells(g *group, deps bool) []string {
	t := g.Totals
	return withFrom(deps, []string{g.Name, strconv.Itoa(g.Jobs), strconv.Itoa(t.Succeeded), strconv.Itoa(t.Failed), strconv.Itoa(t.Filtered),
		strconv.Itoa(t.Skipped), g.Operation(), g.Sizes(), g.Steps(), g.Credits.String()}, g.From())
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
	if d.Differing > 0 {
		if d.rows != nil {
			tw := tableWriter(buf)
			row(tw, "JOB", "CHANGE", "BASE", "HEAD", "DELTA", "DETAIL")
			for _, j := range d.rows {
				row(tw, j.ID, j.Change, j.baseText(), j.headText(), signed(j.DeltaCredits), j.Detail)
			}
			tw.Flush()
		} else {
			// One group per manifest entry: thousands, for a manifest of
			// jobs listed one by one, which the columns lay out without
			// tabwriter's cell per cell.
			cells := func(g *diffGroup) []string {
				return []string{g.Name, strconv.Itoa(g.Added), strconv.Itoa(g.Removed), strconv.Itoa(g.Changed),
					g.Base.String(), g.Head.String(), signed(g.Head - g.Base)}
			}
			head := []string{"GROUP", "ADDED", "REMOVED", "CHANGED", "BASE", "HEAD", "DELTA"}
			cols := columns{}
			cols.measure(head)
			for _, g := range d.groups {
				cols.measure(cells(g))
			}
			cols.line(buf, head)
			for _, g := range d.groups {
				cols.line(buf, cells(g))
			}
		}
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

// diffGroup sums the jobs of a diff that differ, by group.
type diffGroup struct {
	Name                    string
	Added, Removed, Changed int
	Base, Head              cost.Credits
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
	if j.Cached {
		s += " (cached)"
	}
	return s
}

// planCredits is a plan job's credits cell: "0.000 (cached)" for a job the
// image cache holds.
func planCredits(j PlanJob) string {
	if j.Cached {
		return j.Credits.String() + " (cached)"
	}
	return j.Credits.String()
}

// cacheSaves is what the image cache saves a plan, for its totals line:
// " (cache saves 30.000 credits on 10 jobs)"; "" when it saves nothing.
func cacheSaves(p *Plan) string {
	if p.CachedJobs == 0 {
		return ""
	}
	return fmt.Sprintf(" (cache saves %s credits on %s)", p.CacheSavedCredits, plural(p.CachedJobs, "job"))
}

// cacheServed is what the image cache gave a run: "10 jobs, saving 30.000
// credits (list price)".
func cacheServed(r *Run) string {
	return fmt.Sprintf("%s from the cache, saving %s credits (list price)", plural(r.CachedJobs, "job"), r.CacheSavedCredits)
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
