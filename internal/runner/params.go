package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/stability"
)

// RequestFor returns the text-to-image request body of a job.
func RequestFor(j manifest.Job) stability.TextToImageRequest {
	prompts := make([]stability.TextPrompt, len(j.Prompts))
	for i, p := range j.Prompts {
		prompts[i] = stability.TextPrompt{Text: p.Text, Weight: p.Weight}
	}
	return stability.TextToImageRequest{
		TextPrompts:        prompts,
		Width:              j.Width,
		Height:             j.Height,
		CfgScale:           j.CfgScale,
		ClipGuidancePreset: j.ClipGuidancePreset,
		Sampler:            j.Sampler,
		Samples:            j.Samples,
		Seed:               j.Seed,
		Steps:              j.Steps,
		StylePreset:        j.StylePreset,
	}
}

// Key identifies what a job asks for: the SHA-256 (hex) of the engine id
// and the JSON request body. The journal stores it, so a job whose
// settings changed since it was journaled runs again.
func Key(engine string, req stability.TextToImageRequest) (string, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return "", fmt.Errorf("encode request: %w", err)
	}
	h := sha256.New()
	h.Write([]byte(engine))
	h.Write([]byte{'\n'})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Parameters returns the generation parameters of an image in the
// AUTOMATIC1111 style that image tools read from the PNG "parameters"
// text: the prompt, a "Negative prompt:" line when there is one, then
// "Steps: 30, Sampler: K_DPMPP_2M, CFG scale: 7, Seed: 123, Size: 1024x1024,
// Model: <engine>" and the optional presets. Prompts with a weight other
// than ±1 are written as (text:weight). seed is the seed the API used.
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
	b.WriteString(strings.Join(fields, ", "))
	return b.String()
}
