// Package report holds the cost report model of a plan or a run and renders
// it as a table, JSON, Markdown, CSV, JUnit XML or HTML; it also computes the
// cost difference between two plans.
package report

import (
	"time"

	"github.com/batch-tool/batch/internal/cost"
)

// Plan is what `batch plan --format json` prints: every expanded job with
// its price, and the total. Its JSON is the plan file `batch diff` and
// `batch report` read back.
type Plan struct {
	Manifest     string        `json:"manifest"`        // manifest path as given
	Name         string        `json:"name,omitempty"`  // manifest name
	Pricing      string        `json:"pricing"`         // price sheet id
	Shard        string        `json:"shard,omitempty"` // "K/N" when sharded
	TotalCredits cost.Credits  `json:"total_credits"`
	TotalUSD     string        `json:"total_usd"` // e.g. "$1.20"
	Budget       *cost.Credits `json:"budget"`    // null when there is none
	OverBudget   bool          `json:"over_budget"`
	Jobs         []PlanJob     `json:"jobs"` // last, so the JSON streams (see writeJobsJSON)
}

// PlanJob is one expanded job with its price.
type PlanJob struct {
	// Index is the job's 0-based position among all of the manifest's
	// expanded jobs (not just its shard's), so shards merge back in
	// manifest order.
	Index   int          `json:"index"`
	ID      string       `json:"id"`
	Group   string       `json:"group"` // the manifest entry's id; matrix rows share it
	Engine  string       `json:"engine"`
	Width   int          `json:"width"`
	Height  int          `json:"height"`
	Steps   int          `json:"steps"`
	Samples int          `json:"samples"`
	Credits cost.Credits `json:"credits"` // per-image price × samples
}

// Job statuses in a run report.
const (
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusFiltered  = "filtered"
	StatusSkipped   = "skipped" // not run: interrupted, or stopped by a fatal error
)

// Run is report.json: the canonical record of a run, which every renderer reads.
type Run struct {
	Manifest         string        `json:"manifest"`
	Name             string        `json:"name,omitempty"`
	Pricing          string        `json:"pricing"`
	Shard            string        `json:"shard,omitempty"`
	StartedAt        time.Time     `json:"started_at"`
	FinishedAt       time.Time     `json:"finished_at"`
	EstimatedCredits cost.Credits  `json:"estimated_credits"`
	ChargedCredits   cost.Credits  `json:"charged_credits"` // credits of jobs the API completed
	Budget           *cost.Credits `json:"budget"`
	BalanceBefore    *cost.Credits `json:"balance_before,omitempty"`
	BalanceAfter     *cost.Credits `json:"balance_after,omitempty"`
	Interrupted      bool          `json:"interrupted,omitempty"`
	Totals           Totals        `json:"totals"`
	Jobs             []RunJob      `json:"jobs"`

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

// RunJob is one job's outcome.
type RunJob struct {
	// Index is the job's 0-based position among all of the manifest's
	// expanded jobs (not just its shard's); Merge orders shards' jobs by it.
	Index    int          `json:"index"`
	ID       string       `json:"id"`
	Group    string       `json:"group"`
	Engine   string       `json:"engine"`
	Width    int          `json:"width"`
	Height   int          `json:"height"`
	Steps    int          `json:"steps"`
	Samples  int          `json:"samples"`
	Status   string       `json:"status"`            // succeeded, failed, filtered or skipped
	Credits  cost.Credits `json:"credits"`           // charged; zero when the API did no work
	Attempts int          `json:"attempts"`          // requests sent, retries included
	Resumed  bool         `json:"resumed,omitempty"` // finished by an earlier run (from the journal)
	Error    string       `json:"error,omitempty"`
	Params   string       `json:"parameters,omitempty"` // the generation parameters text, as in the PNG
	Images   []Image      `json:"images"`
}

// Image is one file a job wrote.
type Image struct {
	Path         string `json:"path"` // relative to the output folder, with forward slashes
	Seed         uint32 `json:"seed"`
	FinishReason string `json:"finish_reason"`
	SHA256       string `json:"sha256"` // hex
}
