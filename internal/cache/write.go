package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/batch-tool/batch/internal/cost"
)

// createFlags create a new file of an entry for writing. O_NONBLOCK, which
// a regular file ignores, spares the four system calls os spends in trying
// to poll one and giving up.
const createFlags = os.O_WRONLY | os.O_CREATE | os.O_EXCL | syscall.O_NONBLOCK

// Writer writes one entry: each image streamed in (Begin, End), then the
// whole entry made visible at once (Commit) or dropped (Abort). Its images
// go to a folder of their own under the cache's tmp/, so nothing of it is
// seen before Commit. A Writer is used by one goroutine.
type Writer struct {
	c      *Cache
	key    string
	dir    string  // the entry's folder under tmp/; "" once committed or aborted
	images []Image // finished images
	f      *os.File
	sum    hash.Hash
	n      int64
	err    error // the first failure; the entry cannot be committed
}

// Create starts the entry of key. Call Abort when the entry is not
// committed (deferring it is fine: after Commit it does nothing).
func (c *Cache) Create(key string) (*Writer, error) {
	if !ValidKey(key) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	tmp := filepath.Join(c.dir, tmpDir)
	dir, err := os.MkdirTemp(tmp, "w-"+key[:16]+"-*")
	if errors.Is(err, fs.ErrNotExist) { // the first write into this cache
		if err = os.MkdirAll(tmp, 0o777); err == nil {
			dir, err = os.MkdirTemp(tmp, "w-"+key[:16]+"-*")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create cache entry: %w", err)
	}
	w := &Writer{c: c, key: key, dir: dir}
	if err := w.touch(); err != nil {
		w.Abort()
		return nil, fmt.Errorf("create cache entry: %w", err)
	}
	return w, nil
}

// touch marks the writer's folder as written to now, by the cache's clock:
// Prune and Verify take a folder untouched for a day for a dead writer's.
// With the system's clock there is nothing to do: making the folder, and
// each file the writer makes in it, sets its time.
func (w *Writer) touch() error {
	if !w.c.clockSet {
		return nil
	}
	now := w.c.now()
	return os.Chtimes(w.dir, now, now)
}

// fail records err as the writer's failure, if it is the first, and
// returns the failure.
func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = fmt.Errorf("write cache entry %s: %w", short(w.key), err)
	}
	return w.err
}

// Begin starts image i (0-based; images come in order) and returns the
// writer its bytes go to, exactly as the API sent them. The writer never
// fails: a failure to store the bytes is kept and returned by End and
// Commit, so a tee into it (io.MultiWriter) cannot fail the paid download
// it copies.
func (w *Writer) Begin(i int) (io.Writer, error) {
	switch {
	case w.dir == "":
		return nil, errors.New("cache entry is already committed or aborted")
	case w.f != nil || i != len(w.images):
		return nil, fmt.Errorf("cache entry image %d began out of order", i)
	case i >= MaxImages:
		return nil, fmt.Errorf("cache entry image %d: at most %d images", i, MaxImages)
	}
	f, err := os.OpenFile(filepath.Join(w.dir, strconv.Itoa(i+1)+".part"), createFlags, 0o666)
	if err != nil {
		w.fail(err)
		return io.Discard, nil
	}
	w.f, w.sum, w.n = f, sha256.New(), 0
	if err := w.touch(); err != nil {
		w.fail(err)
	}
	return imageWriter{w}, nil
}

// imageWriter is the writer of the image being written.
type imageWriter struct{ w *Writer }

func (iw imageWriter) Write(p []byte) (int, error) {
	w := iw.w
	if w.err != nil || w.f == nil {
		return len(p), nil
	}
	if _, err := w.f.Write(p); err != nil {
		w.fail(err)
		return len(p), nil
	}
	w.sum.Write(p)
	w.n += int64(len(p))
	return len(p), nil
}

// End finishes image i with its metadata (Format, Seed, FinishReason and
// RequestID; the cache sets File, SHA256 and Bytes) and makes its file
// durable. An error means the entry cannot be committed: Abort it.
func (w *Writer) End(i int, img Image) error {
	if w.err != nil {
		return w.err
	}
	if w.f == nil || i != len(w.images) {
		return w.fail(fmt.Errorf("image %d ended without beginning", i))
	}
	f := w.f
	w.f = nil
	name, ok := imageFile(i, img.Format)
	if !ok {
		f.Close()
		return w.fail(fmt.Errorf("image %d: unknown format %q", i+1, img.Format))
	}
	if w.n == 0 {
		f.Close()
		return w.fail(fmt.Errorf("image %d is empty", i+1))
	}
	// No fsync: a reader checks every image against its SHA-256, so an
	// entry a crash left torn is found, removed and bought again, and a
	// run never waits on the disk for the cache.
	if err := f.Close(); err != nil {
		return w.fail(err)
	}
	if err := os.Rename(f.Name(), filepath.Join(w.dir, name)); err != nil {
		return w.fail(err)
	}
	img.File, img.SHA256, img.Bytes = name, hex.EncodeToString(w.sum.Sum(nil)), w.n
	w.images = append(w.images, img)
	if err := w.touch(); err != nil {
		return w.fail(err)
	}
	return nil
}

// AddFile adds image i (0-based; images come in order, as with Begin) as
// the file src, which holds exactly the bytes the API sent: a hard link to
// src where the cache's filesystem allows one, else a copy. img is as for
// End, and its SHA256 is src's, which the caller knows from writing the
// file (a wrong sum only makes the entry damaged, found when it is served,
// as every image is hashed then); the cache sets File and Bytes. It keeps
// an answer already written in full elsewhere without writing its bytes
// again. An error means the entry cannot be committed: Abort it.
func (w *Writer) AddFile(i int, src string, img Image) error {
	switch {
	case w.err != nil:
		return w.err
	case w.dir == "":
		return errors.New("cache entry is already committed or aborted")
	case w.f != nil || i != len(w.images):
		return w.fail(fmt.Errorf("image %d added out of order", i))
	case i >= MaxImages:
		return w.fail(fmt.Errorf("image %d: at most %d images", i, MaxImages))
	case !ValidKey(img.SHA256):
		return w.fail(fmt.Errorf("image %d: %q is not a SHA-256", i+1, img.SHA256))
	}
	name, ok := imageFile(i, img.Format)
	if !ok {
		return w.fail(fmt.Errorf("image %d: unknown format %q", i+1, img.Format))
	}
	dst := filepath.Join(w.dir, name)
	if err := w.c.link(src, dst); err != nil {
		if err := copyInto(dst, src, img.SHA256); err != nil {
			return w.fail(fmt.Errorf("image %d: %w", i+1, err))
		}
	}
	fi, err := os.Lstat(dst)
	switch {
	case err != nil:
		return w.fail(err)
	case !fi.Mode().IsRegular() || fi.Size() == 0:
		return w.fail(fmt.Errorf("image %d: %s is not a non-empty regular file", i+1, src))
	}
	img.File, img.Bytes = name, fi.Size()
	w.images = append(w.images, img)
	if err := w.touch(); err != nil {
		return w.fail(err)
	}
	return nil
}

// copyInto copies the file src to the new file dst, checking that its
// bytes have the SHA-256 sum (hex).
func copyInto(dst, src, sum string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, createFlags, 0o666)
	if err != nil {
		return err
	}
	h := sha256.New()
	_, err = io.CopyBuffer(io.MultiWriter(out, h), in, make([]byte, copyBuffer))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && hex.EncodeToString(h.Sum(nil)) != sum {
		err = fmt.Errorf("%s changed while it was copied", src)
	}
	return err
}

// Commit writes the entry's metadata, price being the list price of the
// request in micro-credits, makes the entry visible and returns it. When
// another writer made the entry first, Commit drops this one and returns
// that entry, read back: both hold what the same request returned. An
// error wrapping ErrMiss then means that entry is of another version of
// batch, or was removed again: there is nothing to do.
func (w *Writer) Commit(price cost.Credits) (Entry, error) {
	switch {
	case w.dir == "":
		return Entry{}, errors.New("cache entry is already committed or aborted")
	case w.err != nil:
		return Entry{}, w.err
	case w.f != nil:
		return Entry{}, w.fail(fmt.Errorf("image %d was not ended", len(w.images)+1))
	case len(w.images) == 0:
		return Entry{}, w.fail(errors.New("no images"))
	case price < 0:
		return Entry{}, w.fail(fmt.Errorf("negative list price %v", price))
	}
	now := w.c.now().UTC()
	m := meta{Version: metaVersion, Key: w.key, Nonce: fmt.Sprintf("%016x", rand.Uint64()), Created: now, Price: price, Images: w.images}
	raw, err := writeMeta(filepath.Join(w.dir, metaFile), m)
	if err != nil {
		return Entry{}, w.fail(err)
	}
	// The entry's last use is its creation, by the cache's clock (the
	// file's own time when that is the system's).
	if w.c.clockSet {
		if err := os.Chtimes(filepath.Join(w.dir, metaFile), now, now); err != nil {
			return Entry{}, w.fail(err)
		}
	}
	mine, err := w.publish()
	if err != nil {
		return Entry{}, w.fail(err)
	}
	w.dir = ""
	if mine {
		return Entry{Key: m.Key, Created: m.Created, Price: m.Price, Images: m.Images, raw: raw}, nil
	}
	e, err := w.c.Get(w.key)
	if err != nil {
		return Entry{}, fmt.Errorf("read back cache entry %s: %w", short(w.key), err)
	}
	return e, nil
}

// publish renames the entry's folder into objects/ and reports whether it
// did. When the entry exists already (another writer's), it drops its own
// folder and reports false; an entry there without metadata, which no
// writer makes, is removed and the rename tried again.
func (w *Writer) publish() (bool, error) {
	dst := w.c.entryDir(w.key)
	for try := 0; ; try++ {
		err := os.Rename(w.dir, dst)
		if err == nil {
			return true, nil
		}
		if _, serr := os.Stat(filepath.Join(dst, metaFile)); serr == nil {
			return false, os.RemoveAll(w.dir) // the other writer's entry stands
		}
		_, serr := os.Stat(dst)
		switch {
		case try > 1:
			return false, err
		case errors.Is(serr, fs.ErrNotExist):
			// The first entry of its folder in objects/.
			if err := os.MkdirAll(filepath.Dir(dst), 0o777); err != nil {
				return false, err
			}
		default:
			if err := w.c.remove(dst); err != nil {
				return false, err
			}
		}
	}
}

// writeMeta writes m to the new file name and returns what it wrote.
func writeMeta(name string, m meta) ([]byte, error) {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	data = append(data, '\n')
	f, err := os.OpenFile(name, createFlags, 0o666)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, err
	}
	return data, f.Close()
}

// Abort drops the entry unless it was committed, removing its files.
func (w *Writer) Abort() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	if w.dir != "" {
		_ = os.RemoveAll(w.dir)
		w.dir = ""
	}
}
