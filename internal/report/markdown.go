package report

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/cost"
)

// maxMarkdownGroups caps the grouped Markdown table, so a report of a huge
// manifest still fits in a pull-request comment (GitHub allows 65,536
// characters).
const maxMarkdownGroups = 100

// mdRow writes one Markdown table row, escaping every cell.
func mdRow(buf *bytes.Buffer, cells ...string) {
	buf.WriteString("|")
	for _, c := range cells {
		buf.WriteString(" " + mdCell(c) + " |")
	}
	buf.WriteString("\n")
}

// mdHeader writes a Markdown table's header: the column names, then each
// column's alignment ("---" left, "--:" right).
func mdHeader(buf *bytes.Buffer, names, aligns []string) {
	buf.WriteString("| " + strings.Join(names, " | ") + " |\n|" + strings.Join(aligns, "|") + "|\n")
}

// mdCell makes s safe inside a table cell: one line, no column breaks, and
// no HTML (GitHub renders some HTML in comments).
func mdCell(s string) string {
	s = oneLine(s, 0)
	if !strings.ContainsAny(s, "|<>&") {
		return s // most cells: spare building a Replacer
	}
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;", "&", "&amp;").Replace(s)
}

// mdCode quotes s as inline code, or returns it plain when it holds a
// backtick.
func mdCode(s string) string {
	if s == "" || strings.Contains(s, "`") {
		return mdCell(s)
	}
	return "`" + oneLine(s, 0) + "`"
}

// mdTitle is "name (`manifest`)" or "`manifest`".
func mdTitle(name, manifest string) string {
	switch {
	case name != "" && manifest != "":
		return mdCell(name) + " (" + mdCode(manifest) + ")"
	case name != "":
		return mdCell(name)
	}
	return mdCode(manifest)
}

func mdBudget(total cost.Credits, budget *cost.Credits) string {
	switch {
	case budget == nil:
		return "no budget"
	case total > *budget:
		return "⚠️ **budget " + budgetText(total, budget) + "**"
	}
	return "budget " + budgetText(total, budget)
}

// mdRunBudget is a run's budget as mdBudget shows it, saying what it
// counts.
func mdRunBudget(r *Run) string {
	if r.Budget == nil {
		return mdBudget(r.spent(), nil)
	}
	return mdBudget(r.spent(), r.Budget) + ", " + labelRunBudget
}

// planMarkdown writes p as Markdown to w: one row per job when it has at
// most MaxJobRows, else one per group (at most maxMarkdownGroups, the rest
// summed in one row), written as the groups pass.
func planMarkdown(w io.Writer, p *Plan) error {
	st, err := scanPlan(p, nil)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "### Cost plan: %s\n\n", mdTitle(p.Name, p.Manifest))
	fmt.Fprintf(&buf, "**%s: %s credits (%s)** for %s, %s%s · %s · pricing %s",
		capital(labelEstimated), p.TotalCredits, p.TotalCredits.USD(), plural(st.jobs, "job"), plural(st.images, "image"), cacheSaves(p),
		mdBudget(p.TotalCredits, p.Budget), mdCode(p.Pricing))
	if p.Shard != "" {
		fmt.Fprintf(&buf, " · shard %s", p.Shard)
	}
	if p.Selection != "" {
		fmt.Fprintf(&buf, " · selection %s", p.Selection)
	}
	buf.WriteString("\n\n")
	deps, prompts := st.deps, st.prompts
	switch {
	case st.jobs == 0:
	case st.rows != nil:
		settings := st.settings
		mdHeader(&buf, withText(settings, prompts, withFrom(deps, []string{"Job", "Engine / service", "Size", "Steps", "Samples", "Credits"}, "From"), "Settings", "Prompt"),
			withText(settings, prompts, withFrom(deps, []string{"---", "---", "---", "--:", "--:", "--:"}, "---"), "---", "---"))
		for _, j := range st.rows {
			mdRow(&buf, withText(settings, prompts, withFrom(deps, []string{j.ID, j.op(), sizeText(j.Width, j.Height, j.AspectRatio), stepsText(j.Steps),
				strconv.Itoa(j.Samples), planCredits(j)}, fromText(j.DependsOn)), settingsText(j.Settings, j.OutputFormat), promptText(j.Prompt, j.NegativePrompt))...)
		}
	default:
		if err := planMarkdownGroups(w, &buf, p, st); err != nil {
			return err
		}
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// planMarkdownGroups writes the Markdown table of p's groups to buf,
// passing it on to w as it fills.
func planMarkdownGroups(w io.Writer, buf *bytes.Buffer, p *Plan, st *planStats) error {
	deps, prompts := st.deps, st.prompts
	if err := st.resolveSources(p); err != nil {
		return err
	}
	// A group's jobs may differ in prompt (a matrix over it); the first one
	// stands for the group, cut so that the capped table stays within a
	// pull-request comment.
	fmt.Fprintf(buf, "%s in %s (JSON and CSV list every job):\n\n", plural(st.jobs, "job"), plural(st.groups, "group"))
	mdHeader(buf, withText(false, prompts, withFrom(deps, []string{"Group", "Jobs", "Engine / service", "Sizes", "Steps", "Images", "Credits"}, "From"), "", "Prompt (first job)"),
		withText(false, prompts, withFrom(deps, []string{"---", "--:", "---", "---", "---", "--:", "--:"}, "---"), "", "---"))
	n, restJobs := 0, 0
	var rest cost.Credits
	err := st.eachGroup(p, func(g *group, prompt, negative string) error {
		n++
		if n > maxMarkdownGroups {
			restJobs, rest = restJobs+g.Jobs, rest+g.Credits
			return nil
		}
		mdRow(buf, withText(false, prompts, groupCells(g, deps), "", cut(promptText(prompt, negative), maxGroupPrompt))...)
		return spill(w, buf)
	})
	if err != nil {
		return err
	}
	if n > maxMarkdownGroups {
		mdMoreRow(buf, n-maxMarkdownGroups, restJobs, rest, 7, deps, prompts)
	}
	return nil
}

// maxGroupPrompt is the most runes of a group's prompt the grouped Markdown
// table shows.
const maxGroupPrompt = 200

// mdMoreGroups writes one row summing the groups left out of a table of
// cols columns, plus a from column when deps and an empty prompt column
// when prompts.
func mdMoreGroups(buf *bytes.Buffer, rest []*group, cols int, deps, prompts bool) {
	var sum cost.Credits
	jobs := 0
	for _, g := range rest {
		sum += g.Credits
		jobs += g.Jobs
	}
	cells := make([]string, cols)
	cells[0] = fmt.Sprintf("… %s more", plural(len(rest), "group"))
	cells[1] = strconv.Itoa(jobs)
	cells[cols-1] = sum.String()
	mdRow(buf, withText(false, prompts, withFrom(deps, cells, ""), "", "")...)
}

// mdMoreRow writes one row summing n groups of jobs jobs and credits sum
// left out of a table of cols columns, plus a from column when deps and an
// empty prompt column when prompts.
func mdMoreRow(buf *bytes.Buffer, n, jobs int, sum cost.Credits, cols int, deps, prompts bool) {
	cells := make([]string, cols)
	cells[0] = fmt.Sprintf("… %s more", plural(n, "group"))
	cells[1] = strconv.Itoa(jobs)
	cells[cols-1] = sum.String()
	mdRow(buf, withText(false, prompts, withFrom(deps, cells, ""), "", "")...)
}

// runMarkdown writes r as Markdown to w: one row per job when it has at
// most MaxJobRows, else one per group (the first maxMarkdownGroups, the
// rest summed in one row), the groups summed in the first pass (or in a
// pass of their own when they need the sources' groups or some group's
// jobs are not consecutive).
func runMarkdown(w io.Writer, r *Run) error {
	var shown []*group // the first maxMarkdownGroups groups
	groups, restJobs := 0, 0
	var rest cost.Credits // of the groups after them
	sum := func(g *group) error {
		groups++
		if groups <= maxMarkdownGroups {
			shown = append(shown, g)
		} else {
			restJobs, rest = restJobs+g.Jobs, rest+g.Credits
		}
		return nil
	}
	st, err := scanRun(r, sum)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "### Run report: %s\n\n", mdTitle(r.Name, r.Manifest))
	fmt.Fprintf(&buf, "**%s: %s** · %s %s · %s · pricing %s",
		capital(labelCharged), creditsText(r.ChargedCredits), labelEstimated, creditsText(r.EstimatedCredits),
		mdRunBudget(r), mdCode(r.Pricing))
	if r.Shard != "" {
		fmt.Fprintf(&buf, " · shard %s", r.Shard)
	}
	buf.WriteString("\n\n")
	t := r.Totals
	fmt.Fprintf(&buf, "- **Jobs:** %d — ✅ %d succeeded · ❌ %d failed · 🚫 %d filtered · ⏭️ %d skipped\n",
		t.Jobs, t.Succeeded, t.Failed, t.Filtered, t.Skipped)
	fmt.Fprintf(&buf, "- **%s:** %s\n", capital(labelPossiblyBilled), creditsText(r.PossiblyBilledCredits))
	if r.CachedJobs > 0 {
		fmt.Fprintf(&buf, "- **Cache:** %s\n", cacheServed(r))
	}
	if r.BalanceBefore != nil {
		fmt.Fprintf(&buf, "- **%s:** %s credits\n", capital(labelBalanceBefore), r.BalanceBefore)
	}
	if span := timeSpan(r); span != "" {
		fmt.Fprintf(&buf, "- **Time:** %s\n", span)
	}
	if r.Interrupted {
		buf.WriteString("- **Interrupted:** rerun with the same `--out` to resume\n")
	}
	buf.WriteString("\n")
	deps := st.deps
	switch {
	case st.jobs == 0:
	case st.rows != nil:
		mdHeader(&buf, withFrom(deps, []string{"Job", "Status", "Engine / service", "Size", "Steps", "Samples", "Attempts", "Charged", "Error"}, "From"),
			withFrom(deps, []string{"---", "---", "---", "---", "--:", "--:", "--:", "--:", "---"}, "---"))
		for _, j := range st.rows {
			mdRow(&buf, withFrom(deps, []string{j.ID, statusEmoji(j.Status) + " " + statusText(j), j.op(), sizeText(j.Width, j.Height, j.AspectRatio),
				stepsText(j.Steps), strconv.Itoa(j.Samples), strconv.Itoa(j.Attempts), j.Credits.String(), oneLine(j.Error, 120)}, fromText(j.DependsOn))...)
		}
	default:
		if deps || st.interleaved {
			shown, groups, restJobs, rest = nil, 0, 0, 0
			if err := st.eachGroup(r, byGroup, sum); err != nil {
				return err
			}
		}
		fmt.Fprintf(&buf, "%s in %s (JSON and CSV list every job):\n\n", plural(st.jobs, "job"), plural(groups, "group"))
		mdHeader(&buf, withFrom(deps, []string{"Group", "Jobs", "Succeeded", "Failed", "Filtered", "Skipped", "Engine / service", "Sizes", "Steps", "Charged"}, "From"),
			withFrom(deps, []string{"---", "--:", "--:", "--:", "--:", "--:", "---", "---", "---", "--:"}, "---"))
		for _, g := range shown {
			mdRow(&buf, runGroupCells(g, deps)...)
		}
		if groups > maxMarkdownGroups {
			mdMoreRow(&buf, groups-maxMarkdownGroups, restJobs, rest, 10, deps, false)
		}
	}
	_, err = w.Write(buf.Bytes())
	return err
}

func statusEmoji(status string) string {
	switch status {
	case StatusSucceeded:
		return "✅"
	case StatusFailed:
		return "❌"
	case StatusFiltered:
		return "🚫"
	}
	return "⏭️"
}

func diffMarkdown(buf *bytes.Buffer, d *DiffResult) {
	if d.Unchanged() {
		buf.WriteString("no cost change\n")
		return
	}
	fmt.Fprintf(buf, "### Cost diff: %s\n\n", mdTitle(d.Name, d.Head))
	fmt.Fprintf(buf, "**%s**: %s → %s credits", deltaText(d), d.BaseTotalCredits, d.HeadTotalCredits)
	if d.HeadBudget != nil {
		fmt.Fprintf(buf, " · %s", mdBudget(d.HeadTotalCredits, d.HeadBudget))
	}
	if d.BasePricing != d.HeadPricing {
		fmt.Fprintf(buf, " · pricing %s → %s", mdCode(d.BasePricing), mdCode(d.HeadPricing))
	}
	buf.WriteString("\n\n")
	if d.Differing == 0 {
		return
	}
	if d.rows != nil {
		buf.WriteString("| Job | Change | Base | Head | Δ credits | Detail |\n|---|---|--:|--:|--:|---|\n")
		for _, j := range d.rows {
			mdRow(buf, j.ID, j.Change, j.baseText(), j.headText(), signed(j.DeltaCredits), j.Detail)
		}
		return
	}
	gs := d.groups
	fmt.Fprintf(buf, "%s differ, in %s (`--format json` lists every job):\n\n", plural(d.Differing, "job"), plural(len(gs), "group"))
	buf.WriteString("| Group | Added | Removed | Changed | Base | Head | Δ credits |\n|---|--:|--:|--:|--:|--:|--:|\n")
	for i, g := range gs {
		if i == maxMarkdownGroups {
			var base, head cost.Credits
			for _, r := range gs[i:] {
				base, head = base+r.Base, head+r.Head
			}
			mdRow(buf, fmt.Sprintf("… %s more", plural(len(gs)-i, "group")), "", "", "", base.String(), head.String(), signed(head-base))
			break
		}
		mdRow(buf, g.Name, strconv.Itoa(g.Added), strconv.Itoa(g.Removed), strconv.Itoa(g.Changed),
			g.Base.String(), g.Head.String(), signed(g.Head-g.Base))
	}
}
