package pngtext

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"testing"
)

func testPNG(t *testing.T) ([]byte, image.Image) {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, 37, 23))
	for y := range 23 {
		for x := range 37 {
			img.Set(x, y, color.NRGBA{uint8(x * 7), uint8(y * 11), uint8(x ^ y), 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), img
}

// writeSplit writes b to w in pieces of random sizes up to max.
func writeSplit(t *testing.T, w *Writer, b []byte, rng *rand.Rand, maxPiece int) {
	t.Helper()
	for len(b) > 0 {
		k := min(len(b), 1+rng.IntN(maxPiece))
		n, err := w.Write(b[:k])
		if err != nil || n != k {
			t.Fatalf("Write(%d bytes) = %d, %v", k, n, err)
		}
		b = b[k:]
	}
}

func TestRoundTrip(t *testing.T) {
	src, img := testPNG(t)
	tests := []struct {
		name     string
		text     string
		want     string
		maxPiece int
	}{
		{"one write", "a cat\nSteps: 30, Seed: 1", "a cat\nSteps: 30, Seed: 1", len(src)},
		{"byte by byte", "x", "x", 1},
		{"random pieces", "caf\u00e9 au lait", "caf\u00e9 au lait", 13},
		{"outside latin-1", "cat \u732b", "cat ?", 50},
		{"empty text", "", "", 7},
		{"nul in text", "a\x00b", "a?b", 9},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			w := NewWriter(&out, "parameters")
			writeSplit(t, w, src, rand.New(rand.NewPCG(uint64(i), 1)), tt.maxPiece)
			// all but the IEND chunk (12 bytes) must already have been forwarded
			if got, want := out.Len(), len(src)-12; got != want {
				t.Errorf("forwarded %d bytes before Close, want %d", got, want)
			}
			w.SetText(tt.text) // late, after the image bytes
			if err := w.Close(); err != nil {
				t.Fatalf("Close() = %v", err)
			}
			got, err := png.Decode(bytes.NewReader(out.Bytes()))
			if err != nil {
				t.Fatalf("png.Decode = %v", err)
			}
			if !got.Bounds().Eq(img.Bounds()) {
				t.Fatalf("bounds = %v, want %v", got.Bounds(), img.Bounds())
			}
			for y := range 23 {
				for x := range 37 {
					if g, w := color.NRGBAModel.Convert(got.At(x, y)), img.At(x, y); g != w {
						t.Fatalf("pixel (%d,%d) = %v, want %v", x, y, g, w)
					}
				}
			}
			texts, err := ReadText(bytes.NewReader(out.Bytes()))
			if err != nil {
				t.Fatalf("ReadText = %v", err)
			}
			want := []Text{{"parameters", tt.want}}
			if len(texts) != 1 || texts[0] != want[0] {
				t.Errorf("ReadText = %q, want %q", texts, want)
			}
			if !bytes.HasSuffix(out.Bytes(), src[len(src)-12:]) {
				t.Errorf("output does not end with the original IEND chunk")
			}
		})
	}
}

func TestNoTextPassesThrough(t *testing.T) {
	src, _ := testPNG(t)
	var out bytes.Buffer
	w := NewWriter(&out, "parameters")
	writeSplit(t, w, src, rand.New(rand.NewPCG(7, 7)), 100)
	if err := w.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if !bytes.Equal(out.Bytes(), src) {
		t.Errorf("output differs from input without SetText")
	}
	texts, err := ReadText(bytes.NewReader(out.Bytes()))
	if err != nil || len(texts) != 0 {
		t.Errorf("ReadText = %q, %v; want none", texts, err)
	}
}

func TestErrors(t *testing.T) {
	src, _ := testPNG(t)
	t.Run("not png", func(t *testing.T) {
		w := NewWriter(new(bytes.Buffer), "parameters")
		if _, err := w.Write([]byte("GIF89a....")); !errors.Is(err, ErrNotPNG) {
			t.Errorf("Write = %v, want ErrNotPNG", err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		w := NewWriter(new(bytes.Buffer), "parameters")
		if _, err := w.Write(src[:len(src)-20]); err != nil {
			t.Fatal(err)
		}
		w.SetText("x")
		if err := w.Close(); err == nil {
			t.Errorf("Close() of truncated PNG = nil, want error")
		}
	})
	t.Run("data after IEND", func(t *testing.T) {
		w := NewWriter(new(bytes.Buffer), "parameters")
		if _, err := w.Write(append(bytes.Clone(src), 0)); err == nil {
			t.Errorf("Write with trailing byte = nil, want error")
		}
	})
	t.Run("bad keyword", func(t *testing.T) {
		w := NewWriter(new(bytes.Buffer), "")
		w.Write(src)
		w.SetText("x")
		if err := w.Close(); err == nil {
			t.Errorf("Close() with empty keyword = nil, want error")
		}
	})
	t.Run("bad crc", func(t *testing.T) {
		var out bytes.Buffer
		w := NewWriter(&out, "parameters")
		w.Write(src)
		w.SetText("hello")
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		b := out.Bytes()
		i := bytes.Index(b, []byte("hello"))
		b[i] = 'j'
		if _, err := ReadText(bytes.NewReader(b)); err == nil {
			t.Errorf("ReadText with corrupted tEXt = nil, want CRC error")
		}
	})
}
