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
		Jobs: report.PlanRows{
			{Index: 0, ID: "mug", Group: "mug", Engine: "stable-diffusion-xl-1024-v1-0", Width: 1024, Height: 1024, Steps: 30,
				Prompt: "a white mug", Settings: []report.Setting{{Name: "seed", Value: "7"}}, Samples: 2, Credits: 1_800_000},
			{Index: 1, ID: "hero", Group: "hero", Service: "generate/sd3", Model: "sd3.5-flash", Width: 1344, Height: 768, AspectRatio: "16:9",
				Prompt: "a lighthouse at dawn", NegativePrompt: "fog", Samples: 1, Credits: 2_500_000},
		},
		TotalCredits: 4_300_000,
		Budget:       &budget,
	}
	_ = report.WritePlan(os.Stdout, report.FormatTable, p)
	// Output:
	// Plan: shots.yaml
	// Pricing: stability-2025-08
	//
	// JOB   ENGINE / SERVICE               SIZE             STEPS  SAMPLES  CREDITS  SETTINGS  PROMPT
	// mug   stable-diffusion-xl-1024-v1-0  1024x1024        30     2        1.8      seed 7    a white mug
	// hero  generate/sd3 (sd3.5-flash)     1344x768 (16:9)  —      1        2.5      —         a lighthouse at dawn — negative: fog
	//
	// Estimated: 4.3 credits ($0.043) for 2 jobs, 3 images
	// Budget: 10.0 credits, 5.7 left
}

// On a terminal, prompts are cut to fit its width.
func ExampleWritePlanWidth() {
	p := &report.Plan{
		Manifest: "shots.yaml",
		Pricing:  "stability-2025-08",
		Jobs: report.PlanRows{
			{Index: 0, ID: "hero", Group: "hero", Service: "generate/core", Width: 1536, Height: 1536,
				Prompt: "a lighthouse on a rocky cliff at dawn, waves breaking below, seagulls circling", Samples: 1, Credits: 3_000_000},
		},
		TotalCredits: 3_000_000,
	}
	_ = report.WritePlanWidth(os.Stdout, report.FormatTable, p, 90)
	// Output:
	// Plan: shots.yaml
	// Pricing: stability-2025-08
	//
	// JOB   ENGINE / SERVICE  SIZE       STEPS  SAMPLES  CREDITS  PROMPT
	// hero  generate/core     1536x1536  —      1        3.0      a lighthouse on a rocky cliff…
	//
	// Estimated: 3.0 credits ($0.03) for 1 job, 1 image
	// Budget: none
}

// A pipeline's plan names, for each job, the jobs whose images it takes.
func ExampleWritePlan_pipeline() {
	p := &report.Plan{
		Manifest: "pipeline.yaml",
		Pricing:  "stability-2025-08",
		Jobs: report.PlanRows{
			{Index: 0, ID: "teapot", Group: "teapot", Service: "generate/sd3", Model: "sd3.5-flash", Width: 1024, Height: 1024, Samples: 1, Credits: 2_500_000},
			{Index: 1, ID: "teapot-cutout", Group: "teapot-cutout", DependsOn: []string{"teapot"}, Service: "edit/remove-background",
				Width: 1024, Height: 1024, Inputs: []report.Input{{Field: "image", From: "teapot", Index: 1}}, Samples: 1, Credits: 5_000_000},
			{Index: 2, ID: "teapot-4x", Group: "teapot-4x", DependsOn: []string{"teapot-cutout"}, Service: "upscale/fast",
				Width: 4096, Height: 4096, Inputs: []report.Input{{Field: "image", From: "teapot-cutout", Index: 1}}, Samples: 1, Credits: 2_000_000},
		},
		TotalCredits: 9_500_000,
	}
	_ = report.WritePlan(os.Stdout, report.FormatTable, p)
	// Output:
	// Plan: pipeline.yaml
	// Pricing: stability-2025-08
	//
	// JOB            FROM           ENGINE / SERVICE            SIZE       STEPS  SAMPLES  CREDITS
	// teapot         —              generate/sd3 (sd3.5-flash)  1024x1024  —      1        2.5
	// teapot-cutout  teapot         edit/remove-background      1024x1024  —      1        5.0
	// teapot-4x      teapot-cutout  upscale/fast                4096x4096  —      1        2.0
	//
	// Estimated: 9.5 credits ($0.095) for 3 jobs, 3 images
	// Budget: none
}
