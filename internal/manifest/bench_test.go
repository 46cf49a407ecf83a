package manifest

import (
	"bytes"
	"fmt"
	"os"
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
		if len(m.Jobs) != 1_000_000 {
			b.Fatalf("got %d jobs, want 1000000", len(m.Jobs))
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
		if len(m.Jobs) != 1_000_000 || len(m.Jobs[999_999].Params) != 3 {
			b.Fatalf("got %d jobs, want 1000000 with 3 Params each", len(m.Jobs))
		}
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

// TestMillionPeakMemory reports the peak resident memory of parsing the
// million-job manifest. It runs only with MANIFEST_PEAK=1 (or stable-image),
// in a process of its own: go test -run TestMillionPeakMemory -v ./internal/manifest/
func TestMillionPeakMemory(t *testing.T) {
	data := millionManifest()
	switch os.Getenv("MANIFEST_PEAK") {
	case "":
		t.Skip("set MANIFEST_PEAK=1 to measure (MANIFEST_PEAK=stable-image for the generate/sd3 manifest)")
	case "stable-image":
		data = millionStableImage()
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	m, err := Parse("million.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	runtime.GC()
	var live runtime.MemStats
	runtime.ReadMemStats(&live)
	status, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM") || strings.HasPrefix(line, "VmRSS") {
			t.Log(line)
		}
	}
	t.Logf("jobs %d; allocated %d MiB; live heap after GC %d MiB; heap sys %d MiB",
		len(m.Jobs), (after.TotalAlloc-before.TotalAlloc)>>20, live.HeapAlloc>>20, live.HeapSys>>20)
	runtime.KeepAlive(m)
}
