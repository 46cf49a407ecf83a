package main

import (
	"bytes"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/sandbox"
)

// BenchmarkPlanMillion runs `batch plan` in-process on a manifest that
// expands to 1,000,000 jobs: load, validate, expand, price and render.
// Compare with internal/manifest's BenchmarkYAMLDecodeMillion, the bare
// yaml.v3 decode of the same manifest.
func BenchmarkPlanMillion(b *testing.B) {
	for _, format := range []string{"table", "json"} {
		b.Run(format, func(b *testing.B) {
			e := &env{getenv: func(string) string { return "" }, stdout: io.Discard, stderr: io.Discard, now: time.Now}
			b.ReportAllocs()
			for b.Loop() {
				if code := e.main(b.Context(), []string{"plan", "--format", format, "testdata/million.yaml"}); code != exitOK {
					b.Fatalf("plan: exit %d", code)
				}
			}
		})
	}
}

// BenchmarkUploadRSS runs `batch run` as a child process on 200 edit/erase
// jobs, each uploading a PNG of nearly 10 MiB (the API's request cap), at
// concurrency 32, against a sandbox this benchmark serves from its own
// process, and reports the child's peak resident memory. Inputs stream
// from disk into the request bodies, so the peak stays far below
// concurrency × input size (320 MiB).
func BenchmarkUploadRSS(b *testing.B) {
	dir := b.TempDir()
	input := filepath.Join(dir, "noise.png")
	writeNoisePNG(b, input, 1850, 1850) // 3.4 MP of random RGB: about 10.3 MB, incompressible
	st, err := os.Stat(input)
	if err != nil {
		b.Fatal(err)
	}
	var m strings.Builder
	m.WriteString("version: 1\nservice: edit/erase\njobs:\n  - id: erase\n    image: noise.png\n    matrix:\n      seed: [")
	for i := 1; i <= 200; i++ {
		if i > 1 {
			m.WriteString(", ")
		}
		m.WriteString(strconv.Itoa(i))
	}
	m.WriteString("]\n")
	manifest := filepath.Join(dir, "upload.yaml")
	if err := os.WriteFile(manifest, []byte(m.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	sb, err := sandbox.New(sandbox.Config{RateLimit: -1})
	if err != nil {
		b.Fatal(err)
	}
	url := startSandboxWith(b, sb)
	var peak int64
	for i := 0; b.Loop(); i++ {
		out := filepath.Join(dir, "out"+strconv.Itoa(i))
		cmd := exec.Command(os.Args[0], "run", "--api-url", url, "--concurrency", "32", "--rate", "100000/1s", "--out", out, manifest)
		cmd.Env = append(os.Environ(), "BATCH_TEST_MAIN=1", "STABILITY_API_KEY=sk-bench")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			b.Fatalf("batch run: %v\n%s", err, stderr.String())
		}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			peak = max(peak, ru.Maxrss) // KiB on Linux
		}
	}
	if st := sb.Stats(); st.Generations != 200*b.N {
		b.Fatalf("the sandbox answered %d generations, want %d", st.Generations, 200*b.N)
	}
	b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
	b.ReportMetric(float64(st.Size())/(1<<20), "input-MiB")
}

// writeNoisePNG writes a w×h PNG of random opaque pixels, which deflate
// cannot shrink.
func writeNoisePNG(b *testing.B, path string, w, h int) {
	b.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(img.Pix); i += 4 {
		v := rng.Uint32()
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = byte(v), byte(v>>8), byte(v>>16), 255
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	enc := png.Encoder{CompressionLevel: png.NoCompression}
	if err := enc.Encode(f, img); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}
