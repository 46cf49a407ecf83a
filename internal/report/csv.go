package report

import (
	"bytes"
	"encoding/csv"
	"strconv"
	"strings"
)

// The CSV columns keep their positions from before Stable Image jobs; the
// new ones come last, so scripts that read columns by position still work.
// Prompts are in full, line breaks included; settings are name=value pairs
// joined with ";".

func planCSV(buf *bytes.Buffer, p *Plan) error {
	w := csv.NewWriter(buf)
	_ = w.Write([]string{"index", "id", "group", "engine", "width", "height", "steps", "samples", "credits", "usd",
		"service", "model", "aspect_ratio", "output_format", "depends_on", "prompt", "negative_prompt", "settings"})
	for _, j := range p.Jobs {
		_ = w.Write([]string{strconv.Itoa(j.Index), j.ID, j.Group, j.Engine, strconv.Itoa(j.Width), strconv.Itoa(j.Height),
			strconv.Itoa(j.Steps), strconv.Itoa(j.Samples), j.Credits.String(), j.Credits.USD(),
			j.Service, j.Model, j.AspectRatio, j.OutputFormat, strings.Join(j.DependsOn, ";"),
			j.Prompt, j.NegativePrompt, settingsCSV(j.Settings)})
	}
	w.Flush()
	return w.Error()
}

func runCSV(buf *bytes.Buffer, r *Run) error {
	w := csv.NewWriter(buf)
	_ = w.Write([]string{"index", "id", "group", "engine", "width", "height", "steps", "samples", "status", "resumed",
		"attempts", "credits", "usd", "error", "images",
		"service", "model", "aspect_ratio", "output_format", "failure", "possibly_billed_credits", "request_ids",
		"depends_on", "generation_id", "prompt", "negative_prompt", "settings"})
	for _, j := range r.Jobs {
		paths := make([]string, len(j.Images))
		ids := make([]string, len(j.Images))
		for i, img := range j.Images {
			paths[i], ids[i] = img.Path, img.RequestID
		}
		_ = w.Write([]string{strconv.Itoa(j.Index), j.ID, j.Group, j.Engine, strconv.Itoa(j.Width), strconv.Itoa(j.Height),
			strconv.Itoa(j.Steps), strconv.Itoa(j.Samples), j.Status, strconv.FormatBool(j.Resumed),
			strconv.Itoa(j.Attempts), j.Credits.String(), j.Credits.USD(), j.Error, strings.Join(paths, ";"),
			j.Service, j.Model, j.AspectRatio, j.OutputFormat, j.Failure, j.PossiblyBilledCredits.String(), requestIDs(ids),
			strings.Join(j.DependsOn, ";"), j.GenerationID, j.Prompt, j.NegativePrompt, settingsCSV(j.Settings)})
	}
	w.Flush()
	return w.Error()
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
