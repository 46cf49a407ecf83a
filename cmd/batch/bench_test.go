package main

import (
	"bytes"
	"fmt"
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

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
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

// longPromptMatrix is a manifest of 4 entries, each a prompt of about 1,900
// characters over a matrix of 80 subjects × 25 lights × seeds seeds: 8,000 ×
// seeds jobs from 13 KB of YAML (2,000,000 jobs at 250 seeds).
func longPromptMatrix(seeds int) string {
	var b strings.Builder
	b.WriteString("version: 1\nservice: generate/core\ndefaults:\n  aspect_ratio: \"16:9\"\njobs:\n")
	clause := "with layered translucent detail, soft volumetric haze drifting through the scene, " +
		"fine film grain, a restrained palette of ochre, slate and muted teal, careful rim light, "
	for e := range 4 {
		prompt := fmt.Sprintf("a {subject} in {light}, scene %d, ", e)
		for len(prompt) < 1860 {
			prompt += clause
		}
		prompt = prompt[:1860] + " on large format film"
		fmt.Fprintf(&b, "  - id: scene-%d\n    prompt: >-\n      %s\n    matrix:\n      subject: [", e, prompt)
		for i := range 80 {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "subject %d", i)
		}
		b.WriteString("]\n      light: [")
		for i := range 25 {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "light %d", i)
		}
		fmt.Fprintf(&b, "]\n      seed: {from: 1, to: %d}\n", seeds)
	}
	return b.String()
}

// BenchmarkPlanLongPrompts runs `batch plan` in-process on longPromptMatrix
// at 200,000 and 2,000,000 jobs: load, expand, price and render, the
// table (one row per group) and JSON (every job, about 2 KB each), beside
// manifest.Load alone.
func BenchmarkPlanLongPrompts(b *testing.B) {
	for _, seeds := range []int{25, 250} {
		path := filepath.Join(b.TempDir(), "long.yaml")
		if err := os.WriteFile(path, []byte(longPromptMatrix(seeds)), 0o644); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("jobs=%d", 8000*seeds), func(b *testing.B) { benchmarkPlan(b, path) })
	}
}

// explicitManifest is a manifest listing n Stable Image jobs one by one,
// each with its own id, prompt and seed (about 130 bytes of YAML a job).
func explicitManifest(n int) string {
	var b strings.Builder
	b.WriteString("version: 1\nservice: generate/core\ndefaults:\n  aspect_ratio: \"1:1\"\njobs:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - id: shot-%d\n    prompt: a studio photo of product number %d on a marble table, soft window light, 85mm\n    seed: %d\n", i, i, i+1)
	}
	return b.String()
}

// BenchmarkPlanExplicit runs `batch plan` in-process on explicitManifest of
// 100,000 jobs: every job is a group of its own, so the table lists
// 100,000 groups.
func BenchmarkPlanExplicit(b *testing.B) {
	path := filepath.Join(b.TempDir(), "explicit.yaml")
	if err := os.WriteFile(path, []byte(explicitManifest(100_000)), 0o644); err != nil {
		b.Fatal(err)
	}
	benchmarkPlan(b, path)
}

// benchmarkPlan runs `batch plan` on the manifest at path as a table and as
// JSON, after manifest.Load alone ("load"): what planning costs on top of
// loading.
func benchmarkPlan(b *testing.B, path string) {
	b.Run("load", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := manifest.Load(b.Context(), path); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, format := range []string{"table", "json"} {
		b.Run(format, func(b *testing.B) {
			e := &env{getenv: func(string) string { return "" }, stdout: io.Discard, stderr: io.Discard, now: time.Now}
			b.ReportAllocs()
			for b.Loop() {
				if code := e.main(b.Context(), []string{"plan", "--format", format, path}); code != exitOK {
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
		cmd := exec.Command(os.Args[0], "run", "--api-url", url, "--concurrency", "32", "--rate", "100000/1s", "--no-cache", "--out", out, manifest)
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

// BenchmarkRunRSS runs `batch run` as a child process on 1,000, 10,000
// and 100,000 jobs (a matrix of small v1 images) at concurrency 64 against
// a sandbox without a rate limit that this benchmark serves from its own
// process, and reports the child's peak resident memory: the runner keeps
// a few bytes per job and the report is written from rows spilled to disk,
// so the peak stays flat as jobs grow. resume/jobs=N reruns a folder the
// same manifest finished (a first run, not measured, makes its images) and
// reports the rerun's peak: the journal is read as a stream, a job's line
// re-read only for its report row, so this stays flat too, and the rerun
// sends nothing. The output folder goes under
// $BATCH_BENCH_OUT when set (a tmpfs, so that disk speed does not count;
// it needs room for the run's estimate, some 300 KiB an image, though the
// sandbox's images take about 9 KiB), else under the benchmark's temp
// folder. BATCH_BENCH_JOBS=1000000 adds a run of a million jobs.
func BenchmarkRunRSS(b *testing.B) {
	sizes := []int{1_000, 10_000, 100_000}
	if n, err := strconv.Atoi(os.Getenv("BATCH_BENCH_JOBS")); err == nil && n > 0 {
		sizes = append(sizes, n)
	}
	root := b.TempDir()
	if dir := os.Getenv("BATCH_BENCH_OUT"); dir != "" {
		var err error
		if root, err = os.MkdirTemp(dir, "batch-bench-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(root) })
	}
	sheet, err := cost.LookupSheet("sdxl-2024") // prices stable-diffusion-v1-6
	if err != nil {
		b.Fatal(err)
	}
	sb, err := sandbox.New(sandbox.Config{RateLimit: -1, Pricer: sheet, Balance: 1_000_000_000 * cost.Credit})
	if err != nil {
		b.Fatal(err)
	}
	url := startSandboxWith(b, sb)
	for _, jobs := range sizes {
		b.Run("jobs="+strconv.Itoa(jobs), func(b *testing.B) {
			manifest := writeSmallMatrix(b, root, jobs)
			before := sb.Stats().Generations
			var peak int64
			for i := 0; b.Loop(); i++ {
				out := filepath.Join(root, fmt.Sprintf("out-%d-%d", jobs, i))
				peak = max(peak, runPeakRSS(b, url, manifest, out))
				b.StopTimer()
				if err := os.RemoveAll(out); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			if got := sb.Stats().Generations - before; got != jobs*b.N {
				b.Fatalf("the sandbox answered %d generations, want %d", got, jobs*b.N)
			}
			b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
		})
	}
	// A rerun into a finished folder sends nothing: it reads the journal,
	// resumes every job and writes the report.
	for _, jobs := range sizes {
		b.Run("resume/jobs="+strconv.Itoa(jobs), func(b *testing.B) {
			manifest := writeSmallMatrix(b, root, jobs)
			out := filepath.Join(root, fmt.Sprintf("resume-%d", jobs))
			b.Cleanup(func() { os.RemoveAll(out) })
			runPeakRSS(b, url, manifest, out) // the run that makes every image
			before := sb.Stats().Generations
			var peak int64
			for b.Loop() {
				peak = max(peak, runPeakRSS(b, url, manifest, out))
			}
			if got := sb.Stats().Generations - before; got != 0 {
				b.Fatalf("the sandbox answered %d generations to reruns of a finished folder, want 0", got)
			}
			b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
		})
	}
}

// writeSmallMatrix writes smallMatrix(jobs) under root and returns its
// path.
func writeSmallMatrix(b *testing.B, root string, jobs int) string {
	b.Helper()
	manifest := filepath.Join(root, fmt.Sprintf("run-%d.yaml", jobs))
	if err := os.WriteFile(manifest, []byte(smallMatrix(jobs)), 0o644); err != nil {
		b.Fatal(err)
	}
	return manifest
}

// runPeakRSS runs `batch run` as a child process on manifest into out, at
// concurrency 64 against the sandbox at url with no rate limit to speak
// of and no image cache (every job not resumed is sent), and returns the
// child's peak resident memory in KiB (0 where the system does not tell).
// The shared rate files go beside out, never in the user's cache folder.
func runPeakRSS(b *testing.B, url, manifest, out string) int64 {
	b.Helper()
	cmd := exec.Command(os.Args[0], "run", "--api-url", url, "--concurrency", "64", "--rate", "1000000000/1s", "--no-cache", "--out", out, manifest)
	cmd.Env = childEnv("STABILITY_API_KEY=sk-bench", "XDG_CACHE_HOME="+filepath.Join(filepath.Dir(out), "cache"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("batch run: %v\n%s", err, tail(stderr.String(), 2000))
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss // KiB on Linux
	}
	return 0
}

// smallMatrix is a manifest of n jobs (a multiple of 100 from 100): one
// entry, a matrix of 10 subjects × 10 places × n/100 seeds, each job a
// 320×320 image of stable-diffusion-v1-6, the smallest v1 image.
func smallMatrix(n int) string {
	var b strings.Builder
	b.WriteString("version: 1\nengine: stable-diffusion-v1-6\npricing: sdxl-2024\ndefaults:\n  steps: 30\n  width: 320\n  height: 320\n")
	b.WriteString("jobs:\n  - id: sweep\n    prompt: a {subject} standing in {place}\n    matrix:\n")
	b.WriteString("      subject: [s0, s1, s2, s3, s4, s5, s6, s7, s8, s9]\n      place: [p0, p1, p2, p3, p4, p5, p6, p7, p8, p9]\n")
	fmt.Fprintf(&b, "      seed: {from: 1, to: %d}\n", max(n/100, 1))
	return b.String()
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
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
