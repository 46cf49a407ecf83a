package manifest

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
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
	if got := ids(jobsOf(m)); !slices.Equal(got, want) {
		t.Fatalf("ids = %q, want %q", got, want)
	}
	row := jobsOf(m)[4] // right, 2
	if row.Base != "mug-angles" || row.Seed != 2 || row.Prompts[0].Text != "a ceramic mug, right view" {
		t.Errorf("row 4 = base %q seed %d prompt %q, want mug-angles, 2, a ceramic mug, right view", row.Base, row.Seed, row.Prompts[0].Text)
	}
	if want := []Var{{"angle", "right"}, {"seed", "2"}}; !slices.Equal(row.Vars, want) {
		t.Errorf("row 4 vars = %v, want %v", row.Vars, want)
	}
	if jobsOf(m)[0].Vars != nil {
		t.Errorf("plain job vars = %v, want nil", jobsOf(m)[0].Vars)
	}
	if row.Line != 6 || row.Column != 5 {
		t.Errorf("row position = %d:%d, want 6:5", row.Line, row.Column)
	}
	safe := regexp.MustCompile(`^[a-z0-9_-][a-z0-9._-]{0,99}$`)
	for _, j := range jobsOf(m) {
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
	j := jobsOf(m)
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
		j := jobsOf(m)[i]
		if j.Width != tt.w || j.Height != tt.h || j.Steps != tt.steps || j.Samples != tt.samples || (j.CfgScale == nil) != tt.cfgNil || j.Seed != tt.seed {
			t.Errorf("job %d = %dx%d steps %d samples %d cfg %v seed %d, want %dx%d steps %d samples %d cfg nil %v seed %d",
				i, j.Width, j.Height, j.Steps, j.Samples, j.CfgScale, j.Seed, tt.w, tt.h, tt.steps, tt.samples, tt.cfgNil, tt.seed)
		}
	}
	if got := jobsOf(m)[1].Prompts; !slices.Equal(got, []Prompt{{"a fox", 1}, {"blur", -1}}) {
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
	got := ids(jobsOf(m))
	hashed := regexp.MustCompile(`^a-red-fox-[0-9a-f]{8}$`)
	if !hashed.MatchString(got[0]) || !hashed.MatchString(got[1]) || got[0] == got[1] {
		t.Errorf("colliding derived ids = %q, %q; want distinct a-red-fox-HASH", got[0], got[1])
	}
	if got[2] != "a-blue-fox" || !strings.HasPrefix(got[3], "a-blue-fox-") || got[4] != "job" {
		t.Errorf("ids = %q, want a-blue-fox, a-blue-fox-HASH, job", got)
	}
	// Stable: the same manifest gives the same ids.
	again := mustParse(t, src)
	if !slices.Equal(ids(jobsOf(again)), got) {
		t.Errorf("second parse ids = %q, want %q", ids(jobsOf(again)), got)
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
	got := ids(jobsOf(m))
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
		if !slices.Equal(jobsOf(m)[i].Prompts, w) {
			t.Errorf("job %d prompts = %v, want %v", i, jobsOf(m)[i].Prompts, w)
		}
	}
	if jobsOf(m)[1].StylePreset != "origami" || jobsOf(m)[1].ID != "castle-winter-origami" {
		t.Errorf("job 1 = %s style %s, want castle-winter-origami", jobsOf(m)[1].ID, jobsOf(m)[1].StylePreset)
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
	if m.Len() != 4 || jobsOf(m)[0].Steps != 42 || jobsOf(m)[3].Prompts[0].Text != "a blue cat" {
		t.Errorf("jobs = %d, steps %d, last prompt %q; want 4, 42, a blue cat", m.Len(), jobsOf(m)[0].Steps, jobsOf(m)[3].Prompts[0].Text)
	}
}

// jobsOf collects every job of m.
func jobsOf(m *Manifest) []Job {
	out := make([]Job, 0, m.Len())
	for _, j := range m.All() {
		out = append(out, j)
	}
	return out
}

// TestJobOnDemand checks that Job builds, for every index, the job All
// yields, also from goroutines at once (run it with -race), and that the
// jobs of a matrix follow its rows: a text rendered once for consecutive
// rows is their own.
func TestJobOnDemand(t *testing.T) {
	m := mustParse(t, `version: 1
service: generate/core
defaults:
  aspect_ratio: "16:9"
jobs:
  - id: one
    prompt: a fox
    seed: 3
  - id: sweep
    prompt: a {c} fox in {d}
    matrix:
      c: [red, blue]
      d: [snow, rain]
      seed: {from: 1, to: 3}
  - id: two
    prompt: a cat
    aspect_ratio: "1:1"
  - id: up
    service: edit/remove-background
    image: {from: "sweep-{c}-snow-2"}
    matrix:
      c: [red, blue]
`)
	all := jobsOf(m)
	if len(all) != 16 {
		t.Fatalf("got %d jobs, want 16", len(all))
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := m.Len() - 1; i >= 0; i-- {
				if j := m.Job(i); !reflect.DeepEqual(j, all[i]) {
					t.Errorf("Job(%d) = %+v, want %+v", i, j, all[i])
				}
			}
		})
	}
	wg.Wait()
	for i, j := range all[1:13] {
		c, d, seed := []string{"red", "blue"}[i/6], []string{"snow", "rain"}[i/3%2], i%3+1
		id := fmt.Sprintf("sweep-%s-%s-%d", c, d, seed)
		if j.ID != id || j.Prompts[0].Text != "a "+c+" fox in "+d || j.Seed != uint32(seed) {
			t.Errorf("row %d = %s %q seed %d, want %s", i, j.ID, j.Prompts[0].Text, j.Seed, id)
		}
	}
	for k, j := range all[14:] {
		src := 1 + 6*k + 1 // sweep-red-snow-2, sweep-blue-snow-2
		if len(j.Inputs) != 1 || j.Inputs[0].FromIndex != src || all[src].ID != j.Inputs[0].From {
			t.Errorf("%s inputs = %+v, want the image of job %d (%s)", j.ID, j.Inputs, src, all[src].ID)
		}
	}
}

// TestNumbersAsYAMLReadsThem holds the fast paths of integer and number to
// what yaml.v3 decodes from the same scalar.
func TestNumbersAsYAMLReadsThem(t *testing.T) {
	for _, text := range []string{
		"0", "7", "-3", "-0", "010", "0x1F", "0o17", "1_000", "+5", "9223372036854775807",
		"9223372036854775808", "7.5", "1e3", "-2.5E-2", ".5", "1.", "0.1", "1.0", ".inf", "'12'", "!!int 12", "!!float 3",
	} {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte("v: "+text), &doc); err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		n := doc.Content[0].Content[1]
		p := newParser(t.Context(), "n.yaml", ".", MaxJobs)
		var wantI int64
		errI := n.Decode(&wantI)
		if got, ok := p.integer(n, "v", math.MinInt64, math.MaxInt64); ok != (errI == nil && n.ShortTag() == "!!int") || ok && got != wantI {
			t.Errorf("integer(%s) = %d, %v; yaml.v3 reads %d, %v", text, got, ok, wantI, errI)
		}
		var wantF float64
		errF := n.Decode(&wantF)
		tag := n.ShortTag()
		wantOK := errF == nil && (tag == "!!int" || tag == "!!float") && !math.IsInf(wantF, 0) && !math.IsNaN(wantF)
		if got, ok := p.number(n, "v", -math.MaxFloat64, math.MaxFloat64); ok != wantOK || ok && got != wantF {
			t.Errorf("number(%s) = %g, %v; yaml.v3 reads %g, %v", text, got, ok, wantF, errF)
		}
	}
}
