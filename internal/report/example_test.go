package report_test

import (
	"os"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/report"
)

func ExampleWritePlan() {
	budget := 10 * cost.Credit
	p := &report.Plan{
		Manifest: "shots.yaml",
		Pricing:  "stability-2025-08",
		Jobs: []report.PlanJob{
			{Index: 0, ID: "mug", Group: "mug", Engine: "stable-diffusion-xl-1024-v1-0", Width: 1024, Height: 1024, Steps: 30, Samples: 2, Credits: 1_800_000},
			{Index: 1, ID: "hero", Group: "hero", Service: "generate/sd3", Model: "sd3.5-flash", Width: 1344, Height: 768, AspectRatio: "16:9", Samples: 1, Credits: 2_500_000},
		},
		TotalCredits: 4_300_000,
		Budget:       &budget,
	}
	_ = report.WritePlan(os.Stdout, report.FormatTable, p)
	// Output:
	// Plan: shots.yaml
	// Pricing: stability-2025-08
	//
	// JOB   ENGINE / SERVICE               SIZE             STEPS  SAMPLES  CREDITS
	// mug   stable-diffusion-xl-1024-v1-0  1024x1024        30     2        1.8
	// hero  generate/sd3 (sd3.5-flash)     1344x768 (16:9)  —      1        2.5
	//
	// Total: 4.3 credits ($0.043) for 2 jobs, 3 images
	// Budget: 10.0 credits, 5.7 left
}
