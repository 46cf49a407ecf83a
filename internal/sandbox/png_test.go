package sandbox

import (
	"bytes"
	"fmt"
	"hash/adler32"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

func TestRenderPNGDecodes(t *testing.T) {
	sizes := [][2]int{{1024, 1024}, {1536, 640}, {640, 1536}, {512, 512}, {128, 896}, {320, 1536}, {1, 1}, {7, 5}, {65, 130}}
	for _, sz := range sizes {
		for _, filtered := range []bool{false, true} {
			p := newPicture("a lighthouse on a cliff", 42, sz[0], sz[1], filtered)
			data := renderPNG(p)
			img, err := png.Decode(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("png.Decode(%dx%d filtered=%v) = %v", sz[0], sz[1], filtered, err)
			}
			if got := img.Bounds().Size(); got != (image.Point{sz[0], sz[1]}) {
				t.Errorf("decoded size = %v, want %dx%d", got, sz[0], sz[1])
			}
			// Every pixel must be what the picture's cell says.
			cw := cellsOf(sz[0])
			rowBuf := make([]byte, 3*cw)
			for y := range sz[1] {
				p.row(rowBuf, y/cell)
				for x := range sz[0] {
					r, g, b, _ := img.At(x, y).RGBA()
					want := rowBuf[3*(x/cell) : 3*(x/cell)+3]
					if uint8(r>>8) != want[0] || uint8(g>>8) != want[1] || uint8(b>>8) != want[2] {
						t.Fatalf("%dx%d pixel (%d,%d) = %d,%d,%d, want %v", sz[0], sz[1], x, y, r>>8, g>>8, b>>8, want)
					}
				}
			}
		}
	}
}

func TestAdlerRepeat(t *testing.T) {
	var raw []byte
	a := adler{s1: 1}
	for i, k := range []int{0, 1, 2, 5, 1000, 1536, 40000} {
		d := [3]byte{byte(i * 91), byte(255 - i), 7}
		a.byte(d[0])
		raw = append(raw, d[0])
		a.repeat3(d, k)
		for range k {
			raw = append(raw, d[:]...)
		}
		a.zeros(k)
		raw = append(raw, make([]byte, k)...)
	}
	if got, want := a.sum(), adler32.Checksum(raw); got != want {
		t.Errorf("adler.sum() = %#x, want %#x", got, want)
	}
}

func TestRenderPNGDeterministic(t *testing.T) {
	a := renderPNG(newPicture("cat", 7, 1024, 1024, false))
	b := renderPNG(newPicture("cat", 7, 1024, 1024, false))
	if !bytes.Equal(a, b) {
		t.Error("same prompt and seed gave different PNGs")
	}
	for _, other := range [][]byte{
		renderPNG(newPicture("cat", 8, 1024, 1024, false)),
		renderPNG(newPicture("dog", 7, 1024, 1024, false)),
		renderPNG(newPicture("cat", 7, 1024, 1024, true)),
	} {
		if bytes.Equal(a, other) {
			t.Error("a different prompt, seed or filtering gave the same PNG")
		}
	}
}

// TestWriteSample writes sample images in every output format, to look at
// or to check with other decoders (libwebp's dwebp and webpinfo read the
// WebP files).
func TestWriteSample(t *testing.T) {
	dir := os.Getenv("SANDBOX_SAMPLE_DIR")
	if dir == "" {
		t.Skip("set SANDBOX_SAMPLE_DIR to write sample images")
	}
	sizes := [][2]int{{1024, 1024}, {2304, 988}, {7, 5}, {1, 1}}
	for i, prompt := range []string{"a lighthouse on a cliff", "a ceramic mug"} {
		for _, f := range []bool{false, true} {
			for _, sz := range sizes {
				for _, format := range []string{"png", "jpeg", "webp"} {
					data, err := encodeImage(newPicture(prompt, 1234, sz[0], sz[1], f), format)
					if err != nil {
						t.Fatal(err)
					}
					name := fmt.Sprintf("%s%s-%dx%d.%s", []string{"a", "b"}[i], map[bool]string{false: "", true: "-filtered"}[f], sz[0], sz[1], format)
					if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
}

func BenchmarkImage1024(b *testing.B) {
	var n int
	for i := 0; b.Loop(); i++ {
		n = len(renderPNG(newPicture("a lighthouse on a cliff", uint32(i), 1024, 1024, false)))
	}
	b.ReportMetric(float64(n), "png-bytes")
}
