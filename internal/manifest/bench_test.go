package manifest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// millionManifest is a manifest whose 100×100×100 matrix expands to
// 1,000,000 v1 jobs, each with its own prompt text, seed and id.
func millionManifest() []byte {
	return million("engine: stable-diffusion-xl-1024-v1-0\ndefaults:\n  steps: 30\n")
}

// millionStableImage is millionManifest on generate/sd3: each job also has
// its own Params (its seed; the model and aspect ratio shared).
func millionStableImage() []byte {
	return million("service: generate/sd3\ndefaults:\n  model: sd3.5-flash\n  aspect_ratio: \"16:9\"\n")
}

func million(head string) []byte {
	var b bytes.Buffer
	b.WriteString("version: 1\n" + head + "  negative_prompt: blurry\njobs:\n")
	b.WriteString("  - id: sweep\n    prompt: a {subject} standing in {place}\n    matrix:\n")
	list := func(key, prefix string, quoteNum bool) {
		fmt.Fprintf(&b, "      %s: [", key)
		for i := range 100 {
			if i > 0 {
				b.WriteString(", ")
			}
			if quoteNum {
				fmt.Fprintf(&b, "%d", i+1)
			} else {
				fmt.Fprintf(&b, "%s %d", prefix, i)
			}
		}
		b.WriteString("]\n")
	}
	list("subject", "subject", false)
	list("place", "place", false)
	list("seed", "", true)
	return b.Bytes()
}

func BenchmarkParseMillion(b *testing.B) {
	data := millionManifest()
	b.ReportAllocs()
	for b.Loop() {
		m, err := Parse("million.yaml", data)
		if err != nil {
			b.Fatal(err)
		}
		if m.Len() != 1_000_000 {
			b.Fatalf("got %d jobs, want 1000000", m.Len())
		}
	}
}

func BenchmarkParseMillionStableImage(b *testing.B) {
	data := millionStableImage()
	b.ReportAllocs()
	for b.Loop() {
		m, err := Parse("million.yaml", data)
		if err != nil {
			b.Fatal(err)
		}
		if m.Len() != 1_000_000 || len(m.Job(999_999).Params) != 3 {
			b.Fatalf("got %d jobs, want 1000000 with 3 Params each", m.Len())
		}
	}
}

// millionSeeds is a manifest of one job over 1,000,000 seeds, written as
// a range or as the equivalent list.
func millionSeeds(asRange bool) []byte {
	var b bytes.Buffer
	b.WriteString("version: 1\nengine: stable-diffusion-xl-1024-v1-0\njobs:\n  - id: sweep\n    prompt: a fox\n    matrix:\n")
	if asRange {
		b.WriteString("      seed: {from: 1, to: 1000000}\n")
		return b.Bytes()
	}
	b.WriteString("      seed: [")
	for i := range 1_000_000 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d", i+1)
	}
	b.WriteString("]\n")
	return b.Bytes()
}

// BenchmarkParseMillionSeeds plans a 1,000,000-seed sweep written as a
// list and as a range: the range allocates no YAML node per value.
func BenchmarkParseMillionSeeds(b *testing.B) {
	for _, tt := range []struct {
		name    string
		asRange bool
	}{{"list", false}, {"range", true}} {
		b.Run(tt.name, func(b *testing.B) {
			data := millionSeeds(tt.asRange)
			b.ReportAllocs()
			for b.Loop() {
				m, err := Parse("seeds.yaml", data)
				if err != nil {
					b.Fatal(err)
				}
				if j := m.Job(999_999); m.Len() != 1_000_000 || j.Seed != 1_000_000 || j.ID != "sweep-1000000" {
					b.Fatalf("got %d jobs, want 1000000 ending with seed 1000000", m.Len())
				}
			}
		})
	}
}

func BenchmarkYAMLDecodeMillion(b *testing.B) {
	data := millionManifest()
	b.ReportAllocs()
	for b.Loop() {
		var n yaml.Node
		if err := yaml.Unmarshal(data, &n); err != nil {
			b.Fatal(err)
		}
	}
}

// explicitManifest is a manifest of n jobs written one by one, each with
// its id, a prompt of about 90 characters and a seed, on a service and an
// aspect ratio they inherit.
func explicitManifest(n int) []byte {
	var b bytes.Buffer
	b.WriteString("version: 1\nservice: generate/core\ndefaults:\n  aspect_ratio: \"1:1\"\njobs:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - id: shot-%d\n    prompt: a studio photo of product number %d on a marble table, soft window light, 85mm\n    seed: %d\n", i, i, i+1)
	}
	return b.Bytes()
}

// longPromptMatrix is a manifest of about 11 KB whose matrix expands to
// 2,000,000 jobs (100 subjects × 100 places × 200 seeds), each with a
// prompt of about 1,900 characters and an id too long to be built from its
// values, so every row takes a hash id.
func longPromptMatrix() []byte {
	var b bytes.Buffer
	b.WriteString("version: 1\nservice: generate/core\ndefaults:\n  aspect_ratio: \"16:9\"\njobs:\n  - id: sweep\n")
	words := strings.TrimSpace(strings.Repeat("highly detailed cinematic photograph with soft volumetric light, ", 28))
	fmt.Fprintf(&b, "    prompt: \"a {subject} standing in {place}, %s\"\n    matrix:\n", words)
	list := func(key, prefix string) {
		fmt.Fprintf(&b, "      %s: [", key)
		for i := range 100 {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s%d", prefix, i)
		}
		b.WriteString("]\n")
	}
	list("subject", "carefully lit handmade ceramic subject number ")
	list("place", "a quiet sunlit scandinavian room variant ")
	b.WriteString("      seed: {from: 1, to: 200}\n")
	return b.Bytes()
}

// writeManifest writes data to a file in a temporary folder and returns its
// path.
func writeManifest(tb testing.TB, data []byte) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "manifest.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// BenchmarkLoadExplicit loads explicit manifests of 10,000, 100,000 and
// 500,000 jobs, side by side with reading the same file and decoding it
// with yaml.v3 into an any, which is the least any YAML-reading planner
// does: compare their ns/op and B/op.
func BenchmarkLoadExplicit(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 500_000} {
		path := writeManifest(b, explicitManifest(n))
		b.Run(fmt.Sprintf("jobs=%d/Load", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m, err := Load(b.Context(), path)
				if err != nil {
					b.Fatal(err)
				}
				if m.Len() != n {
					b.Fatalf("got %d jobs, want %d", m.Len(), n)
				}
			}
		})
		b.Run(fmt.Sprintf("jobs=%d/yaml-any", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				data, err := os.ReadFile(path)
				if err != nil {
					b.Fatal(err)
				}
				var v any
				if err := yaml.Unmarshal(data, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoadExplicitMillion loads an explicit manifest of 1,000,000
// jobs (131 MB) through Load, so through ReadFile's size cap.
func BenchmarkLoadExplicitMillion(b *testing.B) {
	path := writeManifest(b, explicitManifest(1_000_000))
	b.ReportAllocs()
	for b.Loop() {
		m, err := Load(b.Context(), path)
		if err != nil {
			b.Fatal(err)
		}
		if m.Len() != 1_000_000 {
			b.Fatalf("got %d jobs, want 1000000", m.Len())
		}
	}
}

// BenchmarkLoadLongPromptMatrix loads the 2,000,000-job long-prompt matrix
// and walks its jobs once with All, as a plan does.
func BenchmarkLoadLongPromptMatrix(b *testing.B) {
	path := writeManifest(b, longPromptMatrix())
	b.ReportAllocs()
	for b.Loop() {
		m, err := Load(b.Context(), path)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for _, j := range m.All() {
			n += len(j.Prompts[0].Text)
		}
		if m.Len() != 2_000_000 || n < 2_000_000*1_900 {
			b.Fatalf("got %d jobs with %d prompt bytes, want 2000000 of about 1900 each", m.Len(), n)
		}
	}
}

// TestExplicitMillionFits checks that ReadFile's cap, MaxFileSize, takes an
// explicit manifest of a million jobs with 300-character prompts (the
// benchmark above plans one of a million jobs).
func TestExplicitMillionFits(t *testing.T) {
	// Each job as explicitManifest writes it, its prompt grown to 300
	// characters.
	job := fmt.Sprintf("  - id: shot-%d\n    prompt: %s\n    seed: %d\n", 999_999, strings.Repeat("x", 300), 1_000_000)
	if size := 1_000_000 * len(job); size > MaxFileSize {
		t.Errorf("a million jobs take %d bytes, over MaxFileSize %d", size, MaxFileSize)
	}
}

// Memory bounds for the child processes of TestPeakMemory, in bytes,
// measured (November 2026, Go 1.26, linux/amd64) with about a third of
// headroom. Loading either million-job matrix and walking its jobs once
// peaks at 20–23 MiB and keeps a live heap under 1 MiB: its rows are built
// on demand (before, the million Jobs peaked at 557 MiB and kept 460 MiB).
// The 2,000,000-job long-prompt matrix peaks at 42 MiB. The 100,000-job
// explicit manifest keeps 20 MiB, about 200 bytes a job.
const (
	millionMaxPeakRSS   = 32 << 20
	millionMaxLiveHeap  = 4 << 20
	longMaxPeakRSS      = 64 << 20
	explicitMaxLiveHeap = 28 << 20
	// explicitMaxRatio bounds the peak RSS of loading the 100,000-job
	// explicit manifest against that of decoding it into an any: measured
	// at 0.94–1.05 (before, 2.1).
	explicitMaxRatio = 1.3
)

// TestPeakMemory holds loading big manifests under memory bounds. Each is
// loaded in a process of its own (this test binary, run again), so the
// peak is the load's and no other test's: the child prints its live heap
// after a GC and its peak RSS, as the kernel counts it for its own address
// space (VmHWM; rusage's would count the parent's, which the child shares
// until it execs). The garbage
// collector's pacing makes the peak vary by a few MiB between runs, far
// inside the headroom. Skipped with -short, and under the race detector,
// whose shadow memory multiplies the RSS.
func TestPeakMemory(t *testing.T) {
	if kind := os.Getenv("MANIFEST_PEAK_CHILD"); kind != "" {
		peakChild(t, kind, os.Getenv("MANIFEST_PEAK_FILE"))
		return
	}
	if testing.Short() {
		t.Skip("loads millions of jobs; skipped with -short")
	}
	if raceEnabled {
		t.Skip("the race detector's shadow memory makes the RSS meaningless")
	}
	explicit := writeManifest(t, explicitManifest(100_000))
	peaks := map[string]uint64{}
	for _, tt := range []struct {
		kind, file string
		peak, live uint64 // bounds; 0: none
	}{
		{"v1", "", millionMaxPeakRSS, millionMaxLiveHeap},
		{"stable-image", "", millionMaxPeakRSS, millionMaxLiveHeap},
		{"long-prompts", "", longMaxPeakRSS, 0},
		{"explicit", explicit, 0, explicitMaxLiveHeap},
		{"yaml-any", explicit, 0, 0},
	} {
		t.Run(tt.kind, func(t *testing.T) {
			peak, live := runPeakChild(t, tt.kind, tt.file)
			peaks[tt.kind] = peak
			t.Logf("%s: peak RSS %d MiB, live heap %d MiB", tt.kind, peak>>20, live>>20)
			if tt.peak > 0 && peak > tt.peak {
				t.Errorf("peak RSS %d MiB, want at most %d MiB", peak>>20, tt.peak>>20)
			}
			if tt.live > 0 && live > tt.live {
				t.Errorf("live heap %d MiB, want at most %d MiB", live>>20, tt.live>>20)
			}
		})
	}
	if ratio := float64(peaks["explicit"]) / float64(peaks["yaml-any"]); peaks["yaml-any"] > 0 && ratio > explicitMaxRatio {
		t.Errorf("loading 100,000 explicit jobs peaks at %.2f× decoding them into an any, want at most %.2f×", ratio, explicitMaxRatio)
	}
}

// runPeakChild runs peakChild in a process of its own and returns its peak
// RSS and the live heap it printed, in bytes.
func runPeakChild(t *testing.T, kind, file string) (peak, live uint64) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPeakMemory$", "-test.count=1")
	cmd.Env = append(os.Environ(), "MANIFEST_PEAK_CHILD="+kind, "MANIFEST_PEAK_FILE="+file)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if bytes.Contains(out, []byte("no-peak-rss")) {
		t.Skip("no peak RSS on this system")
	}
	for _, v := range []struct {
		name string
		to   *uint64
	}{{"live-heap-bytes ", &live}, {"peak-rss-kib ", &peak}} {
		i := bytes.Index(out, []byte(v.name))
		if i < 0 {
			t.Fatalf("child printed no %s:\n%s", v.name, out)
		}
		if _, err := fmt.Sscan(string(out[i+len(v.name):]), v.to); err != nil {
			t.Fatalf("child's %s: %v\n%s", v.name, err, out)
		}
	}
	return peak << 10, live
}

// peakRSS returns the process's peak resident set in KiB, from Linux's
// /proc/self/status; ok is false elsewhere.
func peakRSS() (kib uint64, ok bool) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	_, after, found := bytes.Cut(status, []byte("VmHWM:"))
	if !found {
		return 0, false
	}
	_, err = fmt.Sscan(string(after), &kib)
	return kib, err == nil
}

// peakChild loads one manifest, walks its jobs once, and prints the live
// heap the manifest keeps; yaml-any only decodes file into an any.
func peakChild(t *testing.T, kind, file string) {
	var keep any
	switch kind {
	case "yaml-any":
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Fatal(err)
		}
		keep = v
	case "explicit":
		m, err := Load(t.Context(), file)
		if err != nil {
			t.Fatal(err)
		}
		keep = m
	default:
		data := millionManifest()
		switch kind {
		case "stable-image":
			data = millionStableImage()
		case "long-prompts":
			data = longPromptMatrix()
		}
		m, err := Parse("big.yaml", data)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for range m.All() {
			n++
		}
		if n != m.Len() || n < 1_000_000 {
			t.Fatalf("walked %d of %d jobs, want at least 1000000", n, m.Len())
		}
		keep = m
	}
	peak, ok := peakRSS()
	if !ok {
		fmt.Println("no-peak-rss")
		return
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("live-heap-bytes %d\npeak-rss-kib %d\n", ms.HeapAlloc, peak)
	runtime.KeepAlive(keep)
}
