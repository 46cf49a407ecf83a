package manifest

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/batch-tool/batch/internal/catalog"
)

func ptr(f float64) *float64 { return &f }

// jobsEqual compares expanded jobs field by field, naming the first field
// that differs.
func jobsEqual(t *testing.T, got, want []Job) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d jobs %q, want %d %q", len(got), ids(got), len(want), ids(want))
	}
	for i := range want {
		g, w := reflect.ValueOf(got[i]), reflect.ValueOf(want[i])
		for f := range g.NumField() {
			if !reflect.DeepEqual(g.Field(f).Interface(), w.Field(f).Interface()) {
				name := g.Type().Field(f).Name
				t.Errorf("job %d (%s) %s = %#v, want %#v", i, want[i].ID, name, g.Field(f).Interface(), w.Field(f).Interface())
			}
		}
	}
}

func TestStableImageJobs(t *testing.T) {
	m := mustParse(t, `version: 1
service: generate/core
defaults:
  negative_prompt: blurry
  output_format: webp
jobs:
  - id: core
    prompt: a lighthouse
    aspect_ratio: "16:9"
    seed: 42
  - id: sd3
    service: generate/sd3
    prompt: a fox
    cfg_scale: 7.0
    style_preset: anime
  - id: ultra
    service: generate/ultra
    prompt: a cat
    negative_prompt: dogs
    seed: 4294967294
`)
	if m.Service != "generate/core" || m.Engine != "" {
		t.Errorf("Manifest service %q engine %q, want generate/core and none", m.Service, m.Engine)
	}
	jobsEqual(t, jobsOf(m), []Job{
		{
			ID: "core", Base: "core", Line: 7, Column: 5, Service: "generate/core",
			Params:  []Param{{"aspect_ratio", "16:9"}, {"seed", "42"}, {"output_format", "webp"}},
			Prompts: []Prompt{{"a lighthouse", 1}, {"blurry", -1}},
			Width:   2016, Height: 1152, Samples: 1, Seed: 42,
		},
		{
			// The catalogue's order; model carries its default; 7.0 is sent as 7.
			ID: "sd3", Base: "sd3", Line: 11, Column: 5, Service: "generate/sd3",
			Params:  []Param{{"model", "sd3.5-large"}, {"output_format", "webp"}, {"style_preset", "anime"}, {"cfg_scale", "7"}},
			Prompts: []Prompt{{"a fox", 1}, {"blurry", -1}},
			Width:   1024, Height: 1024, Samples: 1,
		},
		{
			ID: "ultra", Base: "ultra", Line: 16, Column: 5, Service: "generate/ultra",
			Params:  []Param{{"seed", "4294967294"}, {"output_format", "webp"}},
			Prompts: []Prompt{{"a cat", 1}, {"dogs", -1}},
			Width:   1024, Height: 1024, Samples: 1, Seed: 4294967294,
		},
	})
	if v, ok := jobsOf(m)[1].Param("model"); !ok || v != "sd3.5-large" {
		t.Errorf("Param(model) = %q, %v; want sd3.5-large", v, ok)
	}
}

func TestMixedManifest(t *testing.T) {
	m := mustParse(t, `version: 1
defaults:
  negative_prompt: blurry
  steps: 40
  cfg_scale: 6
  aspect_ratio: "3:2"
jobs:
  - id: sdxl
    engine: stable-diffusion-xl-1024-v1-0
    prompt: a fox
    steps: 30
  - id: core
    service: generate/core
    prompt: a fox
  - id: sd3
    service: generate/sd3
    prompt: a fox
    model: sd3.5-medium
  - id: v15
    engine: stable-diffusion-v1-5
    prompt: a {model} car
    matrix:
      model: [tesla]
`)
	jobsEqual(t, jobsOf(m), []Job{
		{
			// steps and cfg_scale apply; aspect_ratio does not.
			ID: "sdxl", Base: "sdxl", Line: 8, Column: 5, Engine: sdxl,
			Prompts: []Prompt{{"a fox", 1}, {"blurry", -1}},
			Width:   1024, Height: 1024, Steps: 30, Samples: 1, CfgScale: ptr(6),
		},
		{
			// aspect_ratio applies; steps and cfg_scale do not.
			ID: "core", Base: "core", Line: 12, Column: 5, Service: "generate/core",
			Params:  []Param{{"aspect_ratio", "3:2"}},
			Prompts: []Prompt{{"a fox", 1}, {"blurry", -1}},
			Width:   1824, Height: 1248, Samples: 1,
		},
		{
			ID: "sd3", Base: "sd3", Line: 15, Column: 5, Service: "generate/sd3",
			Params:  []Param{{"aspect_ratio", "3:2"}, {"model", "sd3.5-medium"}, {"cfg_scale", "6"}},
			Prompts: []Prompt{{"a fox", 1}, {"blurry", -1}},
			Width:   1216, Height: 832, Samples: 1,
		},
		{
			// model is a placeholder here, as it was before Stable Image jobs.
			ID: "v15-tesla", Base: "v15", Vars: []Var{{"model", "tesla"}}, Line: 19, Column: 5, Engine: "stable-diffusion-v1-5",
			Prompts: []Prompt{{"a tesla car", 1}, {"blurry", -1}},
			Width:   512, Height: 512, Steps: 40, Samples: 1, CfgScale: ptr(6),
		},
	})
}

func TestStableImageMatrix(t *testing.T) {
	m := mustParse(t, `version: 1
jobs:
  - id: s
    prompt: a {animal}
    matrix:
      animal: [fox]
      service: [generate/core, generate/sd3]
      aspect_ratio: ["1:1", "21:9"]
  - id: m
    service: generate/sd3
    prompt: a fox
    matrix:
      model: [sd3.5-flash, sd3.5-large-turbo]
      cfg_scale: [1.5]
      style_preset: [pixel-art]
      output_format: [jpeg]
      seed: [9]
`)
	type row struct {
		id, service string
		w, h        int
		params      []Param
	}
	want := []row{
		{"s-fox-generate-core-1-1", "generate/core", 1536, 1536, []Param{{"aspect_ratio", "1:1"}}},
		{"s-fox-generate-core-21-9", "generate/core", 2304, 960, []Param{{"aspect_ratio", "21:9"}}},
		{"s-fox-generate-sd3-1-1", "generate/sd3", 1024, 1024, []Param{{"aspect_ratio", "1:1"}, {"model", "sd3.5-large"}}},
		{"s-fox-generate-sd3-21-9", "generate/sd3", 1536, 640, []Param{{"aspect_ratio", "21:9"}, {"model", "sd3.5-large"}}},
		{"m-sd3.5-flash-1.5-pixel-art-jpeg-9", "generate/sd3", 1024, 1024, []Param{{"model", "sd3.5-flash"}, {"seed", "9"}, {"output_format", "jpeg"}, {"style_preset", "pixel-art"}, {"cfg_scale", "1.5"}}},
		{"m-sd3.5-large-turbo-1.5-pixel-art-jpeg-9", "generate/sd3", 1024, 1024, []Param{{"model", "sd3.5-large-turbo"}, {"seed", "9"}, {"output_format", "jpeg"}, {"style_preset", "pixel-art"}, {"cfg_scale", "1.5"}}},
	}
	if m.Len() != len(want) {
		t.Fatalf("got %d jobs %q, want %d", m.Len(), ids(jobsOf(m)), len(want))
	}
	for i, w := range want {
		j := jobsOf(m)[i]
		got := row{j.ID, j.Service, j.Width, j.Height, j.Params}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("job %d = %+v, want %+v", i, got, w)
		}
		if j.Engine != "" || j.Steps != 0 || j.Samples != 1 || j.CfgScale != nil || j.StylePreset != "" {
			t.Errorf("job %d has v1 fields: engine %q steps %d samples %d cfg %v style %q", i, j.Engine, j.Steps, j.Samples, j.CfgScale, j.StylePreset)
		}
	}
	if jobsOf(m)[4].Seed != 9 {
		t.Errorf("matrix seed = %d, want 9", jobsOf(m)[4].Seed)
	}
}

// TestParamsShareBacking checks that per-job memory follows what varies:
// rows that agree on every key that changes Params share one slice.
func TestParamsShareBacking(t *testing.T) {
	m := mustParse(t, `version: 1
service: generate/sd3
jobs:
  - id: a
    prompt: a {x} fox
    model: sd3.5-flash
    matrix:
      x: [red, blue, green]
      aspect_ratio: ["1:1", "16:9"]
  - id: b
    prompt: a {x} fox
    matrix:
      x: [red, blue]
  - id: c
    prompt: a fox
    matrix:
      seed: [1, 2]
`)
	same := func(a, b []Param) bool { return len(a) > 0 && len(b) > 0 && &a[0] == &b[0] }
	j := jobsOf(m)
	// a: rows 0, 2, 4 are 1:1; rows 1, 3, 5 are 16:9.
	if !same(j[0].Params, j[2].Params) || !same(j[0].Params, j[4].Params) || !same(j[1].Params, j[5].Params) {
		t.Error("rows with the same aspect_ratio do not share Params")
	}
	if same(j[0].Params, j[1].Params) {
		t.Error("rows with different aspect_ratio share Params")
	}
	if !same(j[6].Params, j[7].Params) {
		t.Error("rows of a matrix that changes no Params do not share the job's Params")
	}
	if same(j[8].Params, j[9].Params) || j[8].Params[1].Value != "1" || j[9].Params[1].Value != "2" {
		t.Errorf("seed rows: Params %v and %v, want their own seeds", j[8].Params, j[9].Params)
	}
	if cap(j[0].Params) != len(j[0].Params) {
		t.Errorf("shared Params have spare capacity %d > %d: an append would write into another row's", cap(j[0].Params), len(j[0].Params))
	}
}

// TestPlaceholdersNamedLikeFields checks that v1 manifests written before
// Stable Image jobs keep working when a placeholder is named like a field.
func TestPlaceholdersNamedLikeFields(t *testing.T) {
	m := mustParse(t, `version: 1
engine: stable-diffusion-xl-1024-v1-0
jobs:
  - id: p
    prompt: a {model} {mode} car by the {service} {image}
    matrix:
      model: [tesla]
      mode: [fast]
      service: [garage]
      image: [sign]
`)
	if got := jobsOf(m)[0].Prompts[0].Text; got != "a tesla fast car by the garage sign" || jobsOf(m)[0].ID != "p-tesla-fast-garage-sign" {
		t.Errorf("job = %s %q, want p-tesla-fast-garage-sign with every placeholder filled", jobsOf(m)[0].ID, got)
	}
}

// TestEveryFieldIsAKey checks that each catalogue field is a manifest key:
// on a job, none is an unknown key.
func TestEveryFieldIsAKey(t *testing.T) {
	for _, name := range catalog.FieldNames() {
		_, err := Parse("t.yaml", []byte("version: 1\nservice: generate/core\njobs:\n  - prompt: a fox\n    "+name+": 1\n"))
		var errs *Errors
		if err == nil {
			continue // a field generate/core takes, and 1 is a value it accepts
		}
		if !errors.As(err, &errs) {
			t.Fatalf("%s: Parse() error %T, want *Errors", name, err)
		}
		for _, p := range *errs {
			if strings.Contains(p.Msg, "unknown key") {
				t.Errorf("%s: %s", name, p.Msg)
			}
		}
	}
}

// TestSettingTable holds the setting table against the catalogue: every
// field is a setting of the kind its type says, in every operation.
func TestSettingTable(t *testing.T) {
	for _, op := range catalog.All() {
		for _, f := range op.Fields {
			s, ok := settings.byName[f.Name]
			if !ok {
				t.Errorf("%s: field %s is no setting", op.Service, f.Name)
				continue
			}
			sp := s.spec()
			want := kindOf(f)
			if want == kText && (s == sPrompt || s == sNegative) {
				want = kPrompt
			}
			if sp.kind != want || !sp.si {
				t.Errorf("%s: %s is kind %d (si %v), want %d", op.Service, f.Name, sp.kind, sp.si, want)
			}
			if (sp.kind == kInt || sp.kind == kNum) && (f.Min < sp.lo || f.Max > sp.hi) {
				t.Errorf("%s: %s takes %v to %v, outside the setting's %v to %v", op.Service, f.Name, f.Min, f.Max, sp.lo, sp.hi)
			}
			for _, v := range f.Enum {
				if !slices.Contains(sp.enum, v) {
					t.Errorf("%s: %s value %q is not among the setting's", op.Service, f.Name, v)
				}
			}
		}
	}
}

func TestRuleProblems(t *testing.T) {
	op := func(s string) *catalog.Operation {
		o, ok := catalog.Lookup(s)
		if !ok {
			t.Fatalf("no service %s", s)
		}
		return o
	}
	tests := []struct {
		service string
		set     []string
		want    []string
	}{
		{"generate/sd3", []string{"prompt"}, nil},
		{"generate/sd3", []string{"prompt", "image"}, []string{"strength is required with image"}},
		{"generate/sd3", []string{"prompt", "strength"}, []string{"strength only applies to an image input"}},
		{"generate/sd3", []string{"prompt", "image", "strength", "aspect_ratio"}, []string{"the output takes the input image's aspect ratio"}},
		{"edit/outpaint", []string{"image"}, []string{"outpaint needs at least one direction to grow"}},
		{"edit/outpaint", []string{"image", "down"}, nil},
		{"edit/replace-background-and-relight", []string{"subject_image"}, []string{"the API needs background_prompt or background_reference"}},
		{"edit/replace-background-and-relight", []string{"subject_image", "background_reference"}, nil},
	}
	// Requires with several fields asks for all of them, as catalog says.
	both := &catalog.Operation{Service: "x", Rules: []catalog.Rule{{Kind: catalog.Requires, If: "a", Fields: []string{"b", "c"}, Why: "a needs b and c"}}}
	for _, set := range [][]string{{"a", "b"}, {"a", "c"}} {
		if got := ruleProblems(both, func(name string) bool { return slices.Contains(set, name) }); !slices.Equal(got, []string{"a needs b and c"}) {
			t.Errorf("ruleProblems(a needs b and c, %v) = %q, want the rule", set, got)
		}
	}
	for _, tt := range tests {
		got := ruleProblems(op(tt.service), func(name string) bool { return slices.Contains(tt.set, name) })
		if !slices.Equal(got, tt.want) {
			t.Errorf("ruleProblems(%s, %v) = %q, want %q", tt.service, tt.set, got, tt.want)
		}
	}
}

// TestV1IDsUnchanged checks that a v1 job's derived id hash does not move
// with the new settings: journals and file names of older runs stay valid.
func TestV1IDsUnchanged(t *testing.T) {
	m := mustParse(t, `version: 1
engine: stable-diffusion-xl-1024-v1-0
jobs:
  - prompt: a red fox
  - prompt: a red fox
    seed: 1
`)
	if got := ids(jobsOf(m)); !slices.Equal(got, []string{"a-red-fox-ce44a65b", "a-red-fox-8489837b"}) {
		t.Errorf("ids = %q, want the hashes of the v1 settings alone", got)
	}
}

// TestFieldProblem checks the per-operation checks of fields: they are
// data-driven, so a new service needs no code here.
func TestFieldProblem(t *testing.T) {
	tests := []struct {
		service, field string
		v              value
		want           string
	}{
		{"edit/remove-background", "output_format", value{str: "jpeg"}, `edit/remove-background takes output_format png or webp, not "jpeg"`},
		{"edit/remove-background", "output_format", value{str: "webp"}, ""},
		{"edit/outpaint", "left", value{num: 2001, text: "2001"}, "edit/outpaint takes left from 0 to 2000, got 2001"},
		{"edit/outpaint", "left", value{num: 2000, text: "2000"}, ""},
		{"upscale/conservative", "creativity", value{f: 0.6, text: "0.6"}, "upscale/conservative takes creativity from 0.2 to 0.5, got 0.6"},
		{"edit/outpaint", "creativity", value{f: 0.6, text: "0.6"}, ""},
		{"edit/search-and-replace", "search_prompt", value{s: settings.byName["search_prompt"], str: strings.Repeat("é", 10001), text: strings.Repeat("é", 10001)}, "is 10001 characters long; the API accepts at most 10000"},
	}
	for _, tt := range tests {
		op, _ := catalog.Lookup(tt.service)
		f, ok := op.Field(tt.field)
		if !ok {
			t.Fatalf("%s has no field %s", tt.service, tt.field)
		}
		if got := fieldProblem(op, f, &tt.v); got != tt.want {
			t.Errorf("fieldProblem(%s, %s) = %q, want %q", tt.service, tt.field, got, tt.want)
		}
	}
}
