package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/batch-tool/batch/internal/catalog"
	"github.com/batch-tool/batch/internal/golden"
)

// pipelineRow is what TestPipeline checks of each job.
type pipelineRow struct {
	id, service   string
	width, height int
	inputs        []Input
	dependsOn     []string
}

func rowOf(j *Job) pipelineRow {
	return pipelineRow{j.ID, j.Service + j.Engine, j.Width, j.Height, j.Inputs, j.DependsOn()}
}

// linkRows sets the FromIndex of want's inputs: the index, among jobs, of
// the job whose id the input's From is.
func linkRows(want []pipelineRow, jobs []Job) {
	at := map[string]int{}
	for i, j := range jobs {
		at[j.ID] = i
	}
	for _, w := range want {
		for k := range w.inputs {
			if w.inputs[k].From != "" {
				w.inputs[k].FromIndex = at[w.inputs[k].From]
			}
		}
	}
}

// TestPipeline loads testdata/good/pipeline.yaml and checks each job's
// inputs, dependencies and output size: sizes follow the chain (a 4× fast
// upscale of a 1024×1024 result is 4096×4096), a job may take the image of
// one written after it, files are joined to the manifest's folder and read
// for their size.
func TestPipeline(t *testing.T) {
	m, err := Load(t.Context(), "testdata/good/pipeline.yaml")
	if err != nil {
		t.Fatalf("Load:\n%v", err)
	}
	img := func(name string) string { return filepath.Join("testdata", "good", "images", name) }
	from := func(field, id string, index, w, h int) Input {
		return Input{Field: field, From: id, Index: index, Width: w, Height: h}
	}
	file := func(field, name string, w, h int) Input {
		return Input{Field: field, Path: img(name), Width: w, Height: h}
	}
	want := []pipelineRow{
		{"hero-oil-painting", "generate/core", 1536, 1536, nil, nil},
		{"hero-photograph", "generate/core", 1536, 1536, nil, nil},
		{"square", "generate/sd3", 1024, 1024, nil, nil},
		{"square-fast", "upscale/fast", 4096, 4096, []Input{from("image", "square", 1, 1024, 1024)}, []string{"square"}},
		{"cutout-fast", "upscale/fast", 4096, 4096, []Input{from("image", "cutout", 1, 1024, 1024)}, []string{"cutout"}},
		{"cutout", "edit/remove-background", 1024, 1024, []Input{from("image", "square", 1, 1024, 1024)}, []string{"square"}},
		// Image-to-image takes the nearest aspect ratio's size; the default
		// 16:9 does not apply beside an image.
		{"restyle-oil-painting", "generate/sd3", 1024, 1024, []Input{from("image", "hero-oil-painting", 1, 1536, 1536)}, []string{"hero-oil-painting"}},
		{"restyle-photograph", "generate/sd3", 1024, 1024, []Input{from("image", "hero-photograph", 1, 1536, 1536)}, []string{"hero-photograph"}},
		{"creative", "upscale/creative", 3152, 3152, []Input{from("image", "restyle-oil-painting", 1, 1024, 1024)}, []string{"restyle-oil-painting"}},
		{"product-red-mug", "edit/search-and-replace", 512, 384, []Input{file("image", "product.png", 512, 384)}, nil},
		{"product-red-cup", "edit/search-and-replace", 512, 384, []Input{file("image", "product.png", 512, 384)}, nil},
		{"product-blue-mug", "edit/search-and-replace", 512, 384, []Input{file("image", "product.png", 512, 384)}, nil},
		{"product-blue-cup", "edit/search-and-replace", 512, 384, []Input{file("image", "product.png", 512, 384)}, nil},
		{"outpaint", "edit/outpaint", 448, 240, []Input{file("image", "label.jpg", 320, 240)}, nil},
		{"upscale-product", "upscale/fast", 2048, 1536, []Input{file("image", "product.png", 512, 384)}, nil},
		{"upscale-label", "upscale/fast", 1280, 960, []Input{file("image", "label.jpg", 320, 240)}, nil},
		{"upscale-lossless-97x41", "upscale/fast", 388, 164, []Input{file("image", "lossless-97x41.webp", 97, 41)}, nil},
		{"relight-morning", "edit/replace-background-and-relight", 512, 384, []Input{
			file("subject_image", "product.png", 512, 384), from("light_reference", "square", 1, 1024, 1024),
		}, []string{"square"}},
		{"v1", sdxl, 1024, 1024, nil, nil},
		{"v1-second", "edit/erase", 1024, 1024, []Input{from("image", "v1", 2, 1024, 1024), file("mask", "product.png", 512, 384)}, []string{"v1"}},
	}
	if m.Len() != len(want) {
		t.Fatalf("got %d jobs %q, want %d", m.Len(), ids(jobsOf(m)), len(want))
	}
	linkRows(want, jobsOf(m))
	for i, w := range want {
		if got := rowOf(&jobsOf(m)[i]); !reflect.DeepEqual(got, w) {
			t.Errorf("job %d:\n got %+v\nwant %+v", i, got, w)
		}
	}
	// Text fields other than the prompts take placeholders too; the
	// defaults' aspect_ratio does not apply beside an image.
	byID := map[string]*Job{}
	for i := range jobsOf(m) {
		byID[jobsOf(m)[i].ID] = &jobsOf(m)[i]
	}
	for id, want := range map[string][]Param{
		"product-blue-cup":     {{"search_prompt", "the cup"}, {"output_format", "png"}},
		"relight-morning":      {{"background_prompt", "a sunny kitchen, morning"}, {"output_format", "png"}},
		"restyle-oil-painting": {{"strength", "0.6"}, {"model", "sd3.5-large"}, {"output_format", "png"}},
	} {
		if got := byID[id].Params; !slices.Equal(got, want) {
			t.Errorf("%s Params = %v, want %v", id, got, want)
		}
	}
}

// TestMatrixOverInputs checks matrices over image inputs: lists of files
// and of {from} mappings, with ids from the values.
func TestMatrixOverInputs(t *testing.T) {
	dir := t.TempDir()
	writePNG(t, filepath.Join(dir, "a.png"), 100, 100)
	writePNG(t, filepath.Join(dir, "shots", "B Side.png"), 200, 100)
	src := `version: 1
service: upscale/fast
jobs:
  - id: gen
    service: generate/sd3
    prompt: a fox
    matrix:
      seed: [1, 2]
  - id: up
    matrix:
      image: [a.png, shots/B Side.png, {from: gen-1}, {from: gen-2, index: 1}]
  - id: pair
    service: edit/erase
    matrix:
      image: [a.png]
      mask: [a.png, {from: gen-2}]
`
	m, err := parse("m.yaml", dir, []byte(src), MaxJobs)
	if err != nil {
		t.Fatalf("parse:\n%v", err)
	}
	a, b := filepath.Join(dir, "a.png"), filepath.Join(dir, "shots", "B Side.png")
	want := []pipelineRow{
		{"gen-1", "generate/sd3", 1024, 1024, nil, nil},
		{"gen-2", "generate/sd3", 1024, 1024, nil, nil},
		{"up-a", "upscale/fast", 400, 400, []Input{{Field: "image", Path: a, Width: 100, Height: 100}}, nil},
		{"up-b-side", "upscale/fast", 800, 400, []Input{{Field: "image", Path: b, Width: 200, Height: 100}}, nil},
		{"up-gen-1", "upscale/fast", 4096, 4096, []Input{{Field: "image", From: "gen-1", Index: 1, Width: 1024, Height: 1024}}, []string{"gen-1"}},
		{"up-gen-2", "upscale/fast", 4096, 4096, []Input{{Field: "image", From: "gen-2", Index: 1, Width: 1024, Height: 1024}}, []string{"gen-2"}},
		{"pair-a-a", "edit/erase", 100, 100, []Input{{Field: "image", Path: a, Width: 100, Height: 100}, {Field: "mask", Path: a, Width: 100, Height: 100}}, nil},
		{"pair-a-gen-2", "edit/erase", 100, 100, []Input{{Field: "image", Path: a, Width: 100, Height: 100}, {Field: "mask", From: "gen-2", Index: 1, Width: 1024, Height: 1024}}, []string{"gen-2"}},
	}
	if m.Len() != len(want) {
		t.Fatalf("got %d jobs %q, want %d", m.Len(), ids(jobsOf(m)), len(want))
	}
	linkRows(want, jobsOf(m))
	for i, w := range want {
		if got := rowOf(&jobsOf(m)[i]); !reflect.DeepEqual(got, w) {
			t.Errorf("job %d:\n got %+v\nwant %+v", i, got, w)
		}
	}
	if got, want := jobsOf(m)[4].Vars, []Var{{"image", "{from: gen-1}"}}; !slices.Equal(got, want) {
		t.Errorf("Vars = %v, want %v", got, want)
	}
}

// TestFromPlaceholders checks that a from's placeholders take the row's
// values in id form, and that the other text fields take placeholders.
func TestFromPlaceholders(t *testing.T) {
	dir := t.TempDir()
	writePNG(t, filepath.Join(dir, "mug.png"), 300, 300)
	m, err := parse("m.yaml", dir, []byte(`version: 1
service: generate/core
jobs:
  - id: Hero
    prompt: a lighthouse, {style}
    matrix:
      style: [Oil Painting, photograph]
  - id: recolor
    service: edit/search-and-recolor
    image: {from: "HERO-{style}"}
    prompt: a {color} lighthouse
    select_prompt: the {part} of the lighthouse
    matrix:
      style: [Oil Painting, photograph]
      color: [red]
      part: [roof]
  - id: relight
    service: edit/replace-background-and-relight
    subject_image: mug.png
    background_prompt: a {place}
    foreground_prompt: a mug in the {place}
    matrix:
      place: [kitchen, garden]
`), MaxJobs)
	if err != nil {
		t.Fatalf("parse:\n%v", err)
	}
	tests := []struct {
		id     string
		from   string
		params []Param
	}{
		{"recolor-oil-painting-red-roof", "hero-oil-painting", []Param{{"select_prompt", "the roof of the lighthouse"}}},
		{"recolor-photograph-red-roof", "hero-photograph", []Param{{"select_prompt", "the roof of the lighthouse"}}},
		{"relight-kitchen", "", []Param{{"background_prompt", "a kitchen"}, {"foreground_prompt", "a mug in the kitchen"}}},
		{"relight-garden", "", []Param{{"background_prompt", "a garden"}, {"foreground_prompt", "a mug in the garden"}}},
	}
	for i, tt := range tests {
		j := jobsOf(m)[2+i]
		from := ""
		if j.Inputs[0].From != "" {
			from = j.Inputs[0].From
		}
		if j.ID != tt.id || from != tt.from || !slices.Equal(j.Params, tt.params) {
			t.Errorf("job %d = %s from %q Params %v, want %s from %q Params %v", 2+i, j.ID, from, j.Params, tt.id, tt.from, tt.params)
		}
	}
}

// TestEveryService checks that every service of the catalogue runs from a
// manifest: a job with its required fields (an image file for each image
// input) and what its rules need is accepted, and gets its output size.
func TestEveryService(t *testing.T) {
	dir := t.TempDir()
	writePNG(t, filepath.Join(dir, "in.png"), 512, 384)
	for _, op := range catalog.All() {
		t.Run(op.Service, func(t *testing.T) {
			var b strings.Builder
			b.WriteString("version: 1\njobs:\n  - service: " + op.Service + "\n")
			set := map[string]bool{}
			write := func(f *catalog.Field) {
				set[f.Name] = true
				switch f.Type {
				case catalog.Image:
					b.WriteString("    " + f.Name + ": in.png\n")
				case catalog.Text:
					b.WriteString("    " + f.Name + ": a lighthouse\n")
				case catalog.Enum:
					b.WriteString("    " + f.Name + ": \"" + f.Enum[0] + "\"\n")
				default:
					b.WriteString(fmt.Sprintf("    %s: %v\n", f.Name, max(f.Min, 1)))
				}
			}
			for i := range op.Fields {
				if op.Fields[i].Required {
					write(&op.Fields[i])
				}
			}
			for _, r := range op.Rules {
				if r.Kind == catalog.OneOf && !slices.ContainsFunc(r.Fields, func(n string) bool { return set[n] }) {
					f, _ := op.Field(r.Fields[0])
					write(f)
				}
			}
			m, err := parse("m.yaml", dir, []byte(b.String()), MaxJobs)
			if err != nil {
				t.Fatalf("parse:\n%s\n%v", b.String(), err)
			}
			j := jobsOf(m)[0]
			if j.Service != op.Service || len(j.Inputs) != len(slices.DeleteFunc(op.Images(), func(n string) bool { return !set[n] })) {
				t.Errorf("job = %s with inputs %+v, want %s with its required images", j.Service, j.Inputs, op.Service)
			}
			if j.Width <= 0 || j.Height <= 0 {
				t.Errorf("job size %d×%d, want the output size", j.Width, j.Height)
			}
			for _, p := range j.Params {
				if f, _ := op.Field(p.Name); f.Type == catalog.Image {
					t.Errorf("image input %s is in Params", p.Name)
				}
			}
		})
	}
}

// TestRuledDefaults checks that a default a rule rules out for a job does
// not apply to it (aspect_ratio beside an image, strength without one),
// while the same fields written in the job are problems.
func TestRuledDefaults(t *testing.T) {
	dir := t.TempDir()
	writePNG(t, filepath.Join(dir, "in.png"), 512, 512)
	m, err := parse("m.yaml", dir, []byte(`version: 1
service: generate/sd3
defaults:
  aspect_ratio: "16:9"
  strength: 0.4
jobs:
  - id: text
    prompt: a fox
  - id: image
    prompt: a fox
    image: in.png
`), MaxJobs)
	if err != nil {
		t.Fatalf("parse:\n%v", err)
	}
	wantParams := [][]Param{
		{{"aspect_ratio", "16:9"}, {"model", "sd3.5-large"}},
		{{"strength", "0.4"}, {"model", "sd3.5-large"}},
	}
	for i, want := range wantParams {
		if got := jobsOf(m)[i].Params; !slices.Equal(got, want) {
			t.Errorf("%s Params = %v, want %v", jobsOf(m)[i].ID, got, want)
		}
	}
	if w, h := jobsOf(m)[0].Width, jobsOf(m)[0].Height; w != 1344 || h != 768 {
		t.Errorf("text job size %d×%d, want 1344×768", w, h)
	}
}

// TestStatOnce checks that a file named by every row of a big matrix, and
// again by another job, is read once.
func TestStatOnce(t *testing.T) {
	dir := t.TempDir()
	writePNG(t, filepath.Join(dir, "in.png"), 256, 256)
	var b strings.Builder
	b.WriteString("version: 1\nservice: edit/inpaint\njobs:\n  - id: sweep\n    prompt: a {n}\n    image: in.png\n    matrix:\n      n: [")
	for i := range 10_000 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d", i)
	}
	b.WriteString("]\n  - id: one\n    prompt: a fox\n    image: ./in.png\n    mask: in.png\n")
	p := newParser(t.Context(), "m.yaml", dir, MaxJobs)
	calls := 0
	p.statFile = func(path string) *fileInfo {
		calls++
		return statImage(path)
	}
	m, err := p.run([]byte(b.String()))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if m.Len() != 10_001 || calls != 1 {
		t.Errorf("parse = %d jobs with %d reads of in.png, want 10001 jobs and 1 read", m.Len(), calls)
	}
	if j := jobsOf(m)[9_999]; len(j.Inputs) != 1 || j.Inputs[0].Width != 256 {
		t.Errorf("row 9999 inputs = %+v, want in.png at 256×256", j.Inputs)
	}
}

// TestGeneratedInputs parses testdata/generated/*.yaml in a folder beside
// inputs made for the test: a named pipe (which must not block the load), a
// symbolic link to it, and files large enough to break the request body
// limit. It compares the problems with the .err golden files.
func TestGeneratedInputs(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe.png"), 0o600); err != nil {
		t.Skipf("no named pipes here: %v", err)
	}
	if err := os.Symlink("pipe.png", filepath.Join(dir, "link.png")); err != nil {
		t.Fatal(err)
	}
	// A real PNG header, then zeros up to the size: the header is all the
	// loader reads.
	for name, size := range map[string]int64{
		"huge.png":   catalog.MaxBody,
		"half-a.png": catalog.MaxBody / 2,
		"half-b.png": catalog.MaxBody/2 - 1024,
		"fits.png":   catalog.MaxBody - formOverhead - 1024,
	} {
		path := filepath.Join(dir, name)
		writePNG(t, path, 512, 512)
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
	}
	files, err := filepath.Glob("testdata/generated/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/generated/*.yaml: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			_, err = parse(filepath.Base(file), dir, data, MaxJobs)
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("parse(%s) error %T %v, want *Errors", file, err, err)
			}
			golden.Check(t, strings.TrimSuffix(file, ".yaml")+".err", []byte(err.Error()+"\n"), *update)
		})
	}
	// The file that leaves room for the other fields is accepted.
	m, err := parse("fits.yaml", dir, []byte("version: 1\njobs:\n  - service: edit/remove-background\n    image: fits.png\n"), MaxJobs)
	if err != nil {
		t.Fatalf("parse(fits.png):\n%v", err)
	}
	if in := jobsOf(m)[0].Inputs; len(in) != 1 || in[0].Width != 512 {
		t.Errorf("inputs = %+v, want fits.png at 512×512", in)
	}
}

// writePNG writes a w×h PNG at path, making its folder.
func writePNG(t *testing.T, path string, w, h int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDerivedIDsWithoutPrompt checks the ids of jobs without an id or a
// prompt: their service and first input, as words.
func TestDerivedIDsWithoutPrompt(t *testing.T) {
	dir := t.TempDir()
	writePNG(t, filepath.Join(dir, "Logo Mark.png"), 128, 128)
	m, err := parse("m.yaml", dir, []byte(`version: 1
jobs:
  - id: gen
    service: generate/ultra
    prompt: a fox
  - service: upscale/fast
    image: {from: gen}
  - service: edit/remove-background
    image: Logo Mark.png
  - service: edit/remove-background
    image: Logo Mark.png
    output_format: webp
`), MaxJobs)
	if err != nil {
		t.Fatalf("parse:\n%v", err)
	}
	got := ids(jobsOf(m))
	if got[1] != "upscale-fast-gen" || !strings.HasPrefix(got[2], "edit-remove-background-logo-mark-") || !strings.HasPrefix(got[3], "edit-remove-background-logo-mark-") || got[2] == got[3] {
		t.Errorf("ids = %q, want gen, upscale-fast-gen and two distinct edit-remove-background-logo-mark-HASH", got)
	}
}
