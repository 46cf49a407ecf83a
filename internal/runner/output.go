package runner

import (
	"bufio"
	"bytes"
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
	"sync"

	"github.com/batch-tool/batch/internal/imagefile"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/outdir"
	"github.com/batch-tool/batch/internal/pngtext"
	"github.com/batch-tool/batch/internal/stability"
)

// Output sub-folders, relative to Config.OutDir.
const (
	ImagesDir   = outdir.ImagesDir   // images whose finish reason is not CONTENT_FILTERED
	FilteredDir = outdir.FilteredDir // CONTENT_FILTERED images, kept apart
	JournalFile = "journal.jsonl"
)

// maxBase caps a file name's stem in bytes, leaving room under the usual
// 255-byte limit for "-10.webp" and the temp-file decoration
// (".NAME.tmp-PID-RANDOM", 33 bytes at most).
const maxBase = 200

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

// imageBufferSize is the write buffer of an image file, in bytes.
const imageBufferSize = 64 << 10

// imageBuffers lends the write buffers image files fill, so that a run of
// many jobs reuses as many as it has images in progress instead of
// allocating one per image. The zero value is ready to use, and a nil
// *imageBuffers lends nothing: each buffer is allocated. It is safe for
// concurrent use.
type imageBuffers struct {
	pool    sync.Pool // *imageBuffer of imageBufferSize bytes
	readers sync.Pool // *bufio.Reader, to read images back (attemptFiles.verify)
}

// get lends a buffer writing to w; give it back with put once nothing
// writes to it.
func (p *imageBuffers) get(w io.Writer) *imageBuffer {
	if p != nil {
		if b, ok := p.pool.Get().(*imageBuffer); ok {
			b.w = w
			return b
		}
	}
	return &imageBuffer{buf: make([]byte, 0, imageBufferSize), w: w}
}

func (p *imageBuffers) put(b *imageBuffer) {
	if p != nil {
		b.buf, b.w, b.spilled = b.buf[:0], nil, false // drop what was not written, and the file
		p.pool.Put(b)
	}
}

// imageBuffer is an image file's write buffer, as a bufio.Writer is, but
// for one thing: until it first fills, the image is all in it (held), so
// that an image smaller than the buffer is checked in memory and written
// to its file in one piece.
type imageBuffer struct {
	buf     []byte    // cap imageBufferSize
	w       io.Writer // the file
	spilled bool      // some bytes went to w already: buf does not hold the image
}

func (b *imageBuffer) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if len(b.buf) == cap(b.buf) {
			if err := b.Flush(); err != nil {
				return n - len(p), err
			}
		}
		k := copy(b.buf[len(b.buf):cap(b.buf)], p)
		b.buf, p = b.buf[:len(b.buf)+k], p[k:]
	}
	return n, nil
}

// held returns the whole image when it has all been written to the buffer
// and none of it to the file yet; nil otherwise.
func (b *imageBuffer) held() []byte {
	if b.spilled {
		return nil
	}
	return b.buf
}

// Flush writes what the buffer holds to the file.
func (b *imageBuffer) Flush() error {
	if len(b.buf) == 0 {
		return nil
	}
	b.spilled = true
	_, err := b.w.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

// reader lends a read buffer reading r; give it back with putReader.
func (p *imageBuffers) reader(r io.Reader) *bufio.Reader {
	if p != nil {
		if b, ok := p.readers.Get().(*bufio.Reader); ok {
			b.Reset(r)
			return b
		}
	}
	return bufio.NewReader(r)
}

func (p *imageBuffers) putReader(b *bufio.Reader) {
	if p != nil {
		b.Reset(nil)
		p.readers.Put(b)
	}
}

// outFolder is a run's output folder as its attempts write images into
// it: the folder and its images/ folder, each opened once for the whole
// run (outdir.Dir.Sub), so that a file made in images/ does not walk the
// path there again. It is safe for concurrent use.
type outFolder struct {
	out    *outdir.Dir
	images *outdir.Dir // out's ImagesDir
}

// openOutFolder opens the output folder path, whose images/ folder
// exists (see prepareOut).
func openOutFolder(path string) (*outFolder, error) {
	out, err := outdir.OpenDir(path)
	if err != nil {
		return nil, err
	}
	images, err := out.Sub(ImagesDir)
	if err != nil {
		out.Close()
		return nil, err
	}
	return &outFolder{out: out, images: images}, nil
}

// Close closes both folders.
func (o *outFolder) Close() error {
	return errors.Join(o.images.Close(), o.out.Close())
}

// place returns the folder rel (slash-separated, relative to the output
// folder) is best reached through, and rel's name in it: images/ and the
// file's base name for a file there, else the output folder and rel.
func (o *outFolder) place(rel string) (*outdir.Dir, string) {
	if name, ok := strings.CutPrefix(rel, ImagesDir+"/"); ok && !strings.Contains(name, "/") {
		return o.images, name
	}
	return o.out, rel
}

// attemptFiles is the stability.Sink of one attempt: it streams each
// artifact into a temp file under OutDir/images and a SHA-256 hash, a PNG
// through a pngtext.Writer that adds the parameters once the seed is known.
// The files become visible only on commit; discard removes them. Every file
// operation goes through the run's outFolder, so none follows a symbolic
// link inside OutDir or reaches outside it.
type attemptFiles struct {
	folder *outFolder
	job    manifest.Job
	format fileFormat
	files  []*tempImage
	// key is the journal Key of the attempt's request, recorded in each
	// image (see imageRecord).
	key string
	// failWrite, when set, is asked before each write to an image file
	// and fails it with its error (Config.failWrite).
	failWrite func(name string) error
	// bufs lends the files' write buffers; nil allocates one per file.
	bufs *imageBuffers
	// local is the first failure to create, write or sync a file here: a
	// local failure, not the API's.
	local error
}

type tempImage struct {
	f    *os.File
	tmp  string          // the temp file's name in images/; "" once renamed
	buf  *imageBuffer    // lent by attemptFiles.bufs until End flushed it; nil after
	w    io.Writer       // what the client writes to
	png  *pngtext.Writer // nil when the format carries no text
	mark *imageMark      // the image's record, see imageRecord
	sum  hash.Hash       // SHA-256 of the bytes written
	img  Image           // Path set by End
	done bool
}

// errImageEnded refuses a write to an image whose buffer went back to the
// pool.
var errImageEnded = errors.New("image written after it ended")

// bufferedFile writes to an image's lent buffer while it has one, so a
// write after End can never reach a buffer lent to another image since.
type bufferedFile struct{ t *tempImage }

func (b bufferedFile) Write(p []byte) (int, error) {
	if b.t.buf == nil {
		return 0, errImageEnded
	}
	return b.t.buf.Write(p)
}

// localWriter records the first error of the file it writes to, so a full
// disk is told apart from a broken answer.
type localWriter struct {
	w    io.Writer
	s    *attemptFiles
	name string // the image's final name, relative to OutDir
}

func (lw localWriter) Write(p []byte) (int, error) {
	if lw.s.failWrite != nil {
		if err := lw.s.failWrite(lw.name); err != nil {
			return 0, lw.s.fail(err)
		}
	}
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
	f, tmp, err := s.folder.images.CreateTemp(name)
	if err != nil {
		return nil, s.fail(fmt.Errorf("create image file: %w", err))
	}
	t := &tempImage{f: f, tmp: tmp, buf: s.bufs.get(localWriter{f, s, ImagesDir + "/" + name}), sum: sha256.New()}
	t.w = io.MultiWriter(bufferedFile{t}, t.sum)
	if t.mark, t.w, err = newImageMark(s.format, imageRecord{ID: s.job.ID, Key: s.key, Image: i + 1}, t.w); err != nil {
		s.bufs.put(t.buf)
		_ = f.Close()
		_ = s.folder.images.Remove(tmp)
		return nil, err
	}
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
	if t.buf == nil {
		return fmt.Errorf("artifact %d ended twice", i)
	}
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
	if err := t.mark.end(a); err != nil {
		return fmt.Errorf("artifact %d: %w", i, err)
	}
	// An image the buffer holds whole is checked there; a larger one is
	// read back from its file.
	held := t.buf.held()
	var err error
	if held != nil {
		err = s.verify(bytes.NewReader(held))
	}
	if err == nil {
		if err = t.buf.Flush(); err != nil {
			err = s.fail(fmt.Errorf("write image file: %w", err))
		}
	}
	s.bufs.put(t.buf)
	t.buf = nil
	if err == nil && held == nil {
		if _, err = t.f.Seek(0, io.SeekStart); err != nil {
			err = s.fail(fmt.Errorf("read back image file: %w", err))
		} else {
			err = s.verify(t.f)
		}
	}
	if err != nil {
		return err
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

// verify reads the image from r (its file, read back, or its bytes in
// memory) and checks it before it can count: a complete, valid file in the
// format the job asked for and, for a v1 job, of the size it asked for. A
// bad image is the answer's fault, not a local one: the attempt fails
// (possibly billed) and the file is dropped.
func (s *attemptFiles) verify(r io.Reader) error {
	br := s.bufs.reader(r)
	defer s.bufs.putReader(br)
	info, err := imagefile.Verify(br)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", stability.ErrMalformedResponse, err)
	case string(info.Format) != s.format.name:
		return fmt.Errorf("%w: the file is %s, the job asked for %s", stability.ErrMalformedResponse, info.Format, s.format.name)
	case s.job.Engine != "" && (info.Width != s.job.Width || info.Height != s.job.Height):
		return fmt.Errorf("%w: the image is %d×%d, the job asked for %d×%d", stability.ErrMalformedResponse, info.Width, info.Height, s.job.Width, s.job.Height)
	}
	return nil
}

// commit renames every finished temp file to its final name (a symbolic
// link there is replaced, never followed), each after its sidecar record
// when it has one, and syncs the folders once, so the images are durable
// before the job is journaled. On error the remaining temp files are
// removed.
func (s *attemptFiles) commit() ([]Image, error) {
	images := make([]Image, 0, len(s.files))
	var inImages, filtered bool
	for i, t := range s.files {
		if !t.done {
			s.discard()
			return nil, fmt.Errorf("artifact %d was not completed", i)
		}
		d, name := s.folder.place(t.img.Path)
		if err := t.mark.writeSidecar(d, name, t.img.SHA256); err != nil {
			s.discard()
			return nil, fmt.Errorf("save image: %w", err)
		}
		var err error
		if d == s.folder.images {
			err = d.Rename(t.tmp, name)
			inImages = true
		} else {
			err = d.Rename(ImagesDir+"/"+t.tmp, name)
			filtered = true
		}
		if err != nil {
			s.discard()
			return nil, fmt.Errorf("save image: %w", err)
		}
		t.tmp = "" // renamed: nothing to remove
		images = append(images, t.img)
	}
	s.discard() // releases the buffers; nothing is left to remove
	if inImages {
		if err := s.folder.images.SyncFolder("."); err != nil {
			return nil, fmt.Errorf("save image: %w", err)
		}
	}
	if filtered {
		if err := s.folder.out.SyncFolder(FilteredDir); err != nil {
			return nil, fmt.Errorf("save image: %w", err)
		}
	}
	return images, nil
}

// discard closes and removes every temp file of the attempt that is not
// renamed yet. It removes only the files this attempt created.
func (s *attemptFiles) discard() {
	for _, t := range s.files {
		if t.buf != nil {
			s.bufs.put(t.buf)
			t.buf = nil
		}
		_ = t.f.Close() // a second Close is harmless
		if t.tmp != "" {
			_ = s.folder.images.Remove(t.tmp)
		}
	}
	s.files = nil
}

// prepareOut makes the output folder ready before anything is sent (see
// outdir.Preparer.Prepare): its folders created and not symbolic links,
// each proven writable, and room on its filesystem for the images of jobs
// whose files are not there yet. It removes no file: temp files a killed
// run left behind are outdir.Lock's to remove.
func prepareOut(outDir string, jobs Jobs, p outdir.Preparer) error {
	need, err := bytesToWrite(outDir, jobs)
	if err != nil {
		return err
	}
	return p.Prepare(outDir, need)
}

// bytesToWrite estimates the bytes of the images jobs will write
// (outdir.ExpectedBytes each), leaving out files already in images/ or
// filtered/ under their final names, as a resumed run finds them. A fresh
// output folder is not looked at file by file.
func bytesToWrite(outDir string, jobs Jobs) (int64, error) {
	folders := []string{filepath.Join(outDir, ImagesDir), filepath.Join(outDir, FilteredDir)}
	fresh := true
	for _, d := range folders {
		if f, err := os.Open(d); err == nil {
			names, _ := f.Readdirnames(1)
			f.Close()
			fresh = fresh && len(names) == 0
		}
	}
	have := func(name string) bool {
		for _, d := range folders {
			if fi, err := os.Lstat(filepath.Join(d, name)); err == nil && fi.Mode().IsRegular() {
				return true
			}
		}
		return false
	}
	var need int64
	for k := range jobs.Len() {
		j := jobs.Job(k)
		format, err := outputFormat(j)
		if err != nil {
			return 0, fmt.Errorf("job %s: %w", j.ID, err)
		}
		size := outdir.ExpectedBytes(j.Width, j.Height, format.name)
		samples := max(j.Samples, 1)
		for i := range samples {
			if fresh || !have(imageName(j.ID, i, samples, format.ext)) {
				need += size
			}
		}
	}
	return need, nil
}
