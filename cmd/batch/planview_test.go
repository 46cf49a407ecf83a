package main

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/report"
)

// planDoc is a plan file decoded whole, as a test reads it: the header and
// every job.
type planDoc struct {
	report.Plan
	Jobs []report.PlanJob `json:"jobs"`
}

func TestPromptText(t *testing.T) {
	tests := []struct {
		name               string
		prompts            []manifest.Prompt
		positive, negative string
	}{
		{"none", nil, "", ""},
		{"one", []manifest.Prompt{{Text: "a fox", Weight: 1}}, "a fox", ""},
		{"with negative", []manifest.Prompt{{Text: "a fox", Weight: 1}, {Text: "blurry", Weight: -1}}, "a fox", "blurry"},
		{"weighted", []manifest.Prompt{{Text: "a castle", Weight: 1}, {Text: "fog", Weight: 0.4}, {Text: "people", Weight: -1}},
			"a castle | fog (weight 0.4)", "people"},
		{"one weighted", []manifest.Prompt{{Text: "a castle", Weight: 2}, {Text: "people", Weight: -0.5}},
			"a castle (weight 2)", "people (weight -0.5)"},
		{"two negatives", []manifest.Prompt{{Text: "a castle", Weight: 1}, {Text: "people", Weight: -1}, {Text: "cars", Weight: -1}},
			"a castle", "people | cars"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := promptText(tt.prompts, false); got != tt.positive {
				t.Errorf("promptText(%v, false) = %q, want %q", tt.prompts, got, tt.positive)
			}
			if got := promptText(tt.prompts, true); got != tt.negative {
				t.Errorf("promptText(%v, true) = %q, want %q", tt.prompts, got, tt.negative)
			}
		})
	}
}

func TestJobSettings(t *testing.T) {
	cfg := 4.5
	tests := []struct {
		name string
		job  manifest.Job
		want []report.Setting
	}{
		{"v1 defaults", manifest.Job{Engine: "stable-diffusion-xl-1024-v1-0", Steps: 30}, nil},
		{"v1 every setting", manifest.Job{Engine: "stable-diffusion-xl-1024-v1-0", Steps: 40, Seed: 42, CfgScale: &cfg,
			Sampler: "K_EULER", StylePreset: "photographic", ClipGuidancePreset: "FAST_BLUE"},
			[]report.Setting{{Name: "sampler", Value: "K_EULER"}, {Name: "cfg_scale", Value: "4.5"}, {Name: "seed", Value: "42"},
				{Name: "style_preset", Value: "photographic"}, {Name: "clip_guidance_preset", Value: "FAST_BLUE"}}},
		{"stable image", manifest.Job{Service: "generate/sd3", Seed: 7, Params: []manifest.Param{
			{Name: "model", Value: "sd3.5-flash"}, {Name: "aspect_ratio", Value: "16:9"}, {Name: "seed", Value: "7"},
			{Name: "output_format", Value: "jpeg"}, {Name: "style_preset", Value: "photographic"}, {Name: "cfg_scale", Value: "4.5"}}},
			[]report.Setting{{Name: "seed", Value: "7"}, {Name: "style_preset", Value: "photographic"}, {Name: "cfg_scale", Value: "4.5"}}},
		{"stable image, random seed", manifest.Job{Service: "generate/core", Params: []manifest.Param{{Name: "seed", Value: "0"}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := jobSettings(nil, &tt.job); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("jobSettings(%+v) = %v, want %v", tt.job, got, tt.want)
			}
		})
	}
}

// TestPlanShowsPrompts plans the quick start: every format carries each
// job's expanded prompt, negative prompt and settings.
func TestPlanShowsPrompts(t *testing.T) {
	wants := []string{
		"a lighthouse on a rocky coast at sunset, oil painting",
		"a small friendly robot watering plants, watercolour", // a matrix placeholder filled in
		"blurry, low quality, watermark",                      // the defaults' negative prompt
		"photographic",
	}
	for _, format := range []string{"table", "json", "markdown", "csv"} {
		t.Run(format, func(t *testing.T) {
			r := batchCmd(t, nil, "plan", "--format", format, "../../examples/quickstart.yaml")
			if r.code != exitOK {
				t.Fatalf("plan exit %d, stderr:\n%s", r.code, r.stderr)
			}
			for _, want := range wants {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("plan --format %s lacks %q:\n%s", format, want, r.stdout)
				}
			}
		})
	}
}

// TestPlanTableWidth plans the quick start with $COLUMNS set: the table's
// lines fit it, prompts cut with "…", while a value that is no width
// leaves them whole (as does output that is not a terminal, which is what
// the tests' buffers are).
func TestPlanTableWidth(t *testing.T) {
	const prompt = "a lighthouse on a rocky coast at sunset, oil painting — negative: blurry, low quality, watermark"
	tests := []struct {
		columns string
		width   int // 0: prompts whole
	}{
		{"", 0},
		{"wide", 0},
		{"0", 0},
		{"-80", 0},
		{"180", 180},
		{" 200 ", 200},
	}
	for _, tt := range tests {
		t.Run("COLUMNS="+tt.columns, func(t *testing.T) {
			r := batchCmd(t, map[string]string{"COLUMNS": tt.columns}, "plan", "../../examples/quickstart.yaml")
			if r.code != exitOK {
				t.Fatalf("plan exit %d, stderr:\n%s", r.code, r.stderr)
			}
			if tt.width == 0 {
				if !strings.Contains(r.stdout, prompt) || strings.Contains(r.stdout, "…") {
					t.Errorf("COLUMNS=%q: want prompts whole:\n%s", tt.columns, r.stdout)
				}
				return
			}
			cut := 0
			for line := range strings.Lines(r.stdout) {
				line = strings.TrimSuffix(line, "\n")
				if n := utf8.RuneCountInString(line); n > tt.width {
					t.Errorf("COLUMNS=%q: line of %d runes: %q", tt.columns, n, line)
				}
				if strings.HasSuffix(line, "…") {
					cut++
					if n := utf8.RuneCountInString(line); n != tt.width {
						t.Errorf("COLUMNS=%q: cut line of %d runes, want %d: %q", tt.columns, n, tt.width, line)
					}
				}
			}
			if cut == 0 {
				t.Errorf("COLUMNS=%q: no prompt cut:\n%s", tt.columns, r.stdout)
			}
		})
	}
	r := batchCmd(t, map[string]string{"COLUMNS": "180"}, "plan", "../../examples/quickstart.yaml")
	checkGolden(t, "plan-quickstart.table-180", r.stdout)
}
