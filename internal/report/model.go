// Package report holds the cost report model of a plan or a run and renders
// it as a table, JSON, Markdown, CSV, JUnit XML or HTML; it also computes the
// cost difference between two plans.
package report

import (
	"fmt"
	"strconv"
	"time"

	"github.com/batch-tool/batch/internal/cost"
)

// Plan is what `batch plan --format json` prints: the plan's header and
// totals, then every expanded job with its price. Its JSON is the plan file
// `batch diff` and `batch report` read back. The jobs are not held: Jobs
// reads them, once per pass of a renderer, so a plan of millions of jobs
// renders in memory that does not grow with them.
type Plan struct {
	Manifest string `json:"manifest"`        // manifest path as given
	Name     string `json:"name,omitempty"`  // manifest name
	Pricing  string `json:"pricing"`         // price sheet id
	Shard    string `json:"shard,omitempty"` // "K/N" when sharded
	// Selection is the --only and --sample flags that took part of the
	// manifest's jobs, e.g. "--sample 12"; "" when they were not given.
	Selection    string        `json:"selection,omitempty"`
	TotalCredits cost.Credits  `json:"total_credits"`
	TotalUSD     string        `json:"total_usd"` // e.g. "$1.20"
	Budget       *cost.Credits `json:"budget"`    // null when there is none
	OverBudget   bool          `json:"over_budget"`
	// CachedJobs is how many jobs the image cache holds, priced at 0 in
	// TotalCredits, and CacheSavedCredits their list price; 0 (absent)
	// without a cache or hits.
	CachedJobs        int          `json:"cached_jobs,omitempty"`
	CacheSavedCredits cost.Credits `json:"cache_saved_credits,omitempty"`
	// Jobs reads the plan's jobs, written last in the JSON as "jobs"; nil
	// for a plan of no jobs.
	Jobs PlanJobs `json:"-"`
}

// PlanJobs is where a plan's jobs come from: a manifest priced job by job,
// or a plan file read one job at a time. Renderers read it in passes, each
// a call of Each, and never hold more than a few jobs.
type PlanJobs interface {
	// Each calls fn with every job, in plan order, and the position At
	// reads it back from. j is valid only during the call: the next may
	// reuse it and its slices. Each stops at the first error, fn's or its
	// own, and returns it.
	Each(fn func(pos int64, j *PlanJob) error) error
	// At reads into j the job Each gave at pos.
	At(pos int64, j *PlanJob) error
}

// PlanRows is a plan's jobs held in memory, for a plan small enough to
// hold (a test's, or the first MaxJobRows of a table); each job's
// position is its index.
type PlanRows []PlanJob

// Each calls fn with every job, in order.
func (r PlanRows) Each(fn func(pos int64, j *PlanJob) error) error {
	for i := range r {
		j := r[i]
		if err := fn(int64(i), &j); err != nil {
			return err
		}
	}
	return nil
}

// At copies the job at index pos into j.
func (r PlanRows) At(pos int64, j *PlanJob) error {
	if pos < 0 || pos >= int64(len(r)) {
		return fmt.Errorf("no job at %d of %d", pos, len(r))
	}
	*j = r[pos]
	return nil
}

// PlanJob is one expanded job with its price: a v1 job (Engine and Steps
// set) or a Stable Image job (Service set, Model, AspectRatio and
// OutputFormat when the job sets them).
type PlanJob struct {
	// Index is the job's 0-based position among all of the manifest's
	// expanded jobs (not just its shard's), so shards merge back in
	// manifest order.
	Index int    `json:"index"`
	ID    string `json:"id"`
	Group string `json:"group"` // the manifest entry's id; matrix rows share it
	// DependsOn lists the ids of the jobs whose images this job takes, in
	// the order of its inputs, without repeats; nil (absent) when it takes
	// none. The job runs only after all of them have succeeded.
	DependsOn []string `json:"depends_on,omitempty"`
	// Engine is the v1 engine id; "" (and absent from the JSON) for a
	// Stable Image job.
	Engine string `json:"engine,omitempty"`
	// Service is the Stable Image service, e.g. "generate/sd3"; "" for a
	// v1 job.
	Service string `json:"service,omitempty"`
	// Model is the service's model, e.g. "sd3.5-flash"; "" when the
	// service has none or the job leaves it to the API.
	Model string `json:"model,omitempty"`
	// Width and Height are the image size in pixels: as requested for v1,
	// the size the service is expected to return for a Stable Image job;
	// 0 when that depends on an input image.
	Width  int `json:"width"`
	Height int `json:"height"`
	// Steps is the v1 diffusion steps; 0 (absent) for a Stable Image job.
	Steps int `json:"steps,omitempty"`
	// AspectRatio is the Stable Image aspect_ratio the job sets, e.g.
	// "16:9"; "" when it sets none.
	AspectRatio string `json:"aspect_ratio,omitempty"`
	// OutputFormat is the Stable Image output_format the job sets (png,
	// jpeg or webp); "" when it sets none (png).
	OutputFormat string `json:"output_format,omitempty"`
	// Inputs are the job's image inputs, in the service's field order; nil
	// (absent) when it takes none.
	Inputs []Input `json:"inputs,omitempty"`
	// Prompt is the job's prompt, placeholders filled in; "" when its
	// service takes none. A v1 job with several positive text_prompts, or
	// one weighted other than 1, lists them as "text (weight 0.4) | …".
	Prompt string `json:"prompt"`
	// NegativePrompt is the job's negative prompt (for v1, its text_prompts
	// of negative weight, listed as Prompt lists them); "" (absent) when it
	// has none.
	NegativePrompt string `json:"negative_prompt,omitempty"`
	// Settings are the settings the job sets that have no field of their
	// own above: a Stable Image job's form fields in the service's field
	// order (seed, style_preset, cfg_scale, …), a v1 job's sampler,
	// cfg_scale, seed, style_preset and clip_guidance_preset; nil (absent)
	// when it sets none. A seed of 0 (random) is left out.
	Settings []Setting    `json:"settings,omitempty"`
	Samples  int          `json:"samples"`
	Credits  cost.Credits `json:"credits"` // per-image price × samples; 0 when Cached
	// Cached: the image cache holds the job's request, so a run takes its
	// images from there and buys nothing.
	Cached bool `json:"cached,omitempty"`
}

// Setting is one setting of a job and its value as sent, e.g.
// {"style_preset", "photographic"} or {"cfg_scale", "4.5"}.
type Setting struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Input is one image input of a Stable Image job: a file, or an image
// another job of the manifest produces. Exactly one of Path and From is
// set.
type Input struct {
	Field string `json:"field"` // the form field, e.g. "image", "mask" or "style_image"
	// Path is the file as the manifest names it, relative to the
	// manifest's folder, with forward slashes; "" for another job's image.
	Path string `json:"path,omitempty"`
	// From is the id of the job whose image this is; "" for a file.
	From string `json:"from,omitempty"`
	// Index is which of From's images, 1-based (1 is its first); 0 (absent)
	// for a file.
	Index int `json:"index,omitempty"`
}

// Job statuses in a run report.
const (
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusFiltered  = "filtered"
	StatusSkipped   = "skipped" // not run: interrupted, or stopped by a fatal error
)

// Run is report.json: the canonical record of a run, which every renderer
// reads.
//
// Money is reported as the list prices of what the API completed
// (ChargedCredits) and of attempts whose outcome is unknown
// (PossiblyBilledCredits), never as a difference of account balances: the
// live balance endpoint lags (during 206 credits of work it did not move;
// github.com/aself101/stability-ai-api, docs/LIVE-BATTERY-2026-09-22.md at
// 10fe5ea, finding 3). Reports written before this field set had a
// balance_after; it is read and dropped.
type Run struct {
	Manifest   string    `json:"manifest"`
	Name       string    `json:"name,omitempty"`
	Pricing    string    `json:"pricing"`
	Shard      string    `json:"shard,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	// EstimatedCredits is the plan's price of the run's jobs, those the
	// image cache held counted at 0.
	EstimatedCredits cost.Credits `json:"estimated_credits"`
	// ChargedCredits is the list price of the results the API completed,
	// jobs resumed from the journal included.
	ChargedCredits cost.Credits `json:"charged_credits"`
	// PossiblyBilledCredits is the list price of this run's attempts whose
	// outcome is unknown (sent, then no answer): they may have been billed.
	PossiblyBilledCredits cost.Credits `json:"possibly_billed_credits"`
	// Budget is the credit ceiling; nil when there is none.
	Budget *cost.Credits `json:"budget"`
	// BalanceBefore is the account balance when the run started; nil when
	// unknown.
	BalanceBefore *cost.Credits `json:"balance_before,omitempty"`
	Interrupted   bool          `json:"interrupted,omitempty"`
	// CachedJobs is how many jobs took their images from the image cache
	// (this run, or an earlier one the journal resumed them from), and
	// CacheSavedCredits their list price; 0 (absent) when none did.
	CachedJobs        int          `json:"cached_jobs,omitempty"`
	CacheSavedCredits cost.Credits `json:"cache_saved_credits,omitempty"`
	Totals            Totals       `json:"totals"`
	Jobs              []RunJob     `json:"jobs"`
	// Rows, when set, holds the jobs instead of Jobs (then nil): the
	// renderers read them from it one at a time, so a report of a million
	// jobs is written without holding them (see RunSpill).
	Rows RunJobs `json:"-"`

	// dir is the folder ReadRun read the report from; Merge uses it to keep
	// image paths of shards in different folders reachable.
	dir string
}

// Totals counts a run's jobs by status.
type Totals struct {
	Jobs      int `json:"jobs"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Filtered  int `json:"filtered"`
	Skipped   int `json:"skipped"`
}

// RunJob is one job's outcome. Its operation fields (DependsOn, Engine,
// Service, Model, Width, Height, Steps, AspectRatio, OutputFormat, Inputs,
// Prompt, NegativePrompt, Settings) mean what they mean in PlanJob.
type RunJob struct {
	// Index is the job's 0-based position among all of the manifest's
	// expanded jobs (not just its shard's); Merge orders shards' jobs by it.
	Index int    `json:"index"`
	ID    string `json:"id"`
	Group string `json:"group"`
	// Vars are the matrix values that made the job, in the order the
	// manifest writes its matrix keys; nil (absent) for a job not from a
	// matrix. The HTML report lays a matrix entry's images out by them.
	Vars         []Var    `json:"vars,omitempty"`
	DependsOn    []string `json:"depends_on,omitempty"`
	Engine       string   `json:"engine,omitempty"`
	Service      string   `json:"service,omitempty"`
	Model        string   `json:"model,omitempty"`
	Width        int      `json:"width"`
	Height       int      `json:"height"`
	Steps        int      `json:"steps,omitempty"`
	AspectRatio  string   `json:"aspect_ratio,omitempty"`
	OutputFormat string   `json:"output_format,omitempty"`
	Inputs       []Input  `json:"inputs,omitempty"`
	// Prompt, NegativePrompt and Settings are as in PlanJob; reports
	// written before they existed have none.
	Prompt         string    `json:"prompt"`
	NegativePrompt string    `json:"negative_prompt,omitempty"`
	Settings       []Setting `json:"settings,omitempty"`
	Samples        int       `json:"samples"`
	// Status is succeeded, failed, filtered or skipped; a job skipped
	// because a job it takes images from did not succeed says so in Error.
	Status string `json:"status"`
	// Failure says why a failed job failed, e.g. "moderated", "rejected",
	// "invalid", "server", "unknown", "budget" or "local"; "" otherwise.
	Failure string       `json:"failure,omitempty"`
	Credits cost.Credits `json:"credits"` // charged; zero when the API did no work
	// PossiblyBilledCredits is the list price of the job's attempts whose
	// outcome is unknown; zero (absent) when there were none.
	PossiblyBilledCredits cost.Credits `json:"possibly_billed_credits,omitempty"`
	Attempts              int          `json:"attempts"`          // requests sent, retries included
	Resumed               bool         `json:"resumed,omitempty"` // finished by an earlier run (from the journal)
	// Cached: the job's images came from the image cache; nothing was sent
	// and Credits is 0.
	Cached bool `json:"cached,omitempty"`
	// GenerationID is the id an asynchronous service (upscale/creative,
	// edit/replace-background-and-relight) returned for the job's submit,
	// under which its result was polled; "" (absent) for a synchronous job
	// and for one never submitted.
	GenerationID string `json:"generation_id,omitempty"`
	Error        string `json:"error,omitempty"`
	// Params is the generation parameters text, as in a PNG's parameters
	// chunk; JPEG and WebP files carry none, so this is their only record.
	Params string  `json:"parameters,omitempty"`
	Images []Image `json:"images"`
}

// Var is one matrix value of a job: a matrix key and the value the job
// takes, as the manifest writes it, e.g. {"seed", "7"}.
type Var struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Image is one file a job wrote.
type Image struct {
	Path         string `json:"path"` // relative to the output folder, with forward slashes
	Seed         uint32 `json:"seed"`
	FinishReason string `json:"finish_reason"`
	SHA256       string `json:"sha256"` // hex
	// RequestID is the API's x-request-id of the answer (what Stability
	// support asks for); "" when the server sent none.
	RequestID string `json:"request_id,omitempty"`
}

// opOf names what a job runs: the v1 engine, or the Stable Image
// service with its model, e.g. "generate/sd3 (sd3.5-flash)".
func opOf(engine, service, model string) string {
	switch {
	case service == "":
		return engine
	case model == "":
		return service
	}
	return service + " (" + model + ")"
}

// sizeText is a job's size: "1024x1024", "1344x768 (16:9)" when an aspect
// ratio is set, the ratio alone when the size is unknown, else "—".
func sizeText(w, h int, aspect string) string {
	switch {
	case w > 0 && h > 0 && aspect != "":
		return size(w, h) + " (" + aspect + ")"
	case w > 0 && h > 0:
		return size(w, h)
	case aspect != "":
		return aspect
	}
	return "—"
}

// stepsText is a v1 job's steps, or "—" for a Stable Image job.
func stepsText(steps int) string {
	if steps <= 0 {
		return "—"
	}
	return strconv.Itoa(steps)
}

func (j PlanJob) op() string { return opOf(j.Engine, j.Service, j.Model) }

func (j RunJob) op() string { return opOf(j.Engine, j.Service, j.Model) }
