package report

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFit(t *testing.T) {
	tests := []struct {
		w, h, wantW, wantH int
	}{
		{256, 256, 256, 256},   // fits
		{48, 30, 48, 30},       // never enlarged
		{1024, 1024, 256, 256}, // square
		{1344, 768, 256, 146},  // 16:9, rounded
		{768, 1344, 146, 256},  // 9:16
		{4096, 1, 256, 1},      // at least a pixel
		{300, 200, 256, 171},
	}
	for _, tt := range tests {
		if w, h := fit(tt.w, tt.h, 256); w != tt.wantW || h != tt.wantH {
			t.Errorf("fit(%d, %d, 256) = %d, %d, want %d, %d", tt.w, tt.h, w, h, tt.wantW, tt.wantH)
		}
	}
}

// rgba makes a w×h premultiplied image from its pixels, row by row.
func rgba(w, h int, px ...color.RGBA) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i, c := range px {
		img.SetRGBA(i%w, i/w, c)
	}
	return img
}

func TestBoxScale(t *testing.T) {
	red, blue := color.RGBA{200, 0, 0, 255}, color.RGBA{0, 0, 100, 255}
	clear, halfRed := color.RGBA{}, color.RGBA{100, 0, 0, 128}
	tests := []struct {
		name string
		src  *image.RGBA
		w, h int
		want []color.RGBA
	}{
		{"same size", rgba(2, 1, red, blue), 2, 1, []color.RGBA{red, blue}},
		{"2x2 to 1x1 averages", rgba(2, 2, red, blue, blue, red), 1, 1, []color.RGBA{{100, 0, 50, 255}}},
		{"4x1 to 2x1 averages pairs", rgba(4, 1, red, red, red, blue), 2, 1, []color.RGBA{red, {100, 0, 50, 255}}},
		// 3 columns into 2: columns 0 and 1–2 (x·3/2 rounds down).
		{"uneven blocks", rgba(3, 1, red, blue, blue), 2, 1, []color.RGBA{red, blue}},
		// Premultiplied: a transparent pixel does not darken a red one,
		// it halves its coverage.
		{"transparent", rgba(2, 1, red, clear), 1, 1, []color.RGBA{{100, 0, 0, 128}}},
		{"translucent", rgba(2, 1, halfRed, halfRed), 1, 1, []color.RGBA{halfRed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := boxScale(tt.src, tt.w, tt.h)
			if got.Rect.Dx() != tt.w || got.Rect.Dy() != tt.h {
				t.Fatalf("boxScale size = %v, want %dx%d", got.Rect, tt.w, tt.h)
			}
			for i, want := range tt.want {
				if c := got.RGBAAt(i%tt.w, i/tt.w); c != want {
					t.Errorf("boxScale pixel %d = %v, want %v", i, c, want)
				}
			}
		})
	}
}

func TestFlatten(t *testing.T) {
	// 16×1: x 0–7 is a light square of the checkerboard, 8–15 a dark one.
	img := image.NewRGBA(image.Rect(0, 0, 16, 1))
	img.SetRGBA(0, 0, color.RGBA{10, 20, 30, 255}) // opaque: kept
	img.SetRGBA(1, 0, color.RGBA{})                // transparent on light
	img.SetRGBA(9, 0, color.RGBA{})                // transparent on dark
	img.SetRGBA(10, 0, color.RGBA{100, 0, 0, 128}) // half red on dark
	flatten(img)
	for _, tt := range []struct {
		x    int
		want color.RGBA
	}{
		{0, color.RGBA{10, 20, 30, 255}},
		{1, color.RGBA{255, 255, 255, 255}},
		{9, color.RGBA{214, 214, 214, 255}},
		{10, color.RGBA{100 + 107, 107, 107, 255}}, // 214·127/255 = 106.6 rounds to 107
	} {
		if c := img.RGBAAt(tt.x, 0); c != tt.want {
			t.Errorf("flatten pixel %d = %v, want %v", tt.x, c, tt.want)
		}
	}
}

// hugePNG writes a PNG whose header claims w×h pixels, with the data of a
// 1×1 image: enough for a header check, not for a decoder.
func hugePNG(t *testing.T, path string, w, h uint32) {
	t.Helper()
	writeImage(t, path, 1, 1, 0)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// decodeURI returns the media type and bytes of a base64 data: URI.
func decodeURI(t *testing.T, uri string) (string, []byte) {
	t.Helper()
	head, data, ok := strings.Cut(strings.TrimPrefix(uri, "data:"), ";base64,")
	if !ok || !strings.HasPrefix(uri, "data:") {
		t.Fatalf("%.40q… is not a base64 data: URI", uri)
	}
	b, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		t.Fatal(err)
	}
	return head, b
}

func TestThumbnail(t *testing.T) {
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	writeImage(t, path("wide.png"), 600, 300, 1)
	writeImage(t, path("small.jpg"), 40, 60, 2)
	hugePNG(t, path("huge.png"), 10000, 10000)
	writeImage(t, path("cut.png"), 16, 16, 4)
	if err := os.Truncate(path("cut.png"), 60); err != nil { // the header, then not all the pixels
		t.Fatal(err)
	}
	webp, err := os.ReadFile(filepath.Join("testdata", "matrix-run", "images", "sizes-1x1-1-webp.webp"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"small.webp": webp,
		"notes.txt":  []byte("not an image at all\n"),
	} {
		if err := os.WriteFile(path(name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(path("folder.png"), 0o755); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		maxWebP  int64
		wantType string // media type of the data: URI; "" for a placeholder
		wantW    int    // the file's width, then the thumbnail's
		wantH    int
		thumbW   int
		thumbH   int
		wantWhy  string
	}{
		{"wide.png", maxEmbedWebP, "image/jpeg", 600, 300, 256, 128, ""},
		{"small.jpg", maxEmbedWebP, "image/jpeg", 40, 60, 40, 60, ""},
		{"small.webp", maxEmbedWebP, "image/webp", 48, 48, 0, 0, ""},
		{"small.webp", int64(len(webp)) - 1, "", 48, 48, 0, 0, "WebP too large to embed"},
		{"huge.png", maxEmbedWebP, "", 10000, 10000, 0, 0, "too large to preview"},
		{"cut.png", maxEmbedWebP, "", 16, 16, 0, 0, "unreadable"},
		{"notes.txt", maxEmbedWebP, "", 0, 0, 0, 0, "not an image"},
		{"folder.png", maxEmbedWebP, "", 0, 0, 0, 0, "not a file"},
		{"gone.png", maxEmbedWebP, "", 0, 0, 0, 0, "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := embedder{dir: dir, maxWebP: tt.maxWebP}.thumbnail(path(tt.name))
			if got.why != tt.wantWhy || got.width != tt.wantW || got.height != tt.wantH {
				t.Errorf("thumbnail(%s) = why %q, size %dx%d; want why %q, size %dx%d",
					tt.name, got.why, got.width, got.height, tt.wantWhy, tt.wantW, tt.wantH)
			}
			if tt.wantType == "" {
				if got.src != "" {
					t.Errorf("thumbnail(%s) has a data URI, want a placeholder", tt.name)
				}
				return
			}
			mediaType, data := decodeURI(t, string(got.src))
			if mediaType != tt.wantType {
				t.Fatalf("thumbnail(%s) is %s, want %s", tt.name, mediaType, tt.wantType)
			}
			if mediaType == "image/webp" {
				if !bytes.Equal(data, webp) {
					t.Errorf("thumbnail(%s) changed the WebP file's bytes", tt.name)
				}
				return
			}
			img, err := jpeg.Decode(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("thumbnail(%s) is not a JPEG: %v", tt.name, err)
			}
			if b := img.Bounds(); b.Dx() != tt.thumbW || b.Dy() != tt.thumbH {
				t.Errorf("thumbnail(%s) is %dx%d, want %dx%d", tt.name, b.Dx(), b.Dy(), tt.thumbW, tt.thumbH)
			}
		})
	}
}

// TestThumbnailsDeterministic makes every thumbnail of a run twice and
// checks each is the same, in the jobs' and images' order.
func TestThumbnailsDeterministic(t *testing.T) {
	r := mustReadRun(t, filepath.Join("testdata", "matrix-run"))
	e := embedder{dir: r.dir, maxWebP: maxEmbedWebP}
	first, err := e.thumbnails(t.Context(), r.Jobs)
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.thumbnails(t.Context(), r.Jobs)
	if err != nil {
		t.Fatal(err)
	}
	for i, j := range r.Jobs {
		if len(first[i]) != len(j.Images) {
			t.Fatalf("job %s: %d thumbnails, want %d", j.ID, len(first[i]), len(j.Images))
		}
		for k, img := range j.Images {
			want := e.thumbnail(filepath.Join(r.dir, img.Path))
			if first[i][k] != want || second[i][k] != want {
				t.Errorf("job %s image %d: thumbnails differ between runs or from %s's own", j.ID, k, img.Path)
			}
			if want.src == "" {
				t.Errorf("job %s image %s: no thumbnail (%s)", j.ID, img.Path, want.why)
			}
		}
	}
}

func TestThumbnailsCancelled(t *testing.T) {
	r := mustReadRun(t, filepath.Join("testdata", "matrix-run"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := embedder{dir: r.dir, maxWebP: maxEmbedWebP}.thumbnails(ctx, r.Jobs)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("thumbnails with a cancelled context: error %v, want context.Canceled", err)
	}
	var buf bytes.Buffer
	if err := WriteRunHTML(ctx, &buf, r, r.dir); !errors.Is(err, context.Canceled) || buf.Len() != 0 {
		t.Errorf("WriteRunHTML with a cancelled context: error %v and %d bytes, want context.Canceled and none", err, buf.Len())
	}
}

// BenchmarkThumbnail makes the thumbnail of a 1024×1024 PNG, as the
// report does for every image of a run, and reports its size.
func BenchmarkThumbnail(b *testing.B) {
	path := filepath.Join(b.TempDir(), "big.png")
	writeImage(b, path, 1024, 1024, 3)
	e := embedder{maxWebP: maxEmbedWebP}
	var n int
	for b.Loop() {
		n = len(e.thumbnail(path).src)
	}
	b.ReportMetric(float64(n), "URI-bytes")
}

// TestThumbnailsCap: past maxEmbedded images, a report shows images by
// their path instead of decoding them.
func TestThumbnailsCap(t *testing.T) {
	jobs := make([]RunJob, maxEmbedded+1)
	for i := range jobs {
		jobs[i] = RunJob{ID: fmt.Sprint("j", i), Images: []Image{{Path: fmt.Sprintf("images/j%d.png", i)}}}
	}
	got, err := embedder{dir: t.TempDir(), maxWebP: maxEmbedWebP}.thumbnails(t.Context(), jobs)
	if err != nil {
		t.Fatal(err)
	}
	if first := got[0][0]; first.src != "" || first.why == "" {
		t.Errorf("first image = %+v, want a placeholder for a missing file", first)
	}
	if last := got[maxEmbedded][0]; string(last.src) != jobs[maxEmbedded].Images[0].Path {
		t.Errorf("image %d = %+v, want it shown by its path", maxEmbedded+1, last)
	}
}
