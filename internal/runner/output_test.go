package runner

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/pngtext"
	"github.com/batch-tool/batch/internal/stability"
)

// newOutFolder returns a new output folder with its image folders, on
// tmpfs where there is one.
func newOutFolder(tb testing.TB, root string) string {
	tb.Helper()
	out, err := os.MkdirTemp(root, "out")
	if err != nil {
		tb.Fatal(err)
	}
	for _, dir := range []string{ImagesDir, FilteredDir} {
		if err := os.MkdirAll(filepath.Join(out, dir), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

// saveImage streams img through a new attemptFiles of job into outDir, as
// the client does, and commits it; it returns the writer the client was
// given, for a test to try after End.
func saveImage(tb testing.TB, outDir string, bufs *imageBuffers, job manifest.Job, img []byte) (stale io.Writer, images []Image) {
	tb.Helper()
	format, err := outputFormat(job)
	if err != nil {
		tb.Fatal(err)
	}
	folder, err := openOutFolder(outDir)
	if err != nil {
		tb.Fatal(err)
	}
	defer folder.Close()
	s := &attemptFiles{folder: folder, job: job, format: format, key: "key-0", bufs: bufs}
	w, err := s.Begin(0)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := w.Write(img); err != nil {
		tb.Fatal(err)
	}
	if err := s.End(0, stability.Artifact{Seed: 1, FinishReason: stability.FinishSuccess, Format: format.name}); err != nil {
		tb.Fatal(err)
	}
	images, err = s.commit()
	if err != nil {
		tb.Fatal(err)
	}
	if len(images) != 1 {
		tb.Fatalf("saved %d images, want 1", len(images))
	}
	return w, images
}

// TestImageWriteAfterEnd: once End gave an image's write buffer back, a
// write to the image is refused, so it can never reach the buffer of an
// image written since, and the saved file is the one End checked.
func TestImageWriteAfterEnd(t *testing.T) {
	v1, _ := testJobs(1)
	tests := []struct {
		name string
		job  manifest.Job
		img  []byte
	}{
		{"png", v1[0], tinyPNG()},
		{"jpeg", stableJob("shot", "generate/core", 0, 0, "output_format", "jpeg"), tinyJPEG()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bufs := new(imageBuffers)
			out := newOutFolder(t, t.TempDir())
			stale, images := saveImage(t, out, bufs, tt.job, tt.img)
			if _, err := stale.Write([]byte("late")); err == nil {
				t.Error("a write after End was taken")
			}
			saveImage(t, newOutFolder(t, t.TempDir()), bufs, tt.job, tt.img) // may take the first image's buffer
			data, err := os.ReadFile(filepath.Join(out, images[0].Path))
			if err != nil {
				t.Fatal(err)
			}
			if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != images[0].SHA256 {
				t.Errorf("the file's SHA-256 is not the one recorded: it changed after End")
			}
		})
	}
}

// BenchmarkSaveImage streams a small PNG into a new image file and saves
// it, with the write buffers lent by a pool as a run does, and without:
// B/op shows the 64 KiB buffer each image would otherwise allocate.
func BenchmarkSaveImage(b *testing.B) {
	for _, tt := range []struct {
		name string
		bufs *imageBuffers
	}{{"pooled", new(imageBuffers)}, {"unpooled", nil}} {
		b.Run(tt.name, func(b *testing.B) {
			out := newOutFolder(b, tmpfsDir(b))
			jobs, _ := testJobs(1)
			img := tinyPNG()
			b.ReportAllocs()
			for b.Loop() {
				saveImage(b, out, tt.bufs, jobs[0], img)
			}
		})
	}
}

// TestImageChecked: an image is checked before it counts, whether the
// write buffer holds it whole (checked in memory) or it is larger (read
// back from its file); a bad one fails End as a malformed answer and
// leaves no file once discarded.
func TestImageChecked(t *testing.T) {
	small := tinyPNG()
	big := noisePNG(t, 256, 256) // over imageBufferSize: read back
	if len(small) >= imageBufferSize || len(big) <= imageBufferSize {
		t.Fatalf("PNGs of %d and %d bytes; want one under %d bytes and one over", len(small), len(big), imageBufferSize)
	}
	job := stableJob("shot", "generate/core", 0, 0)
	tests := []struct {
		name string
		img  []byte
		ok   bool
	}{
		{"small", small, true},
		{"big", big, true},
		{"small, a byte flipped", flipped(small), false},
		{"big, a byte flipped", flipped(big), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := newOutFolder(t, t.TempDir())
			folder, err := openOutFolder(out)
			if err != nil {
				t.Fatal(err)
			}
			defer folder.Close()
			format, _ := outputFormat(job)
			s := &attemptFiles{folder: folder, job: job, format: format, key: "key-0", bufs: new(imageBuffers)}
			w, err := s.Begin(0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(tt.img); err != nil {
				t.Fatal(err)
			}
			err = s.End(0, stability.Artifact{Seed: 1, FinishReason: stability.FinishSuccess, Format: "png"})
			if !tt.ok {
				if !errors.Is(err, stability.ErrMalformedResponse) {
					t.Fatalf("End = %v, want ErrMalformedResponse", err)
				}
				s.discard()
				if left := tempFiles(t, out); len(left) > 0 {
					t.Errorf("temp files left: %v", left)
				}
				return
			}
			if err != nil {
				t.Fatalf("End: %v", err)
			}
			images, err := s.commit()
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join(out, images[0].Path))
			if err != nil {
				t.Fatal(err)
			}
			texts, err := pngtext.ReadText(bytes.NewReader(data))
			if err != nil || len(texts) != 2 {
				t.Errorf("saved file: text chunks %v, %v; want the parameters and the record", texts, err)
			}
		})
	}
}

// flipped is a copy of data with its middle byte changed.
func flipped(data []byte) []byte {
	c := bytes.Clone(data)
	c[len(c)/2] ^= 0xff
	return c
}

// noisePNG is a w×h PNG of random pixels, which deflate cannot shrink.
func noisePNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range img.Pix {
		img.Pix[i] = byte(rng.Uint32())
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
