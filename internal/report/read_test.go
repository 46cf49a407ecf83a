package report

import (
	"bytes"
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
	d := Diff(old, head)
	var detail string
	for _, j := range d.Jobs {
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
	tests := []struct {
		name       string
		base, head PlanJob
		want       string
	}{
		{"v1 to service", v1, core, "engine / service stable-diffusion-xl-1024-v1-0 → generate/core, size 1024x1024 → 1536x1536, steps 30 → —"},
		{"model", flash, large, "service generate/sd3 (sd3.5-flash) → generate/sd3 (sd3.5-large)"},
		{"service to service", core, flash, "service generate/core → generate/sd3 (sd3.5-flash), size 1536x1536 → 1344x768, aspect_ratio — → 16:9, output_format — → webp"},
		{"same", flash, flash, ""},
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
