package runner

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/pngtext"
	"github.com/batch-tool/batch/internal/stability"
)

// Output sub-folders, relative to Config.OutDir.
const (
	ImagesDir   = "images"   // images whose finish reason is not CONTENT_FILTERED
	FilteredDir = "filtered" // CONTENT_FILTERED images, kept apart
	JournalFile = "journal.jsonl"
)

// maxBase caps a file name's stem in bytes, leaving room under the usual
// 255-byte limit for "-10.webp" and the temp-file decoration.
const maxBase = 200

// tempMarker is in every temp file's name: "." + name + tempMarker + random.
const tempMarker = ".tmp"

// Image is one file a job wrote.
type Image struct {
	Path         string `json:"path"` // relative to the output folder, with forward slashes
	Seed         uint32 `json:"seed"`
	FinishReason string `json:"finish_reason"`
	SHA256       string `json:"sha256"` // hex, of the file as written (text chunk included)
	// RequestID is the API's x-request-id for the answer that carried the
	// image (what Stability support asks for); "" when the server sent none.
	RequestID string `json:"request_id,omitempty"`
}

// fileBase returns a file-name stem for a job id that cannot escape its
// folder or exceed name limits. Manifest ids are already safe and come back
// unchanged; anything else is reduced to [A-Za-z0-9._-] and suffixed with
// a hash of the id, so distinct ids keep distinct names.
func fileBase(id string) string {
	if id != "" && len(id) <= maxBase && filepath.IsLocal(id) && id[0] != '.' &&
		!strings.ContainsAny(id, `/\:`+"\x00") && filepath.Base(id) == id {
		return id
	}
	var b strings.Builder
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	sum := sha256.Sum256([]byte(id))
	stem := strings.TrimLeft(b.String(), ".")
	if len(stem) > maxBase-13 {
		stem = stem[:maxBase-13]
	}
	return stem + "-" + hex.EncodeToString(sum[:6])
}

// imageName is the file name of artifact i (0-based) of a job with the
// given number of samples, ext included: <id>.png, or <id>-1.png,
// <id>-2.png, ...
func imageName(id string, i, samples int, ext string) string {
	if samples > 1 {
		return fileBase(id) + "-" + strconv.Itoa(i+1) + ext
	}
	return fileBase(id) + ext
}

// attemptFiles is the stability.Sink of one attempt: it streams each
// artifact into a temp file under OutDir/images and a SHA-256 hash, a PNG
// through a pngtext.Writer that adds the parameters once the seed is known.
// The files become visible only on commit; discard removes them.
type attemptFiles struct {
	outDir string
	job    manifest.Job
	format fileFormat
	files  []*tempImage
	// local is the first failure to create, write or sync a file here: a
	// local failure, not the API's.
	local error
}

type tempImage struct {
	f    *os.File
	buf  *bufio.Writer
	w    io.Writer       // what the client writes to
	png  *pngtext.Writer // nil when the format carries no text
	sum  hash.Hash       // SHA-256 of the bytes written
	img  Image           // Path set by End
	done bool
}

// localWriter records the first error of the file it writes to, so a full
// disk is told apart from a broken answer.
type localWriter struct {
	w io.Writer
	s *attemptFiles
}

func (lw localWriter) Write(p []byte) (int, error) {
	n, err := lw.w.Write(p)
	if err != nil {
		lw.s.fail(err)
	}
	return n, err
}

// fail records err as the attempt's local failure, if it is the first, and
// returns it.
func (s *attemptFiles) fail(err error) error {
	if s.local == nil {
		s.local = err
	}
	return err
}

var _ stability.Sink = (*attemptFiles)(nil)

// Begin creates the temp file of artifact i.
func (s *attemptFiles) Begin(i int) (io.Writer, error) {
	if i != len(s.files) {
		return nil, fmt.Errorf("artifact %d began out of order", i)
	}
	name := imageName(s.job.ID, i, s.job.Samples, s.format.ext)
	f, err := os.CreateTemp(filepath.Join(s.outDir, ImagesDir), "."+name+tempMarker+"*")
	if err != nil {
		return nil, s.fail(fmt.Errorf("create image file: %w", err))
	}
	t := &tempImage{f: f, buf: bufio.NewWriterSize(localWriter{f, s}, 64<<10), sum: sha256.New()}
	t.w = io.MultiWriter(t.buf, t.sum)
	if s.format.text {
		t.png = pngtext.NewWriter(t.w, "parameters")
		t.w = t.png
	}
	s.files = append(s.files, t)
	return t.w, nil
}

// End adds the parameters text with the artifact's seed to a PNG, and makes
// the temp file durable (flush, fsync, close).
func (s *attemptFiles) End(i int, a stability.Artifact) error {
	if i < 0 || i >= len(s.files) || s.files[i].done {
		return fmt.Errorf("artifact %d ended without beginning", i)
	}
	t := s.files[i]
	if a.Format != "" && a.Format != s.format.name {
		// an async result is taken in any format: the job asked for one
		return fmt.Errorf("artifact %d: the answer is %s, the job asked for %s", i, a.Format, s.format.name)
	}
	if t.png != nil {
		t.png.SetText(Parameters(s.job, a.Seed))
		if err := t.png.Close(); err != nil {
			return fmt.Errorf("artifact %d: %w", i, err)
		}
	}
	if err := t.buf.Flush(); err != nil {
		return s.fail(fmt.Errorf("write image file: %w", err))
	}
	if err := t.f.Sync(); err != nil {
		return s.fail(fmt.Errorf("sync image file: %w", err))
	}
	if err := t.f.Close(); err != nil {
		return s.fail(fmt.Errorf("close image file: %w", err))
	}
	dir := ImagesDir
	if a.FinishReason == stability.FinishContentFiltered {
		dir = FilteredDir
	}
	t.img = Image{
		Path:         dir + "/" + imageName(s.job.ID, i, s.job.Samples, s.format.ext),
		Seed:         a.Seed,
		FinishReason: a.FinishReason,
		SHA256:       hex.EncodeToString(t.sum.Sum(nil)),
		RequestID:    a.RequestID,
	}
	t.done = true
	return nil
}

// commit renames every finished temp file to its final name and syncs the
// folders, so the images are durable before the job is journaled. On error
// the remaining temp files are removed.
func (s *attemptFiles) commit() ([]Image, error) {
	images := make([]Image, 0, len(s.files))
	dirs := map[string]bool{}
	for i, t := range s.files {
		if !t.done {
			s.discard()
			return nil, fmt.Errorf("artifact %d was not completed", i)
		}
		final := filepath.Join(s.outDir, filepath.FromSlash(t.img.Path))
		if err := os.Rename(t.f.Name(), final); err != nil {
			s.discard()
			return nil, fmt.Errorf("save image: %w", err)
		}
		dirs[filepath.Dir(final)] = true
		images = append(images, t.img)
	}
	for _, d := range []string{ImagesDir, FilteredDir} {
		if p := filepath.Join(s.outDir, d); dirs[p] {
			if err := syncDir(p); err != nil {
				return nil, err
			}
		}
	}
	s.files = nil
	return images, nil
}

// discard closes and removes every temp file of the attempt.
func (s *attemptFiles) discard() {
	for _, t := range s.files {
		_ = t.f.Close() // a second Close is harmless
		_ = os.Remove(t.f.Name())
	}
	s.files = nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync folder: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync folder: %w", err)
	}
	return nil
}

// prepareOut creates the output folders and removes temp files a killed
// run left behind.
func prepareOut(outDir string) error {
	for _, d := range []string{ImagesDir, FilteredDir} {
		dir := filepath.Join(outDir, d)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create output folder: %w", err)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("read output folder: %w", err)
		}
		for _, e := range entries {
			if n := e.Name(); strings.HasPrefix(n, ".") && strings.Contains(n, tempMarker) && e.Type().IsRegular() {
				if err := os.Remove(filepath.Join(dir, n)); err != nil {
					return fmt.Errorf("remove stale temp file: %w", err)
				}
			}
		}
	}
	return nil
}
