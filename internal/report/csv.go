package report

import (
	"bufio"
	"encoding/csv"
	"io"
	"strconv"
	"strings"
)

// The CSV columns keep their positions from before Stable Image jobs; the
// new ones come last, so scripts that read columns by position still work.
// Prompts are in full, line breaks included; settings are name=value pairs
// joined with ";".

// planCSV writes p as CSV to w, one row per job, as the jobs pass.
func planCSV(w io.Writer, p *Plan) error {
	bw := bufio.NewWriterSize(w, spillAt)
	cw := csv.NewWriter(bw)
	_ = cw.Write([]string{"index", "id", "group", "engine", "width", "height", "steps", "samples", "credits", "usd",
		"service", "model", "aspect_ratio", "output_format", "depends_on", "prompt", "negative_prompt", "settings"})
	err := eachJob(p, func(_ int64, j *PlanJob) error {
		return cw.Write([]string{strconv.Itoa(j.Index), j.ID, j.Group, j.Engine, strconv.Itoa(j.Width), strconv.Itoa(j.Height),
			strconv.Itoa(j.Steps), strconv.Itoa(j.Samples), j.Credits.String(), j.Credits.USD(),
			j.Service, j.Model, j.AspectRatio, j.OutputFormat, strings.Join(j.DependsOn, ";"),
			j.Prompt, j.NegativePrompt, settingsCSV(j.Settings)})
	})
	if err != nil {
		return err
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

// runCSV writes r as CSV to w, one row per job, as the jobs pass.
func runCSV(w io.Writer, r *Run) error {
	bw := bufio.NewWriterSize(w, spillAt)
	cw := csv.NewWriter(bw)
	_ = cw.Write([]string{"index", "id", "group", "engine", "width", "height", "steps", "samples", "status", "resumed",
		"attempts", "credits", "usd", "error", "images",
		"service", "model", "aspect_ratio", "output_format", "failure", "possibly_billed_credits", "request_ids",
		"depends_on", "generation_id", "prompt", "negative_prompt", "settings"})
	err := r.each(func(_ int, j *RunJob) error {
		paths := make([]string, len(j.Images))
		ids := make([]string, len(j.Images))
		for i, img := range j.Images {
			paths[i], ids[i] = img.Path, img.RequestID
		}
		return cw.Write([]string{strconv.Itoa(j.Index), j.ID, j.Group, j.Engine, strconv.Itoa(j.Width), strconv.Itoa(j.Height),
			strconv.Itoa(j.Steps), strconv.Itoa(j.Samples), j.Status, strconv.FormatBool(j.Resumed),
			strconv.Itoa(j.Attempts), j.Credits.String(), j.Credits.USD(), j.Error, strings.Join(paths, ";"),
			j.Service, j.Model, j.AspectRatio, j.OutputFormat, j.Failure, j.PossiblyBilledCredits.String(), requestIDs(ids),
			strings.Join(j.DependsOn, ";"), j.GenerationID, j.Prompt, j.NegativePrompt, settingsCSV(j.Settings)})
	})
	if err != nil {
		return err
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

// requestIDs joins the images' request ids with ";", or "" when none has one.
func requestIDs(ids []string) string {
	for _, id := range ids {
		if id != "" {
			return strings.Join(ids, ";")
		}
	}
	return ""
}
