package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"iter"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/report"
	"github.com/batch-tool/batch/internal/stability"
)

// planFlags are the flags that decide what a manifest costs; plan, run and
// diff share them.
type planFlags struct {
	pricing string
	prices  string
	budget  creditsValue
	shard   shard
	only    stringList // --only globs, repeatable
	sample  int        // --sample N; 0 means every job
	// cacheDir is --cache, the image cache's folder ("" when not given),
	// and noCache --no-cache; see openImageCache.
	cacheDir string
	noCache  bool
}

// selection is the jobs the flags take.
func (f *planFlags) selection() selection {
	return selection{only: f.only, sample: f.sample, shard: f.shard}
}

func (f *planFlags) register(fs *flag.FlagSet) {
	f.registerPricing(fs)
	fs.Var(&f.budget, "budget", "credit ceiling: refuse (exit 3) when the estimate is above it (default: the manifest's budget)")
	fs.Var(&f.shard, "shard", "take only the K-th of N deterministic slices of the jobs, as `K/N` (a pipeline's chains stay whole)")
	fs.Var(&f.only, "only", "take only the jobs whose id, or whose entry's id, matches `GLOB` (*, ?, [a-z]); repeatable; a pipeline job brings its sources")
	fs.Var(sampleFlag{&f.sample}, "sample", "take only `N` jobs spread evenly over the manifest (the same N takes the same jobs); a pipeline job brings its sources")
	fs.StringVar(&f.cacheDir, "cache", "", "image cache `folder`: jobs whose requests it holds come from it at no cost (default: the manifest's cache, else batch/images in the user's cache folder)")
	fs.BoolVar(&f.noCache, "no-cache", false, "take no image from the image cache and add none to it: every job is priced and bought")
}

// registerPricing registers only the flags that choose prices (diff has no
// budget or shard).
func (f *planFlags) registerPricing(fs *flag.FlagSet) {
	fs.StringVar(&f.pricing, "pricing", "", "price sheet `ID` (default: the manifest's pricing, else "+cost.DefaultSheet+"; see 'batch prices')")
	fs.StringVar(&f.prices, "prices", "", "YAML `file` of price rules that add to or override the sheet's")
}

// planned is a manifest priced under a sheet: the jobs (of one shard, if
// asked), each job's credits, and the plan report. No job is held: the
// report's rows are built from the manifest as each pass of a renderer
// reads them.
type planned struct {
	manifest *manifest.Manifest
	sheet    *cost.Sheet
	set      jobSet         // the jobs planned
	prices   []cost.Credits // per job of set: image price × samples
	total    cost.Credits
	budget   *cost.Credits // nil when there is none; a shard's share of it under --shard K/N
	// allShards is the error of all the shards of --shard K/N together
	// being over the budget; nil when they are not, or there is no budget.
	allShards error
	report    *report.Plan // header and totals; its Jobs are planRows
	// cache is what the image cache holds of the jobs (see useCache);
	// total and report then leave them out.
	cache imageCache
}

// loadGCPercent is the garbage collector's target percentage while a
// manifest loads (GOGC's default is 100).
const loadGCPercent = 50

// loadManifest loads the manifest at path, as manifest.Load does, keeping
// the heap close to what the load holds. The manifest's YAML tree is built
// whole, then read into jobs: the tree is most of a large manifest's peak
// memory, and at the default target the collector would let the heap grow
// to twice what it holds before collecting; at loadGCPercent it grows by
// half. GOGC set lower, or off, is kept. Once the jobs are read out, the
// tree is all garbage: it is collected at once, before planning's own
// garbage grows the heap to twice the tree (`go run ./bench -only
// plan,rss` shows the peaks).
func loadManifest(ctx context.Context, path string) (*manifest.Manifest, error) {
	prev := debug.SetGCPercent(loadGCPercent)
	if prev >= 0 && prev < loadGCPercent || prev < 0 {
		debug.SetGCPercent(prev)
	}
	m, err := manifest.Load(ctx, path)
	debug.SetGCPercent(prev)
	runtime.GC()
	return m, err
}

// loadPlan loads, validates, expands and prices the manifest at path. Once
// ctx is done (a signal) it stops, even in the middle of a huge manifest;
// so do the passes of the plan report's jobs.
func (e *env) loadPlan(ctx context.Context, path string, f *planFlags) (*planned, error) {
	if e.planning != nil {
		e.planning(ctx)
	}
	if err := checkOnly(f.only); err != nil {
		return nil, err
	}
	m, err := loadManifest(ctx, path)
	if ctx.Err() != nil {
		// Not wrapping ctx.Err(): main prints no bare "context canceled"
		// (the exit code, 130, comes from ctx).
		return nil, interrupted(path)
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
	set := allJobs(m)
	if sel := f.selection(); sel.partial() {
		if set, err = sel.pick(ctx, m); ctx.Err() != nil {
			return nil, interrupted(path)
		} else if err != nil {
			return nil, err
		}
	}
	prices, total, err := priceJobs(ctx, set, sheet)
	if ctx.Err() != nil {
		return nil, interrupted(path)
	}
	if err != nil {
		return nil, pricingProblems(m, set, err)
	}
	var allShards error // the shards together over the budget
	if budget != nil && f.shard.N > 1 {
		if budget, allShards, err = shardBudget(ctx, m, f, sheet, total, *budget); err != nil {
			return nil, err
		}
	}
	p := &planned{manifest: m, sheet: sheet, set: set, prices: prices, total: total, budget: budget, allShards: allShards}
	p.report = &report.Plan{
		Manifest:     m.Path,
		Name:         m.Name,
		Pricing:      sheet.ID,
		Shard:        f.shard.String(),
		Selection:    f.selection().subset(),
		TotalCredits: total,
		TotalUSD:     total.USD(),
		Budget:       budget,
		OverBudget:   budget != nil && (total > *budget || allShards != nil),
		Jobs:         planRows{p, ctx},
	}
	return p, nil
}

// shardBudget is a shard's share of the budget: the shards of a manifest
// run side by side, each unaware of the others' spending, so each gets the
// budget × its estimate ÷ all the shards' estimate (rounded down), and
// together they can never spend more than the budget. over is the error
// of all the shards together being over the budget (every shard then
// refuses, exit 3, as a run of the whole manifest would); nil when they are
// not.
func shardBudget(ctx context.Context, m *manifest.Manifest, f *planFlags, sheet *cost.Sheet, mine, budget cost.Credits) (share *cost.Credits, over, err error) {
	whole := f.selection()
	whole.shard = shard{}
	set, err := whole.pick(ctx, m)
	if err != nil {
		return nil, nil, err
	}
	_, all, err := priceJobs(ctx, set, sheet)
	if ctx.Err() != nil {
		return nil, nil, interrupted(m.Path)
	}
	if err != nil {
		return nil, nil, pricingProblems(m, set, err)
	}
	if err := cost.CheckBudget(all, budget); err != nil {
		over = fmt.Errorf("%w (all %d shards together)", err, f.shard.N)
	}
	c := budget
	if all > 0 {
		c = cost.Credits(new(big.Int).Div(new(big.Int).Mul(big.NewInt(int64(budget)), big.NewInt(int64(mine))), big.NewInt(int64(all))).Int64())
	}
	return &c, over, nil
}

// interrupted is the error of a plan of path stopped by a signal.
func interrupted(path string) error {
	return fmt.Errorf("plan %s: interrupted; nothing was sent", path)
}

// priceJobs prices every job of set on sheet in one pass, as the jobs are
// built: each job's credits, and their total. It stops once ctx is done.
func priceJobs(ctx context.Context, set jobSet, sheet *cost.Sheet) ([]cost.Credits, cost.Credits, error) {
	est := cost.NewEstimator(sheet)
	prices := make([]cost.Credits, set.Len())
	for i, j := range set.All() {
		if i%checkEvery == 0 && ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		prices[i] = est.Price(i, &j)
	}
	return prices, est.Total(), est.Err()
}

// checkEvery is how many jobs a pass builds between two looks at its
// context: a few milliseconds of work.
const checkEvery = 4096

// pricingProblems turns the estimate's errors into manifest problems at the
// position of the first job each one hit, so they read like validation
// errors: FILE:LINE:COL: message.
func pricingProblems(m *manifest.Manifest, set jobSet, err error) error {
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
		j := set.Job(je.Index)
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

// planRows are the plan report's jobs: p's jobs as report rows, built from
// the manifest one at a time as each pass reads them; a row's position is
// its job's in p.set. A pass stops once ctx is done.
type planRows struct {
	p   *planned
	ctx context.Context
}

// Each calls fn with the row of every job of the plan, in order, reusing
// one row and its slices.
func (r planRows) Each(fn func(pos int64, j *report.PlanJob) error) error {
	b := rowBuilder{p: r.p}
	var row report.PlanJob
	for i, j := range r.p.set.All() {
		if i%checkEvery == 0 && r.ctx.Err() != nil {
			return interrupted(r.p.manifest.Path)
		}
		b.fill(&row, i, &j)
		if err := fn(int64(i), &row); err != nil {
			return err
		}
	}
	return nil
}

// At builds the row of the job at position pos of the plan.
func (r planRows) At(pos int64, row *report.PlanJob) error {
	if pos < 0 || pos >= int64(r.p.set.Len()) {
		return fmt.Errorf("plan %s: no job %d of %d", r.p.manifest.Path, pos, r.p.set.Len())
	}
	j := r.p.set.Job(int(pos))
	b := rowBuilder{p: r.p}
	b.fill(row, int(pos), &j)
	return nil
}

// planJob is the plan report's row of the i-th job of the plan, sharing no
// slice with another.
func (p *planned) planJob(i int) report.PlanJob {
	j := p.set.Job(i)
	b := rowBuilder{p: p}
	var row report.PlanJob
	b.fill(&row, i, &j)
	return row
}

// rowBuilder builds the report rows of a plan's jobs, one after another,
// reusing the slices of the previous row.
type rowBuilder struct {
	p        *planned
	deps     []string
	inputs   []report.Input
	settings []report.Setting
	// The previous input file and its path as the report shows it:
	// consecutive jobs mostly take the same files.
	lastPath, lastShown string
}

// fill sets row to the report row of j, the i-th job of the plan.
func (b *rowBuilder) fill(row *report.PlanJob, i int, j *manifest.Job) {
	*row = report.PlanJob{
		Index: b.p.set.Index(i), ID: j.ID, Group: j.Base, Engine: j.Engine, Service: j.Service,
		Width: j.Width, Height: j.Height, Steps: j.Steps, Samples: j.Samples, Credits: b.p.prices[i],
	}
	if b.p.cache.has(i) {
		row.Credits, row.Cached = 0, true
	}
	row.Model, _ = j.Param("model")
	row.AspectRatio, _ = j.Param("aspect_ratio")
	row.OutputFormat, _ = j.Param("output_format")
	row.Prompt, row.NegativePrompt = promptText(j.Prompts, false), promptText(j.Prompts, true)
	if b.settings = jobSettings(b.settings[:0], j); len(b.settings) > 0 {
		row.Settings = b.settings
	}
	b.deps, b.inputs = b.deps[:0], b.inputs[:0]
	for _, in := range j.Inputs {
		// DependsOn lists the sources in the order of the inputs, without
		// repeats, as manifest.Job.DependsOn does.
		if in.From != "" && !slices.Contains(b.deps, in.From) {
			b.deps = append(b.deps, in.From)
		}
		ri := report.Input{Field: in.Field, From: in.From, Index: in.Index}
		if in.Path != "" {
			ri.Path = b.shown(in.Path)
		}
		b.inputs = append(b.inputs, ri)
	}
	if len(b.deps) > 0 {
		row.DependsOn = b.deps
	}
	if len(b.inputs) > 0 {
		row.Inputs = b.inputs
	}
}

// shown is an input file's path as the report shows it: relative to the
// manifest's folder, with forward slashes.
func (b *rowBuilder) shown(path string) string {
	if path != b.lastPath {
		shown := path
		if rel, err := filepath.Rel(filepath.Dir(b.p.manifest.Path), path); err == nil {
			shown = rel
		}
		b.lastPath, b.lastShown = path, filepath.ToSlash(shown)
	}
	return b.lastShown
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
// style_preset and clip_guidance_preset, appended to out. A seed of 0,
// which asks the API for a random one, is left out.
func jobSettings(out []report.Setting, j *manifest.Job) []report.Setting {
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
	if p.allShards != nil {
		return p.allShards
	}
	return cost.CheckBudget(p.total, *p.budget)
}

func (e *env) plan(ctx context.Context, args []string) error {
	fs := newFlagSet("plan", "plan [flags] MANIFEST", e.stderr)
	var pf planFlags
	pf.register(fs)
	format := formatValue{report.FormatTable, report.PlanFormats}
	fs.Var(&format, "format", "output `format`: "+strings.Join(format.allowed, ", "))
	apiURL := fs.String("api-url", stability.DefaultBaseURL, "API base `URL` whose images in the image cache count (run's --api-url)")
	sandbox := fs.Bool("sandbox", false, "count the images that runs with --sandbox put in the image cache")
	if err := parseFlags(fs, args, 1, 1); err != nil {
		return err
	}
	if err := checkSandboxFlags(fs); err != nil {
		return err
	}
	p, err := e.loadPlan(ctx, fs.Arg(0), &pf)
	if err != nil {
		return err
	}
	if err := e.useCache(ctx, p, &pf, cacheEndpoint(*apiURL, *sandbox)); err != nil {
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
