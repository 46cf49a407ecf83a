package catalog

import (
	"cmp"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// specFile is the September 2026 OpenAPI snapshot of the Stability API (see
// internal/prismtest/SPEC.md for its source).
var specFile = filepath.Join("..", "prismtest", "stability-v2beta-openapi-2026-09.json")

// schema is the part of an OpenAPI schema object the test reads.
type schema struct {
	Ref        string             `json:"$ref"`
	AllOf      []schema           `json:"allOf"`
	Type       string             `json:"type"`
	Format     string             `json:"format"`
	Enum       []any              `json:"enum"`
	Default    any                `json:"default"`
	Minimum    *float64           `json:"minimum"`
	Maximum    *float64           `json:"maximum"`
	MinLength  *float64           `json:"minLength"`
	MaxLength  *float64           `json:"maxLength"`
	Properties map[string]*schema `json:"properties"`
	Required   []string           `json:"required"`
}

type spec struct {
	Paths map[string]map[string]struct {
		RequestBody struct {
			Content map[string]struct {
				Schema *schema `json:"schema"`
			} `json:"content"`
		} `json:"requestBody"`
	} `json:"paths"`
	Components struct {
		Schemas map[string]*schema `json:"schemas"`
	} `json:"components"`
}

// flatten resolves $ref and merges allOf into one schema.
func (sp *spec) flatten(t *testing.T, s *schema) schema {
	t.Helper()
	if s.Ref != "" {
		name := strings.TrimPrefix(s.Ref, "#/components/schemas/")
		target, ok := sp.Components.Schemas[name]
		if !ok {
			t.Fatalf("unresolved $ref %s", s.Ref)
		}
		return sp.flatten(t, target)
	}
	// A later allOf part overrides an earlier one, as the spec's authors
	// mean it: outpaint's creativity is a shared Creativity schema (0.2–0.5)
	// followed by its own range (0–1), and the API takes 0–1.
	out := schema{}
	for _, part := range s.AllOf {
		out = overlay(out, sp.flatten(t, &part))
	}
	own := *s
	own.AllOf = nil
	return overlay(out, own)
}

// overlay returns base with every field that top sets replaced by top's.
func overlay(base, top schema) schema {
	if top.Type != "" {
		base.Type = top.Type
	}
	if top.Format != "" {
		base.Format = top.Format
	}
	if top.Enum != nil {
		base.Enum = top.Enum
	}
	if top.Default != nil {
		base.Default = top.Default
	}
	base.Minimum = cmp.Or(top.Minimum, base.Minimum)
	base.Maximum = cmp.Or(top.Maximum, base.Maximum)
	base.MinLength = cmp.Or(top.MinLength, base.MinLength)
	base.MaxLength = cmp.Or(top.MaxLength, base.MaxLength)
	if top.Properties != nil {
		base.Properties = top.Properties
	}
	if top.Required != nil {
		base.Required = top.Required
	}
	return base
}

func loadSpec(t *testing.T) *spec {
	t.Helper()
	data, err := os.ReadFile(specFile)
	if err != nil {
		t.Fatal(err)
	}
	var sp spec
	if err := json.Unmarshal(data, &sp); err != nil {
		t.Fatalf("decode %s: %v", specFile, err)
	}
	return &sp
}

// TestCatalogueMatchesSpec holds every operation against the spec snapshot:
// the same fields, types, ranges, enums, defaults and required fields, with
// exactly the documented spec bugs as exceptions.
func TestCatalogueMatchesSpec(t *testing.T) {
	sp := loadSpec(t)
	var specServices []string
	for path, methods := range sp.Paths {
		if _, ok := methods["post"]; ok && strings.HasPrefix(path, "/v2beta/stable-image/") {
			specServices = append(specServices, strings.TrimPrefix(path, "/v2beta/stable-image/"))
		}
	}
	slices.Sort(specServices)
	if got := Services(); !slices.Equal(got, specServices) {
		t.Fatalf("Services() = %v\nthe spec has %v", got, specServices)
	}
	for _, op := range All() {
		t.Run(op.Service, func(t *testing.T) {
			body := sp.Paths[op.Path()]["post"].RequestBody.Content["multipart/form-data"].Schema
			if body == nil {
				t.Fatalf("%s: no multipart/form-data body in the spec", op.Path())
			}
			form := sp.flatten(t, body)
			bugs := map[string]bool{}
			for _, b := range op.SpecBugs {
				bugs[b] = true
			}
			var names []string
			for name := range form.Properties {
				names = append(names, name)
			}
			slices.Sort(names)
			var ours []string
			for _, f := range op.Fields {
				ours = append(ours, f.Name)
			}
			slices.Sort(ours)
			if !slices.Equal(ours, names) {
				t.Errorf("fields %v, spec has %v", ours, names)
			}
			for _, name := range form.Required {
				f, ok := op.Field(name)
				switch {
				case !ok && bugs[name]:
				case !ok:
					t.Errorf("spec requires %s, which the catalogue lacks", name)
				case !f.Required:
					t.Errorf("%s: spec requires it, catalogue does not", name)
				}
			}
			for _, f := range op.Fields {
				p, ok := form.Properties[f.Name]
				if !ok {
					continue
				}
				checkField(t, f, sp.flatten(t, p), slices.Contains(form.Required, f.Name), bugs[f.Name])
			}
		})
	}
}

func checkField(t *testing.T, f Field, p schema, required, bug bool) {
	t.Helper()
	if f.Required != required {
		t.Errorf("%s: Required = %v, spec says %v", f.Name, f.Required, required)
	}
	switch f.Type {
	case Image:
		if p.Type != "string" || p.Format != "binary" {
			t.Errorf("%s: an image in the catalogue, %s/%s in the spec", f.Name, p.Type, p.Format)
		}
		return
	case Enum:
		var enum []string
		for _, v := range p.Enum {
			s, _ := v.(string)
			enum = append(enum, s)
		}
		same := slices.Equal(slices.Sorted(slices.Values(f.Enum)), slices.Sorted(slices.Values(enum)))
		if !same && !bug {
			t.Errorf("%s: enum %v, spec has %v", f.Name, f.Enum, enum)
		}
		if bug && same {
			t.Errorf("%s: marked as a spec bug but matches the spec; drop the exception", f.Name)
		}
	case Text:
		if p.Type != "string" || p.Enum != nil {
			t.Errorf("%s: text in the catalogue, %s in the spec", f.Name, p.Type)
		}
		if p.MaxLength == nil || *p.MaxLength != f.Max {
			t.Errorf("%s: max length %v, spec has %v", f.Name, f.Max, deref(p.MaxLength))
		}
		if lo := deref(p.MinLength); lo != f.Min {
			t.Errorf("%s: min length %v, spec has %v", f.Name, f.Min, lo)
		}
	case Integer, Number:
		if p.Type != "number" && p.Type != "integer" {
			t.Errorf("%s: a number in the catalogue, %q in the spec", f.Name, p.Type)
		}
		if f.Type == Number && p.Type == "integer" {
			t.Errorf("%s: Number in the catalogue, integer in the spec", f.Name)
		}
		if p.Minimum == nil || p.Maximum == nil || *p.Minimum != f.Min || *p.Maximum != f.Max {
			t.Errorf("%s: range [%v, %v], spec has [%v, %v]", f.Name, f.Min, f.Max, deref(p.Minimum), deref(p.Maximum))
		}
	}
	if got, want := f.Default, defaultText(p.Default); got != want {
		t.Errorf("%s: default %q, spec has %q", f.Name, got, want)
	}
}

func deref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

func defaultText(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		b, _ := json.Marshal(v)
		return string(b)
	case bool:
		if v {
			return "true"
		}
		return "false"
	}
	return "?"
}

func TestLookup(t *testing.T) {
	for _, s := range Services() {
		op, ok := Lookup(s)
		if !ok || op.Service != s {
			t.Errorf("Lookup(%q) = %v, %v", s, op, ok)
		}
	}
	for _, s := range []string{"", "generate", "generate/core/", "a", "zzz"} {
		if op, ok := Lookup(s); ok {
			t.Errorf("Lookup(%q) = %v, want none", s, op.Service)
		}
	}
}

func TestAspectSize(t *testing.T) {
	tests := []struct {
		ratio string
		scale float64
		w, h  int
	}{
		{"1:1", 0, 1024, 1024},
		{"16:9", 1, 1344, 768},
		{"1:1", 1.5, 1536, 1536},
		{"9:21", 0, 640, 1536},
	}
	for _, tt := range tests {
		w, h, ok := AspectSize(tt.ratio, tt.scale)
		if !ok || w != tt.w || h != tt.h {
			t.Errorf("AspectSize(%q, %v) = %d, %d, %v; want %d, %d", tt.ratio, tt.scale, w, h, ok, tt.w, tt.h)
		}
	}
	if _, _, ok := AspectSize("4:3", 1); ok {
		t.Error("AspectSize(4:3) is known, want unknown")
	}
	for _, r := range AspectRatios() {
		if _, _, ok := AspectSize(r, 1); !ok {
			t.Errorf("no size for aspect ratio %s", r)
		}
	}
}

func TestRulesNameFields(t *testing.T) {
	for _, op := range All() {
		for _, r := range op.Rules {
			for _, name := range append([]string{r.If}, r.Fields...) {
				if name == "" && r.Kind == OneOf {
					continue
				}
				if _, ok := op.Field(name); !ok {
					t.Errorf("%s: rule %q names unknown field %q", op.Service, r.Why, name)
				}
			}
		}
	}
}

// TestLimitsMatchSpec checks every image input's limits against the
// validation rules its description in the spec states: each bound the
// catalogue checks is a number the description gives, and the aspect-ratio
// rule is there exactly when the description has one.
func TestLimitsMatchSpec(t *testing.T) {
	data, err := os.ReadFile(specFile)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Paths map[string]map[string]struct {
			RequestBody struct {
				Content map[string]struct {
					Schema struct {
						Properties map[string]json.RawMessage `json:"properties"`
					} `json:"schema"`
				} `json:"content"`
			} `json:"requestBody"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	for _, op := range All() {
		props := raw.Paths[op.Path()]["post"].RequestBody.Content["multipart/form-data"].Schema.Properties
		for _, f := range op.Fields {
			if f.Type != Image {
				continue
			}
			desc := strings.ReplaceAll(string(props[f.Name]), ",", "")
			if f.Limits == (Limits{}) {
				if strings.Contains(desc, "Validation Rules") {
					t.Errorf("%s %s: the spec states validation rules, the catalogue none", op.Service, f.Name)
				}
				continue
			}
			for _, n := range []int{f.Limits.MinSide, f.Limits.MaxSide, f.Limits.MinPixels, f.Limits.MaxPixels} {
				if n != 0 && !strings.Contains(desc, " "+strconv.Itoa(n)+" ") {
					t.Errorf("%s %s: limit %d is not in the spec's description", op.Service, f.Name, n)
				}
			}
			if got, want := f.Limits.MaxAspect == 2.5, strings.Contains(desc, "2.5:1"); got != want {
				t.Errorf("%s %s: aspect-ratio rule %v, spec %v", op.Service, f.Name, got, want)
			}
		}
	}
}

func TestLimitsCheck(t *testing.T) {
	l := Limits{MinSide: 64, MaxSide: 1536, MinPixels: 4096, MaxPixels: 1_048_576, MaxAspect: 2.5}
	tests := []struct {
		w, h int
		bad  string // a word the problem must contain; "" when it fits
	}{
		{1024, 1024, ""},
		{64, 64, ""},
		{63, 640, "at least 64"},
		{1537, 640, "at most 1536"},
		{1536, 1024, "at most 1048576"},
		{640, 200, "aspect ratio"},
		{500, 200, ""},
	}
	for _, tt := range tests {
		got := l.Check(tt.w, tt.h)
		if (got == "") != (tt.bad == "") || !strings.Contains(got, tt.bad) {
			t.Errorf("Check(%d, %d) = %q, want a problem containing %q", tt.w, tt.h, got, tt.bad)
		}
	}
}

// TestOutputSize checks the size rules against the sizes the live API
// returned on 2026-09-22 (see docs/api.md).
func TestOutputSize(t *testing.T) {
	tests := []struct {
		service string
		fields  map[string]string
		in      Size
		want    Size
		ok      bool
	}{
		{"generate/core", nil, Size{}, Size{1536, 1536}, true},
		{"generate/ultra", map[string]string{"aspect_ratio": "16:9"}, Size{}, Size{1344, 768}, true},
		{"generate/sd3", nil, Size{}, Size{1024, 1024}, true},
		{"generate/sd3", map[string]string{"image": "a.png"}, Size{1536, 1536}, Size{1024, 1024}, true},
		{"generate/ultra", map[string]string{"image": "a.png"}, Size{1920, 1080}, Size{1344, 768}, true},
		{"generate/ultra", map[string]string{"image": "a.png"}, Size{}, Size{}, false},
		{"control/style", map[string]string{"aspect_ratio": "16:9"}, Size{1536, 1536}, Size{1365, 768}, true},
		{"control/style-transfer", map[string]string{"init_image": "a.png"}, Size{1536, 1536}, Size{1024, 1024}, true},
		{"edit/erase", nil, Size{1536, 1536}, Size{1536, 1536}, true},
		{"edit/outpaint", map[string]string{"left": "256", "right": "256"}, Size{1536, 1536}, Size{2048, 1536}, true},
		{"upscale/fast", nil, Size{512, 512}, Size{2048, 2048}, true},
		{"upscale/conservative", nil, Size{512, 512}, Size{3112, 3112}, true},
		{"upscale/creative", nil, Size{512, 512}, Size{3152, 3152}, true},
		{"upscale/fast", nil, Size{}, Size{}, false},
	}
	for _, tt := range tests {
		op, ok := Lookup(tt.service)
		if !ok {
			t.Fatalf("no service %s", tt.service)
		}
		got, ok := op.OutputSize(func(f string) string { return tt.fields[f] }, tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s %v from %v: OutputSize = %v, %v; want %v, %v", tt.service, tt.fields, tt.in, got, ok, tt.want, tt.ok)
		}
	}
	for _, op := range All() {
		if op.TakesImages() && op.Input() == "" {
			t.Errorf("%s takes images but has no main input", op.Service)
		}
	}
}
