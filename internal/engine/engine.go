// Package engine describes the Stability v1 text-to-image engines: their ids,
// the image sizes each accepts, the step counts each allows and when each was
// retired.
//
// The rules come from the v1 OpenAPI specs: Stability-AI/rest-api-support
// spec/v1.yaml @ 99d5cfa (2023-03), the production openapi.json vendored in
// 64bit/stabilityai openapi.json @ 55341bd (2023-08; per-engine sizes, SDXL
// 0.9 and 1.0) and the API reference's spec in nod-ai/StabilityAI-client-typescript
// openapi.json @ e65723a (2025-02; steps 10–50, SD 1.6's 320–1536 rule). The
// retirement dates and their sources are with each engine below and in
// docs/pricing.md. Both the manifest validator and the sandbox server use this
// one table, so what the tool refuses locally is exactly what the sandbox
// refuses on the wire.
package engine

import (
	"fmt"
	"slices"
)

// SizeRule names the family of dimension rules an engine enforces.
type SizeRule int

const (
	// Pixels512 is the rule of the 512-class SD 1.x/2.x engines: each side a
	// multiple of 64 and at least 128, and 262,144 ≤ width×height ≤ 1,048,576.
	Pixels512 SizeRule = iota + 1
	// Pixels768 is the rule of the 768-class SD 2.x engines: as Pixels512 but
	// 589,824 ≤ width×height ≤ 1,048,576.
	Pixels768
	// SDXLBeta is the rule of stable-diffusion-xl-beta-v2-2-2: each side a
	// multiple of 64, at least 128 and at most 896, and only one side above 512.
	SDXLBeta
	// SDXLList is the rule of SDXL 0.9 and 1.0: exactly one of nine sizes.
	SDXLList
	// Range320 is the rule of stable-diffusion-v1-6: each side a multiple of
	// 64 between 320 and 1536.
	Range320
)

// Engine is one text-to-image engine the v1 API serves (or served).
type Engine struct {
	ID          string   // the API's engine id, e.g. "stable-diffusion-xl-1024-v1-0"
	Name        string   // the name engines/list reports
	Size        SizeRule // which dimensions the engine accepts
	MinSteps    int      // smallest accepted steps value
	MaxSteps    int      // largest accepted steps value
	DefaultSize [2]int   // width, height the manifest uses when none is given
	// DefaultSteps is the steps value the manifest uses when none is given:
	// 50 for seed-era engines (the 2023 spec's and DreamStudio's default),
	// 30 for SDXL 1.0 and SD 1.6 (the 2025 spec's default).
	DefaultSteps int
	// Retired is the day the API stopped serving the engine, as YYYY-MM-DD;
	// "" while it is still served. Where no announcement dates it, it is the
	// first day a public source documents the engine as gone, an upper bound.
	Retired string
}

// SDXLSizes are the nine width×height pairs SDXL 0.9 and 1.0 accept.
var sdxlSizes = [][2]int{
	{1024, 1024}, {1152, 896}, {896, 1152}, {1216, 832}, {832, 1216},
	{1344, 768}, {768, 1344}, {1536, 640}, {640, 1536},
}

// SDXLSizes returns the nine width×height pairs SDXL 0.9 and 1.0 accept.
func SDXLSizes() [][2]int { return slices.Clone(sdxlSizes) }

// catalogue lists every engine, sorted by id. Seed-era engines accept 10–150
// steps (the v1 spec of 2023 and the seed's price table); SDXL 1.0 and SD 1.6
// accept 10–50 (the 2025 spec).
//
// Retirement dates, with their public sources:
//   - 2023-11-15, SD 1.5: the announced sunset ("will be sunsetted by Nov 15",
//     cou929/stability-sdk-ruby#23, 2023-11-07); the API answered 404
//     not_found for it on 2023-12-07 (Stability-AI/stability-sdk#267).
//   - 2024-03-15, SD 1.4 (stable-diffusion-v1): an upper bound, the first
//     report of 404 not_found ("that engine is no longer available",
//     vpzomtrrfrt/stability-client#29).
//   - 2024-10-11, SDXL beta v2.2.2: the date of the platform's release notes
//     as quoted in jezs00/pycasso#70; 404 not_found there on 2024-11-17.
//   - 2025-02-18, SD 2.0/2.1 (512 and 768) and SDXL 0.9: an upper bound, the
//     first spec found that documents the v1 text-to-image engines as SDXL
//     1.0 and SD 1.6 only (maiskyi/fabled-api
//     src/_services/stabilityai/__generated__/Sdxl10Sd16.ts @ f3001d0; the
//     same in nod-ai/StabilityAI-client-typescript openapi.json @ e65723a,
//     2025-02-26).
//   - 2025-07-24, SD 1.6: discontinued, as announced in "API Price Update"
//     (stability.ai/api-pricing-update-25, 2025-07-09).
var catalogue = []Engine{
	{ID: "stable-diffusion-512-v2-0", Name: "Stable Diffusion v2.0", Size: Pixels512, MinSteps: 10, MaxSteps: 150, DefaultSize: [2]int{512, 512}, DefaultSteps: 50, Retired: "2025-02-18"},
	{ID: "stable-diffusion-512-v2-1", Name: "Stable Diffusion v2.1", Size: Pixels512, MinSteps: 10, MaxSteps: 150, DefaultSize: [2]int{512, 512}, DefaultSteps: 50, Retired: "2025-02-18"},
	{ID: "stable-diffusion-768-v2-0", Name: "Stable Diffusion v2.0-768", Size: Pixels768, MinSteps: 10, MaxSteps: 150, DefaultSize: [2]int{768, 768}, DefaultSteps: 50, Retired: "2025-02-18"},
	{ID: "stable-diffusion-768-v2-1", Name: "Stable Diffusion v2.1-768", Size: Pixels768, MinSteps: 10, MaxSteps: 150, DefaultSize: [2]int{768, 768}, DefaultSteps: 50, Retired: "2025-02-18"},
	{ID: "stable-diffusion-v1", Name: "Stable Diffusion v1.4", Size: Pixels512, MinSteps: 10, MaxSteps: 150, DefaultSize: [2]int{512, 512}, DefaultSteps: 50, Retired: "2024-03-15"},
	{ID: "stable-diffusion-v1-5", Name: "Stable Diffusion v1.5", Size: Pixels512, MinSteps: 10, MaxSteps: 150, DefaultSize: [2]int{512, 512}, DefaultSteps: 50, Retired: "2023-11-15"},
	{ID: "stable-diffusion-v1-6", Name: "Stable Diffusion v1.6", Size: Range320, MinSteps: 10, MaxSteps: 50, DefaultSize: [2]int{512, 512}, DefaultSteps: 30, Retired: "2025-07-24"},
	{ID: "stable-diffusion-xl-1024-v0-9", Name: "Stable Diffusion XL v0.9", Size: SDXLList, MinSteps: 10, MaxSteps: 150, DefaultSize: [2]int{1024, 1024}, DefaultSteps: 50, Retired: "2025-02-18"},
	{ID: "stable-diffusion-xl-1024-v1-0", Name: "Stable Diffusion XL v1.0", Size: SDXLList, MinSteps: 10, MaxSteps: 50, DefaultSize: [2]int{1024, 1024}, DefaultSteps: 30},
	{ID: "stable-diffusion-xl-beta-v2-2-2", Name: "Stable Diffusion v2.2.2-XL Beta", Size: SDXLBeta, MinSteps: 10, MaxSteps: 150, DefaultSize: [2]int{512, 512}, DefaultSteps: 50, Retired: "2024-10-11"},
}

// All returns every known engine, sorted by id.
func All() []Engine { return slices.Clone(catalogue) }

// IDs returns the ids of every known engine, sorted.
func IDs() []string {
	ids := make([]string, len(catalogue))
	for i, e := range catalogue {
		ids[i] = e.ID
	}
	return ids
}

// Lookup returns the engine with the given id, and false if there is none.
func Lookup(id string) (Engine, bool) {
	i, ok := slices.BinarySearchFunc(catalogue, id, func(e Engine, id string) int {
		switch {
		case e.ID < id:
			return -1
		case e.ID > id:
			return 1
		}
		return 0
	})
	if !ok {
		return Engine{}, false
	}
	return catalogue[i], true
}

// SizeError reports dimensions an engine rejects. Name is the error name the
// v1 API answers with (invalid_height_or_width, invalid_pixel_count,
// invalid_sdxl_v222_dimensions or invalid_sdxl_v1_dimensions).
type SizeError struct {
	Name    string
	Message string
}

func (e *SizeError) Error() string { return e.Message }

// CheckSize reports whether the engine accepts an image of width×height
// pixels. It returns nil when it does and a *SizeError when it does not.
func (e Engine) CheckSize(width, height int) error {
	switch e.Size {
	case SDXLList:
		if slices.Contains(sdxlSizes, [2]int{width, height}) {
			return nil
		}
		return &SizeError{"invalid_sdxl_v1_dimensions", fmt.Sprintf("%s does not accept %dx%d: allowed sizes are 1024x1024, 1152x896, 896x1152, 1216x832, 832x1216, 1344x768, 768x1344, 1536x640, 640x1536", e.ID, width, height)}
	case Range320:
		if width%64 != 0 || height%64 != 0 || width < 320 || height < 320 || width > 1536 || height > 1536 {
			return &SizeError{"invalid_height_or_width", fmt.Sprintf("%s does not accept %dx%d: each side must be a multiple of 64 from 320 to 1536", e.ID, width, height)}
		}
		return nil
	case SDXLBeta:
		if width%64 != 0 || height%64 != 0 || width < 128 || height < 128 || width > 896 || height > 896 || (width > 512 && height > 512) {
			return &SizeError{"invalid_sdxl_v222_dimensions", fmt.Sprintf("%s does not accept %dx%d: each side must be a multiple of 64 from 128, and only one side may exceed 512 (at most 896)", e.ID, width, height)}
		}
		return nil
	}
	if width%64 != 0 || height%64 != 0 || width < 128 || height < 128 {
		return &SizeError{"invalid_height_or_width", fmt.Sprintf("%s does not accept %dx%d: each side must be a multiple of 64 and at least 128", e.ID, width, height)}
	}
	minPx := 262144
	if e.Size == Pixels768 {
		minPx = 589824
	}
	if px := width * height; px < minPx || px > 1048576 {
		return &SizeError{"invalid_pixel_count", fmt.Sprintf("%s does not accept %dx%d (%d pixels): width×height must be from %d to 1048576", e.ID, width, height, px, minPx)}
	}
	return nil
}

// CheckSteps reports whether the engine accepts the given number of
// diffusion steps; it returns nil when it does.
func (e Engine) CheckSteps(steps int) error {
	if steps < e.MinSteps || steps > e.MaxSteps {
		return fmt.Errorf("%s accepts steps from %d to %d, not %d", e.ID, e.MinSteps, e.MaxSteps, steps)
	}
	return nil
}

// Enumerations of the v1 text-to-image body, the same for every engine
// (rest-api-support spec/v1.yaml; style_preset from the 2023-08 openapi.json).
var (
	samplers = []string{"DDIM", "DDPM", "K_DPMPP_2M", "K_DPMPP_2S_ANCESTRAL", "K_DPM_2",
		"K_DPM_2_ANCESTRAL", "K_EULER", "K_EULER_ANCESTRAL", "K_HEUN", "K_LMS"}
	stylePresets = []string{"3d-model", "analog-film", "anime", "cinematic", "comic-book",
		"digital-art", "enhance", "fantasy-art", "isometric", "line-art", "low-poly",
		"modeling-compound", "neon-punk", "origami", "photographic", "pixel-art", "tile-texture"}
	clipGuidancePresets = []string{"FAST_BLUE", "FAST_GREEN", "NONE", "SIMPLE", "SLOW", "SLOWER", "SLOWEST"}
)

// Samplers returns the values the API accepts for sampler, sorted.
func Samplers() []string { return slices.Clone(samplers) }

// StylePresets returns the values the API accepts for style_preset, sorted.
func StylePresets() []string { return slices.Clone(stylePresets) }

// ClipGuidancePresets returns the values the API accepts for
// clip_guidance_preset, sorted.
func ClipGuidancePresets() []string { return slices.Clone(clipGuidancePresets) }
