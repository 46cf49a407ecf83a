package manifest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const sdxl = "stable-diffusion-xl-1024-v1-0"

// mustParse parses src or fails the test.
func mustParse(t *testing.T, src string) *Manifest {
	t.Helper()
	m, err := Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse() error:\n%v", err)
	}
	return m
}

func ids(jobs []Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

func TestExpansionOrderAndIDs(t *testing.T) {
	m := mustParse(t, `version: 1
engine: stable-diffusion-xl-1024-v1-0
jobs:
  - id: mug-front
    prompt: a ceramic mug, front view
  - id: Mug-Angles
    prompt: a ceramic mug, {angle} view
    matrix:
      angle: [left, right, top]
      seed: [1, 2]
  - prompt: a castle on a hill at dawn, seen from far away over the sea
`)
	want := []string{
		"mug-front",
		"mug-angles-left-1", "mug-angles-left-2",
		"mug-angles-right-1", "mug-angles-right-2",
		"mug-angles-top-1", "mug-angles-top-2",
		"a-castle-on-a-hill-at-dawn-seen-from-far",
	}
	if got := ids(m.jobs); !slices.Equal(got, want) {
		t.Fatalf("ids = %q, want %q", got, want)
	}
	row := m.jobs[4] // right, 2
	if row.Base != "mug-angles" || row.Seed != 2 || row.Prompts[0].Text != "a ceramic mug, right view" {
		t.Errorf("row 4 = base %q seed %d prompt %q, want mug-angles, 2, a ceramic mug, right view", row.Base, row.Seed, row.Prompts[0].Text)
	}
	if want := []Var{{"angle", "right"}, {"seed", "2"}}; !slices.Equal(row.Vars, want) {
		t.Errorf("row 4 vars = %v, want %v", row.Vars, want)
	}
	if m.jobs[0].Vars != nil {
		t.Errorf("plain job vars = %v, want nil", m.jobs[0].Vars)
	}
	if row.Line != 6 || row.Column != 5 {
		t.Errorf("row position = %d:%d, want 6:5", row.Line, row.Column)
	}
	safe := regexp.MustCompile(`^[a-z0-9_-][a-z0-9._-]{0,99}$`)
	for _, j := range m.jobs {
		if !safe.MatchString(j.ID) {
			t.Errorf("id %q is not filesystem-safe", j.ID)
		}
	}
}

func TestDefaultsPrecedence(t *testing.T) {
	m := mustParse(t, `version: 1
engine: stable-diffusion-v1-5
defaults:
  steps: 40
  cfg_scale: 9
  negative_prompt: blurry
  style_preset: anime
jobs:
  - prompt: from every default
  - prompt: job wins
    engine: stable-diffusion-xl-1024-v1-0
    steps: 20
    negative_prompt: noise
  - prompts:
      - {text: full control, weight: 0.8}
      - {text: people, weight: -0.5}
  - prompt: engine defaults
    engine: stable-diffusion-768-v2-1
`)
	j := m.jobs
	type got struct {
		engine        string
		w, h, steps   int
		samples, seed int
		cfg           float64
		prompts       []Prompt
		style         string
	}
	cfg := func(j Job) float64 {
		if j.CfgScale == nil {
			return -1
		}
		return *j.CfgScale
	}
	tests := []struct {
		job  Job
		want got
	}{
		{j[0], got{"stable-diffusion-v1-5", 512, 512, 40, 1, 0, 9, []Prompt{{"from every default", 1}, {"blurry", -1}}, "anime"}},
		{j[1], got{sdxl, 1024, 1024, 20, 1, 0, 9, []Prompt{{"job wins", 1}, {"noise", -1}}, "anime"}},
		{j[2], got{"stable-diffusion-v1-5", 512, 512, 40, 1, 0, 9, []Prompt{{"full control", 0.8}, {"people", -0.5}}, "anime"}},
		{j[3], got{"stable-diffusion-768-v2-1", 768, 768, 40, 1, 0, 9, []Prompt{{"engine defaults", 1}, {"blurry", -1}}, "anime"}},
	}
	for i, tt := range tests {
		g := got{tt.job.Engine, tt.job.Width, tt.job.Height, tt.job.Steps, tt.job.Samples, int(tt.job.Seed), cfg(tt.job), tt.job.Prompts, tt.job.StylePreset}
		if g.engine != tt.want.engine || g.w != tt.want.w || g.h != tt.want.h || g.steps != tt.want.steps ||
			g.samples != tt.want.samples || g.seed != tt.want.seed || g.cfg != tt.want.cfg || g.style != tt.want.style ||
			!slices.Equal(g.prompts, tt.want.prompts) {
			t.Errorf("job %d = %+v, want %+v", i, g, tt.want)
		}
	}
}

func TestEngineDefaults(t *testing.T) {
	m := mustParse(t, `version: 1
jobs:
  - prompt: a fox
    engine: stable-diffusion-xl-1024-v1-0
  - prompt: a fox
    engine: stable-diffusion-v1-5
    negative_prompt: blur
  - prompt: a {x} fox
    matrix:
      engine: [stable-diffusion-xl-1024-v1-0, stable-diffusion-512-v2-1]
      x: [red]
`)
	tests := []struct {
		w, h, steps, samples int
		cfgNil               bool
		seed                 uint32
	}{
		{1024, 1024, 30, 1, true, 0},
		{512, 512, 50, 1, true, 0},
		{1024, 1024, 30, 1, true, 0},
		{512, 512, 50, 1, true, 0},
	}
	for i, tt := range tests {
		j := m.jobs[i]
		if j.Width != tt.w || j.Height != tt.h || j.Steps != tt.steps || j.Samples != tt.samples || (j.CfgScale == nil) != tt.cfgNil || j.Seed != tt.seed {
			t.Errorf("job %d = %dx%d steps %d samples %d cfg %v seed %d, want %dx%d steps %d samples %d cfg nil %v seed %d",
				i, j.Width, j.Height, j.Steps, j.Samples, j.CfgScale, j.Seed, tt.w, tt.h, tt.steps, tt.samples, tt.cfgNil, tt.seed)
		}
	}
	if got := m.jobs[1].Prompts; !slices.Equal(got, []Prompt{{"a fox", 1}, {"blur", -1}}) {
		t.Errorf("negative_prompt: prompts = %v, want weight -1 for blur", got)
	}
}

func TestDerivedIDCollisions(t *testing.T) {
	const src = `version: 1
engine: stable-diffusion-xl-1024-v1-0
jobs:
  - prompt: a red fox
    seed: 1
  - prompt: a red fox
    seed: 2
  - id: a-blue-fox
    prompt: something
  - prompt: A blue fox!
  - prompt: '!!!'
`
	m := mustParse(t, src)
	got := ids(m.jobs)
	hashed := regexp.MustCompile(`^a-red-fox-[0-9a-f]{8}$`)
	if !hashed.MatchString(got[0]) || !hashed.MatchString(got[1]) || got[0] == got[1] {
		t.Errorf("colliding derived ids = %q, %q; want distinct a-red-fox-HASH", got[0], got[1])
	}
	if got[2] != "a-blue-fox" || !strings.HasPrefix(got[3], "a-blue-fox-") || got[4] != "job" {
		t.Errorf("ids = %q, want a-blue-fox, a-blue-fox-HASH, job", got)
	}
	// Stable: the same manifest gives the same ids.
	again := mustParse(t, src)
	if !slices.Equal(ids(again.jobs), got) {
		t.Errorf("second parse ids = %q, want %q", ids(again.jobs), got)
	}
}

func TestMatrixIDFallback(t *testing.T) {
	long := strings.Repeat("word ", 30)
	m := mustParse(t, `version: 1
engine: stable-diffusion-xl-1024-v1-0
jobs:
  - id: fox
    prompt: a {c} fox
    matrix:
      c: [Red, red!, "`+long+`", blue, green]
  - id: fox-blue
    prompt: a blue fox
`)
	got := ids(m.jobs)
	hashed := regexp.MustCompile(`^fox-[0-9a-f]{12}$`)
	// Red and red! both slug to "red"; the long value is too long; blue
	// collides with the explicit fox-blue; only green keeps its slug.
	for i := range 4 {
		if !hashed.MatchString(got[i]) {
			t.Errorf("ids[%d] = %q, want fox-HASH", i, got[i])
		}
	}
	if got[4] != "fox-green" || got[5] != "fox-blue" {
		t.Errorf("ids[4:] = %q, want fox-green, fox-blue", got[4:])
	}
	if len(slices.Compact(slices.Sorted(slices.Values(got)))) != len(got) {
		t.Errorf("ids %q are not unique", got)
	}
}

func TestPromptsPlaceholders(t *testing.T) {
	m := mustParse(t, `version: 1
engine: stable-diffusion-xl-1024-v1-0
defaults:
  prompts:
    - {text: unused default}
jobs:
  - id: castle
    prompts:
      - {text: "a castle in {season}", weight: 1}
      - {text: "{season} fog", weight: 0.3}
      - {text: people, weight: -1}
    matrix:
      season: [winter, summer]
      style_preset: [anime, origami]
`)
	want := [][]Prompt{
		{{"a castle in winter", 1}, {"winter fog", 0.3}, {"people", -1}},
		{{"a castle in winter", 1}, {"winter fog", 0.3}, {"people", -1}},
		{{"a castle in summer", 1}, {"summer fog", 0.3}, {"people", -1}},
		{{"a castle in summer", 1}, {"summer fog", 0.3}, {"people", -1}},
	}
	for i, w := range want {
		if !slices.Equal(m.jobs[i].Prompts, w) {
			t.Errorf("job %d prompts = %v, want %v", i, m.jobs[i].Prompts, w)
		}
	}
	if m.jobs[1].StylePreset != "origami" || m.jobs[1].ID != "castle-winter-origami" {
		t.Errorf("job 1 = %s style %s, want castle-winter-origami", m.jobs[1].ID, m.jobs[1].StylePreset)
	}
}

func TestPlainBracesNeedNoMatrix(t *testing.T) {
	_, err := Parse("t.yaml", []byte("version: 1\nengine: "+sdxl+"\njobs:\n  - prompt: 'json {\"a\": 1} and { spaced }'\n"))
	if err != nil {
		t.Errorf("Parse() error %v, want braces that are not placeholders to be literal", err)
	}
}

func TestTopLevel(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.yaml")
	src := `version: 1
name: shots
engine: stable-diffusion-xl-1024-v1-0
pricing: sdxl-2024
budget: 12.5
output: out/shots
concurrency: auto
rate: 150/10s
jobs:
  - prompt: a fox
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if m.Path != path || m.Version != 1 || m.Name != "shots" || m.Engine != sdxl || m.Pricing != "sdxl-2024" ||
		m.Budget != "12.5" || m.Output != filepath.Join(dir, "out/shots") || m.Concurrency != "auto" || m.Rate != "150/10s" {
		t.Errorf("Load() = %+v", m)
	}
	if line, col := m.KeyPos("pricing"); line != 4 || col != 1 {
		t.Errorf("KeyPos(pricing) = %d:%d, want 4:1", line, col)
	}
	if line, col := m.KeyPos("absent"); line != 1 || col != 1 {
		t.Errorf("KeyPos(absent) = %d:%d, want 1:1", line, col)
	}
	abs := mustParse(t, strings.Replace(src, "out/shots", "/srv/out", 1))
	if abs.Output != "/srv/out" {
		t.Errorf("Parse() output = %q, want /srv/out kept", abs.Output)
	}
	n := mustParse(t, strings.Replace(src, "concurrency: auto", "concurrency: 8", 1))
	if n.Concurrency != "8" {
		t.Errorf("concurrency = %q, want 8", n.Concurrency)
	}
	if _, err := Load(t.Context(), filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("Load(t.Context(), missing) = nil error")
	}
}

func TestAliasesResolve(t *testing.T) {
	m := mustParse(t, `version: 1
engine: stable-diffusion-xl-1024-v1-0
defaults:
  seed: &s 42
jobs:
  - prompt: a {c} fox
    steps: *s
    matrix:
      c: &colours [red, blue]
  - prompt: a {c} cat
    matrix:
      c: *colours
`)
	if len(m.jobs) != 4 || m.jobs[0].Steps != 42 || m.jobs[3].Prompts[0].Text != "a blue cat" {
		t.Errorf("jobs = %d, steps %d, last prompt %q; want 4, 42, a blue cat", len(m.jobs), m.jobs[0].Steps, m.jobs[3].Prompts[0].Text)
	}
}
