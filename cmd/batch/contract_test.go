package main

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/prismtest"
	"github.com/batch-tool/batch/internal/report"
	"github.com/batch-tool/batch/internal/sandbox"
)

// TestRunThroughPrism runs a manifest with our client through Prism's
// validating proxy (the v1 OpenAPI spec of 2025-02) in front of the sandbox:
// a request or response that violates the spec makes Prism answer with an
// error, which fails the job and the run. The jobs ask for several samples,
// so answers are JSON: Prism re-encodes binary bodies as text and would
// mangle image/png answers (internal/sandbox's contract test checks those
// answers' status and headers through Prism, and their bytes directly).
func TestRunThroughPrism(t *testing.T) {
	prism := prismtest.Executable(t)
	sheet, err := cost.LookupSheet("sdxl-2024")
	if err != nil {
		t.Fatal(err)
	}
	upstream := startSandboxServer(t, sandbox.Config{Pricer: sheet})
	base := prismtest.Start(t, prism, prismtest.V1Spec(), upstream)

	dir := t.TempDir()
	m := writeFile(t, dir, "contract.yaml", `version: 1
pricing: sdxl-2024
defaults:
  samples: 2
  negative_prompt: blurry
jobs:
  - id: sdxl
    engine: stable-diffusion-xl-1024-v1-0
    prompt: a lighthouse at dusk, {style}
    width: 1152
    height: 896
    steps: 30
    cfg_scale: 7
    sampler: K_DPMPP_2M
    style_preset: photographic
    clip_guidance_preset: NONE
    seed: 7
    matrix:
      style: [oil painting, pencil sketch]
  - id: sd16
    engine: stable-diffusion-v1-6
    prompts:
      - {text: a red bicycle, weight: 1}
      - {text: rain, weight: 0.4}
    width: 512
    height: 768
    steps: 40
    samples: 3
`)
	out := filepath.Join(dir, "out")
	r := batchCmd(t, map[string]string{"STABILITY_API_KEY": "sk-contract"}, "run", "--api-url", base, "--out", out, m)
	if r.code != exitOK {
		t.Fatalf("run through prism: exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	rep, err := report.ReadRun(out)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Totals.Succeeded != 3 || rep.BalanceBefore == nil {
		t.Fatalf("totals %+v, balance at start %v", rep.Totals, rep.BalanceBefore)
	}
	for _, j := range rep.Jobs {
		for _, im := range j.Images {
			f, err := os.Open(filepath.Join(out, filepath.FromSlash(im.Path)))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := png.DecodeConfig(f)
			f.Close()
			if err != nil || cfg.Width != j.Width || cfg.Height != j.Height {
				t.Errorf("%s: %dx%d, %v; want %dx%d", im.Path, cfg.Width, cfg.Height, err, j.Width, j.Height)
			}
		}
	}
}
