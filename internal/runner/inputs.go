package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

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
		if err := addInputs(sums, &j); err != nil {
			return nil, err
		}
	}
	return sums, nil
}

// addInputs adds to sums the SHA-256 of each file j's Inputs name that
// sums lacks.
func addInputs(sums map[string]string, j *manifest.Job) error {
	for _, in := range j.Inputs {
		if in.From != "" || in.Path == "" {
			continue
		}
		if _, ok := sums[in.Path]; ok {
			continue
		}
		sum, err := hashFile(in.Path)
		if err != nil {
			return fmt.Errorf("job %s: image input %s: %w", j.ID, in.Field, err)
		}
		sums[in.Path] = sum
	}
	return nil
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
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
