package manifest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/batch-tool/batch/internal/golden"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

// TestExamples loads every examples/*.yaml, so the examples never rot.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{ // jobs each example expands to
		"quickstart.yaml":      6,
		"sdxl-quickstart.yaml": 7,
		"product-shots.yaml":   30,
		"style-matrix.yaml":    40,
		"seed-sweep.yaml":      1200,
		"legacy-2022.yaml":     36,
		"pipeline.yaml":        5,
	}
	if len(files) < len(want) {
		t.Fatalf("found %d examples, want at least %d", len(files), len(want))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(data, []byte("# yaml-language-server: $schema=../internal/manifest/schema.json\n")) {
				t.Errorf("%s does not start with the yaml-language-server schema comment", file)
			}
			m, err := Load(t.Context(), file)
			if err != nil {
				t.Fatalf("Load(%s):\n%v", file, err)
			}
			if n, ok := want[filepath.Base(file)]; ok && m.Len() != n {
				t.Errorf("Load(%s) = %d jobs, want %d", file, m.Len(), n)
			}
		})
	}
}

// TestSchemaFile keeps schema.json, which editors read, equal to Schema(),
// which is built from the engine tables and the catalogue: a catalogue
// change that the file misses fails here (rerun with -update).
func TestSchemaFile(t *testing.T) {
	golden.Check(t, "schema.json", Schema(), *update)
}

// compileSchema compiles Schema() with the jsonschema validator.
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema()))
	if err != nil {
		t.Fatalf("schema.json is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("schema.json")
	if err != nil {
		t.Fatalf("compile schema.json: %v", err)
	}
	return s
}

// yamlToJSON decodes YAML into the JSON data model the validator reads.
func yamlToJSON(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestSchemaAcceptsExamples(t *testing.T) {
	s := compileSchema(t)
	files, _ := filepath.Glob("../../examples/*.yaml")
	goods, _ := filepath.Glob("testdata/good/*.yaml")
	for _, file := range append(files, goods...) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(yamlToJSON(t, data)); err != nil {
			t.Errorf("schema rejects %s: %v", file, err)
		}
	}
}

// TestSchemaRejects checks that the schema refuses manifests the loader
// refuses, for the rules a schema can express.
func TestSchemaRejects(t *testing.T) {
	s := compileSchema(t)
	const ok = "version: 1\nengine: stable-diffusion-xl-1024-v1-0\njobs:\n  - prompt: a fox\n"
	const si = "version: 1\nservice: generate/core\njobs:\n  - prompt: a fox\n"
	const sd3 = "version: 1\nservice: generate/sd3\njobs:\n  - prompt: a fox\n"
	for _, src := range []string{ok, si, sd3} {
		if err := s.Validate(yamlToJSON(t, []byte(src))); err != nil {
			t.Fatalf("schema rejects the minimal manifest:\n%s\n%v", src, err)
		}
	}
	tests := []struct{ name, src string }{
		{"version 2", strings.Replace(ok, "version: 1", "version: 2", 1)},
		{"no version", strings.Replace(ok, "version: 1\n", "", 1)},
		{"unknown top key", ok + "steps: 30\n"},
		{"unknown job key", ok + "    promt: x\n"},
		{"unknown engine", strings.Replace(ok, "v1-0", "v9", 1)},
		{"no jobs", "version: 1\njobs: []\n"},
		{"cfg_scale above 35", ok + "    cfg_scale: 36\n"},
		{"samples 11", ok + "    samples: 11\n"},
		{"negative seed", ok + "    seed: -1\n"},
		{"seed above uint32", ok + "    seed: 4294967296\n"},
		{"steps 5", ok + "    steps: 5\n"},
		{"width not a multiple of 64", ok + "    width: 1000\n"},
		{"width as text", ok + "    width: \"1024\"\n"},
		{"unknown sampler", ok + "    sampler: K_EULER_A\n"},
		{"unknown style", ok + "    style_preset: photo\n"},
		{"unknown clip preset", ok + "    clip_guidance_preset: FAST\n"},
		{"blank prompt", strings.Replace(ok, "a fox", "\"  \"", 1)},
		{"long prompt", strings.Replace(ok, "a fox", strings.Repeat("x", 2001), 1)},
		{"prompt and prompts", ok + "    prompts: [{text: a cat}]\n"},
		{"prompts without text", strings.Replace(ok, "prompt: a fox", "prompts: [{weight: 1}]", 1)},
		{"unsafe id", ok + "    id: ../up\n"},
		{"empty matrix list", ok + "    matrix: {c: []}\n"},
		{"matrix prompts", ok + "    matrix: {prompts: [[a]]}\n"},
		{"matrix bad seed", ok + "    matrix: {seed: [1, -2]}\n"},
		{"defaults id", ok + "defaults: {id: x}\n"},
		{"budget negative", ok + "budget: -1\n"},
		{"concurrency 0", ok + "concurrency: 0\n"},
		{"rate without duration", ok + "rate: 150/10\n"},
		{"rate zero", ok + "rate: 0/10s\n"},
		{"engine and service at the top", ok + "service: generate/core\n"},
		{"engine and service in a job", ok + "    service: generate/core\n    engine: " + sdxl + "\n"},
		{"engine and service in defaults", ok + "defaults: {engine: " + sdxl + ", service: generate/core}\n"},
		{"aspect_ratio on a v1 job", ok + "    aspect_ratio: \"16:9\"\n"},
		{"model on a v1 job", ok + "    model: sd3.5-large\n"},
		{"unknown service", si + "    service: generate/coer\n"},
		{"prompt on erase", si + "    service: edit/erase\n    image: a.png\n"},
		{"image on core", si + "    image: a.png\n"},
		{"strength on core", si + "    strength: 0.5\n"},
		{"mode", si + "    mode: text-to-image\n"},
		{"mode on sd3", sd3 + "    mode: image-to-image\n"},
		{"image as a number", sd3 + "    image: 5\n    strength: 0.5\n"},
		{"image as an empty string", sd3 + "    image: \"\"\n    strength: 0.5\n"},
		{"image as a list", sd3 + "    image: [a.png]\n    strength: 0.5\n"},
		{"from misspelt", sd3 + "    image: {form: x}\n    strength: 0.5\n"},
		{"from with an unknown key", sd3 + "    image: {from: x, page: 2}\n    strength: 0.5\n"},
		{"from index 0", sd3 + "    image: {from: x, index: 0}\n    strength: 0.5\n"},
		{"from index 11", sd3 + "    image: {from: x, index: 11}\n    strength: 0.5\n"},
		{"from index as text", sd3 + "    image: {from: x, index: two}\n    strength: 0.5\n"},
		{"from a list", sd3 + "    image: {from: [x]}\n    strength: 0.5\n"},
		{"from index 0 in a matrix", sd3 + "    strength: 0.5\n    matrix: {image: [{from: x, index: 0}]}\n"},
		{"mask on fast", "version: 1\nservice: upscale/fast\njobs:\n  - image: {from: x}\n    mask: {from: x}\n  - id: x\n    service: generate/core\n    prompt: a fox\n"},
		{"steps on a service", si + "    steps: 30\n"},
		{"width on a service", si + "    width: 1024\n"},
		{"samples on a service", si + "    samples: 2\n"},
		{"sampler on a service", si + "    sampler: K_EULER\n"},
		{"prompts on a service", strings.Replace(si, "prompt: a fox", "prompts: [{text: a fox}]", 1)},
		{"cfg_scale on core", si + "    cfg_scale: 5\n"},
		{"model on core", si + "    model: sd3.5-flash\n"},
		{"cfg_scale on sd3 above 10", sd3 + "    cfg_scale: 11\n"},
		{"cfg_scale on sd3 below 1", sd3 + "    cfg_scale: 0.5\n"},
		{"unknown model", sd3 + "    model: sd3.5-small\n"},
		{"seed above the v2beta range", si + "    seed: 4294967295\n"},
		{"unknown aspect_ratio", si + "    aspect_ratio: \"4:3\"\n"},
		{"unknown output_format", si + "    output_format: jpg\n"},
		{"unknown style on a service", si + "    style_preset: photo\n"},
		{"long prompt on a service", strings.Replace(si, "a fox", strings.Repeat("x", 10001), 1)},
		{"steps in a service matrix", si + "    matrix: {steps: [10, 20]}\n"},
		{"cfg_scale in a core matrix", si + "    matrix: {cfg_scale: [5]}\n"},
		{"out-of-range cfg_scale in an sd3 matrix", sd3 + "    matrix: {cfg_scale: [5, 12]}\n"},
		{"model in a job's own core service", "version: 1\njobs:\n  - prompt: a fox\n    service: generate/core\n    model: sd3.5-large\n"},
		{"range with step 0", ok + "    matrix: {seed: {from: 1, to: 9, step: 0}}\n"},
		{"range with a decimal end", ok + "    matrix: {seed: {from: 1.5, to: 9}}\n"},
		{"range without to", ok + "    matrix: {seed: {from: 1}}\n"},
		{"range with an unknown key", ok + "    matrix: {seed: {from: 1, to: 9, stpe: 2}}\n"},
		{"range past the seed's range", ok + "    matrix: {seed: {from: 1, to: 4294967296}}\n"},
		{"range of a text setting", ok + "    matrix: {style_preset: {from: anime, to: photographic}}\n"},
		{"range of a decimal setting", ok + "    matrix: {cfg_scale: {from: 1, to: 9}}\n"},
		{"range of a placeholder", strings.Replace(ok, "a fox", "a fox {n}", 1) + "    matrix: {n: {from: 1, to: 9}}\n"},
		{"range past a service's seed", si + "    matrix: {seed: {from: 1, to: 4294967295}}\n"},
		{"cfg_scale on a core job from defaults' service", "version: 1\ndefaults: {service: generate/core}\njobs:\n  - prompt: a fox\n    cfg_scale: 5\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Validate(yamlToJSON(t, []byte(tt.src))); err == nil {
				t.Errorf("schema accepts:\n%s", tt.src)
			}
			if _, err := Parse("t.yaml", []byte(tt.src)); err == nil {
				t.Errorf("Parse accepts:\n%s", tt.src)
			}
		})
	}
}

// TestSchemaAccepts checks that the schema takes manifests the loader
// takes where its rules could be too strict: a job's own service over the
// top level's, defaults for both kinds of job, placeholders named like
// Stable Image fields on v1 jobs.
func TestSchemaAccepts(t *testing.T) {
	s := compileSchema(t)
	tests := []struct{ name, src string }{
		{"own service over the top level's", "version: 1\nservice: generate/core\njobs:\n  - prompt: a fox\n    service: generate/sd3\n    cfg_scale: 5\n    model: sd3.5-flash\n"},
		{"own service over defaults'", "version: 1\ndefaults: {service: generate/ultra}\njobs:\n  - prompt: a fox\n    service: generate/sd3\n    model: sd3.5-medium\n"},
		{"service matrix with cfg_scale", "version: 1\ndefaults: {cfg_scale: 5}\njobs:\n  - prompt: a fox\n    matrix: {service: [generate/core, generate/sd3]}\n"},
		{"mixed defaults", "version: 1\ndefaults: {steps: 30, aspect_ratio: \"16:9\"}\njobs:\n  - prompt: a fox\n    engine: " + sdxl + "\n  - prompt: a fox\n    service: generate/core\n"},
		{"own service over the top level's engine", "version: 1\nengine: " + sdxl + "\njobs:\n  - prompt: a fox\n    service: generate/sd3\n    model: sd3.5-flash\n  - prompt: a cat\n"},
		{"own engine over defaults' service", "version: 1\ndefaults: {service: generate/core}\njobs:\n  - prompt: a fox\n    engine: " + sdxl + "\n    steps: 30\n"},
		{"v1 placeholders named like fields", "version: 1\nengine: " + sdxl + "\njobs:\n  - prompt: a {model} {service} {image}\n    matrix: {model: [tesla], service: [taxi], image: [sign]}\n"},
		{"seed 4294967295 on v1", "version: 1\nengine: " + sdxl + "\njobs:\n  - prompt: a fox\n    seed: 4294967295\n"},
		{"long v2beta prompt", "version: 1\nservice: generate/core\njobs:\n  - prompt: " + strings.Repeat("x", 10000) + "\n"},
		{"a pipeline", "version: 1\nservice: upscale/fast\njobs:\n  - id: gen\n    service: generate/sd3\n    prompt: a fox\n    matrix: {seed: [1, 2]}\n" +
			"  - image: {from: gen-1}\n  - image: {from: gen-2, index: 1}\n    output_format: webp\n  - id: sweep\n    matrix: {image: [{from: gen-1}, {from: gen-2}]}\n"},
		{"image-to-image", "version: 1\nservice: generate/sd3\njobs:\n  - id: gen\n    prompt: a fox\n  - id: again\n    prompt: a fox\n    image: {from: gen}\n    strength: 0.5\n"},
		{"seed range", "version: 1\nengine: " + sdxl + "\njobs:\n  - prompt: a fox\n    matrix: {seed: {from: 1, to: 600}}\n"},
		{"steps range with a step beside a list", "version: 1\nengine: " + sdxl + "\njobs:\n  - prompt: a fox\n    matrix: {steps: {from: 10, to: 50, step: 20}, style_preset: [anime]}\n"},
		{"seed range on a service", "version: 1\nservice: generate/core\njobs:\n  - prompt: a fox\n    matrix: {seed: {from: 0, to: 4294967294, step: 4294967294}}\n"},
		{"ids that are numbers", "version: 1\nservice: generate/core\njobs:\n  - id: \"2024\"\n    prompt: a fox\n  - service: edit/remove-background\n    image: {from: 2024}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse("t.yaml", []byte(tt.src)); err != nil {
				t.Fatalf("Parse rejects:\n%s\n%v", tt.src, err)
			}
			if err := s.Validate(yamlToJSON(t, []byte(tt.src))); err != nil {
				t.Errorf("schema rejects:\n%s\n%v", tt.src, err)
			}
		})
	}
}

func TestGoodFiles(t *testing.T) {
	for _, tt := range []struct {
		file string
		jobs int
	}{
		{"testdata/good/product.yaml", 9},
		{"testdata/good/everything.yaml", 34},
		{"testdata/good/stable-image.yaml", 20},
		{"testdata/good/mixed.yaml", 5},
		{"testdata/good/pipeline.yaml", 20},
		{"testdata/good/ranges.yaml", 609},
	} {
		m, err := Load(t.Context(), tt.file)
		if err != nil {
			t.Errorf("Load(%s):\n%v", tt.file, err)
			continue
		}
		if m.Len() != tt.jobs {
			t.Errorf("Load(%s) = %d jobs, want %d", tt.file, m.Len(), tt.jobs)
		}
	}
}
