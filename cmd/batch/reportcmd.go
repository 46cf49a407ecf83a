package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/batch-tool/batch/internal/report"
)

func (e *env) report(ctx context.Context, args []string) error {
	fs := newFlagSet("report", "report [flags] RUN_DIR|PLAN.json...", e.stderr)
	format := formatValue{report.FormatTable, report.RunFormats}
	fs.Var(&format, "format", "output `format`: "+strings.Join(format.allowed, ", "))
	if err := parseFlags(fs, args, 1, -1); err != nil {
		return err
	}
	var runs []*report.Run
	var plans []*report.Plan
	for _, arg := range fs.Args() {
		if isPlanFile(arg) {
			p, err := report.ReadPlan(arg)
			if err != nil {
				return missingInput(err)
			}
			plans = append(plans, p)
			continue
		}
		r, err := report.ReadRun(arg)
		if err != nil {
			return missingInput(err)
		}
		runs = append(runs, r)
	}
	switch {
	case len(plans) > 0 && len(runs) > 0:
		return usageErrorf("report: give run folders or plan files, not both")
	case len(plans) > 1:
		return usageErrorf("report: give one plan file (plans of shards: plan without --shard instead)")
	case len(plans) == 1:
		if !slices.Contains(report.PlanFormats, format.name) {
			return usageErrorf("report: a plan renders as %s", strings.Join(report.PlanFormats, ", "))
		}
		return report.WritePlanWidth(e.stdout, format.name, plans[0], e.tableWidth())
	}
	r := runs[0]
	if len(runs) > 1 {
		var err error
		if r, err = report.Merge(runs...); err != nil {
			return err
		}
	}
	return report.WriteRun(e.stdout, format.name, r)
}

// isPlanFile reports whether arg names a plan JSON file rather than a run
// folder (a run's report.json is read by naming its folder or the file).
func isPlanFile(arg string) bool {
	fi, err := os.Stat(arg)
	if err != nil || fi.IsDir() || filepath.Base(arg) == "report.json" {
		return false
	}
	return strings.HasSuffix(arg, ".json")
}

func (e *env) diff(ctx context.Context, args []string) error {
	fs := newFlagSet("diff", "diff [flags] BASE HEAD   (each a manifest or a plan JSON file)", e.stderr)
	var pf planFlags
	pf.registerPricing(fs)
	format := formatValue{report.FormatTable, report.DiffFormats}
	fs.Var(&format, "format", "output `format`: "+strings.Join(format.allowed, ", "))
	var failAbove creditsValue
	fs.Var(&failAbove, "fail-above", "exit 3 when the total increases by more than `CREDITS`")
	var failIncrease percentValue
	fs.Var(&failIncrease, "fail-increase", "exit 3 when the total increases by more than `PERCENT` of the base total")
	if err := parseFlags(fs, args, 2, 2); err != nil {
		return err
	}
	base, err := e.planOf(ctx, fs.Arg(0), &pf)
	if err != nil {
		return err
	}
	head, err := e.planOf(ctx, fs.Arg(1), &pf)
	if err != nil {
		return err
	}
	d, err := report.Diff(base, head)
	if err != nil {
		return err
	}
	if err := report.WriteDiff(e.stdout, format.name, d); err != nil {
		return err
	}
	return d.Check(failAbove.c, failIncrease.p)
}

// planOf reads a plan JSON file, or plans a manifest.
func (e *env) planOf(ctx context.Context, path string, pf *planFlags) (*report.Plan, error) {
	if strings.HasSuffix(path, ".json") {
		p, err := report.ReadPlan(path)
		return p, missingInput(err)
	}
	p, err := e.loadPlan(ctx, path, pf)
	if err != nil {
		return nil, err
	}
	return p.report, nil
}
