package runner

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/catalog"
	"github.com/batch-tool/batch/internal/manifest"
)

// Parameters returns the generation parameters of an image in the
// AUTOMATIC1111 style that image tools read from the PNG "parameters"
// text: the prompt, a "Negative prompt:" line when there is one, then the
// settings. seed is the seed the API used.
//
// A v1 job's settings read "Steps: 30, Sampler: K_DPMPP_2M, CFG scale: 7,
// Seed: 123, Size: 1024x1024, Model: <engine>" and the optional presets;
// prompts with a weight other than ±1 are written as (text:weight). A
// Stable Image job's read "CFG scale: 5" when it sets cfg_scale, then
// "Seed: 1, Size: 1344x768, Model: generate/sd3 sd3.5-flash" (no Size when
// it depends on an input image), then every other field it sets in
// catalogue order, e.g. "Aspect ratio: 16:9, Style preset: cinematic";
// image inputs and output_format are left out (the file is the format).
func Parameters(j manifest.Job, seed uint32) string {
	var pos, neg []string
	for _, p := range j.Prompts {
		w := p.Weight
		list := &pos
		if w < 0 {
			list, w = &neg, -w
		}
		if w == 1 || w == 0 && list == &pos {
			*list = append(*list, p.Text)
		} else {
			*list = append(*list, "("+p.Text+":"+strconv.FormatFloat(w, 'g', -1, 64)+")")
		}
	}
	var b strings.Builder
	b.WriteString(strings.Join(pos, ", "))
	b.WriteByte('\n')
	if len(neg) > 0 {
		b.WriteString("Negative prompt: " + strings.Join(neg, ", ") + "\n")
	}
	var fields []string
	if j.Service == "" {
		fields = v1Settings(j, seed)
	} else {
		fields = stableImageSettings(j, seed)
	}
	b.WriteString(strings.Join(fields, ", "))
	return b.String()
}

func v1Settings(j manifest.Job, seed uint32) []string {
	fields := []string{"Steps: " + strconv.Itoa(j.Steps)}
	if j.Sampler != "" {
		fields = append(fields, "Sampler: "+j.Sampler)
	}
	cfg := 7.0 // the API's default
	if j.CfgScale != nil {
		cfg = *j.CfgScale
	}
	fields = append(fields,
		"CFG scale: "+strconv.FormatFloat(cfg, 'g', -1, 64),
		"Seed: "+strconv.FormatUint(uint64(seed), 10),
		fmt.Sprintf("Size: %dx%d", j.Width, j.Height),
		"Model: "+j.Engine)
	if j.StylePreset != "" {
		fields = append(fields, "Style preset: "+j.StylePreset)
	}
	if j.ClipGuidancePreset != "" {
		fields = append(fields, "CLIP guidance: "+j.ClipGuidancePreset)
	}
	return fields
}

func stableImageSettings(j manifest.Job, seed uint32) []string {
	var fields []string
	if v, ok := j.Param("cfg_scale"); ok {
		fields = append(fields, "CFG scale: "+settingValue(v))
	}
	fields = append(fields, "Seed: "+strconv.FormatUint(uint64(seed), 10))
	if j.Width > 0 && j.Height > 0 {
		fields = append(fields, fmt.Sprintf("Size: %dx%d", j.Width, j.Height))
	}
	model := j.Service
	if m, ok := j.Param("model"); ok {
		model += " " + m
	}
	fields = append(fields, "Model: "+settingValue(model))
	op, _ := catalog.Lookup(j.Service)
	for _, p := range j.Params {
		switch p.Name {
		case "cfg_scale", "seed", "model", "output_format":
			continue
		}
		if op != nil {
			if f, ok := op.Field(p.Name); ok && (f.Type == catalog.Image || f.Derived) {
				continue
			}
		}
		fields = append(fields, settingLabel(p.Name)+": "+settingValue(p.Value))
	}
	return fields
}

// settingLabel turns a field name into an AUTOMATIC1111-style label:
// "aspect_ratio" → "Aspect ratio".
func settingLabel(name string) string {
	s := strings.ReplaceAll(name, "_", " ")
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// settingValue quotes a value as JSON when it holds a comma or a line
// break, as AUTOMATIC1111 does, so readers split the line correctly (its
// parser takes an unquoted value up to the next comma, so "16:9" stays
// plain).
func settingValue(v string) string {
	if !strings.ContainsAny(v, ",\n\r") {
		return v
	}
	q, _ := json.Marshal(v) // a string always encodes
	return string(q)
}
