package runner

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/stability"
)

// fakeGen is a Generator whose behaviour is a func field.
type fakeGen struct {
	fn func(ctx context.Context, engine string, req stability.TextToImageRequest, sink stability.Sink) ([]stability.Artifact, error)
}

func (f *fakeGen) TextToImage(ctx context.Context, engine string, req stability.TextToImageRequest, sink stability.Sink) ([]stability.Artifact, error) {
	return f.fn(ctx, engine, req, sink)
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
		img := image.NewNRGBA(image.Rect(0, 0, 8, 8))
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

// generate writes one PNG per sample into sink, as the client would, and
// returns the artifacts; finish gives each artifact's finish reason.
func generate(req stability.TextToImageRequest, sink stability.Sink, finish string) ([]stability.Artifact, error) {
	n := max(req.Samples, 1)
	arts := make([]stability.Artifact, n)
	for i := range n {
		w, err := sink.Begin(i)
		if err != nil {
			return nil, err
		}
		b := tinyPNG()
		if _, err := w.Write(b[:len(b)/2]); err != nil {
			return nil, err
		}
		if _, err := w.Write(b[len(b)/2:]); err != nil {
			return nil, err
		}
		arts[i] = stability.Artifact{Seed: req.Seed + uint32(i) + 1000, FinishReason: finish}
		if err := sink.End(i, arts[i]); err != nil {
			return nil, err
		}
	}
	return arts, nil
}

func succeed(_ context.Context, _ string, req stability.TextToImageRequest, sink stability.Sink) ([]stability.Artifact, error) {
	return generate(req, sink, stability.FinishSuccess)
}

// testJobs returns n jobs job-000, job-001, ... costing one credit each.
func testJobs(n int) ([]manifest.Job, []cost.Credits) {
	jobs := make([]manifest.Job, n)
	prices := make([]cost.Credits, n)
	for i := range n {
		jobs[i] = manifest.Job{
			ID: fmt.Sprintf("job-%03d", i), Engine: "stable-diffusion-xl-1024-v1-0",
			Prompts: []manifest.Prompt{{Text: fmt.Sprintf("a cat number %d", i), Weight: 1}},
			Width:   1024, Height: 1024, Steps: 30, Samples: 1, Seed: uint32(i + 1),
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
