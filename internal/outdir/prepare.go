package outdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrNoSpace is wrapped by Prepare's error when the images to make would
// not fit on the output folder's filesystem.
var ErrNoSpace = errors.New("not enough free space")

// Preparer makes an output folder ready for a run. The zero value asks the
// filesystem for its free space.
type Preparer struct {
	// FreeBytes returns the bytes this process may still write on the
	// filesystem holding the folder dir; nil means FreeBytes. An error
	// wrapping errors.ErrUnsupported skips the space check.
	FreeBytes func(dir string) (int64, error)
}

// Prepare is Preparer{}.Prepare.
func Prepare(dir string, needBytes int64) error {
	return Preparer{}.Prepare(dir, needBytes)
}

// Prepare makes dir ready for a run that will write about needBytes of
// images (see ExpectedBytes; 0 skips the space check), before anything is
// bought: it creates dir, dir/images and dir/filtered (folders 0777 less
// the umask), refuses images or filtered when they are symbolic links
// (ErrSymlink) or not folders, proves each of the three writable by
// creating, syncing and removing a probe file in it, and refuses a
// filesystem with less than needBytes free (ErrNoSpace).
func (p Preparer) Prepare(dir string, needBytes int64) error {
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return fmt.Errorf("create output folder: %w", err)
	}
	d, err := OpenDir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	for _, f := range []string{ImagesDir, FilteredDir} {
		if err := d.mkdir(f); err != nil {
			return err
		}
	}
	for _, f := range []string{".", ImagesDir, FilteredDir} {
		if err := d.probe(f); err != nil {
			return fmt.Errorf("output folder %s is not writable: %w", d.path(f), err)
		}
	}
	if needBytes <= 0 {
		return nil
	}
	free := p.FreeBytes
	if free == nil {
		free = FreeBytes
	}
	images := filepath.Join(dir, ImagesDir)
	n, err := free(images)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		return nil
	case err != nil:
		return fmt.Errorf("free space of %s: %w", images, err)
	case n < needBytes:
		return fmt.Errorf("%w in %s: %s free, the images still to make need about %s", ErrNoSpace, dir, bytesText(n), bytesText(needBytes))
	}
	return nil
}

// probe creates, syncs and removes a one-byte file in folder.
func (d *Dir) probe(folder string) error {
	name := "batch-probe"
	if folder != "." {
		name = folder + "/" + name
	}
	f, tmp, err := d.CreateTemp(name)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte{'\n'})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := d.Remove(tmp); err == nil {
		err = rerr
	}
	return err
}

// Estimate of an image's size: the pixels uncompressed (3 bytes each for
// PNG and WebP, which batch never recompresses and a noisy image does not
// shrink; 1 for JPEG, whose quality the API picks), PNG's filter byte per
// row, and room for headers and the parameters text.
const (
	headerBytes = 64 << 10
	// unknownSide is the width and height assumed for an image whose size
	// the catalogue cannot tell before the run.
	unknownSide = 2048
)

// ExpectedBytes is a conservative estimate of the bytes one image of
// width×height pixels takes in format ("png", "jpeg" or "webp"; anything
// else is counted as PNG). A width or height ≤ 0, unknown before the run,
// counts as 2048.
func ExpectedBytes(width, height int, format string) int64 {
	if width <= 0 || height <= 0 {
		width, height = unknownSide, unknownSide
	}
	px := int64(width) * int64(height)
	if format == "jpeg" {
		return px + headerBytes
	}
	return 3*px + int64(height) + headerBytes
}

// bytesText writes n bytes for people: "512 bytes", "1.5 MiB".
func bytesText(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d bytes", n)
	}
	v, unit := float64(n)/1024, "KiB"
	for _, u := range []string{"MiB", "GiB", "TiB", "PiB"} {
		if v < 1024 {
			break
		}
		v, unit = v/1024, u
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}
