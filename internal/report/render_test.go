package report

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/golden"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// checkGolden compares got with testdata/name.golden, or rewrites it with
// -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	golden.Check(t, filepath.Join("testdata", name+".golden"), got, *update)
}

func mustReadPlan(t *testing.T, path string) *Plan {
	t.Helper()
	p, err := ReadPlan(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// mustDiff is Diff(base, head), failing t on an error.
func mustDiff(t *testing.T, base, head *Plan) *DiffResult {
	t.Helper()
	d, err := Diff(base, head)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// planRows reads every job of p into memory.
func planRows(t *testing.T, p *Plan) PlanRows {
	t.Helper()
	var rows PlanRows
	err := eachJob(p, func(_ int64, j *PlanJob) error {
		rows = append(rows, j.clone())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// diffJobs lists the jobs of d that differ.
func diffJobs(t *testing.T, d *DiffResult) []DiffJob {
	t.Helper()
	var out []DiffJob
	if err := d.Each(func(j *DiffJob) error { out = append(out, *j); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustReadRun(t *testing.T, dir string) *Run {
	t.Helper()
	r, err := ReadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func credits(s string) cost.Credits {
	c, err := cost.ParseCredits(s)
	if err != nil {
		panic(err)
	}
	return c
}

// bigPlan is a plan of groups×perGroup jobs, enough to switch the table
// and Markdown formats to one row per group.
func bigPlan(groups, perGroup int) *Plan {
	p := &Plan{Manifest: "big.yaml", Pricing: "stability-2025-08"}
	jobs := PlanRows{}
	// Two v1 engines and a Stable Image service with a model and an
	// aspect ratio, mixed within groups.
	ops := []PlanJob{
		{Engine: "stable-diffusion-xl-1024-v1-0"}, {Engine: "stable-diffusion-v1-6"},
		{Service: "generate/sd3", Model: "sd3.5-flash", AspectRatio: "16:9", Width: 1344, Height: 768},
	}
	for g := range groups {
		for k := range perGroup {
			j := ops[(g+k/7)%len(ops)]
			j.Index, j.ID, j.Group = len(jobs), fmt.Sprintf("g%02d-%03d", g, k), fmt.Sprintf("g%02d", g)
			j.Samples, j.Credits = 1, cost.Credits(100_000*(1+g+k%4))
			// Prompts vary within a group: the grouped views show its
			// first job's.
			j.Prompt = fmt.Sprintf("a study of light, group %d, variation %d", g, k)
			if j.Engine != "" {
				j.Width, j.Height, j.Steps, j.Samples = 512+64*(k%3), 512, 20+10*(g%3)+k%2*5, 1+k%2
			}
			jobs = append(jobs, j)
			p.TotalCredits += j.Credits
		}
	}
	p.Jobs = jobs
	p.TotalUSD = p.TotalCredits.USD()
	return p
}

// bigRun is bigPlan run, with statuses cycling.
func bigRun(groups, perGroup int) *Run {
	p := bigPlan(groups, perGroup)
	r := &Run{Manifest: p.Manifest, Pricing: p.Pricing, EstimatedCredits: p.TotalCredits,
		StartedAt: time.Date(2026, 11, 25, 23, 59, 0, 0, time.UTC), FinishedAt: time.Date(2026, 11, 26, 0, 1, 30, 0, time.UTC)}
	statuses := []string{StatusSucceeded, StatusSucceeded, StatusFailed, StatusFiltered, StatusSkipped}
	for i, pj := range p.Jobs.(PlanRows) {
		j := RunJob{Index: pj.Index, ID: pj.ID, Group: pj.Group, Engine: pj.Engine, Service: pj.Service, Model: pj.Model, Prompt: pj.Prompt,
			Width: pj.Width, Height: pj.Height, Steps: pj.Steps, AspectRatio: pj.AspectRatio, Samples: pj.Samples,
			Status: statuses[i%len(statuses)], Attempts: 1, Images: []Image{}}
		if j.Status == StatusFailed {
			j.Failure = "server"
		}
		if j.Status == StatusSucceeded || j.Status == StatusFiltered {
			j.Credits = pj.Credits
			j.Images = append(j.Images, Image{Path: "images/" + j.ID + ".png", Seed: uint32(i), FinishReason: "SUCCESS"})
		}
		r.ChargedCredits += j.Credits
		r.Totals.count(j.Status)
		r.Jobs = append(r.Jobs, j)
	}
	return r
}

// bigPipeline is bigPlan with dependencies between its groups, enough
// jobs for the grouped views: g01's jobs take g00's images, g03's take
// g01's and g02's, and g04's first job an image of a job of another shard.
func bigPipeline() *Plan {
	p := bigPlan(5, 12)
	jobs := p.Jobs.(PlanRows)
	for i := range jobs {
		j := &jobs[i]
		k := i % 12
		switch j.Group {
		case "g01":
			j.DependsOn = []string{fmt.Sprintf("g00-%03d", k)}
		case "g03":
			j.DependsOn = []string{fmt.Sprintf("g01-%03d", k), fmt.Sprintf("g02-%03d", k)}
		case "g04":
			if k == 0 {
				j.DependsOn = []string{"other-shard-001"}
			}
		}
	}
	return p
}

// pipelineHead is the pipeline plan changed: teapot-big now upscales the
// cut-out, teapot-styled is gone and a conservative upscale of the cut-out
// is new.
func pipelineHead(t *testing.T) *Plan {
	t.Helper()
	h := mustReadPlan(t, "testdata/pipeline-plan.json")
	var jobs PlanRows
	for _, j := range planRows(t, h) {
		switch j.ID {
		case "teapot-big":
			j.DependsOn = []string{"teapot-cutout"}
			j.Inputs = []Input{{Field: "image", From: "teapot-cutout", Index: 1}}
		case "teapot-styled":
			h.TotalCredits -= j.Credits
			continue
		}
		jobs = append(jobs, j)
	}
	added := PlanJob{Index: 9, ID: "teapot-cutout-3x", Group: "teapot-cutout-3x", DependsOn: []string{"teapot-cutout"},
		Service: "upscale/conservative", Width: 3112, Height: 3112, Samples: 1, Credits: credits("40"),
		Inputs: []Input{{Field: "image", From: "teapot-cutout", Index: 1}}}
	h.Jobs = append(jobs, added)
	h.TotalCredits += added.Credits
	h.TotalUSD = h.TotalCredits.USD()
	h.OverBudget = h.Budget != nil && h.TotalCredits > *h.Budget
	return h
}

func TestRenderGolden(t *testing.T) {
	plan := mustReadPlan(t, "testdata/plan.json")
	head := mustReadPlan(t, "testdata/plan-head.json")
	run := mustReadRun(t, "testdata/run")
	big := bigPlan(5, 12)
	bigR := bigRun(5, 12)
	bigHead := bigPlan(5, 12)
	bigHead.Jobs.(PlanRows)[3].Steps += 10
	bigHead.Jobs.(PlanRows)[3].Credits += credits("0.1")
	bigHead.TotalCredits += credits("0.1")
	noBudget := *head
	noBudget.Budget = nil
	pipeline := mustReadPlan(t, "testdata/pipeline-plan.json")
	pipelineRun := mustReadRun(t, "testdata/pipeline-run")
	bigPipe := bigPipeline()
	bigPipeRun := bigRun(5, 12)
	for i := range bigPipeRun.Jobs {
		bigPipeRun.Jobs[i].DependsOn = bigPipe.Jobs.(PlanRows)[i].DependsOn
	}

	type render func(w io.Writer, format string) error
	subjects := []struct {
		name    string
		formats []string
		write   render
	}{
		{"plan", PlanFormats, func(w io.Writer, f string) error { return WritePlan(w, f, plan) }},
		{"plan-nobudget", []string{FormatTable, FormatMarkdown}, func(w io.Writer, f string) error { return WritePlan(w, f, &noBudget) }},
		{"plan-big", PlanFormats, func(w io.Writer, f string) error { return WritePlan(w, f, big) }},
		{"run", RunFormats, func(w io.Writer, f string) error { return WriteRun(w, f, run) }},
		{"run-big", []string{FormatTable, FormatMarkdown, FormatJUnit, FormatHTML}, func(w io.Writer, f string) error { return WriteRun(w, f, bigR) }},
		{"diff", DiffFormats, func(w io.Writer, f string) error { return WriteDiff(w, f, mustDiff(t, plan, head)) }},
		{"diff-big", DiffFormats, func(w io.Writer, f string) error { return WriteDiff(w, f, mustDiff(t, bigPlan(1, 10), bigHead)) }},
		{"diff-none", DiffFormats, func(w io.Writer, f string) error { return WriteDiff(w, f, mustDiff(t, plan, plan)) }},
		{"pipeline-plan", PlanFormats, func(w io.Writer, f string) error { return WritePlan(w, f, pipeline) }},
		{"pipeline-run", RunFormats, func(w io.Writer, f string) error { return WriteRun(w, f, pipelineRun) }},
		{"pipeline-diff", DiffFormats, func(w io.Writer, f string) error { return WriteDiff(w, f, mustDiff(t, pipeline, pipelineHead(t))) }},
		{"pipeline-plan-big", []string{FormatTable, FormatMarkdown, FormatHTML}, func(w io.Writer, f string) error { return WritePlan(w, f, bigPipe) }},
		{"pipeline-run-big", []string{FormatTable, FormatMarkdown}, func(w io.Writer, f string) error { return WriteRun(w, f, bigPipeRun) }},
	}
	ext := map[string]string{FormatTable: "txt", FormatJSON: "json", FormatMarkdown: "md", FormatCSV: "csv", FormatJUnit: "xml", FormatHTML: "html"}
	for _, s := range subjects {
		for _, f := range s.formats {
			name := s.name + "." + ext[f]
			t.Run(name, func(t *testing.T) {
				var first, second bytes.Buffer
				if err := s.write(&first, f); err != nil {
					t.Fatalf("render %s: %v", name, err)
				}
				if err := s.write(&second, f); err != nil {
					t.Fatalf("render %s again: %v", name, err)
				}
				if !bytes.Equal(first.Bytes(), second.Bytes()) {
					t.Errorf("render %s twice: outputs differ", name)
				}
				checkGolden(t, name, first.Bytes())
			})
		}
	}
}

func TestUnknownFormat(t *testing.T) {
	var buf bytes.Buffer
	plan := mustReadPlan(t, "testdata/plan.json")
	run := mustReadRun(t, "testdata/run")
	for name, err := range map[string]error{
		"plan junit": WritePlan(&buf, FormatJUnit, plan),
		"plan xml":   WritePlan(&buf, "xml", plan),
		"run yaml":   WriteRun(&buf, "yaml", run),
		"diff csv":   WriteDiff(&buf, FormatCSV, mustDiff(t, plan, plan)),
	} {
		if err == nil || !strings.Contains(err.Error(), "unknown format") {
			t.Errorf("%s: error = %v, want unknown format", name, err)
		}
	}
	if buf.Len() != 0 {
		t.Errorf("rejected formats wrote %q", buf.String())
	}
}
