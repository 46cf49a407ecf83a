package imagefile

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/color/palette"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/batch-tool/batch/internal/pngtext"
)

// pngOf encodes img with image/png.
func pngOf(t *testing.T, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// gradient fills img with varied pixels, so filters and depths all matter.
func gradient[T interface {
	image.Image
	Set(x, y int, c color.Color)
}](img T) T {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			img.Set(x, y, color.NRGBA64{R: uint16(x * 4099), G: uint16(y * 7919), B: uint16(x*y*31 + 5), A: uint16(0xffff - x*97)})
		}
	}
	return img
}

// chunk returns a PNG chunk with its length and CRC.
func chunk(typ string, data []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	out = append(out, typ...)
	out = append(out, data...)
	return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(append([]byte(typ), data...)))
}

// handPNG builds a PNG from raw (filtered) scanline bytes, compressed into
// one IDAT chunk, or split across idats chunks when idats > 1.
func handPNG(w, h int, depth, colorType, interlace byte, raw []byte, idats int) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, uint32(w))
	ihdr = binary.BigEndian.AppendUint32(ihdr, uint32(h))
	ihdr = append(ihdr, depth, colorType, 0, 0, interlace)
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(raw)
	zw.Close()
	out := append([]byte("\x89PNG\r\n\x1a\n"), chunk("IHDR", ihdr)...)
	data := z.Bytes()
	step := (len(data) + idats - 1) / max(idats, 1)
	for len(data) > 0 {
		n := min(step, len(data))
		out = append(out, chunk("IDAT", data[:n])...)
		data = data[n:]
	}
	return append(out, chunk("IEND", nil)...)
}

// adam7Raw returns the raw scanlines of an interlaced 8-bit gray image of
// w×h, each with filter 0 and pixel value x+y.
func adam7Raw(w, h int) []byte {
	var raw []byte
	for _, p := range adam7() {
		for y := p[1]; y < h; y += p[3] {
			if p[0] >= w {
				break
			}
			raw = append(raw, 0)
			for x := p[0]; x < w; x += p[2] {
				raw = append(raw, byte(x+y))
			}
		}
	}
	return raw
}

func validFiles(t *testing.T) map[string]struct {
	data []byte
	want Info
} {
	t.Helper()
	files := map[string]struct {
		data []byte
		want Info
	}{}
	add := func(name string, data []byte, want Info) {
		files[name] = struct {
			data []byte
			want Info
		}{data, want}
	}
	r := image.Rect(0, 0, 37, 11)
	add("png gray", pngOf(t, gradient(image.NewGray(r))), Info{PNG, 37, 11})
	add("png gray16", pngOf(t, gradient(image.NewGray16(r))), Info{PNG, 37, 11})
	add("png rgba", pngOf(t, gradient(image.NewRGBA(r))), Info{PNG, 37, 11})
	add("png nrgba64", pngOf(t, gradient(image.NewNRGBA64(r))), Info{PNG, 37, 11})
	opaque := gradient(image.NewRGBA(r))
	for i := 3; i < len(opaque.Pix); i += 4 {
		opaque.Pix[i] = 0xff
	}
	add("png opaque rgb", pngOf(t, opaque), Info{PNG, 37, 11})
	for _, n := range []int{2, 4, 16, 256} { // bit depths 1, 2, 4, 8
		add("png paletted "+string(rune('0'+n%10)), pngOf(t, gradient(image.NewPaletted(r, palette.Plan9[:n]))), Info{PNG, 37, 11})
	}
	add("png 1×1", pngOf(t, image.NewGray(image.Rect(0, 0, 1, 1))), Info{PNG, 1, 1})
	add("png interlaced 13×9", handPNG(13, 9, 8, 0, 1, adam7Raw(13, 9), 1), Info{PNG, 13, 9})
	add("png interlaced 3×2, empty passes", handPNG(3, 2, 8, 0, 1, adam7Raw(3, 2), 1), Info{PNG, 3, 2})
	add("png image data in 5 IDATs", handPNG(13, 9, 8, 0, 1, adam7Raw(13, 9), 5), Info{PNG, 13, 9})
	var withText bytes.Buffer
	tw := pngtext.NewWriter(&withText, "parameters")
	tw.Write(pngOf(t, gradient(image.NewRGBA(r))))
	tw.SetText("a cat, seed 42")
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	add("png with a text chunk", withText.Bytes(), Info{PNG, 37, 11})
	var j bytes.Buffer
	if err := jpeg.Encode(&j, gradient(image.NewRGBA(image.Rect(0, 0, 64, 48))), nil); err != nil {
		t.Fatal(err)
	}
	add("jpeg", bytes.Clone(j.Bytes()), Info{JPEG, 64, 48})
	j.Reset()
	if err := jpeg.Encode(&j, gradient(image.NewGray(image.Rect(0, 0, 17, 5))), nil); err != nil {
		t.Fatal(err)
	}
	add("jpeg gray", j.Bytes(), Info{JPEG, 17, 5})
	for name, want := range map[string]Info{"lossless-97x41.webp": {WebP, 97, 41}, "lossy-97x41.webp": {WebP, 97, 41}, "alpha-33x300.webp": {WebP, 33, 300}} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		add(name, data, want)
	}
	return files
}

func TestVerifyAccepts(t *testing.T) {
	reused := bufio.NewReaderSize(nil, 16) // the smallest buffer bufio makes
	for name, f := range validFiles(t) {
		t.Run(name, func(t *testing.T) {
			got, err := Verify(bytes.NewReader(f.data))
			if err != nil || got != f.want {
				t.Fatalf("Verify = %+v, %v; want %+v", got, err, f.want)
			}
			// A caller's *bufio.Reader is read through as it is, whatever
			// was read through it before.
			reused.Reset(bytes.NewReader(f.data))
			if got, err := Verify(reused); err != nil || got != f.want {
				t.Fatalf("Verify(a reused *bufio.Reader) = %+v, %v; want %+v", got, err, f.want)
			}
			if f.want.Format == PNG { // the hand-made files must be PNGs to the standard library too
				if _, err := png.Decode(bytes.NewReader(f.data)); err != nil {
					t.Fatalf("png.Decode: %v", err)
				}
			}
		})
	}
}

// TestVerifyRejectsEveryTruncation cuts every valid file at every length:
// none is complete.
func TestVerifyRejectsEveryTruncation(t *testing.T) {
	for name, f := range validFiles(t) {
		t.Run(name, func(t *testing.T) {
			for n := range len(f.data) {
				if info, err := Verify(bytes.NewReader(f.data[:n])); err == nil {
					t.Fatalf("Verify(first %d of %d bytes) = %+v, want an error", n, len(f.data), info)
				}
			}
		})
	}
}

// TestVerifyPNGAgreesWithDecode flips each byte of PNGs: whatever
// png.Decode refuses, Verify refuses too.
func TestVerifyPNGAgreesWithDecode(t *testing.T) {
	files := validFiles(t)
	for _, name := range []string{"png rgba", "png paletted 2", "png interlaced 13×9", "png image data in 5 IDATs"} {
		data := files[name].data
		for i := 8; i < len(data); i++ {
			mut := bytes.Clone(data)
			mut[i] ^= 0x5a
			_, derr := png.Decode(bytes.NewReader(mut))
			_, verr := Verify(bytes.NewReader(mut))
			if derr != nil && verr == nil {
				t.Errorf("%s with byte %d flipped: png.Decode: %v, Verify accepts", name, i, derr)
			}
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	files := validFiles(t)
	pngData, webp := files["png rgba"].data, files["lossless-97x41.webp"].data
	vp8x := files["alpha-33x300.webp"].data
	row := func(n int) []byte { return make([]byte, 1+n) }
	concat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	riffSize := func(data []byte, delta int) []byte {
		out := bytes.Clone(data)
		binary.LittleEndian.PutUint32(out[4:], uint32(len(data)-8+delta))
		return out
	}
	ihdr := func(w, h uint32, depth, ct byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, w)
		b = binary.BigEndian.AppendUint32(b, h)
		return append(b, depth, ct, 0, 0, 0)
	}
	sig := []byte("\x89PNG\r\n\x1a\n")
	tests := []struct {
		name       string
		data       []byte
		want       string
		wantFormat bool
	}{
		{"empty", nil, "", true},
		{"gif", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), "", true},
		{"png with data after IEND", append(bytes.Clone(pngData), 0), "data after the IEND chunk", false},
		{"png with a scanline too many", handPNG(4, 2, 8, 0, 0, concat(row(4), row(4), row(4)), 1), "more than the scanlines", false},
		{"png with a scanline too few", handPNG(4, 2, 8, 0, 0, row(4), 1), "truncated", false},
		{"png with a bad filter type", handPNG(4, 1, 8, 0, 0, []byte{5, 0, 0, 0, 0}, 1), "filter type 5", false},
		{"png interlaced, data of a plain one", handPNG(13, 9, 8, 0, 1, bytes.Repeat(row(13), 9), 1), "truncated", false},
		{"png over the pixel cap", concat(sig, chunk("IHDR", ihdr(1<<14, 1<<13, 8, 0))), "over the", false},
		{"png bit depth 16 with a palette", concat(sig, chunk("IHDR", ihdr(1, 1, 16, 3))), "color type 3 with bit depth 16", false},
		{"png palette image without PLTE", handPNG(4, 1, 8, 3, 0, row(4), 1), "no PLTE chunk", false},
		{"png without IDAT", concat(sig, chunk("IHDR", ihdr(1, 1, 8, 0)), chunk("IEND", nil)), "no IDAT chunk", false},
		{"png IHDR not first", concat(sig, chunk("tEXt", []byte("a\x00b")), chunk("IHDR", ihdr(1, 1, 8, 0))), "no IHDR chunk first", false},
		{"webp RIFF size short of the data", riffSize(webp, -2), "goes past the RIFF size", false},
		{"webp RIFF size past the data", riffSize(webp, 2), "ends inside a chunk header", false},
		{"webp RIFF size far past the data", riffSize(webp, 100), "truncated", false},
		{"webp with a byte after", riffSize(append(bytes.Clone(webp), 0), -1), "data after the RIFF size", false},
		{"webp VP8X and no image", riffSize(vp8x[:30], 0), "no image chunk", false},
		{"webp chunk past the RIFF size", riffSize(concat(webp[:12], []byte("VP8L\xff\x00\x00\x00"), webp[20:]), 0), "goes past the RIFF size", false},
		{"webp unknown first chunk", riffSize(concat(webp[:12], []byte("ICCP\x02\x00\x00\x00ab"), webp[12:]), 0), `unknown first chunk "ICCP"`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := Verify(bytes.NewReader(tt.data))
			if err == nil {
				t.Fatalf("Verify = %+v, want an error", info)
			}
			if got := errors.Is(err, ErrFormat); got != tt.wantFormat {
				t.Errorf("Verify error %v: errors.Is(ErrFormat) = %v, want %v", err, got, tt.wantFormat)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Verify error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	for _, name := range []string{"lossless-97x41.webp", "alpha-33x300.webp"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add(handPNG(13, 9, 8, 0, 1, adam7Raw(13, 9), 3))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := Verify(bytes.NewReader(data))
		if err != nil {
			return
		}
		if info.Width <= 0 || info.Height <= 0 || int64(info.Width)*int64(info.Height) > MaxPixels {
			t.Fatalf("Verify = %+v with no error", info)
		}
		if info.Format == PNG {
			if _, err := png.Decode(bytes.NewReader(data)); err != nil {
				t.Fatalf("Verify accepts a PNG png.Decode refuses: %v", err)
			}
		}
	})
}
