package main

import (
	"bytes"
	"image/png"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/prismtest"
	"github.com/batch-tool/batch/internal/report"
	"github.com/batch-tool/batch/internal/runner"
	"github.com/batch-tool/batch/internal/sandbox"
	"github.com/batch-tool/batch/internal/stability"
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

// TestStableImageRequestsThroughPrism sends a Stable Image manifest with
// our client through Prism's validating proxy (the 2026-09 spec) in front of
// the sandbox. Prism refuses a request that violates the spec with 422 and
// does not forward it, so every generation the sandbox counts is a request
// the spec accepts. Prism re-encodes binary answers as text, so the images
// that come back through it are not checked here (internal/sandbox's
// contract test checks answers; the end-to-end tests check the images).
// sd3.5-flash is left out: the spec's model enum omits it (a documented
// spec bug), so Prism refuses it.
func TestStableImageRequestsThroughPrism(t *testing.T) {
	prism := prismtest.Executable(t)
	sb, err := sandbox.New(sandbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	base := prismtest.Start(t, prism, prismtest.StableImageSpec(), startSandboxWith(t, sb))
	dir := t.TempDir()
	m := writeFile(t, dir, "contract.yaml", `version: 1
defaults:
  negative_prompt: blurry
jobs:
  - id: core
    service: generate/core
    prompt: a lighthouse at dusk
    aspect_ratio: "21:9"
    style_preset: photographic
    output_format: jpeg
    seed: 7
  - id: ultra
    service: generate/ultra
    prompt: a lighthouse at dawn
    aspect_ratio: "9:16"
    output_format: webp
  - id: sd3
    service: generate/sd3
    model: sd3.5-large-turbo
    cfg_scale: 4.5
    prompt: a lighthouse in fog
    seed: 4294967294
`)
	// The spec has no balance endpoint, so the run goes through the runner
	// with our client, without the CLI's balance check.
	man, err := manifest.Load(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	sheet, err := cost.LookupSheet(cost.DefaultSheet)
	if err != nil {
		t.Fatal(err)
	}
	est, err := cost.Estimate(slices.Collect(jobsOf(man)), sheet)
	if err != nil {
		t.Fatal(err)
	}
	client, err := stability.NewClient(stability.Options{BaseURL: base, APIKey: "sk-contract"})
	if err != nil {
		t.Fatal(err)
	}
	var results []runner.JobResult
	cfg := runner.Config{OutDir: filepath.Join(dir, "out"), MaxAttempts: 1, Finished: collect(&results)}
	if _, err := runner.Run(t.Context(), cfg, client, man, est.Jobs); err != nil {
		t.Fatal(err)
	}
	st := sb.Stats()
	if st.Generations != man.Len() {
		t.Errorf("the sandbox answered %d generations, want %d: Prism refused a request our client built (stats %+v)", st.Generations, man.Len(), st)
	}
	for _, j := range results {
		if j.Failure == runner.FailRejected || j.Failure == runner.FailInvalid {
			t.Errorf("%s: %s: %s", j.ID, j.Failure, j.Error)
		}
	}
}

// TestPipelineThroughPrism runs examples/pipeline.yaml with our client
// through Prism's validating proxy in front of the sandbox, with the two
// documented bugs of the 2026-09 spec corrected: every request (image
// inputs, the async submit and its result polls) and every answer must
// pass Prism. Prism's proxy mangles binary bodies, so image parts travel
// quoted-printable (prismtest.SafeMultipart; the sandbox decodes them) and
// answers are asked for as JSON.
func TestPipelineThroughPrism(t *testing.T) {
	prism := prismtest.Executable(t)
	sb, err := sandbox.New(sandbox.Config{AsyncDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := prismtest.Start(t, prism, prismtest.StableImageSpec(), startSandboxWith(t, sb), prismtest.StableImageFixes()...)
	man, err := manifest.Load(t.Context(), "../../examples/pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sheet, err := cost.LookupSheet(cost.DefaultSheet)
	if err != nil {
		t.Fatal(err)
	}
	est, err := cost.Estimate(slices.Collect(jobsOf(man)), sheet)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: safeMultipart{t: t, next: http.DefaultTransport}}
	// JSON answers carry the images as base64, which Prism passes intact.
	client, err := stability.NewClient(stability.Options{BaseURL: base, APIKey: "sk-contract", HTTPClient: hc, AcceptJSON: true})
	if err != nil {
		t.Fatal(err)
	}
	var results []runner.JobResult
	cfg := runner.Config{OutDir: t.TempDir(), MaxAttempts: 1, PollInterval: 10 * time.Millisecond, FastPolls: true, Finished: collect(&results)}
	if _, err := runner.Run(t.Context(), cfg, client, man, est.Jobs); err != nil {
		t.Fatal(err)
	}
	st := sb.Stats()
	if st.Generations != man.Len() || st.Polls == 0 {
		t.Errorf("the sandbox answered %d generations and %d polls, want %d and some: Prism refused a request our client built (stats %+v)", st.Generations, st.Polls, man.Len(), st)
	}
	if len(results) != man.Len() {
		t.Errorf("%d results, want %d", len(results), man.Len())
	}
	for _, j := range results {
		if j.Status != runner.Succeeded {
			t.Errorf("%s: %s (%s): %s", j.ID, j.Status, j.Failure, j.Error)
		}
	}
}

// safeMultipart re-encodes multipart request bodies with
// prismtest.SafeMultipart before sending them.
type safeMultipart struct {
	t    *testing.T
	next http.RoundTripper
}

func (s safeMultipart) RoundTrip(req *http.Request) (*http.Response, error) {
	mt, params, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || req.Body == nil {
		return s.next.RoundTrip(req)
	}
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	safe, err := prismtest.SafeMultipart(body, params["boundary"])
	if err != nil {
		s.t.Errorf("SafeMultipart: %v", err)
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Body = io.NopCloser(bytes.NewReader(safe))
	r.ContentLength = int64(len(safe))
	return s.next.RoundTrip(r)
}

// collect returns a runner.Config.Finished that appends each result to
// results, in the order the jobs finish.
func collect(results *[]runner.JobResult) func(int, runner.JobResult) error {
	return func(_ int, res runner.JobResult) error {
		*results = append(*results, res)
		return nil
	}
}
