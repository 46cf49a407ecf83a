package manifest

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestRangeExpansion checks the jobs a range makes: their ids, their
// values and their order beside list keys.
func TestRangeExpansion(t *testing.T) {
	const head = "version: 1\nengine: " + sdxl + "\njobs:\n  - id: sweep\n    prompt: a fox\n    matrix:\n"
	tests := []struct {
		name   string
		matrix string
		ids    []string
		field  func(Job) string // what the range sets, per job
		values []string
	}{
		{
			name:   "seed with a step that does not reach to",
			matrix: "      seed: {from: 1, to: 10, step: 4}\n",
			ids:    []string{"sweep-1", "sweep-5", "sweep-9"},
			field:  func(j Job) string { return strconv.Itoa(int(j.Seed)) },
			values: []string{"1", "5", "9"},
		},
		{
			name:   "one value",
			matrix: "      seed: {from: 7, to: 7}\n",
			ids:    []string{"sweep-7"},
			field:  func(j Job) string { return strconv.Itoa(int(j.Seed)) },
			values: []string{"7"},
		},
		{
			name:   "steps beside a list, the list first",
			matrix: "      style_preset: [anime, photographic]\n      steps: {from: 10, to: 50, step: 20}\n",
			ids:    []string{"sweep-anime-10", "sweep-anime-30", "sweep-anime-50", "sweep-photographic-10", "sweep-photographic-30", "sweep-photographic-50"},
			field:  func(j Job) string { return j.StylePreset + "/" + strconv.Itoa(j.Steps) },
			values: []string{"anime/10", "anime/30", "anime/50", "photographic/10", "photographic/30", "photographic/50"},
		},
		{
			name:   "samples as a block mapping, before a list",
			matrix: "      samples:\n        from: 1\n        to: 2\n      seed: [5, 6]\n",
			ids:    []string{"sweep-1-5", "sweep-1-6", "sweep-2-5", "sweep-2-6"},
			field:  func(j Job) string { return fmt.Sprintf("%d/%d", j.Samples, j.Seed) },
			values: []string{"1/5", "1/6", "2/5", "2/6"},
		},
		{
			name:   "size, on an engine that takes any multiple of 64",
			matrix: "      width: {from: 512, to: 640, step: 128}\n      height: {from: 768, to: 896, step: 128}\n    engine: stable-diffusion-v1-6\n",
			ids:    []string{"sweep-512-768", "sweep-512-896", "sweep-640-768", "sweep-640-896"},
			field:  func(j Job) string { return fmt.Sprintf("%dx%d", j.Width, j.Height) },
			values: []string{"512x768", "512x896", "640x768", "640x896"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustParse(t, head+tt.matrix)
			if got := ids(jobsOf(m)); !slices.Equal(got, tt.ids) {
				t.Fatalf("ids = %q, want %q", got, tt.ids)
			}
			var got []string
			for _, j := range jobsOf(m) {
				got = append(got, tt.field(j))
			}
			if !slices.Equal(got, tt.values) {
				t.Errorf("values = %q, want %q", got, tt.values)
			}
		})
	}
}

// TestRangeSixHundredSeeds checks the seed sweep a range was made for.
func TestRangeSixHundredSeeds(t *testing.T) {
	m := mustParse(t, "version: 1\nengine: "+sdxl+"\njobs:\n  - id: harbour\n    prompt: a harbour, seed {seed}\n    matrix:\n      seed: {from: 1, to: 600}\n")
	if m.Len() != 600 {
		t.Fatalf("got %d jobs, want 600", m.Len())
	}
	for i, j := range jobsOf(m) {
		seed := strconv.Itoa(i + 1)
		if j.ID != "harbour-"+seed || j.Seed != uint32(i+1) || j.Base != "harbour" || !slices.Equal(j.Vars, []Var{{"seed", seed}}) || j.Prompts[0].Text != "a harbour, seed "+seed {
			t.Fatalf("job %d = id %q seed %d base %q vars %v prompt %q, want harbour-%s, seed %s in the prompt", i, j.ID, j.Seed, j.Base, j.Vars, j.Prompts[0].Text, seed, seed)
		}
	}
}

// TestRangeEqualsList checks that a range and the list of its values make
// the same jobs, on v1 engines and Stable Image services, so ids and
// requests do not depend on how the values were written.
func TestRangeEqualsList(t *testing.T) {
	tests := []struct {
		name, head, rng, list string
	}{
		{
			name: "v1 seeds and a placeholder",
			head: "version: 1\nengine: " + sdxl + "\njobs:\n  - prompt: a fox {style_preset}\n    matrix:\n      style_preset: [anime, photographic]\n",
			rng:  "      seed: {from: 0, to: 20, step: 5}\n",
			list: "      seed: [0, 5, 10, 15, 20]\n",
		},
		{
			name: "v1 steps, checked per row",
			head: "version: 1\nengine: " + sdxl + "\njobs:\n  - id: s\n    prompt: a fox\n    matrix:\n",
			rng:  "      steps: {from: 10, to: 50, step: 10}\n",
			list: "      steps: [10, 20, 30, 40, 50]\n",
		},
		{
			name: "Stable Image seeds",
			head: "version: 1\nservice: generate/core\njobs:\n  - id: core\n    prompt: a fox\n    matrix:\n      aspect_ratio: [\"1:1\", \"16:9\"]\n",
			rng:  "      seed: {from: 4294967290, to: 4294967294, step: 2}\n",
			list: "      seed: [4294967290, 4294967292, 4294967294]\n",
		},
		{
			name: "outpaint sides, in Params",
			head: "version: 1\nservice: edit/outpaint\njobs:\n  - id: wide\n    image: images/label.jpg\n    matrix:\n",
			rng:  "      left: {from: 0, to: 512, step: 256}\n      right: {from: 64, to: 64}\n",
			list: "      left: [0, 256, 512]\n      right: [64]\n",
		},
		{
			name: "a Stable Image field as a v1 placeholder",
			head: "version: 1\nengine: " + sdxl + "\njobs:\n  - id: v1\n    prompt: a fox, {left} to the left\n    matrix:\n",
			rng:  "      left: {from: 1, to: 3}\n",
			list: "      left: [1, 2, 3]\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parse := func(src string) []Job {
				t.Helper()
				m, err := Parse("testdata/good/test.yaml", []byte(src))
				if err != nil {
					t.Fatalf("Parse() error:\n%v\n%s", err, src)
				}
				return jobsOf(m)
			}
			fromRange, fromList := parse(tt.head+tt.rng), parse(tt.head+tt.list)
			if len(fromRange) < 2 {
				t.Fatalf("got %d jobs, want a matrix", len(fromRange))
			}
			if !reflect.DeepEqual(fromRange, fromList) {
				t.Errorf("range jobs differ from list jobs:\nrange %+v\nlist  %+v", fromRange, fromList)
			}
		})
	}
}

// TestRangeLimit checks that the number of values a range makes is held
// against the manifest's job limit before any is made.
func TestRangeLimit(t *testing.T) {
	const src = "version: 1\nengine: " + sdxl + "\njobs:\n  - prompt: a fox\n    matrix:\n      seed: {from: 1, to: %d}\n"
	for _, tt := range []struct {
		to   int
		want string // a problem's text; "" for none
	}{
		{100, ""},
		{101, "test.yaml:6:13: jobs[0].matrix.seed: the range has 101 values, more than the 100 jobs a manifest may expand to; narrow it or take a bigger step"},
	} {
		t.Run(strconv.Itoa(tt.to), func(t *testing.T) {
			m, err := parse("test.yaml", ".", fmt.Appendf(nil, src, tt.to), 100)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("parse() error %v, want none", err)
			case tt.want == "" && m.Len() != tt.to:
				t.Fatalf("parse() = %d jobs, want %d", m.Len(), tt.to)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("parse() error %v, want %q", err, tt.want)
			}
		})
	}
}
