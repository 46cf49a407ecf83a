package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/stability"
)

// fakeGen is a Generator whose behaviour is func fields; a nil one
// answers with an error naming the call.
type fakeGen struct {
	fn     func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error)
	submit func(ctx context.Context, service string, fields []stability.Field) (string, error)
	result func(ctx context.Context, id string, sink stability.Sink) ([]stability.Artifact, bool, error)
}

func (f *fakeGen) Generate(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
	if f.fn == nil {
		return nil, errors.New("fake: unexpected Generate")
	}
	return f.fn(ctx, req, sink)
}

func (f *fakeGen) Submit(ctx context.Context, service string, fields []stability.Field) (string, error) {
	if f.submit == nil {
		return "", errors.New("fake: unexpected Submit")
	}
	return f.submit(ctx, service, fields)
}

func (f *fakeGen) Result(ctx context.Context, id string, sink stability.Sink) ([]stability.Artifact, bool, error) {
	if f.result == nil {
		return nil, false, errors.New("fake: unexpected Result")
	}
	return f.result(ctx, id, sink)
}

var _ Generator = (*fakeGen)(nil)
var _ Generator = (*stability.Client)(nil)

var (
	pngOnce  sync.Once
	pngBytes []byte
)

// tinyPNG returns a small valid PNG.
func tinyPNG() []byte {
	pngOnce.Do(func() {
		// The size testJobs asks for: the runner checks every v1 image
		// against the width and height of its request.
		img := image.NewNRGBA(image.Rect(0, 0, testSide, testSide))
		for i := range 8 {
			img.Set(i, i, color.NRGBA{200, 10, 10, 255})
		}
		var b bytes.Buffer
		if err := png.Encode(&b, img); err != nil {
			panic(err)
		}
		pngBytes = b.Bytes()
	})
	return pngBytes
}

// fieldOf returns the value of a Stable Image request's field, "" when unset.
func fieldOf(req stability.Request, name string) string {
	for _, f := range req.Fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// promptOf returns a request's first prompt: text_prompts[0] of a v1
// request, the prompt field of a Stable Image one.
func promptOf(req stability.Request) string {
	if req.Service != "" {
		return fieldOf(req, "prompt")
	}
	if len(req.TextToImage.TextPrompts) == 0 {
		return ""
	}
	return req.TextToImage.TextPrompts[0].Text
}

// seedOf returns a request's seed, 0 when unset.
func seedOf(req stability.Request) uint32 {
	if req.Service == "" {
		return req.TextToImage.Seed
	}
	n, _ := strconv.ParseUint(fieldOf(req, "seed"), 10, 32)
	return uint32(n)
}

// generate writes one PNG per sample into sink, as the client would, and
// returns the artifacts; finish gives each artifact's finish reason. A
// Stable Image request gets one image, with a request id.
func generate(req stability.Request, sink stability.Sink, finish string) ([]stability.Artifact, error) {
	n := max(req.TextToImage.Samples, 1)
	requestID := ""
	if req.Service != "" {
		n, requestID = 1, "req-"+fieldOf(req, "prompt")
	}
	arts := make([]stability.Artifact, n)
	for i := range n {
		w, err := sink.Begin(i)
		if err != nil {
			return nil, err
		}
		b := tinyPNG()
		if req.Service != "" {
			b = imageBytes(fieldOf(req, "output_format"))
		}
		if _, err := w.Write(b[:len(b)/2]); err != nil {
			return nil, err
		}
		if _, err := w.Write(b[len(b)/2:]); err != nil {
			return nil, err
		}
		arts[i] = stability.Artifact{Seed: seedOf(req) + uint32(i) + 1000, FinishReason: finish, RequestID: requestID}
		if err := sink.End(i, arts[i]); err != nil {
			return nil, err
		}
	}
	return arts, nil
}

func succeed(_ context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
	return generate(req, sink, stability.FinishSuccess)
}

// testJobs returns n jobs job-000, job-001, ... costing one credit each.
// testSide is the width and height of testJobs' images, in pixels: small,
// so the runner's check of every image stays cheap under the race detector.
// The runner does not check sizes against the engine (the manifest does).
const testSide = 64

func testJobs(n int) ([]manifest.Job, []cost.Credits) {
	jobs := make([]manifest.Job, n)
	prices := make([]cost.Credits, n)
	for i := range n {
		jobs[i] = manifest.Job{
			ID: fmt.Sprintf("job-%03d", i), Engine: "stable-diffusion-xl-1024-v1-0",
			Prompts: []manifest.Prompt{{Text: fmt.Sprintf("a cat number %d", i), Weight: 1}},
			Width:   testSide, Height: testSide, Steps: 30, Samples: 1, Seed: uint32(i + 1),
		}
		prices[i] = cost.Credit
	}
	return jobs, prices
}

// fastConfig returns a config with a high rate limit and short waits.
func fastConfig(t *testing.T) Config {
	return Config{OutDir: t.TempDir(), Rate: Rate{N: 100000, Window: 1e9}, Concurrency: 4,
		BackoffBase: 1e6, BackoffCap: 4e6, Lockout: 1e7}
}

// tempFiles lists temp files left under the output folder.
func tempFiles(t *testing.T, outDir string) []string {
	t.Helper()
	var left []string
	for _, d := range []string{ImagesDir, FilteredDir} {
		entries, _ := os.ReadDir(filepath.Join(outDir, d))
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				left = append(left, filepath.Join(d, e.Name()))
			}
		}
	}
	return left
}

func manifestPrompt(text string, weight float64) manifest.Prompt {
	return manifest.Prompt{Text: text, Weight: weight}
}

// stableJob returns a Stable Image job with one prompt ("a lighthouse " +
// id) and params in catalogue order, e.g. "model", "sd3.5-flash".
func stableJob(id, service string, w, h int, params ...string) manifest.Job {
	j := manifest.Job{ID: id, Base: id, Service: service, Width: w, Height: h, Samples: 1,
		Prompts: []manifest.Prompt{{Text: "a lighthouse " + id, Weight: 1}}}
	for i := 0; i+1 < len(params); i += 2 {
		j.Params = append(j.Params, manifest.Param{Name: params[i], Value: params[i+1]})
	}
	return j
}

var (
	jpegOnce  sync.Once
	jpegBytes []byte
)

// tinyJPEG returns a small valid JPEG.
func tinyJPEG() []byte {
	jpegOnce.Do(func() {
		img := image.NewNRGBA(image.Rect(0, 0, 8, 8))
		var b bytes.Buffer
		if err := jpeg.Encode(&b, img, nil); err != nil {
			panic(err)
		}
		jpegBytes = b.Bytes()
	})
	return jpegBytes
}

// tinyWebP returns the bytes of a lossless WebP header and a little data:
// enough for its type to be sniffed (nothing here decodes WebP).
func tinyWebP() []byte {
	b := []byte("RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x07\xc0\x01\x00\x07\x10\x11\x11\x88\x88\xfe\x07\x00")
	return b
}

// imageBytes returns a small image in an output_format ("" is png).
func imageBytes(format string) []byte {
	switch format {
	case "jpeg":
		return tinyJPEG()
	case "webp":
		return tinyWebP()
	}
	return tinyPNG()
}

// testResult is Run's Result with the results Config.Finished was told,
// by job index.
type testResult struct {
	Result
	Jobs []JobResult // nil when Run stopped before it started
}

// runJobs runs jobs with Run, collecting every job's result (on top of
// any Config.Finished the caller set), and checks that each job was told
// once.
func runJobs(ctx context.Context, cfg Config, gen Generator, jobs []manifest.Job, prices []cost.Credits) (testResult, error) {
	out := testResult{Jobs: make([]JobResult, len(jobs))}
	told := make([]bool, len(jobs))
	var twice error
	next := cfg.Finished
	cfg.Finished = func(i int, res JobResult) error {
		if told[i] && twice == nil {
			twice = fmt.Errorf("job %d (%s) was told twice", i, res.ID)
		}
		told[i], out.Jobs[i] = true, res
		if next != nil {
			return next(i, res)
		}
		return nil
	}
	res, err := Run(ctx, cfg, gen, JobList(jobs), prices)
	out.Result = res
	if res.Reported == 0 {
		out.Jobs = nil
	} else if res.Reported != len(jobs) && twice == nil {
		twice = fmt.Errorf("%d of %d jobs were told", res.Reported, len(jobs))
	}
	if twice != nil {
		return out, twice
	}
	return out, err
}
