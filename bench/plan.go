package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// planSection measures planning against a bare decode of the same file,
// and a diff of two large manifests.
func (b *bench) planSection(ctx context.Context) (section, error) {
	began := time.Now()
	var w strings.Builder
	w.WriteString("`batch plan` (the table, and `--format json`) of each manifest, against `bench/cmd/yamldecode`, which reads " +
		"the file and decodes it with `yaml.Unmarshal` into an `any` or into a `yaml.Node` and does nothing else: the cost of " +
		"reading the manifest. Output goes to `/dev/null`. The last two columns divide the command's time and peak RSS by the " +
		"decode's, into `any` / into `yaml.Node`.\n\n")
	fmt.Fprintf(&w, "Each explicit manifest has one entry per job on the top-level service `generate/core`: an id, a prompt of about "+
		"90 characters and a seed. Each matrix manifest is one job whose prompt of %s characters (rendered) names two matrix keys, "+
		"swept with a list of seeds.\n\n", commas(matrixSpec{}.promptChars()))
	for _, n := range b.sz.explicit {
		path := b.path(fmt.Sprintf("explicit-%d.yaml", n))
		size, err := writeExplicit(path, explicitSpec{jobs: n})
		if err != nil {
			return section{}, err
		}
		runs := b.sz.repeats(n)
		fmt.Fprintf(&w, "### %s explicit jobs\n\n`%s`, %s%s.\n\n", commas(n), b.rel(path), fileSize(size), bestOf(runs))
		w.WriteString(b.planTable(ctx, path, runs, true))
		b.drop(path)
	}
	for _, m := range b.sz.matrix {
		path := b.path(fmt.Sprintf("matrix-%d.yaml", m.jobs()))
		size, err := writeMatrix(path, m)
		if err != nil {
			return section{}, err
		}
		runs := b.sz.repeats(m.jobs())
		fmt.Fprintf(&w, "### Matrix of %s jobs\n\n`%s`, %s: %d subjects × %d places × %d seeds%s. The file is "+
			"small, so its decode is no yardstick and no ratio is shown.\n\n",
			commas(m.jobs()), b.rel(path), fileSize(size), m.subjects, m.places, m.seeds, bestOf(runs))
		w.WriteString(b.planTable(ctx, path, runs, false))
		b.drop(path)
	}
	diff, err := b.diffTable(ctx)
	if err != nil {
		return section{}, err
	}
	w.WriteString(diff)
	return section{name: "plan", title: "Planning against a bare YAML decode", text: w.String(), took: time.Since(began)}, nil
}

// bestOf says how many runs a figure is the best of.
func bestOf(runs int) string {
	if runs <= 1 {
		return "; one run each"
	}
	return fmt.Sprintf("; best of %d runs each", runs)
}

// planTable measures the decodes and both binaries' plans of path, with
// each plan's time and memory divided by the decodes' when withRatios.
func (b *bench) planTable(ctx context.Context, path string, runs int, withRatios bool) string {
	t := &table{head: []string{"command", "build", "time", "peak RSS"}}
	if withRatios {
		t.head = append(t.head, "time ÷ decode (any / Node)", "RSS ÷ decode (any / Node)")
	}
	var decoded [2]sample
	for i, into := range []string{"any", "node"} {
		p := proc{bin: b.decode, args: []string{"-into", into, path}}
		s := best(ctx, p, runs, b.cfg.timeout)
		b.logf("%s: %s", b.shown(p, ""), summary(s))
		decoded[i] = s
		row := []string{"`" + b.shown(p, "") + "`", "—", timeCell(s), rssCell(s)}
		if withRatios {
			row = append(row, "", "")
		}
		t.add(row...)
	}
	for _, format := range []string{"table", "json"} {
		args := []string{"plan", path}
		if format != "table" {
			args = []string{"plan", "--format", format, path}
		}
		for _, bin := range []*binary{b.base, b.head} {
			p := proc{args: args}
			s := b.batch(ctx, bin, p, runs)
			b.logf("%s %s: %s", bin.rev, b.shown(p, ""), summary(s))
			row := []string{"`" + b.shown(p, "") + "`", bin.rev, timeCell(s), rssCell(s)}
			if withRatios {
				row = append(row, ratios(s, decoded, true), ratios(s, decoded, false))
			}
			t.add(row...)
		}
	}
	return t.String() + "\n"
}

// ratios divides s's time (or peak memory) by each decode's.
func ratios(s sample, decoded [2]sample, wall bool) string {
	if !s.ok() {
		return "—"
	}
	var cells [2]string
	for i, d := range decoded {
		cells[i] = "—"
		if !d.ok() {
			continue
		}
		if wall {
			cells[i] = ratio(s.wall.Seconds(), d.wall.Seconds())
		} else {
			cells[i] = ratio(float64(s.rss), float64(d.rss))
		}
	}
	return cells[0] + " / " + cells[1]
}

// diffTable measures `batch diff` of two manifests of diffJobs jobs.
func (b *bench) diffTable(ctx context.Context) (string, error) {
	n := b.sz.diffJobs
	base, head := b.path(fmt.Sprintf("diff-base-%d.yaml", n)), b.path(fmt.Sprintf("diff-head-%d.yaml", n))
	baseSize, err := writeExplicit(base, explicitSpec{jobs: n})
	if err != nil {
		return "", err
	}
	headSize, err := writeExplicit(head, explicitSpec{jobs: n, edit: true})
	if err != nil {
		return "", err
	}
	defer b.drop(base)
	defer b.drop(head)
	runs := b.sz.repeats(n)
	var w strings.Builder
	fmt.Fprintf(&w, "### Diff of two %s-job manifests\n\n`%s` (%s) is the explicit manifest above; `%s` (%s) changes every "+
		"tenth prompt, drops every hundredth job and adds 1%% more%s.\n\n", commas(n), b.rel(base), fileSize(baseSize), b.rel(head), fileSize(headSize), bestOf(runs))
	t := &table{head: []string{"command", "build", "time", "peak RSS"}}
	for _, bin := range []*binary{b.base, b.head} {
		p := proc{args: []string{"diff", base, head}}
		s := b.batch(ctx, bin, p, runs)
		b.logf("%s %s: %s", bin.rev, b.shown(p, ""), summary(s))
		t.add("`"+b.shown(p, "")+"`", bin.rev, timeCell(s), rssCell(s))
	}
	w.WriteString(t.String())
	return w.String(), nil
}

// summary is a sample in a progress line.
func summary(s sample) string {
	if !s.ok() {
		return timeCell(s)
	}
	return seconds(s.wall) + ", " + mib(s.rss)
}

// rel is path relative to the work folder, as the document shows it.
func (b *bench) rel(path string) string {
	return strings.TrimPrefix(path, b.work+string(os.PathSeparator))
}

// drop removes a generated file unless -keep keeps the work folder.
func (b *bench) drop(path string) {
	if !b.cfg.keep {
		os.RemoveAll(path)
	}
}
