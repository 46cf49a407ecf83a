package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// matrixRunDir is a run folder with real PNG, JPEG and WebP images: two
// matrix entries (two keys, and three) and a plain job.
const matrixRunDir = "testdata/matrix-run"

// readRunJSON decodes the report.json in dir without ReadRun: a run built
// in memory, which knows no folder.
func readRunJSON(t *testing.T, dir string) *Run {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, RunFile))
	if err != nil {
		t.Fatal(err)
	}
	var r Run
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

// TestMatrixHTMLGolden renders the matrix run's HTML page, thumbnails and
// X/Y plots included, twice: the same bytes each time, and as the golden
// file has them.
func TestMatrixHTMLGolden(t *testing.T) {
	r := mustReadRun(t, matrixRunDir)
	var first, second bytes.Buffer
	if err := WriteRun(&first, FormatHTML, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteRun(&second, FormatHTML, r); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Bytes(), second.Bytes()) {
		t.Errorf("render matrix-run.html twice: outputs differ")
	}
	checkGolden(t, "matrix-run.html", first.Bytes())
}

// TestWriteRunHTMLDir checks where the page's images are read from: the
// folder given to WriteRunHTML, or the one ReadRun read the run from.
func TestWriteRunHTMLDir(t *testing.T) {
	var fromRead, fromDir, fromNowhere bytes.Buffer
	if err := WriteRun(&fromRead, FormatHTML, mustReadRun(t, matrixRunDir)); err != nil {
		t.Fatal(err)
	}
	inMemory := readRunJSON(t, matrixRunDir)
	if err := WriteRunHTML(t.Context(), &fromDir, inMemory, matrixRunDir); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fromDir.Bytes(), fromRead.Bytes()) {
		t.Errorf("WriteRunHTML with the run folder differs from WriteRun of the run ReadRun read there")
	}
	if err := WriteRunHTML(t.Context(), &fromNowhere, inMemory, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	n := len(imagePaths(inMemory.Jobs))
	if got := strings.Count(fromNowhere.String(), `<a class="noimg"`); got != n {
		t.Errorf("WriteRunHTML from a folder without the images: %d placeholders, want %d", got, n)
	}
	if strings.Contains(fromNowhere.String(), "data:image/") {
		t.Errorf("WriteRunHTML from a folder without the images embedded an image")
	}
}

// TestSaveEmbedsImages saves a run built in memory into its output folder:
// report.html embeds every image, read from that folder, and each link
// opens the image file beside the page.
func TestSaveEmbedsImages(t *testing.T) {
	out := t.TempDir()
	r := readRunJSON(t, matrixRunDir)
	for _, p := range imagePaths(r.Jobs) {
		data, err := os.ReadFile(filepath.Join(matrixRunDir, p))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(out, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, p), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := Save(out, r); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(out, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	want := len(imagePaths(r.Jobs))
	srcs := regexp.MustCompile(`<img src="([^"]*)"`).FindAllSubmatch(page, -1)
	if len(srcs) != want {
		t.Errorf("report.html has %d images, want %d", len(srcs), want)
	}
	for _, m := range srcs {
		if !bytes.HasPrefix(m[1], []byte("data:image/")) {
			t.Errorf("report.html: image src %.60q, want a data:image/ URI", m[1])
		}
	}
	links := regexp.MustCompile(`<a (?:class="noimg" )?href="([^"]*)"`).FindAllSubmatch(page, -1)
	if len(links) != want {
		t.Errorf("report.html has %d image links, want %d", len(links), want)
	}
	for _, m := range links {
		if _, err := os.Stat(filepath.Join(out, filepath.FromSlash(string(m[1])))); err != nil {
			t.Errorf("report.html links %s, which does not open beside it: %v", m[1], err)
		}
	}
}
