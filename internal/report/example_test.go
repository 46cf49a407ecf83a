package report_test

import (
	"os"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/report"
)

func ExampleWritePlan() {
	budget := 2 * cost.Credit
	p := &report.Plan{
		Manifest: "shots.yaml",
		Pricing:  "dreamstudio-2022",
		Jobs: []report.PlanJob{
			{Index: 0, ID: "mug", Group: "mug", Engine: "stable-diffusion-v1-6", Width: 512, Height: 512, Steps: 30, Samples: 1, Credits: 600_000},
			{Index: 1, ID: "lamp", Group: "lamp", Engine: "stable-diffusion-v1-6", Width: 512, Height: 512, Steps: 30, Samples: 2, Credits: 1_200_000},
		},
		TotalCredits: 1_800_000,
		Budget:       &budget,
	}
	_ = report.WritePlan(os.Stdout, report.FormatTable, p)
	// Output:
	// Plan: shots.yaml
	// Pricing: dreamstudio-2022
	//
	// JOB   ENGINE                 SIZE     STEPS  SAMPLES  CREDITS
	// mug   stable-diffusion-v1-6  512x512  30     1        0.6
	// lamp  stable-diffusion-v1-6  512x512  30     2        1.2
	//
	// Total: 1.8 credits ($0.018) for 2 jobs, 3 images
	// Budget: 2.0 credits, 0.2 left
}
