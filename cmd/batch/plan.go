package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/report"
)

// planFlags are the flags that decide what a manifest costs; plan, run and
// diff share them.
type planFlags struct {
	pricing string
	prices  string
	budget  creditsValue
	shard   shard
}

func (f *planFlags) register(fs *flag.FlagSet) {
	f.registerPricing(fs)
	fs.Var(&f.budget, "budget", "credit ceiling: refuse (exit 3) when the estimate is above it (default: the manifest's budget)")
	fs.Var(&f.shard, "shard", "take only the K-th of N deterministic slices of the jobs, as `K/N`")
}

// registerPricing registers only the flags that choose prices (diff has no
// budget or shard).
func (f *planFlags) registerPricing(fs *flag.FlagSet) {
	fs.StringVar(&f.pricing, "pricing", "", "price sheet `ID` (default: the manifest's pricing, else "+cost.DefaultSheet+"; see 'batch prices')")
	fs.StringVar(&f.prices, "prices", "", "YAML `file` of price rules that add to or override the sheet's")
}

// planned is a manifest priced under a sheet: the jobs (of one shard, if
// asked), each job's credits, and the plan report.
type planned struct {
	manifest *manifest.Manifest
	sheet    *cost.Sheet
	jobs     []manifest.Job
	index    []int          // each job's position among all the manifest's jobs
	prices   []cost.Credits // per job: image price × samples
	total    cost.Credits
	budget   *cost.Credits // nil when there is none
	report   *report.Plan
}

// loadPlan loads, validates, expands and prices the manifest at path. Once
// ctx is done (a signal) it stops, even in the middle of a huge manifest.
func (e *env) loadPlan(ctx context.Context, path string, f *planFlags) (*planned, error) {
	if e.planning != nil {
		e.planning(ctx)
	}
	m, err := manifest.Load(ctx, path)
	if ctx.Err() != nil {
		// Not wrapping ctx.Err(): main prints no bare "context canceled"
		// (the exit code, 130, comes from ctx).
		return nil, fmt.Errorf("plan %s: interrupted; nothing was sent", path)
	}
	if err != nil {
		return nil, missingInput(err)
	}
	sheet, err := pickSheet(m, f)
	if err != nil {
		return nil, err
	}
	budget := f.budget.c
	if budget == nil && m.Budget != "" {
		b, err := cost.ParseCredits(m.Budget)
		if err != nil {
			return nil, manifestError(m, "budget", err)
		}
		budget = &b
	}
	idx := f.shard.indexes(m.Len())
	jobs := make([]manifest.Job, len(idx))
	for i, j := range idx {
		jobs[i] = m.Job(j)
	}
	est, err := cost.Estimate(jobs, sheet)
	if err != nil {
		return nil, pricingProblems(m, jobs, err)
	}
	p := &planned{manifest: m, sheet: sheet, jobs: jobs, index: idx, prices: est.Jobs, total: est.Total, budget: budget}
	p.report = p.planReport()
	if f.shard.N > 0 {
		p.report.Shard = f.shard.String()
	}
	return p, nil
}

// pricingProblems turns the estimate's errors into manifest problems at the
// position of the first job each one hit, so they read like validation
// errors: FILE:LINE:COL: message.
func pricingProblems(m *manifest.Manifest, jobs []manifest.Job, err error) error {
	var probs manifest.Errors
	errs := []error{err}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs = joined.Unwrap()
	}
	for _, e := range errs {
		var je *cost.JobError
		if !errors.As(e, &je) {
			return &invalidError{fmt.Errorf("price %s: %w", m.Path, err)}
		}
		j := jobs[je.Index]
		probs = append(probs, manifest.Problem{File: m.Path, Line: j.Line, Col: j.Column, Msg: je.Error()})
	}
	return &probs
}

// pickSheet chooses the price sheet: --pricing, else the manifest's, else
// the default; --prices adds its rules on top.
func pickSheet(m *manifest.Manifest, f *planFlags) (*cost.Sheet, error) {
	id := f.pricing
	if id == "" {
		id = m.Pricing
	}
	if id == "" {
		id = cost.DefaultSheet
	}
	sheet, err := cost.LookupSheet(id)
	if err != nil {
		if f.pricing == "" && m.Pricing != "" {
			return nil, manifestError(m, "pricing", err)
		}
		return nil, usageErrorf("--pricing: %v", err)
	}
	if f.prices != "" {
		o, err := cost.ReadOverrides(f.prices)
		if err != nil {
			return nil, &invalidError{err}
		}
		sheet = sheet.WithOverrides(o)
	}
	return sheet, nil
}

func (p *planned) planReport() *report.Plan {
	r := &report.Plan{
		Manifest:     p.manifest.Path,
		Name:         p.manifest.Name,
		Pricing:      p.sheet.ID,
		Jobs:         make([]report.PlanJob, len(p.jobs)),
		TotalCredits: p.total,
		TotalUSD:     p.total.USD(),
		Budget:       p.budget,
		OverBudget:   p.budget != nil && p.total > *p.budget,
	}
	for i := range p.jobs {
		r.Jobs[i] = p.planJob(i)
	}
	return r
}

// planJob is the plan report's row of the i-th job of the plan.
func (p *planned) planJob(i int) report.PlanJob {
	j := &p.jobs[i]
	pj := report.PlanJob{
		Index: p.index[i], ID: j.ID, Group: j.Base, DependsOn: j.DependsOn(), Engine: j.Engine, Service: j.Service,
		Width: j.Width, Height: j.Height, Steps: j.Steps, Samples: j.Samples, Credits: p.prices[i],
	}
	pj.Model, _ = j.Param("model")
	pj.AspectRatio, _ = j.Param("aspect_ratio")
	pj.OutputFormat, _ = j.Param("output_format")
	pj.Prompt, pj.NegativePrompt = promptText(j.Prompts, false), promptText(j.Prompts, true)
	pj.Settings = jobSettings(j)
	dir := filepath.Dir(p.manifest.Path)
	for _, in := range j.Inputs {
		ri := report.Input{Field: in.Field, From: in.From, Index: in.Index}
		if in.Path != "" {
			ri.Path = in.Path
			if rel, err := filepath.Rel(dir, in.Path); err == nil {
				ri.Path = rel
			}
			ri.Path = filepath.ToSlash(ri.Path)
		}
		pj.Inputs = append(pj.Inputs, ri)
	}
	return pj
}

// promptText is the text of a job's positive prompts (negative false) or
// of its negative ones: the text itself when there is one of weight 1 (or
// −1), the usual case; else each text, with its weight when that is not
// ±1, joined with " | ", e.g. "a castle | fog (weight 0.4)". "" when there
// are none.
func promptText(ps []manifest.Prompt, negative bool) string {
	unit := 1.0
	if negative {
		unit = -1
	}
	n, last := 0, 0
	for i, p := range ps {
		if (p.Weight < 0) == negative {
			n, last = n+1, i
		}
	}
	switch {
	case n == 0:
		return ""
	case n == 1 && ps[last].Weight == unit:
		return ps[last].Text // shared with the manifest's job: no copy per job
	}
	parts := make([]string, 0, n)
	for _, p := range ps {
		if (p.Weight < 0) != negative {
			continue
		}
		t := p.Text
		if p.Weight != unit {
			t += " (weight " + strconv.FormatFloat(p.Weight, 'f', -1, 64) + ")"
		}
		parts = append(parts, t)
	}
	return strings.Join(parts, " | ")
}

// jobSettings are the settings a job sets beyond those the plan shows in
// fields of their own (engine or service, model, size, steps, samples,
// aspect ratio, output format, inputs, prompts): a Stable Image job's form
// fields in the service's order, a v1 job's sampler, cfg_scale, seed,
// style_preset and clip_guidance_preset. A seed of 0, which asks the API
// for a random one, is left out; nil when there are none.
func jobSettings(j *manifest.Job) []report.Setting {
	var out []report.Setting
	add := func(name, value string) { out = append(out, report.Setting{Name: name, Value: value}) }
	if j.Service != "" {
		for _, p := range j.Params {
			switch {
			case p.Name == "model", p.Name == "aspect_ratio", p.Name == "output_format":
				// fields of their own
			case p.Name == "seed" && p.Value == "0":
			default:
				add(p.Name, p.Value)
			}
		}
		return out
	}
	if j.Sampler != "" {
		add("sampler", j.Sampler)
	}
	if j.CfgScale != nil {
		add("cfg_scale", strconv.FormatFloat(*j.CfgScale, 'f', -1, 64))
	}
	if j.Seed != 0 {
		add("seed", strconv.FormatUint(uint64(j.Seed), 10))
	}
	if j.StylePreset != "" {
		add("style_preset", j.StylePreset)
	}
	if j.ClipGuidancePreset != "" {
		add("clip_guidance_preset", j.ClipGuidancePreset)
	}
	return out
}

// checkBudget returns an error wrapping cost.ErrOverBudget when the plan
// costs more than its budget.
func (p *planned) checkBudget() error {
	if p.budget == nil {
		return nil
	}
	return cost.CheckBudget(p.total, *p.budget)
}

func (e *env) plan(ctx context.Context, args []string) error {
	fs := newFlagSet("plan", "plan [flags] MANIFEST", e.stderr)
	var pf planFlags
	pf.register(fs)
	format := formatValue{report.FormatTable, report.PlanFormats}
	fs.Var(&format, "format", "output `format`: "+strings.Join(format.allowed, ", "))
	if err := parseFlags(fs, args, 1, 1); err != nil {
		return err
	}
	p, err := e.loadPlan(ctx, fs.Arg(0), &pf)
	if err != nil {
		return err
	}
	if err := report.WritePlanWidth(e.stdout, format.name, p.report, e.tableWidth()); err != nil {
		return err
	}
	if err := e.appendStepSummary(func(w *os.File) error { return report.WritePlan(w, "markdown", p.report) }); err != nil {
		return err
	}
	return p.checkBudget()
}

// appendStepSummary appends Markdown to the file GITHUB_STEP_SUMMARY names,
// when it is set (GitHub Actions shows it on the run's page).
func (e *env) appendStepSummary(write func(*os.File) error) error {
	path := e.getenv("GITHUB_STEP_SUMMARY")
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("step summary: %w", err)
	}
	if err := write(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("step summary: %w", err)
	}
	return f.Close()
}

// exitCode maps an error to the documented exit code.
func exitCode(ctx context.Context, err error) int {
	var ue *usageError
	var ie *invalidError
	var me *manifest.Errors
	var fe *manifest.InputError
	switch {
	case err == nil:
		return exitOK
	case ctx.Err() != nil:
		return exitInterrupted
	case errors.As(err, &ue), errors.As(err, &ie), errors.As(err, &me), errors.As(err, &fe):
		return exitUsage
	case errors.Is(err, cost.ErrOverBudget), errors.Is(err, report.ErrThreshold):
		return exitOverBudget
	case errors.Is(err, errLowBalance):
		return exitLowBalance
	}
	return exitFailed
}

// jobsOf yields the jobs of m in order.
func jobsOf(m *manifest.Manifest) iter.Seq[manifest.Job] {
	return func(yield func(manifest.Job) bool) {
		for _, j := range m.All() {
			if !yield(j) {
				return
			}
		}
	}
}
