package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/batch-tool/batch/internal/catalog"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/stability"
)

// inputFile is an image input ready to send: the file and the SHA-256
// (hex) of its content.
type inputFile struct {
	path string
	sum  string
}

// hashInputs returns the SHA-256 (hex) of every file the jobs' Inputs name,
// by path, reading each file once. The journal keys a job on its inputs'
// content, so an input edited in place makes the job run again.
func hashInputs(jobs Jobs) (map[string]string, error) {
	sums := map[string]string{}
	for i := range jobs.Len() {
		j := jobs.Job(i)
		if err := addInputs(sums, nil, &j); err != nil {
			return nil, err
		}
	}
	return sums, nil
}

// addInputs adds to sums the SHA-256 of each file j's Inputs name that
// sums lacks, and to held (unless nil) the bytes of those it can hold.
func addInputs(sums map[string]string, held *heldInputs, j *manifest.Job) error {
	for _, in := range j.Inputs {
		if in.From != "" || in.Path == "" {
			continue
		}
		if _, ok := sums[in.Path]; ok {
			continue
		}
		sum, err := hashFile(in.Path, held)
		if err != nil {
			return fmt.Errorf("job %s: image input %s: %w", j.ID, in.Field, err)
		}
		sums[in.Path] = sum
	}
	return nil
}

// hashFile returns the SHA-256 (hex) of the file path's content, which it
// gives held to keep when it fits (held may be nil).
func hashFile(path string, held *heldInputs) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if fi, err := f.Stat(); err == nil && held.fits(fi.Size()) {
		data, err := io.ReadAll(io.LimitReader(f, heldFile+1))
		if err != nil {
			return "", fmt.Errorf("read %s: %w", path, err)
		}
		h.Write(data)
		held.put(path, data) // unless it grew past heldFile since Stat
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Limits of heldInputs, in bytes: a file, and all of them.
const (
	heldFile  = 256 << 10
	heldTotal = 32 << 20
)

// heldInputs keeps the content of the run's small input files as they were
// hashed (at most heldFile bytes each, heldTotal in all), by path, so that
// every request that sends one sends what its journal key names, without
// reading the file again: one mask or photo edited a thousand ways is read
// once. Larger files, and those past the total, are read from disk at each
// send. It is filled before the run and only read during it; a nil
// *heldInputs holds nothing.
type heldInputs struct {
	files map[string][]byte
	total int64
}

// fits reports whether a file of size bytes can be held.
func (h *heldInputs) fits(size int64) bool {
	return h != nil && size > 0 && size <= heldFile && h.total+size <= heldTotal
}

// put holds data as path's content, if it fits.
func (h *heldInputs) put(path string, data []byte) {
	if !h.fits(int64(len(data))) {
		return
	}
	if h.files == nil {
		h.files = map[string][]byte{}
	}
	h.files[path] = data
	h.total += int64(len(data))
}

// attach gives each image input of req whose file is held its content
// (stability.Field.Data).
func (h *heldInputs) attach(req *stability.Request) {
	if h == nil || len(h.files) == 0 || req.Service == "" {
		return
	}
	op, ok := catalog.Lookup(req.Service)
	if !ok {
		return
	}
	for k := range req.Fields {
		f := &req.Fields[k]
		if cf, ok := op.Field(f.Name); ok && cf.Type == catalog.Image {
			f.Data = h.files[f.Value]
		}
	}
}

// resolveInputs returns job j's image inputs by field: a file with its sum
// from hashInputs, an image of another job from images(that job's id), the
// images that job wrote under outDir (nil when it has none). Input.Index 0
// means the first image, as 1 does.
func resolveInputs(outDir string, j *manifest.Job, sums map[string]string, images func(from string) []Image) (map[string]inputFile, error) {
	files := make(map[string]inputFile, len(j.Inputs))
	for _, in := range j.Inputs {
		if in.From == "" {
			sum, ok := sums[in.Path]
			if !ok {
				return nil, fmt.Errorf("image input %s: %s was not read", in.Field, in.Path)
			}
			files[in.Field] = inputFile{path: in.Path, sum: sum}
			continue
		}
		if in.From == j.ID {
			return nil, fmt.Errorf("image input %s: no job %q to take it from", in.Field, in.From)
		}
		imgs, n := images(in.From), max(in.Index, 1)
		if n > len(imgs) {
			return nil, fmt.Errorf("image input %s: job %s wrote %d image(s), not an image %d", in.Field, in.From, len(imgs), n)
		}
		img := imgs[n-1]
		files[in.Field] = inputFile{path: filepath.Join(outDir, filepath.FromSlash(img.Path)), sum: img.SHA256}
	}
	return files, nil
}

// requestKey returns the request of j with its image inputs resolved to
// files, and its Key.
func requestKey(j manifest.Job, files map[string]inputFile) (stability.Request, string, error) {
	req, err := RequestFor(j, func(in manifest.Input) (string, error) {
		return files[in.Field].path, nil
	})
	if err != nil {
		return stability.Request{}, "", err
	}
	sums := make(map[string]string, len(files))
	for name, f := range files {
		sums[name] = f.sum
	}
	key, err := Key(req, sums)
	if err != nil {
		return stability.Request{}, "", err
	}
	return req, key, nil
}

// unresolved stands in for the image of another job when a request is
// built only to be checked, before that job ran.
func unresolved(in manifest.Input) (string, error) {
	return fmt.Sprintf("(image %d of job %s)", max(in.Index, 1), in.From), nil
}
