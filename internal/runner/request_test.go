package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/stability"
)

// flashJob is a generate/sd3 job with every field the service's text-to-image
// takes, Params in catalogue order.
func flashJob() manifest.Job {
	return manifest.Job{
		ID: "hero-flash", Service: "generate/sd3", Width: 1344, Height: 768, Samples: 1,
		Prompts: []manifest.Prompt{{Text: "a lighthouse, at dawn", Weight: 1}, {Text: "fog", Weight: -1}},
		Params: []manifest.Param{
			{Name: "aspect_ratio", Value: "16:9"}, {Name: "model", Value: "sd3.5-flash"}, {Name: "seed", Value: "42"},
			{Name: "output_format", Value: "webp"}, {Name: "style_preset", Value: "cinematic"}, {Name: "cfg_scale", Value: "4.5"},
		},
	}
}

func TestRequestFor(t *testing.T) {
	cfg := 9.5
	v1 := manifest.Job{ID: "mug", Engine: "stable-diffusion-xl-1024-v1-0", Width: 1024, Height: 1024, Steps: 30, Samples: 2, Seed: 7,
		CfgScale: &cfg, Sampler: "K_DPMPP_2M", StylePreset: "photographic", ClipGuidancePreset: "FAST_BLUE",
		Prompts: []manifest.Prompt{{Text: "a mug", Weight: 1}, {Text: "steam", Weight: 0.5}, {Text: "blurry", Weight: -1}}}
	core := manifest.Job{ID: "hero", Service: "generate/core", Width: 1536, Height: 1536, Samples: 1,
		Prompts: []manifest.Prompt{{Text: "a lighthouse", Weight: 1}}}
	tests := []struct {
		name string
		job  manifest.Job
		want stability.Request
	}{
		{"v1", v1, stability.Request{Engine: v1.Engine, TextToImage: stability.TextToImageRequest{
			TextPrompts: []stability.TextPrompt{{Text: "a mug", Weight: 1}, {Text: "steam", Weight: 0.5}, {Text: "blurry", Weight: -1}},
			Width:       1024, Height: 1024, CfgScale: &cfg, ClipGuidancePreset: "FAST_BLUE", Sampler: "K_DPMPP_2M",
			Samples: 2, Seed: 7, Steps: 30, StylePreset: "photographic"}}},
		{"core, prompt only", core, stability.Request{Service: "generate/core", Fields: []stability.Field{{Name: "prompt", Value: "a lighthouse"}}}},
		// sd3's field order: prompt, …, aspect_ratio, model, seed,
		// output_format, style_preset, negative_prompt, cfg_scale.
		{"sd3, every field", flashJob(), stability.Request{Service: "generate/sd3", Fields: []stability.Field{
			{Name: "prompt", Value: "a lighthouse, at dawn"}, {Name: "aspect_ratio", Value: "16:9"}, {Name: "model", Value: "sd3.5-flash"},
			{Name: "seed", Value: "42"}, {Name: "output_format", Value: "webp"}, {Name: "style_preset", Value: "cinematic"},
			{Name: "negative_prompt", Value: "fog"}, {Name: "cfg_scale", Value: "4.5"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RequestFor(tt.job, nil)
			if err != nil {
				t.Fatalf("RequestFor = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("RequestFor =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestRequestForErrors(t *testing.T) {
	with := func(f func(j *manifest.Job)) manifest.Job {
		j := flashJob()
		f(&j)
		return j
	}
	tests := []struct {
		name string
		job  manifest.Job
		want string
	}{
		{"unknown service", with(func(j *manifest.Job) { j.Service = "generate/sd9" }), `unknown service "generate/sd9"`},
		{"field of another service", with(func(j *manifest.Job) { j.Params = append(j.Params, manifest.Param{Name: "steps", Value: "30"}) }), `field "steps"`},
		{"prompt as a param", with(func(j *manifest.Job) { j.Params = []manifest.Param{{Name: "prompt", Value: "x"}} }), `field "prompt"`},
		{"weighted prompt", with(func(j *manifest.Job) { j.Prompts = []manifest.Prompt{{Text: "x", Weight: 0.5}} }), "take no weights"},
		{"two prompts", with(func(j *manifest.Job) { j.Prompts = append(j.Prompts, manifest.Prompt{Text: "y", Weight: 1}) }), "more than one prompt"},
		{"negative without the field", manifest.Job{Service: "upscale/fast", Prompts: []manifest.Prompt{{Text: "x", Weight: -1}}}, "takes no prompt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RequestFor(tt.job, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("RequestFor error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestKey(t *testing.T) {
	jobs, _ := testJobs(1)
	v1 := jobs[0]
	v1.Width, v1.Height = 1024, 1024 // the job the pinned key below was computed for
	key := func(j manifest.Job) string {
		t.Helper()
		req, err := RequestFor(j, nil)
		if err != nil {
			t.Fatalf("RequestFor(%s) = %v", j.ID, err)
		}
		k, err := Key(req, nil)
		if err != nil {
			t.Fatalf("jobKey(%s) = %v", j.ID, err)
		}
		return k
	}
	// Computed by the Key of journals written before Stable Image jobs:
	// they must still resume.
	const v1Key = "b085c55088e84dc0f7cee12c785c79291504e89e1a3f961e9e98a8c74e0ce7cd"
	if got := key(v1); got != v1Key {
		t.Errorf("v1 key = %s, want %s (the key earlier versions journaled)", got, v1Key)
	}

	// Computed by the Key of journals written before image inputs: Stable
	// Image jobs without inputs must still resume.
	const sd3Key = "0b1a55465eaa47753c505cf0ccd861cf90daf1086951f14c86e7e505dc82b24a"
	if got := key(flashJob()); got != sd3Key {
		t.Errorf("sd3 key = %s, want %s (the key earlier versions journaled)", got, sd3Key)
	}

	base := flashJob()
	changes := map[string]func(j *manifest.Job){
		"service":   func(j *manifest.Job) { j.Service = "generate/ultra"; j.Params = j.Params[:1] },
		"model":     func(j *manifest.Job) { j.Params[1].Value = "sd3.5-large" },
		"seed":      func(j *manifest.Job) { j.Params[2].Value = "43" },
		"format":    func(j *manifest.Job) { j.Params[3].Value = "png" },
		"cfg_scale": func(j *manifest.Job) { j.Params[5].Value = "4.6" },
		"dropped":   func(j *manifest.Job) { j.Params = j.Params[:5] },
		"prompt":    func(j *manifest.Job) { j.Prompts[0].Text += "!" },
		"negative":  func(j *manifest.Job) { j.Prompts = j.Prompts[:1] },
		// a value that would collide if fields were joined without quoting
		"quoting": func(j *manifest.Job) { j.Prompts[0].Text = "a lighthouse, at dawn\"\n\"aspect_ratio\"=\"16:9" },
	}
	seen := map[string]string{key(v1): "v1", key(base): "base"}
	for name, change := range changes {
		j := flashJob()
		j.Params = append([]manifest.Param(nil), j.Params...)
		j.Prompts = append([]manifest.Prompt(nil), j.Prompts...)
		change(&j)
		k := key(j)
		if other, dup := seen[k]; dup {
			t.Errorf("key after changing %s = key of %s", name, other)
		}
		seen[k] = name
		if len(k) != 64 {
			t.Errorf("key %q is not sha256 hex", k)
		}
	}
	if _, err := Key(stability.Request{Engine: "e", Service: "generate/core"}, nil); err == nil {
		t.Errorf("Key of a request with an engine and a service: no error")
	}
}

func TestOutputFormat(t *testing.T) {
	jobs, _ := testJobs(1)
	core := manifest.Job{Service: "generate/core"}
	tests := []struct {
		name string
		job  manifest.Job
		ext  string
		text bool
	}{
		{"v1", jobs[0], ".png", true},
		{"service default", core, ".png", true},
		{"png", manifest.Job{Service: "generate/core", Params: []manifest.Param{{Name: "output_format", Value: "png"}}}, ".png", true},
		{"jpeg", manifest.Job{Service: "generate/core", Params: []manifest.Param{{Name: "output_format", Value: "jpeg"}}}, ".jpg", false},
		{"webp", manifest.Job{Service: "generate/sd3", Params: []manifest.Param{{Name: "output_format", Value: "webp"}}}, ".webp", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := outputFormat(tt.job)
			if err != nil || got.ext != tt.ext || got.text != tt.text {
				t.Errorf("outputFormat = %+v, %v; want %s, text %v", got, err, tt.ext, tt.text)
			}
		})
	}
	if _, err := outputFormat(manifest.Job{Service: "generate/core", Params: []manifest.Param{{Name: "output_format", Value: "gif"}}}); err == nil {
		t.Errorf("outputFormat(gif) = nil error")
	}
}

func TestParameters(t *testing.T) {
	cfg := 9.5
	tests := []struct {
		name string
		job  manifest.Job
		seed uint32
		want string
	}{
		{"full", manifest.Job{Engine: "stable-diffusion-xl-1024-v1-0", Width: 1024, Height: 1024, Steps: 30, Sampler: "K_DPMPP_2M", StylePreset: "photographic",
			Prompts: []manifest.Prompt{{Text: "a mug", Weight: 1}, {Text: "blurry", Weight: -1}}}, 123,
			"a mug\nNegative prompt: blurry\nSteps: 30, Sampler: K_DPMPP_2M, CFG scale: 7, Seed: 123, Size: 1024x1024, Model: stable-diffusion-xl-1024-v1-0, Style preset: photographic"},
		{"weights, no negative", manifest.Job{Engine: "stable-diffusion-v1-6", Width: 512, Height: 768, Steps: 40, CfgScale: &cfg, ClipGuidancePreset: "FAST_BLUE",
			Prompts: []manifest.Prompt{{Text: "a castle", Weight: 1}, {Text: "fog", Weight: 0.4}}}, 4294967295,
			"a castle, (fog:0.4)\nSteps: 40, CFG scale: 9.5, Seed: 4294967295, Size: 512x768, Model: stable-diffusion-v1-6, CLIP guidance: FAST_BLUE"},
		{"weighted negative", manifest.Job{Engine: "e", Width: 1, Height: 2, Steps: 10,
			Prompts: []manifest.Prompt{{Text: "x", Weight: 1}, {Text: "people", Weight: -0.5}}}, 0,
			"x\nNegative prompt: (people:0.5)\nSteps: 10, CFG scale: 7, Seed: 0, Size: 1x2, Model: e"},
		{"sd3 with every field", flashJob(), 42,
			"a lighthouse, at dawn\nNegative prompt: fog\nCFG scale: 4.5, Seed: 42, Size: 1344x768, Model: generate/sd3 sd3.5-flash, Aspect ratio: 16:9, Style preset: cinematic"},
		{"core with defaults", manifest.Job{Service: "generate/core", Width: 1536, Height: 1536,
			Prompts: []manifest.Prompt{{Text: "a lighthouse", Weight: 1}}}, 7,
			"a lighthouse\nSeed: 7, Size: 1536x1536, Model: generate/core"},
		{"ultra from an image", manifest.Job{Service: "generate/ultra",
			Prompts: []manifest.Prompt{{Text: "the same, at night", Weight: 1}},
			Params:  []manifest.Param{{Name: "image", Value: "in/day.png"}, {Name: "style_preset", Value: "neon-punk"}, {Name: "strength", Value: "0.6"}}}, 9,
			"the same, at night\nSeed: 9, Model: generate/ultra, Style preset: neon-punk, Strength: 0.6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Parameters(tt.job, tt.seed); got != tt.want {
				t.Errorf("Parameters() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestSettingValue(t *testing.T) {
	for in, want := range map[string]string{
		"16:9":          "16:9",
		"red, shiny":    `"red, shiny"`,
		"two\nlines":    `"two\nlines"`,
		`say "cheese"`:  `say "cheese"`,
		`a "b", c`:      `"a \"b\", c"`,
		"plain-text_ok": "plain-text_ok",
	} {
		if got := settingValue(in); got != want {
			t.Errorf("settingValue(%q) = %s, want %s", in, got, want)
		}
	}
}

// inpaintJob is an edit/inpaint job with an image file and a mask from
// job "hero", Inputs in catalogue order.
func inpaintJob() manifest.Job {
	return manifest.Job{
		ID: "patch", Service: "edit/inpaint", Samples: 1,
		Prompts: []manifest.Prompt{{Text: "a red door", Weight: 1}},
		Params:  []manifest.Param{{Name: "grow_mask", Value: "8"}, {Name: "output_format", Value: "webp"}},
		Inputs: []manifest.Input{
			{Field: "image", Path: "in/house.png"},
			{Field: "mask", From: "hero", Index: 2},
		},
	}
}

func TestRequestForInputs(t *testing.T) {
	source := func(in manifest.Input) (string, error) {
		return fmt.Sprintf("/out/images/%s-%d.png", in.From, in.Index), nil
	}
	tests := []struct {
		name string
		job  manifest.Job
		want []stability.Field
	}{
		// inpaint's order: image, prompt, negative_prompt, mask, grow_mask, seed, output_format
		{"inpaint", inpaintJob(), []stability.Field{
			{Name: "image", Value: "in/house.png"}, {Name: "prompt", Value: "a red door"},
			{Name: "mask", Value: "/out/images/hero-2.png"}, {Name: "grow_mask", Value: "8"}, {Name: "output_format", Value: "webp"}}},
		// style-transfer's order: init_image, style_image, prompt, …
		{"inputs given out of order", manifest.Job{ID: "st", Service: "control/style-transfer",
			Inputs: []manifest.Input{{Field: "style_image", From: "b", Index: 1}, {Field: "init_image", From: "a", Index: 1}}},
			[]stability.Field{{Name: "init_image", Value: "/out/images/a-1.png"}, {Name: "style_image", Value: "/out/images/b-1.png"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RequestFor(tt.job, source)
			if err != nil {
				t.Fatalf("RequestFor = %v", err)
			}
			if !reflect.DeepEqual(got.Fields, tt.want) {
				t.Errorf("RequestFor fields =\n%v\nwant\n%v", got.Fields, tt.want)
			}
		})
	}

	with := func(f func(j *manifest.Job)) manifest.Job {
		j := inpaintJob()
		j.Inputs = slices.Clone(j.Inputs)
		f(&j)
		return j
	}
	errs := []struct {
		name   string
		job    manifest.Job
		source func(manifest.Input) (string, error)
		want   string
	}{
		{"no source for a from input", inpaintJob(), nil, "the image of job hero is not known yet"},
		{"source fails", inpaintJob(), func(manifest.Input) (string, error) { return "", errors.New("no image 2") }, "image input mask: no image 2"},
		{"not an image field", with(func(j *manifest.Job) { j.Inputs[1].Field = "grow_mask" }), source, `takes no image input "grow_mask"`},
		{"field of another service", with(func(j *manifest.Job) { j.Inputs[1].Field = "style_image" }), source, `takes no image input "style_image"`},
		{"given twice", with(func(j *manifest.Job) { j.Inputs[1].Field = "image" }), source, "image input image is given twice"},
		{"image in Params", with(func(j *manifest.Job) { j.Params = []manifest.Param{{Name: "mask", Value: "m.png"}} }), source, `field "mask" does not belong in Params`},
		{"no file", with(func(j *manifest.Job) { j.Inputs[0].Path = "" }), source, "image input image: no file"},
		{"v1 job", manifest.Job{Engine: "e", Inputs: []manifest.Input{{Field: "image", Path: "a.png"}}}, source, "a v1 job takes no image inputs"},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RequestFor(tt.job, tt.source)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("RequestFor error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestKeyInputs checks that an image input is keyed by its content: the
// same bytes under another path keep the key, other bytes change it.
func TestKeyInputs(t *testing.T) {
	sum := func(s string) string {
		h := sha256.Sum256([]byte(s))
		return hex.EncodeToString(h[:])
	}
	req := func(image, mask string) stability.Request {
		return stability.Request{Service: "edit/inpaint", Fields: []stability.Field{
			{Name: "image", Value: image}, {Name: "prompt", Value: "a red door"}, {Name: "mask", Value: mask}}}
	}
	key := func(r stability.Request, sums map[string]string) string {
		t.Helper()
		k, err := Key(r, sums)
		if err != nil {
			t.Fatalf("Key = %v", err)
		}
		return k
	}
	base := key(req("a.png", "m.png"), map[string]string{"image": sum("A"), "mask": sum("M")})
	if got := key(req("elsewhere/b.png", "/tmp/m2.png"), map[string]string{"image": sum("A"), "mask": sum("M")}); got != base {
		t.Errorf("key changed with the paths alone")
	}
	if got := key(req("a.png", "m.png"), map[string]string{"image": sum("A"), "mask": sum("M2")}); got == base {
		t.Errorf("key unchanged when the mask's content changed")
	}
	if got := key(req("a.png", "m.png"), map[string]string{"image": sum("M"), "mask": sum("A")}); got == base {
		t.Errorf("key unchanged when the two inputs swapped contents")
	}
	for name, sums := range map[string]map[string]string{
		"missing":  {"image": sum("A")},
		"not hex":  {"image": sum("A"), "mask": strings.ToUpper(sum("M"))},
		"too long": {"image": sum("A"), "mask": sum("M") + "00"},
	} {
		if _, err := Key(req("a.png", "m.png"), sums); err == nil || !strings.Contains(err.Error(), "image input mask") {
			t.Errorf("Key with the mask's sum %s = %v, want an error naming the mask", name, err)
		}
	}
}
