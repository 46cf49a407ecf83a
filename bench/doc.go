package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// section is one part of the document, measured.
type section struct {
	name  string // the -only value that measures it
	title string
	text  string // Markdown: the section's prose and tables
	took  time.Duration
}

// table is a Markdown table built row by row.
type table struct {
	head []string
	rows [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) String() string {
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for _, c := range cells {
			b.WriteString(" " + strings.ReplaceAll(c, "|", `\|`) + " |")
		}
		b.WriteString("\n")
	}
	line(t.head)
	b.WriteString("|" + strings.Repeat(" --- |", len(t.head)) + "\n")
	for _, r := range t.rows {
		line(r)
	}
	return b.String()
}

// document renders the whole document.
func (b *bench) document(ctx context.Context, began time.Time, load0 string, sections []section) string {
	var w strings.Builder
	w.WriteString("# Performance\n\n")
	w.WriteString("This file is written by `go run ./bench -o docs/PERFORMANCE.md`; do not edit it by hand. " +
		"Every figure in it is the bench's own measurement from the run dated below; rerun the bench to refresh them.\n\n")
	if b.cfg.quick {
		w.WriteString("> **Quick mode** (`-quick`): tiny sizes that only check every section still runs. These figures mean nothing.\n\n")
	}
	fmt.Fprintf(&w, "- **Measured:** %s, in %s.\n", began.UTC().Format("2006-01-02 15:04 MST"), round(time.Since(began)))
	fmt.Fprintf(&w, "- **Machine:** %s; load average (1 min) %s at the start, %s at the end.\n", machine(ctx), load0, loadAverage())
	fmt.Fprintf(&w, "- **Base:** %s, built from `git archive %s`.\n", b.base.describe(), b.cfg.base)
	fmt.Fprintf(&w, "- **Head:** %s.\n", b.head.describe())
	w.WriteString("- **Time** is wall-clock time from start to exit. **Peak RSS** is the process's `ru_maxrss` as `wait4` returns it " +
		"(for a process that waits for children, the largest of it and them). Where a figure is the best of several runs, " +
		"both the time and the peak RSS are the smallest seen.\n")
	w.WriteString("- **n/a** means the binary could not do it (a flag it lacks, or a base that did not build); **failed** gives the exit status and the last line the command wrote.\n\n")
	w.WriteString("Contents: ")
	for i, s := range sections {
		if i > 0 {
			w.WriteString(" · ")
		}
		fmt.Fprintf(&w, "[%s](#%s)", s.title, anchor(s.title))
	}
	w.WriteString(" · [How to run](#how-to-run)\n\n")
	for _, s := range sections {
		fmt.Fprintf(&w, "## %s\n\n", s.title)
		fmt.Fprintf(&w, "Measured %s in %s. Reproduce this section: `go run ./bench -only %s -o FILE`.\n\n", began.UTC().Format("2006-01-02"), round(s.took), s.name)
		w.WriteString(s.text)
		w.WriteString("\n")
	}
	w.WriteString(howToRun)
	return w.String()
}

// howToRun is the document's last section.
const howToRun = `## How to run

` + "```" + `
go run ./bench -o docs/PERFORMANCE.md          # everything: about 10 minutes on 2 cores
go run ./bench -only plan,rss -o /tmp/perf.md  # some sections: plan, run, rate, rss
go run ./bench -base v1.2.0 -o /tmp/perf.md    # another base revision (default ad29efa)
go run ./bench -keep -only run                 # keep the work folder to rerun a command by hand
go run ./bench -quick -o /tmp/perf.md          # tiny sizes, seconds: checks the bench still runs
` + "```" + `

The bench builds the working tree's ` + "`batch`" + ` and the base revision's (extracted with
` + "`git archive`" + ` into a temporary folder; the work tree is never checked out), plus its two
yardsticks, ` + "`bench/cmd/yamldecode`" + ` and ` + "`bench/cmd/keepalive`" + `. Manifests are generated into a
work folder on tmpfs (` + "`/dev/shm`" + ` when there is one), which is also where every run writes its
images; the commands above each table are run from that folder, so their paths are relative to it.
The sandbox is the one ` + "`batch sandbox`" + ` serves (package ` + "`internal/sandbox`" + `), served from the bench's
own process so it can count the TCP connections it accepts and the time of every request; its flags
are given with each table, and the commands address it at ` + "`" + sandboxURL + "`" + `, where
` + "`batch sandbox`" + ` listens by default. Every ` + "`batch`" + ` command gets a fresh, empty ` + "`XDG_CACHE_HOME`" + `
(two runs at once share one), and ` + "`STABILITY_API_KEY`" + ` is set to a sandbox token, never a real key.
The machine should be otherwise idle: the figures are wall-clock times. GNU parallel and curl are
installed with apt-get (sudo when not root) when missing; ` + "`-install=false`" + ` marks their row n/a instead.
`

// describe names a binary for the document's header.
func (bin *binary) describe() string {
	if bin.path == "" {
		return fmt.Sprintf("`%s`, which did not build (%s): its columns read n/a", bin.label, firstLine(bin.why))
	}
	return "`" + bin.label + "`"
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// anchor is the GitHub anchor of a heading.
func anchor(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

// round shortens a duration for prose: whole seconds, or tenths under 10 s.
func round(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// seconds formats a time for a table.
func seconds(d time.Duration) string {
	s := d.Seconds()
	switch {
	case s < 10:
		return fmt.Sprintf("%.2f s", s)
	case s < 100:
		return fmt.Sprintf("%.1f s", s)
	}
	return fmt.Sprintf("%.0f s", s)
}

// mib formats a memory size in bytes as MiB.
func mib(n int64) string {
	if n <= 0 {
		return "unknown"
	}
	m := float64(n) / (1 << 20)
	if m < 10 {
		return fmt.Sprintf("%.1f MiB", m)
	}
	return commas(int(m+0.5)) + " MiB"
}

// fileSize formats a file size.
func fileSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d bytes", n)
}

// commas writes n with thousands separators.
func commas(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// timeCell and rssCell are a sample's time and peak memory as table cells.
func timeCell(s sample) string {
	switch {
	case s.na != "":
		return "n/a (" + s.na + ")"
	case s.err != nil:
		return "failed: " + s.err.Error()
	}
	return seconds(s.wall)
}

func rssCell(s sample) string {
	if s.na != "" || s.err != nil {
		return "—"
	}
	return mib(s.rss)
}

// ok reports whether s holds figures.
func (s sample) ok() bool { return s.na == "" && s.err == nil }

// ratio formats a/b, or "—" when either is missing.
func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}
