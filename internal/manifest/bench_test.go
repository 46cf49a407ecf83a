package manifest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
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
		if len(m.jobs) != 1_000_000 {
			b.Fatalf("got %d jobs, want 1000000", len(m.jobs))
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
		if len(m.jobs) != 1_000_000 || len(m.jobs[999_999].Params) != 3 {
			b.Fatalf("got %d jobs, want 1000000 with 3 Params each", len(m.jobs))
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
				if len(m.jobs) != 1_000_000 || m.jobs[999_999].Seed != 1_000_000 || m.jobs[999_999].ID != "sweep-1000000" {
					b.Fatalf("got %d jobs, want 1000000 ending with seed 1000000", len(m.jobs))
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

// Memory bounds for parsing the million-job manifests, in bytes, measured
// (November 2026, Go 1.26, linux/amd64) at a peak RSS of 557 MiB and a live
// heap of 460 MiB for either manifest, with about a quarter of headroom.
// The live heap is what the million Jobs keep (an allocation per job would
// show there); the peak adds the parse's garbage and the YAML tree.
const (
	millionMaxPeakRSS  = 700 << 20
	millionMaxLiveHeap = 576 << 20
)

// TestMillionPeakMemory holds parsing the million-job manifests under
// memory bounds. Each is parsed in a process of its own (this test binary,
// run again), so the peak is the parse's and no other test's: the child
// prints its live heap after a GC, and its peak RSS comes from the kernel.
// The garbage collector's pacing makes the peak vary by a few MiB between
// runs, far inside the headroom. Skipped with -short, and under the race
// detector, whose shadow memory multiplies the RSS.
func TestMillionPeakMemory(t *testing.T) {
	if kind := os.Getenv("MANIFEST_PEAK_CHILD"); kind != "" {
		millionPeakChild(t, kind)
		return
	}
	if testing.Short() {
		t.Skip("parses two million jobs; skipped with -short")
	}
	if raceEnabled {
		t.Skip("the race detector's shadow memory makes the RSS meaningless")
	}
	for _, kind := range []string{"v1", "stable-image"} {
		t.Run(kind, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMillionPeakMemory$", "-test.count=1")
			cmd.Env = append(os.Environ(), "MANIFEST_PEAK_CHILD="+kind)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			var live uint64
			if i := bytes.Index(out, []byte("live-heap-bytes ")); i < 0 {
				t.Fatalf("child printed no live heap:\n%s", out)
			} else if _, err := fmt.Sscan(string(out[i+len("live-heap-bytes "):]), &live); err != nil {
				t.Fatalf("child's live heap: %v\n%s", err, out)
			}
			ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			if !ok {
				t.Skip("no rusage on this system")
			}
			peak := uint64(ru.Maxrss) << 10 // KiB on Linux
			t.Logf("1,000,000 jobs: peak RSS %d MiB, live heap %d MiB", peak>>20, live>>20)
			if peak > millionMaxPeakRSS {
				t.Errorf("peak RSS %d MiB, want at most %d MiB", peak>>20, millionMaxPeakRSS>>20)
			}
			if live > millionMaxLiveHeap {
				t.Errorf("live heap %d MiB (%d bytes a job), want at most %d MiB", live>>20, live/1_000_000, millionMaxLiveHeap>>20)
			}
		})
	}
}

// millionPeakChild parses one million-job manifest and prints the live heap
// the result keeps.
func millionPeakChild(t *testing.T, kind string) {
	data := millionManifest()
	if kind == "stable-image" {
		data = millionStableImage()
	}
	m, err := Parse("million.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.jobs) != 1_000_000 {
		t.Fatalf("got %d jobs, want 1000000", len(m.jobs))
	}
	data = nil
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("live-heap-bytes %d\n", ms.HeapAlloc)
	runtime.KeepAlive(m)
}
