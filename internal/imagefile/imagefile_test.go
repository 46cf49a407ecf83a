package imagefile

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

func encoded(t *testing.T, f Format, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	img.Set(0, 0, color.NRGBA{R: 200, A: 255})
	var b bytes.Buffer
	var err error
	switch f {
	case PNG:
		err = png.Encode(&b, img)
	case JPEG:
		err = jpeg.Encode(&b, img, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRead(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want Info
	}{
		{"png", encoded(t, PNG, 300, 17), Info{PNG, 300, 17}},
		{"jpeg", encoded(t, JPEG, 64, 1536), Info{JPEG, 64, 1536}},
	}
	for _, file := range []struct {
		name string
		want Info
	}{
		{"lossless-97x41.webp", Info{WebP, 97, 41}},
		{"lossy-97x41.webp", Info{WebP, 97, 41}},
		{"alpha-33x300.webp", Info{WebP, 33, 300}},
	} {
		data, err := os.ReadFile(filepath.Join("testdata", file.name))
		if err != nil {
			t.Fatal(err)
		}
		tests = append(tests, struct {
			name string
			data []byte
			want Info
		}{file.name, data, file.want})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Read(bytes.NewReader(tt.data))
			if err != nil || got != tt.want {
				t.Fatalf("Read = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestReadRejects(t *testing.T) {
	webp, err := os.ReadFile(filepath.Join("testdata", "lossless-97x41.webp"))
	if err != nil {
		t.Fatal(err)
	}
	pngData := encoded(t, PNG, 8, 8)
	tests := []struct {
		name       string
		data       []byte
		wantFormat bool // the error wraps ErrFormat
	}{
		{"empty", nil, true},
		{"text", []byte("hello, this is not an image"), true},
		{"gif", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), true},
		{"truncated png", pngData[:20], false},
		{"truncated webp", webp[:24], false},
		{"webp with another chunk first", append(append([]byte{}, webp[:12]...), []byte("ICCP\x04\x00\x00\x00abcdxxxxxxxxxxxx")...), false},
		{"webp with a bad VP8L signature", append(append(append([]byte{}, webp[:20]...), 0x00), webp[21:]...), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := Read(bytes.NewReader(tt.data))
			if err == nil {
				t.Fatalf("Read = %+v, want an error", info)
			}
			if got := errors.Is(err, ErrFormat); got != tt.wantFormat {
				t.Errorf("Read error %v: errors.Is(ErrFormat) = %v, want %v", err, got, tt.wantFormat)
			}
		})
	}
}

func TestStat(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.jpg")
	data := encoded(t, JPEG, 40, 30)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	info, size, err := Stat(path)
	if err != nil || info != (Info{JPEG, 40, 30}) || size != int64(len(data)) {
		t.Fatalf("Stat = %+v, %d, %v", info, size, err)
	}
	if _, _, err := Stat(dir); err == nil {
		t.Error("Stat(a folder) succeeded, want an error")
	}
	if _, _, err := Stat(filepath.Join(dir, "missing.png")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Stat(missing) = %v, want ErrNotExist", err)
	}
}

func TestFormat(t *testing.T) {
	for _, tt := range []struct {
		f        Format
		ext, typ string
	}{{PNG, ".png", "image/png"}, {JPEG, ".jpg", "image/jpeg"}, {WebP, ".webp", "image/webp"}} {
		if tt.f.Ext() != tt.ext || tt.f.ContentType() != tt.typ {
			t.Errorf("%s: Ext %q ContentType %q, want %q %q", tt.f, tt.f.Ext(), tt.f.ContentType(), tt.ext, tt.typ)
		}
	}
}

func FuzzRead(f *testing.F) {
	for _, name := range []string{"lossless-97x41.webp", "lossy-97x41.webp", "alpha-33x300.webp"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("\x89PNG\r\n\x1a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := Read(bytes.NewReader(data))
		if err == nil && (info.Width <= 0 || info.Height <= 0 || info.Format == "") {
			t.Fatalf("Read = %+v with no error", info)
		}
	})
}
