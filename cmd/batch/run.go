package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/outdir"
	"github.com/batch-tool/batch/internal/report"
	"github.com/batch-tool/batch/internal/runner"
	"github.com/batch-tool/batch/internal/sandbox"
	"github.com/batch-tool/batch/internal/stability"
)

// sandboxAsyncDelay is how long the in-process sandbox of run --sandbox
// takes to finish an async generation, and how often the run polls it.
const sandboxAsyncDelay = 500 * time.Millisecond

// errLowBalance reports an account balance below the run's estimate.
var errLowBalance = errors.New("account balance is below the estimate")

// errJobsFailed reports a finished run in which some jobs failed or were
// filtered.
var errJobsFailed = errors.New("some jobs did not succeed")

// runFlags are batch run's flags.
type runFlags struct {
	planFlags
	out         string
	concurrency concurrencyValue
	rate        rateValue
	apiURL      string
	sandbox     bool
	format      formatValue
	// retryUnknown bounds the retries of attempts whose outcome is unknown.
	retryUnknown int
	// ttfb, stall and maxPause are the time-to-first-byte and body-stall
	// limits of every request, and the cap on every pause.
	ttfb, stall, maxPause time.Duration
	// maxImage caps the bytes of one answer image.
	maxImage int64
	// replace moves the files of jobs that changed or left the manifest
	// aside instead of refusing the run.
	replace bool
}

func (e *env) runCmd(ctx context.Context, args []string) error {
	fs := newFlagSet("run", "run [flags] MANIFEST", e.stderr)
	f := runFlags{format: formatValue{report.FormatTable, report.RunFormats}}
	f.register(fs)
	fs.StringVar(&f.out, "out", "", "output `folder` for images, journal and report (default: the manifest's output, else out/NAME beside it; with --shard K/N, its shard-K-of-N folder)")
	fs.Var(&f.concurrency, "concurrency", "most jobs in flight, or auto (2× the rate's N: reaches the rate limit for generations up to two windows long)")
	fs.Var(&f.rate, "rate", "request limit as `N/DURATION`; no window of that length ever holds more than N requests (default: the manifest's rate, else 150/10s; divided by N with --shard K/N)")
	fs.StringVar(&f.apiURL, "api-url", stability.DefaultBaseURL, "API base `URL`; plain http only to loopback")
	fs.BoolVar(&f.sandbox, "sandbox", false, "run against an in-process sandbox API on loopback (no key, no spend)")
	fs.Var(&f.format, "format", "summary `format` on stdout: "+strings.Join(f.format.allowed, ", "))
	fs.IntVar(&f.retryUnknown, "retry-unknown", runner.DefaultRetryUnknown, "retry an attempt whose outcome is unknown (sent, then no answer: possibly billed) at most `N` times")
	fs.DurationVar(&f.ttfb, "ttfb-timeout", stability.DefaultTTFBTimeout, "fail an attempt (outcome unknown) when no answer starts within this `duration` of the request being sent")
	fs.DurationVar(&f.stall, "stall-timeout", stability.DefaultStallTimeout, "fail an attempt when sending or receiving stalls for this `duration`")
	fs.DurationVar(&f.maxPause, "max-pause", runner.DefaultMaxPause, "longest pause a Retry-After, lock-out or backoff may impose on the run")
	fs.Int64Var(&f.maxImage, "max-image-bytes", stability.DefaultMaxImageBytes, "largest answer image accepted, in `bytes`; a larger one fails the attempt")
	fs.BoolVar(&f.replace, "replace", false, "when OUT holds jobs whose request changed, jobs not in the manifest or another manifest's run, move their files to OUT/"+runner.ReplacedDir+"/ and run (without it, such a run stops before sending anything)")
	if err := parseFlags(fs, args, 1, 1); err != nil {
		return err
	}
	if err := checkSandboxFlags(fs); err != nil {
		return err
	}
	p, err := e.loadPlan(ctx, fs.Arg(0), &f.planFlags)
	if err != nil {
		return err
	}
	if err := e.useCache(ctx, p, &f.planFlags, cacheEndpoint(f.apiURL, f.sandbox)); err != nil {
		return err
	}
	if err := p.checkBudget(); err != nil {
		return err
	}
	cfg, err := e.runnerConfig(p, &f)
	if err != nil {
		return err
	}
	p.cache.configure(&cfg)
	// One run per output folder: the lock is held until the report is
	// saved, and a second run stops here, before anything is sent.
	lock, err := outdir.Lock(cfg.OutDir)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	// What earlier runs of this folder charged or may have been billed
	// counts against the budget too; what they made that this manifest
	// would replace or orphan stops the run here, unless --replace.
	st, err := p.checkOut(f.replace, &cfg)
	if err != nil {
		return err
	}
	if st.Remaining, err = p.remaining(st, cfg.OutDir); err != nil { // the image cache's jobs are not bought
		return err
	}
	apiURL, key := f.apiURL, e.getenv("STABILITY_API_KEY")
	if f.sandbox {
		sb, err := startSandbox(sandbox.Config{Pricer: p.sheet, AsyncDelay: sandboxAsyncDelay}, "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer sb.stop(ctx)
		apiURL, key = "http://"+sb.addr, "sandbox"
		// The in-process sandbox finishes async generations in a moment;
		// polling it every 10 s, as the real API asks, would only wait.
		cfg.PollInterval, cfg.FastPolls = sandboxAsyncDelay, true
		fmt.Fprintf(e.stderr, "batch: sandbox API on %s\n", apiURL)
	} else if key == "" {
		return usageErrorf("STABILITY_API_KEY is not set (or pass --sandbox to try the tool without a key)")
	}
	// As many idle connections as requests in flight: each is reused.
	conns := cmp.Or(cfg.Concurrency, runner.AutoConcurrency(cfg.Rate, p.set.Len()))
	client, err := stability.NewClient(stability.Options{BaseURL: apiURL, APIKey: key, ClientVersion: buildVersion(),
		TTFBTimeout: f.ttfb, StallTimeout: f.stall, MaxImageBytes: f.maxImage, Concurrency: conns})
	if err != nil {
		return usageErrorf("--api-url: %v", err)
	}

	if p.budget != nil && st.Spent() > 0 {
		if err := cost.CheckBudget(st.Spent()+st.Remaining, *p.budget); err != nil {
			return fmt.Errorf("%w (earlier runs into %s: %s credits charged, %s possibly billed; %s estimated still to spend)",
				err, cfg.OutDir, st.Charged, st.PossiblyBilled, st.Remaining)
		}
	}
	if !f.sandbox { // the in-process sandbox is an account of this run's own
		closeRate := e.shareRate(&cfg, key)
		defer closeRate()
	}
	if err := runner.WaitTurn(ctx, cfg.Rate, cfg.RateState); err != nil { // the balance check counts against the limit too
		return err
	}
	balanceBefore, err := client.Balance(ctx)
	if err != nil {
		return fmt.Errorf("check balance: %w", err)
	}
	if balanceBefore < st.Remaining {
		return fmt.Errorf("%w: balance at start %s credits, estimated %s credits still to spend", errLowBalance, balanceBefore, st.Remaining)
	}

	// Each job's report row goes to disk as the job finishes; the report
	// is written from them at the end, one row at a time.
	rows, err := report.NewRunSpill(cfg.OutDir, p.set.Len())
	if err != nil {
		return err
	}
	defer rows.Close()
	cached := cacheTally{e: e}
	cfg.Finished = func(i int, jr runner.JobResult) error {
		cached.add(jr, p.prices[i])
		row := p.runJob(i, jr)
		return rows.Add(i, &row)
	}
	started := e.timeNow()
	res, runErr := runner.Run(ctx, cfg, client, p.set, p.prices)
	finished := e.timeNow()
	if runErr != nil && res.Reported != p.set.Len() {
		// Run stopped before it started (it could not prepare OUT, or was
		// interrupted first): nothing was sent, so there is nothing to report.
		return runErr
	}
	if e.isTerminal && (res.Interrupted || runErr != nil) {
		fmt.Fprintln(e.stderr) // end the progress line, which ends itself only when every job is done
	}
	if rp := res.Replaced; rp.Changed != nil || rp.Removed != nil {
		fmt.Fprintf(e.stderr, "batch: %s\n", replacedText(rp, cfg.OutDir))
	}
	// The report is saved even when the run was interrupted or stopped. The
	// balance is shown only as it was at the start: the live balance lags,
	// so a difference would not be what the run cost.
	rep := p.runReport(res, rows, started, finished, &balanceBefore)
	rep.CachedJobs, rep.CacheSavedCredits = cached.jobs, cached.saved
	cached.done()
	// The summary is printed even when the report cannot be saved (a full
	// disk): the run's outcome must reach the user one way or the other.
	saveErr := report.Save(cfg.OutDir, rep)
	var writeErr error
	if f.format.name == report.FormatHTML {
		// The page embeds thumbnails of the images, read from OUT.
		writeErr = report.WriteRunHTML(context.WithoutCancel(ctx), e.stdout, rep, cfg.OutDir)
	} else {
		writeErr = report.WriteRun(e.stdout, f.format.name, rep)
	}
	if writeErr != nil {
		return errors.Join(runErr, saveErr, writeErr)
	}
	if saveErr != nil {
		return errors.Join(runErr, saveErr)
	}
	if err := e.appendStepSummary(func(w *os.File) error { return report.WriteRun(w, "markdown", rep) }); err != nil {
		return errors.Join(runErr, err)
	}
	if err := rows.Close(); err != nil {
		return errors.Join(runErr, err)
	}
	fmt.Fprintf(e.stderr, "batch: report in %s\n", filepath.Join(cfg.OutDir, report.RunFile))
	switch {
	case runErr != nil:
		return runErr
	case res.Interrupted:
		fmt.Fprintf(e.stderr, "batch: interrupted; finished jobs are saved. Resume with:\n  %s\n", resumeCommand(fs, f.shard, cfg.OutDir))
		return context.Canceled
	case rep.Totals.Failed > 0 || rep.Totals.Filtered > 0 || rep.Totals.Skipped > 0:
		return fmt.Errorf("%w: %d failed, %d filtered, %d skipped of %d", errJobsFailed,
			rep.Totals.Failed, rep.Totals.Filtered, rep.Totals.Skipped, rep.Totals.Jobs)
	}
	return nil
}

// checkOut reads what the output folder holds for the plan and, unless
// --replace, refuses (a replaceError, exit 2) a folder holding another
// manifest's run, jobs whose request changed since they ran, or jobs the
// manifest no longer has; it sets cfg's Replace, Manifest and Origin. It
// sends nothing.
func (p *planned) checkOut(replace bool, cfg *runner.Config) (runner.Standing, error) {
	origin, err := runner.NewOrigin(p.manifest.Path, p.manifest.Name, cfg.OutDir)
	if err != nil {
		return runner.Standing{}, err
	}
	var all runner.Jobs // the manifest's jobs, for a shard: what OUT holds of the others is not removed
	if !p.set.whole() {
		all = allJobs(p.manifest)
	}
	st, err := runner.ReadStanding(cfg.OutDir, p.set, p.prices, all)
	if err != nil {
		return st, err
	}
	c := &replaceError{out: cfg.OutDir, changed: st.Changed, removed: st.Removed}
	if st.Origin != (runner.Origin{}) && !st.Origin.Same(origin) {
		c.other = &st.Origin
	}
	if !replace && (c.other != nil || c.changed != nil || c.removed != nil) {
		return st, &invalidError{c}
	}
	cfg.Replace, cfg.Manifest, cfg.Origin = replace, all, origin
	return st, nil
}

// replaceError refuses a run into a folder whose files the manifest would
// replace or orphan.
type replaceError struct {
	out              string
	other            *runner.Origin // the other manifest whose run the folder holds; nil when none
	changed, removed []string       // job ids, as runner.Standing lists them
}

func (e *replaceError) Error() string {
	var held []string
	if n := len(e.changed); n > 0 {
		held = append(held, fmt.Sprintf("%d job(s) whose request changed since they ran (%s)", n, idList(e.changed)))
	}
	if n := len(e.removed); n > 0 {
		held = append(held, fmt.Sprintf("%d job(s) not in this manifest (%s)", n, idList(e.removed)))
	}
	moveTo := filepath.Join(e.out, runner.ReplacedDir) + string(filepath.Separator)
	switch {
	case e.other != nil && held == nil:
		return fmt.Sprintf("%s holds a run of another manifest, %s; nothing was sent: rerun with --replace to run this manifest there (no file needs to move: its jobs with the same requests are kept), or with another --out",
			e.out, e.other)
	case e.other != nil:
		return fmt.Sprintf("%s holds a run of another manifest, %s, with %s; nothing was sent: rerun with --replace to move their files to %s and run this manifest there, or with another --out",
			e.out, e.other, strings.Join(held, " and "), moveTo)
	}
	return fmt.Sprintf("%s holds %s; nothing was sent: rerun with --replace to move their files to %s and go on, or with another --out",
		e.out, strings.Join(held, " and "), moveTo)
}

// idList names the first 10 ids and counts the rest: "a, b, c and 4 more".
func idList(ids []string) string {
	const shown = 10
	if len(ids) <= shown {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ids[:shown], ", "), len(ids)-shown)
}

// replacedText tells what --replace moved.
func replacedText(rp runner.Replaced, out string) string {
	var jobs []string
	if n := len(rp.Changed); n > 0 {
		jobs = append(jobs, fmt.Sprintf("%d changed", n))
	}
	if n := len(rp.Removed); n > 0 {
		jobs = append(jobs, fmt.Sprintf("%d removed", n))
	}
	what := "replaced " + strings.Join(jobs, " and ") + " job(s)"
	if rp.Files == 0 {
		return what + "; none had files on disk"
	}
	return fmt.Sprintf("%s: %d file(s) moved to %s", what, rp.Files, filepath.Join(out, filepath.FromSlash(rp.Dir)))
}

// runnerConfig settles the output folder, concurrency and rate from the
// flags, then the manifest, then the defaults.
func (e *env) runnerConfig(p *planned, f *runFlags) (runner.Config, error) {
	m := p.manifest
	cfg := runner.Config{Budget: p.budget, Now: e.now, RetryUnknown: &f.retryUnknown, MaxPause: f.maxPause}
	cfg.Warn = func(msg string) { fmt.Fprintf(e.stderr, "batch: warning: %s\n", msg) }
	switch {
	case f.out != "":
		cfg.OutDir = f.out
	case m.Output != "":
		cfg.OutDir = m.Output
	default:
		stem := strings.TrimSuffix(filepath.Base(m.Path), filepath.Ext(m.Path))
		cfg.OutDir = filepath.Join(filepath.Dir(m.Path), "out", stem)
	}
	if f.shard.N > 1 {
		// Always a folder of its own, --out or not: shards never share a
		// journal.
		cfg.OutDir = filepath.Join(cfg.OutDir, fmt.Sprintf("shard-%d-of-%d", f.shard.K, f.shard.N))
	}
	cfg.Concurrency = f.concurrency.n
	if !f.concurrency.set && m.Concurrency != "" {
		n, err := parseConcurrency(m.Concurrency)
		if err != nil {
			return cfg, manifestError(m, "concurrency", err)
		}
		cfg.Concurrency = n
	}
	rate := f.rate.Rate
	if rate.N == 0 && m.Rate != "" {
		r, err := runner.ParseRate(m.Rate)
		if err != nil {
			return cfg, manifestError(m, "rate", err)
		}
		rate = r
	}
	if rate.N == 0 {
		rate = runner.DefaultRate
	}
	if f.shard.N > 1 {
		// The limit is per account, so the shards share it.
		rate.N = max(rate.N/f.shard.N, 1)
	}
	cfg.Rate = rate
	if e.isTerminal {
		cfg.Progress = &runner.TerminalProgress{W: e.stderr}
	} else {
		cfg.Progress = &runner.LineProgress{W: e.stderr}
	}
	return cfg, nil
}

func manifestError(m *manifest.Manifest, key string, err error) error {
	line, col := m.KeyPos(key)
	return &manifest.Errors{{File: m.Path, Line: line, Col: col, Msg: key + ": " + err.Error()}}
}

// reportVars is a job's matrix values for the report.
func reportVars(vs []manifest.Var) []report.Var {
	if vs == nil {
		return nil
	}
	out := make([]report.Var, len(vs))
	for i, v := range vs {
		out[i] = report.Var{Key: v.Key, Value: v.Value}
	}
	return out
}

// runReport builds report.json's model from the plan and the run's
// result; its jobs are the rows the run left in rows.
func (p *planned) runReport(res runner.Result, rows *report.RunSpill, started, finished time.Time, before *cost.Credits) *report.Run {
	return &report.Run{
		Manifest:              p.manifest.Path,
		Name:                  p.manifest.Name,
		Pricing:               p.sheet.ID,
		Shard:                 p.report.Shard,
		StartedAt:             started.UTC(),
		FinishedAt:            finished.UTC(),
		EstimatedCredits:      p.total,
		ChargedCredits:        res.Charged,
		PossiblyBilledCredits: res.Spent - res.Charged,
		Budget:                p.budget,
		BalanceBefore:         before,
		Interrupted:           res.Interrupted,
		Totals:                rows.Totals(),
		Rows:                  rows,
	}
}

// runJob is the report row of the i-th job of the plan, which ended with
// jr.
func (p *planned) runJob(i int, jr runner.JobResult) report.RunJob {
	j := p.set.Job(i)
	var pj report.PlanJob
	b := rowBuilder{p: p}
	b.fill(&pj, i, &j)
	rj := report.RunJob{
		Index: pj.Index, ID: j.ID, Group: j.Base, DependsOn: pj.DependsOn, Inputs: pj.Inputs,
		Engine: j.Engine, Service: pj.Service, Model: pj.Model,
		AspectRatio: pj.AspectRatio, OutputFormat: pj.OutputFormat,
		Prompt: pj.Prompt, NegativePrompt: pj.NegativePrompt, Settings: pj.Settings,
		Width: j.Width, Height: j.Height, Steps: j.Steps, Samples: j.Samples,
		Status: string(jr.Status), Failure: string(jr.Failure), Credits: jr.Credits,
		PossiblyBilledCredits: jr.Unknown, Attempts: jr.Attempts,
		Resumed: jr.Resumed, Cached: jr.Cached, GenerationID: jr.GenerationID, Error: jr.Error, Params: jr.Params,
		Vars:   reportVars(j.Vars),
		Images: make([]report.Image, len(jr.Images)),
	}
	for k, im := range jr.Images {
		rj.Images[k] = report.Image{Path: im.Path, Seed: im.Seed, FinishReason: im.FinishReason, SHA256: im.SHA256, RequestID: im.RequestID}
	}
	return rj
}

// resumeCommand is the command line that resumes an interrupted run: the
// same flags, with --out pinned to the folder that holds the journal (for a
// shard, the folder that holds its shard-K-of-N folder).
func resumeCommand(fs *flag.FlagSet, s shard, out string) string {
	if s.N > 1 {
		out = filepath.Dir(out)
	}
	parts := []string{"batch", "run"}
	fs.Visit(func(fl *flag.Flag) {
		switch v := fl.Value.(type) {
		case *stringList: // a repeatable flag: each value again
			for _, s := range *v {
				parts = append(parts, fmt.Sprintf("--%s=%s", fl.Name, shellQuote(s)))
			}
		default:
			if fl.Name != "out" {
				parts = append(parts, fmt.Sprintf("--%s=%s", fl.Name, shellQuote(fl.Value.String())))
			}
		}
	})
	parts = append(parts, "--out="+shellQuote(out), shellQuote(fs.Arg(0)))
	return strings.Join(parts, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r == ':' || r == '=' ||
			r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
