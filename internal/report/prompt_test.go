package report

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// longPromptPlan is a plan of two jobs, one with a prompt far wider than
// any terminal and a negative prompt, one short.
func longPromptPlan() (*Plan, string) {
	long := strings.Repeat("a lighthouse on a rocky cliff at dawn, ", 8) + "wide shot"
	jobs := PlanRows{
		{Index: 0, ID: "hero", Group: "hero", Service: "generate/core", Width: 1536, Height: 1536, Samples: 1, Credits: 3 * 1_000_000,
			Prompt: long, NegativePrompt: "fog", Settings: []Setting{{Name: "seed", Value: "42"}, {Name: "style_preset", Value: "photographic"}}},
		{Index: 1, ID: "mug", Group: "mug", Engine: "stable-diffusion-xl-1024-v1-0", Width: 1024, Height: 1024, Steps: 30, Samples: 1, Credits: 900_000,
			Prompt: "a white mug"},
	}
	p := &Plan{Manifest: "long.yaml", Pricing: "stability-2025-08", Jobs: jobs, TotalCredits: jobs[0].Credits + jobs[1].Credits}
	return p, long
}

// tableRows returns the lines of a plan table's job rows: from the header
// to the blank line after the last job.
func tableRows(t *testing.T, out string) []string {
	t.Helper()
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "JOB") || strings.HasPrefix(l, "GROUP") {
			end := i
			for end < len(lines) && lines[end] != "" {
				end++
			}
			return lines[i:end]
		}
	}
	t.Fatalf("no table in:\n%s", out)
	return nil
}

func TestPlanTableFitsWidth(t *testing.T) {
	p, long := longPromptPlan()
	render := func(t *testing.T, width int) (hero, mug string, rows []string) {
		t.Helper()
		var b bytes.Buffer
		if err := WritePlanWidth(&b, FormatTable, p, width); err != nil {
			t.Fatal(err)
		}
		rows = tableRows(t, b.String())
		if len(rows) != 3 {
			t.Fatalf("table rows = %q, want a header and 2 jobs", rows)
		}
		return rows[1], rows[2], rows
	}
	// The columns before the prompt: what a terminal leaves it is the
	// width less these.
	full, _, _ := render(t, 0)
	at := strings.Index(full, long)
	if at < 0 || !strings.HasSuffix(full, long+" — negative: fog") {
		t.Fatalf("unlimited width: row %q, want the whole prompt and its negative", full)
	}
	prefix := utf8.RuneCountInString(full[:at])
	tests := []struct {
		name      string
		width     int
		wantWidth int // runes of the long prompt's row; 0: not cut
	}{
		{"not a terminal", 0, 0},
		{"some room", prefix + 40, prefix + 40},
		{"more room", prefix + 90, prefix + 90},
		{"too narrow", prefix - 20, prefix + minFitted}, // the prompt keeps minFitted runes
		{"wide enough for everything", 1000, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hero, mug, rows := render(t, tt.width)
			if !strings.HasSuffix(mug, "a white mug") {
				t.Errorf("width %d: short prompt's row %q, want it whole", tt.width, mug)
			}
			if tt.wantWidth == 0 {
				if hero != full {
					t.Errorf("width %d: row %q, want %q", tt.width, hero, full)
				}
				return
			}
			if got := utf8.RuneCountInString(hero); got != tt.wantWidth {
				t.Errorf("width %d: row %q has %d runes, want %d", tt.width, hero, got, tt.wantWidth)
			}
			if want := string([]rune(long)[:tt.wantWidth-prefix-1]) + "…"; !strings.HasSuffix(hero, want) {
				t.Errorf("width %d: row %q, want it to end %q", tt.width, hero, want)
			}
			for _, r := range rows {
				if n := utf8.RuneCountInString(r); n > tt.wantWidth {
					t.Errorf("width %d: line %q has %d runes, more than %d", tt.width, r, n, tt.wantWidth)
				}
			}
		})
	}
}

// TestGroupedPlanTableFitsWidth checks the grouped table (a plan too big
// for a row per job) cuts its first jobs' prompts too.
func TestGroupedPlanTableFitsWidth(t *testing.T) {
	p := bigPlan(5, 12)
	jobs := p.Jobs.(PlanRows)
	for i := range jobs {
		jobs[i].Prompt += strings.Repeat(", and more", 20)
	}
	const width = 180
	var b bytes.Buffer
	if err := WritePlanWidth(&b, FormatTable, p, width); err != nil {
		t.Fatal(err)
	}
	rows := tableRows(t, b.String())
	if len(rows) != 6 || !strings.HasSuffix(rows[0], "PROMPT (FIRST JOB)") {
		t.Fatalf("grouped table rows = %q", rows)
	}
	for _, r := range rows[1:] {
		if n := utf8.RuneCountInString(r); n != width || !strings.HasSuffix(r, "…") || !strings.Contains(r, "variation 0,") {
			t.Errorf("row %q: %d runes, want %d ending with … and showing the group's first prompt", r, n, width)
		}
	}
}

// TestPromptsInFull checks that the formats other than the table keep the
// prompt whole, whatever the width.
func TestPromptsInFull(t *testing.T) {
	p, long := longPromptPlan()
	for _, f := range []string{FormatJSON, FormatCSV, FormatMarkdown} {
		t.Run(f, func(t *testing.T) {
			var b bytes.Buffer
			if err := WritePlanWidth(&b, f, p, 80); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			if !strings.Contains(out, long) {
				t.Errorf("%s output lacks the whole prompt:\n%s", f, out)
			}
			if strings.Contains(out, "…") {
				t.Errorf("%s output cuts something:\n%s", f, out)
			}
			for _, want := range []string{"fog", "photographic"} {
				if !strings.Contains(out, want) {
					t.Errorf("%s output lacks %q:\n%s", f, want, out)
				}
			}
		})
	}
}
