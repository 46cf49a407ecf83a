package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// copyBuffer is the size of the buffer images are copied through.
const copyBuffer = 64 << 10

// Open returns a reader of image i (0-based) of e, an entry from Get. The
// reader hashes what it reads: its bytes are the image only once Read has
// returned io.EOF. When they are not the image's (the file was changed
// since it was written), Read returns a *CorruptError instead of io.EOF,
// having removed the entry; the caller drops everything it read. Open
// returns ErrMiss when the entry was removed since Get.
func (c *Cache) Open(e Entry, i int) (io.ReadCloser, error) {
	img, err := e.image(i)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(c.entryDir(e.Key), img.File))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrMiss
	}
	if err != nil {
		return nil, fmt.Errorf("open cache entry %s: %w", short(e.Key), err)
	}
	return &reader{f: f, c: c, e: e, i: i, sum: sha256.New()}, nil
}

// image returns image i of e.
func (e Entry) image(i int) (Image, error) {
	if !ValidKey(e.Key) {
		return Image{}, fmt.Errorf("%w: %q", ErrInvalidKey, e.Key)
	}
	if i < 0 || i >= len(e.Images) {
		return Image{}, fmt.Errorf("cache entry %s has no image %d", short(e.Key), i+1)
	}
	return e.Images[i], nil
}

// reader reads an image of an entry, checking it against its metadata.
type reader struct {
	f   *os.File
	c   *Cache
	e   Entry
	i   int
	sum hash.Hash
	n   int64
	err error // sticky: the image's verdict once known
}

func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.f.Read(p)
	r.sum.Write(p[:n])
	r.n += int64(n)
	want := r.e.Images[r.i]
	switch {
	case r.n > want.Bytes:
		r.err = r.c.corrupt(r.e.Key, r.e.raw, fmt.Sprintf("image %d: more than %d bytes", r.i+1, want.Bytes))
		return 0, r.err
	case errors.Is(err, io.EOF):
		r.err = r.c.check(r.e, r.i, r.n, r.sum)
		if r.err == nil {
			r.err = io.EOF
		}
		return n, r.err
	}
	return n, err
}

func (r *reader) Close() error { return r.f.Close() }

// check compares image i of e, read whole as n bytes hashing to sum, with
// its metadata; on a mismatch it removes the entry and returns the
// *CorruptError.
func (c *Cache) check(e Entry, i int, n int64, sum hash.Hash) error {
	want := e.Images[i]
	if n != want.Bytes {
		return c.corrupt(e.Key, e.raw, fmt.Sprintf("image %d: %d bytes instead of %d", i+1, n, want.Bytes))
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != want.SHA256 {
		return c.corrupt(e.Key, e.raw, fmt.Sprintf("image %d: SHA-256 %s instead of %s", i+1, short(got), short(want.SHA256)))
	}
	return nil
}

// Link puts image i (0-based) of e, an entry from Get, at dst: a hard link
// to the cache's file when dst's folder is on the cache's filesystem (and
// the filesystem has hard links), else a copy. Either way dst appears whole
// or not at all (made beside it and renamed over it; a symbolic link at dst
// is replaced, never followed), and its bytes are hashed first: a damaged
// image is never put there (a *CorruptError; the entry is removed). It
// reports whether dst is a link. dst's folder must exist; it is synced
// once dst is in place, which makes its other new names durable too. A
// link shares its bytes with the cache, so editing one in place edits the
// other (which the cache detects and drops).
func (c *Cache) Link(ctx context.Context, e Entry, i int, dst string) (linked bool, err error) {
	img, err := e.image(i)
	if err != nil {
		return false, err
	}
	src := filepath.Join(c.entryDir(e.Key), img.File)
	// Named as package outdir names its temp files, ".NAME.tmp-PID-RANDOM",
	// so that the next run's lock on OUT removes it if this process dies.
	tmp := filepath.Join(filepath.Dir(dst), fmt.Sprintf(".%s.tmp-%d-%016x", filepath.Base(dst), os.Getpid(), rand.Uint64()))
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	linked = c.link(src, tmp) == nil
	if linked {
		err = c.verifyFile(ctx, e, i, tmp)
	} else {
		if _, serr := os.Lstat(src); errors.Is(serr, fs.ErrNotExist) {
			return false, ErrMiss
		}
		err = c.copyFile(ctx, e, i, tmp)
	}
	if err != nil {
		return false, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return false, fmt.Errorf("put cached image at %s: %w", dst, err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return false, fmt.Errorf("put cached image at %s: %w", dst, err)
	}
	return linked, nil
}

// verifyFile hashes name, a link to image i of e, against its metadata.
func (c *Cache) verifyFile(ctx context.Context, e Entry, i int, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("read cached image: %w", err)
	}
	defer f.Close()
	sum := sha256.New()
	n, err := io.CopyBuffer(sum, ctxReader{ctx, f}, make([]byte, copyBuffer))
	if err != nil {
		return fmt.Errorf("read cached image: %w", err)
	}
	return c.check(e, i, n, sum)
}

// copyFile copies image i of e to the new file dst, hashing it on the way,
// and syncs dst.
func (c *Cache) copyFile(ctx context.Context, e Entry, i int, dst string) error {
	r, err := c.Open(e, i)
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := os.OpenFile(dst, createFlags, 0o666)
	if err != nil {
		return fmt.Errorf("copy cached image: %w", err)
	}
	_, err = io.CopyBuffer(f, ctxReader{ctx, r}, make([]byte, copyBuffer))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	var ce *CorruptError
	switch {
	case errors.As(err, &ce), errors.Is(err, ErrMiss), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case err != nil:
		return fmt.Errorf("copy cached image: %w", err)
	}
	return nil
}

// ctxReader stops reading once its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
