package report

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestReadOldReports reads a plan and a run report written before Stable
// Image jobs (no service fields, a balance_after, no possibly billed
// credits) and renders them: old files stay readable, and the balance after
// the run is never shown, since the live balance lags.
func TestReadOldReports(t *testing.T) {
	run := mustReadRun(t, "testdata/run-old")
	if run.Jobs[0].Engine == "" || run.Jobs[0].Steps != 30 || run.Jobs[0].Service != "" {
		t.Errorf("old job read as %+v", run.Jobs[0])
	}
	for _, f := range RunFormats {
		var b bytes.Buffer
		if err := WriteRun(&b, f, run); err != nil {
			t.Fatalf("WriteRun(%s) of an old report = %v", f, err)
		}
		if out := b.String(); strings.Contains(out, "980.2") || strings.Contains(out, "balance_after") {
			t.Errorf("WriteRun(%s) of an old report shows the balance after the run:\n%s", f, out)
		}
	}
	var table bytes.Buffer
	if err := WriteRun(&table, FormatTable, run); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Balance at start: 1000.0 credits", "Possibly billed (outcome unknown): 0.0 credits", "stable-diffusion-v1-5          512x768    50"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table of an old report lacks %q:\n%s", want, table.String())
		}
	}

	old := mustReadPlan(t, "testdata/plan-old.json")
	head := mustReadPlan(t, "testdata/plan.json")
	d := mustDiff(t, old, head)
	var detail string
	for _, j := range diffJobs(t, d) {
		if j.ID == "castle" {
			detail = j.Detail
		}
	}
	if want := "engine stable-diffusion-v1-5 → stable-diffusion-xl-1024-v1-0, size 512x768 → 1152x896, steps 50 → 30"; detail != want {
		t.Errorf("diff of castle from an old plan = %q, want %q", detail, want)
	}
}

func TestChanges(t *testing.T) {
	v1 := PlanJob{Engine: "stable-diffusion-xl-1024-v1-0", Width: 1024, Height: 1024, Steps: 30, Samples: 1, Credits: 900_000}
	core := PlanJob{Service: "generate/core", Width: 1536, Height: 1536, Samples: 1, Credits: 3_000_000}
	flash := PlanJob{Service: "generate/sd3", Model: "sd3.5-flash", Width: 1344, Height: 768, AspectRatio: "16:9", OutputFormat: "webp", Samples: 1, Credits: 2_500_000}
	large := flash
	large.Model, large.Credits = "sd3.5-large", 6_500_000
	fast := func(from ...string) PlanJob {
		return PlanJob{Service: "upscale/fast", Width: 4096, Height: 4096, Samples: 1, Credits: 2_000_000, DependsOn: from}
	}
	tests := []struct {
		name       string
		base, head PlanJob
		want       string
	}{
		{"v1 to service", v1, core, "engine / service stable-diffusion-xl-1024-v1-0 → generate/core, size 1024x1024 → 1536x1536, steps 30 → —"},
		{"model", flash, large, "service generate/sd3 (sd3.5-flash) → generate/sd3 (sd3.5-large)"},
		{"service to service", core, flash, "service generate/core → generate/sd3 (sd3.5-flash), size 1536x1536 → 1344x768, aspect_ratio — → 16:9, output_format — → webp"},
		{"same", flash, flash, ""},
		{"source changed", fast("teapot"), fast("teapot-cutout"), "depends_on teapot → teapot-cutout"},
		{"source added", fast(), fast("teapot"), "depends_on — → teapot"},
		{"sources reordered", fast("a", "b"), fast("b", "a"), "depends_on a, b → b, a"},
		{"same sources", fast("a", "b"), fast("a", "b"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := changes(tt.base, tt.head); got != tt.want {
				t.Errorf("changes() = %q, want %q", got, tt.want)
			}
		})
	}
	if got, want := describe(flash), "generate/sd3 (sd3.5-flash) 1344x768 (16:9), webp"; got != want {
		t.Errorf("describe(flash) = %q, want %q", got, want)
	}
	if got, want := describe(fast("teapot", "shelf")), "upscale/fast 4096x4096, from teapot, shelf"; got != want {
		t.Errorf("describe(fast) = %q, want %q", got, want)
	}
}

func TestGroupsOfStableImageJobs(t *testing.T) {
	gs := groups([]jobFacts{
		{group: "hero", op: "generate/core", size: sizeText(2016, 1152, "16:9"), samples: 1},
		{group: "hero", op: "generate/sd3 (sd3.5-flash)", size: sizeText(1024, 1024, ""), samples: 1},
		{group: "mix", op: "generate/core", size: sizeText(0, 0, ""), samples: 1},
		{group: "mix", op: "stable-diffusion-xl-1024-v1-0", size: sizeText(1024, 1024, ""), steps: 40, samples: 2},
		{group: "mix", op: "stable-diffusion-xl-1024-v1-0", size: sizeText(1024, 1024, ""), steps: 30, samples: 2},
	})
	tests := []struct {
		got, want string
	}{
		{gs[0].Operation(), "generate/core, generate/sd3 (sd3.5-flash)"},
		{gs[0].Sizes(), "2016x1152 (16:9), 1024x1024"},
		{gs[0].Steps(), "—"},
		{gs[1].Operation(), "generate/core, stable-diffusion-xl-1024-v1-0"},
		{gs[1].Sizes(), "—, 1024x1024"},
		{gs[1].Steps(), "30–40"},
	}
	for i, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("case %d = %q, want %q", i, tt.got, tt.want)
		}
	}
	if gs[1].Images != 5 {
		t.Errorf("images of mix = %d, want 5", gs[1].Images)
	}
}

// TestReadWithoutPipelineFields reads reports written before jobs took
// image inputs: they read as jobs without dependencies, render without a
// from column or a pipelines section, and write back without the new keys.
func TestReadWithoutPipelineFields(t *testing.T) {
	for _, dir := range []string{"testdata/run-old", "testdata/run"} {
		t.Run(dir, func(t *testing.T) {
			run := mustReadRun(t, dir)
			for _, j := range run.Jobs {
				if j.DependsOn != nil || j.Inputs != nil || j.GenerationID != "" {
					t.Errorf("job %s read with depends_on %q, inputs %v, generation_id %q; want none", j.ID, j.DependsOn, j.Inputs, j.GenerationID)
				}
			}
			for _, f := range RunFormats {
				var b bytes.Buffer
				if err := WriteRun(&b, f, run); err != nil {
					t.Fatalf("WriteRun(%s) = %v", f, err)
				}
				out := b.String()
				for _, absent := range []string{"depends_on", "generation_id", `"inputs"`, "FROM", "| From |", `id="chains"`, "<th>From</th>"} {
					// The CSV header names every column, used or not.
					if f == FormatCSV && (absent == "depends_on" || absent == "generation_id") {
						continue
					}
					if strings.Contains(out, absent) {
						t.Errorf("WriteRun(%s) of a report without dependencies contains %q", f, absent)
					}
				}
			}
		})
	}
	plan := mustReadPlan(t, "testdata/plan-old.json")
	var b bytes.Buffer
	if err := WritePlan(&b, FormatJSON, plan); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "depends_on") || strings.Contains(b.String(), "inputs") {
		t.Errorf("plan JSON of an old plan has pipeline keys:\n%s", b.String())
	}
}

// TestPipelineFieldsRoundTrip writes the pipeline plan and run as JSON and
// reads them back: depends_on, inputs and generation_id survive, and the
// plan's JSON lists each job's depends_on.
func TestPipelineFieldsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	run := mustReadRun(t, "testdata/pipeline-run")
	plan := mustReadPlan(t, "testdata/pipeline-plan.json")
	var rb, pb bytes.Buffer
	if err := WriteRun(&rb, FormatJSON, run); err != nil {
		t.Fatal(err)
	}
	if err := WritePlan(&pb, FormatJSON, plan); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, RunFile), rb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "plan.json"), pb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	backRun := mustReadRun(t, dir)
	backPlan := mustReadPlan(t, filepath.Join(dir, "plan.json"))
	backRun.dir = run.dir
	if !reflect.DeepEqual(backRun, run) {
		t.Errorf("pipeline run after a JSON round trip:\n%+v\nwant\n%+v", backRun.Jobs, run.Jobs)
	}
	backRows, rows := planRows(t, backPlan), planRows(t, plan)
	backPlan.Jobs, plan.Jobs = nil, nil
	if !reflect.DeepEqual(backPlan, plan) || !reflect.DeepEqual(backRows, rows) {
		t.Errorf("pipeline plan after a JSON round trip:\n%+v\n%+v\nwant\n%+v\n%+v", backPlan, backRows, plan, rows)
	}
	byID := make(map[string]RunJob)
	for _, j := range backRun.Jobs {
		byID[j.ID] = j
	}
	styled, big := byID["teapot-styled"], byID["teapot-big"]
	if want := []string{"teapot", "shelf-teal"}; !slices.Equal(styled.DependsOn, want) {
		t.Errorf("teapot-styled depends_on = %q, want %q", styled.DependsOn, want)
	}
	if want := []Input{{Field: "init_image", From: "teapot", Index: 1}, {Field: "style_image", From: "shelf-teal", Index: 1}}; !slices.Equal(styled.Inputs, want) {
		t.Errorf("teapot-styled inputs = %+v, want %+v", styled.Inputs, want)
	}
	if big.GenerationID == "" {
		t.Error("teapot-big lost its generation_id")
	}
	for line := range strings.Lines(pb.String()) {
		if strings.Contains(line, `"id":"teapot-cutout-4x"`) && !strings.Contains(line, `"depends_on":["teapot-cutout"]`) {
			t.Errorf("plan JSON line of teapot-cutout-4x has no depends_on: %s", line)
		}
	}
}
