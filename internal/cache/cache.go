package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/batch-tool/batch/internal/cost"
)

// Names inside a cache folder.
const (
	objectsDir = "objects"
	tmpDir     = "tmp"
	metaFile   = "meta.json"
	hitsFile   = "hits.log"
)

const (
	// metaVersion is the version of meta.json this package writes; an entry
	// of another version is a miss, left for the batch that wrote it.
	metaVersion = 1
	// MaxImages is the most images an entry holds (v1 samples go to 10).
	MaxImages = 16
	// maxMeta caps the bytes of meta.json read: 16 images' metadata is
	// far less.
	maxMeta = 64 << 10
	// staleAfter is how old a folder under tmp/ must be before Prune or
	// Verify removes it: a writer that has not touched it for so long died.
	staleAfter = 24 * time.Hour
)

// ErrMiss reports a key the cache holds no entry for.
var ErrMiss = errors.New("not in the cache")

// ErrInvalidKey reports a key that is not 64 lower-case hex digits.
var ErrInvalidKey = errors.New("invalid cache key")

// CorruptError reports a damaged entry: it was not served, and it was
// removed unless RemoveErr says why not.
type CorruptError struct {
	Key     string // the entry's key
	Problem string // what is wrong, e.g. "image 2: SHA-256 abc… instead of def…"
	// RemoveErr is why the entry could not be removed; nil when it was.
	RemoveErr error
}

func (e *CorruptError) Error() string {
	if e.RemoveErr != nil {
		return fmt.Sprintf("cache entry %s is damaged (%s) and could not be removed: %v", short(e.Key), e.Problem, e.RemoveErr)
	}
	return fmt.Sprintf("cache entry %s is damaged (%s) and was removed", short(e.Key), e.Problem)
}

// short is the first 12 digits of a key, as printed for people.
func short(key string) string {
	if len(key) > 12 {
		return key[:12]
	}
	return key
}

// ValidKey reports whether key is a SHA-256 in lower-case hex, the only
// keys the cache takes.
func ValidKey(key string) bool {
	if len(key) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// KeyFor returns the cache key of a request: a SHA-256 (hex) of endpoint,
// the API base URL it is sent to ("https://api.stability.ai"), and request,
// the runner's key of the request (a SHA-256 in hex of the engine or
// service and everything the request sends). Neither may be empty, and
// endpoint holds no line break.
func KeyFor(endpoint, request string) (string, error) {
	switch {
	case endpoint == "" || strings.ContainsAny(endpoint, "\r\n"):
		return "", fmt.Errorf("%w: endpoint %q", ErrInvalidKey, endpoint)
	case !ValidKey(request):
		return "", fmt.Errorf("%w: request key %q", ErrInvalidKey, request)
	}
	sum := sha256.Sum256([]byte("batch-cache 1\n" + endpoint + "\n" + request + "\n"))
	return hex.EncodeToString(sum[:]), nil
}

// Cacheable reports whether a request fixes its result, the only requests
// the cache keeps: one with a non-zero seed, or to a service that takes no
// seed (takesSeed false: upscale/fast, edit/remove-background). A seed of 0,
// or none, asks the API for a random one. Every v1 engine takes a seed; for
// a Stable Image service, the catalogue row has a "seed" field.
func Cacheable(takesSeed bool, seed uint64) bool {
	return !takesSeed || seed != 0
}

// DefaultDir returns where the cache lives when no folder is given:
// "images" in UserDir.
func DefaultDir(getenv func(string) string) (string, error) {
	return defaultDir(runtime.GOOS, getenv)
}

// defaultDir is DefaultDir on goos.
func defaultDir(goos string, getenv func(string) string) (string, error) {
	dir, err := UserDir(goos, getenv)
	if err != nil {
		return "", fmt.Errorf("no cache folder: %w", err)
	}
	return filepath.Join(dir, "images"), nil
}

// UserDir returns the folder batch keeps its files in on goos (the cache's
// images, the shared rate schedules): "batch" under the user's cache
// folder, read from the environment through getenv as os.UserCacheDir
// reads it ($XDG_CACHE_HOME, else $HOME/.cache, on Linux and the BSDs;
// $HOME/Library/Caches on macOS; %LocalAppData% on Windows). It is an
// error when the variable it needs is unset or a relative path.
func UserDir(goos string, getenv func(string) string) (string, error) {
	var base string
	switch goos {
	case "windows":
		base = getenv("LocalAppData")
		if base == "" {
			return "", errors.New("%LocalAppData% is not set")
		}
	case "darwin", "ios":
		home := getenv("HOME")
		if home == "" {
			return "", errors.New("$HOME is not set")
		}
		base = filepath.Join(home, "Library", "Caches")
	case "plan9":
		home := getenv("home")
		if home == "" {
			return "", errors.New("$home is not set")
		}
		base = filepath.Join(home, "lib", "cache")
	default:
		base = getenv("XDG_CACHE_HOME")
		if base == "" {
			home := getenv("HOME")
			if home == "" {
				return "", errors.New("neither $XDG_CACHE_HOME nor $HOME is set")
			}
			base = filepath.Join(home, ".cache")
		}
	}
	if !filepath.IsAbs(base) {
		return "", fmt.Errorf("%s is a relative path", base)
	}
	return filepath.Join(base, "batch"), nil
}

// Options are a Cache's dependencies; the zero value uses the real ones.
type Options struct {
	// Now is the clock for when entries are made and used, and how old
	// leftovers are; nil means time.Now.
	Now func() time.Time
	// Link makes newname a hard link to oldname; nil means os.Link. Tests
	// pass one that fails as a link across filesystems does.
	Link func(oldname, newname string) error
}

// Cache is a cache folder. It is safe for concurrent use, also by several
// processes sharing the folder.
type Cache struct {
	dir string
	now func() time.Time
	// clockSet reports that now is not the system's clock, so files' times
	// are set to it rather than left as the system made them.
	clockSet bool
	link     func(oldname, newname string) error
}

// Open returns the cache in dir. Nothing is created until an entry is
// written, so reading a cache that does not exist finds it empty.
func Open(dir string, o Options) (*Cache, error) {
	if dir == "" {
		return nil, errors.New("cache folder is empty")
	}
	c := &Cache{dir: dir, now: o.Now, clockSet: o.Now != nil, link: o.Link}
	if c.now == nil {
		c.now = time.Now
	}
	if c.link == nil {
		c.link = os.Link
	}
	return c, nil
}

// Dir returns the cache's folder, as given to Open.
func (c *Cache) Dir() string { return c.dir }

// Image is one image of an entry.
type Image struct {
	// File is the image's file name in the entry's folder, "1.png", "2.jpg"…;
	// set by the cache.
	File string `json:"file"`
	// SHA256 (hex) and Bytes are the file's; set by the cache.
	SHA256 string `json:"sha256"`
	Bytes  int64  `json:"bytes"`
	// Format is "png", "jpeg" or "webp".
	Format string `json:"format"`
	// Seed is the seed the API used; 0 when the service takes none.
	Seed uint32 `json:"seed"`
	// FinishReason is the API's: SUCCESS or CONTENT_FILTERED.
	FinishReason string `json:"finish_reason"`
	// RequestID is the answer's x-request-id; "" when it had none.
	RequestID string `json:"request_id,omitempty"`
}

// Entry is what the cache holds for one key.
type Entry struct {
	Key     string    // the key, 64 hex digits
	Created time.Time // when the entry was written, UTC
	// Price is the list price of the request when it was bought, in
	// micro-credits; 0 if it was free.
	Price  cost.Credits
	Images []Image // in the order the answer gave them; never empty

	raw []byte // meta.json as read: the entry's identity (it holds a nonce)
}

// meta is the JSON form of an entry, meta.json.
type meta struct {
	Version int    `json:"version"`
	Key     string `json:"key"`
	// Nonce is random, unique to the write: an entry written again has
	// metadata of its own even when everything else is the same.
	Nonce   string       `json:"nonce"`
	Created time.Time    `json:"created"`
	Price   cost.Credits `json:"list_price"` // credits, exact
	Images  []Image      `json:"images"`
}

// ext returns the file name extension of an image format.
func ext(format string) (string, bool) {
	switch format {
	case "png":
		return ".png", true
	case "jpeg":
		return ".jpg", true
	case "webp":
		return ".webp", true
	}
	return "", false
}

// imageFile returns the file name of image i (0-based) in format.
func imageFile(i int, format string) (string, bool) {
	e, ok := ext(format)
	return strconv.Itoa(i+1) + e, ok
}

// entryDir is the folder of key's entry.
func (c *Cache) entryDir(key string) string {
	return filepath.Join(c.dir, objectsDir, key[:2], key[2:])
}

// Contains reports whether the cache holds an entry for key, by its
// metadata's presence alone: Get may still find it damaged. An invalid key
// is never held.
func (c *Cache) Contains(key string) bool {
	if !ValidKey(key) {
		return false
	}
	fi, err := os.Stat(filepath.Join(c.entryDir(key), metaFile))
	return err == nil && fi.Mode().IsRegular()
}

// Get returns the entry of key, its metadata read and each image checked
// for presence and size (not hashed: Open and Link hash what they serve).
// It returns ErrMiss when the cache has none, and a *CorruptError for a
// damaged entry, which it removed.
func (c *Cache) Get(key string) (Entry, error) {
	if !ValidKey(key) {
		return Entry{}, fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	e, err := c.read(key)
	var d damage
	switch {
	case errors.As(err, &d):
		return Entry{}, c.corrupt(key, e.raw, d.problem)
	case err != nil:
		return Entry{}, err
	}
	return e, nil
}

// damage is what is wrong with a damaged entry.
type damage struct{ problem string }

func (d damage) Error() string { return d.problem }

func damaged(format string, a ...any) damage { return damage{fmt.Sprintf(format, a...)} }

// read reads and checks key's entry: ErrMiss when there is none (or it
// vanished while read), damage when it is damaged (with Entry.raw set
// when meta.json was there), any other error as it came.
func (c *Cache) read(key string) (Entry, error) {
	dir := c.entryDir(key)
	f, err := os.Open(filepath.Join(dir, metaFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Entry{}, ErrMiss
	}
	if err != nil {
		return Entry{}, fmt.Errorf("read cache entry %s: %w", short(key), err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxMeta+1))
	if err != nil {
		return Entry{}, fmt.Errorf("read cache entry %s: %w", short(key), err)
	}
	e := Entry{raw: data}
	m, err := decodeMeta(data)
	if err != nil {
		return e, err
	}
	if m.Version != metaVersion {
		return Entry{}, ErrMiss
	}
	if err := m.check(key); err != nil {
		return e, err
	}
	e.Key, e.Created, e.Price, e.Images = m.Key, m.Created, m.Price, m.Images
	for i, img := range e.Images {
		ifi, err := os.Lstat(filepath.Join(dir, img.File))
		switch {
		case errors.Is(err, fs.ErrNotExist) && !c.same(key, data):
			return Entry{}, ErrMiss // the entry was removed or replaced while read
		case errors.Is(err, fs.ErrNotExist):
			return e, damaged("image %d: missing", i+1)
		case err != nil:
			return e, fmt.Errorf("read cache entry %s: %w", short(key), err)
		case !ifi.Mode().IsRegular():
			return e, damaged("image %d: not a regular file", i+1)
		case ifi.Size() != img.Bytes:
			return e, damaged("image %d: %d bytes instead of %d", i+1, ifi.Size(), img.Bytes)
		}
	}
	return e, nil
}

// decodeMeta parses meta.json; what does not parse is damage.
func decodeMeta(data []byte) (meta, error) {
	if len(data) > maxMeta {
		return meta{}, damaged("metadata over %d bytes", maxMeta)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var m meta
	if err := dec.Decode(&m); err != nil {
		return meta{}, damaged("metadata: %v", err)
	}
	if dec.More() {
		return meta{}, damaged("metadata: data after the JSON object")
	}
	return m, nil
}

// check reports what is wrong with the metadata of key's entry.
func (m meta) check(key string) error {
	switch {
	case m.Key != key:
		return damaged("metadata of key %s", short(m.Key))
	case len(m.Images) == 0 || len(m.Images) > MaxImages:
		return damaged("%d images, want 1 to %d", len(m.Images), MaxImages)
	case m.Price < 0:
		return damaged("negative list price %v", m.Price)
	}
	for i, img := range m.Images {
		name, ok := imageFile(i, img.Format)
		switch {
		case !ok:
			return damaged("image %d: unknown format %q", i+1, img.Format)
		case img.File != name:
			return damaged("image %d: file %q, want %q", i+1, img.File, name)
		case !ValidKey(img.SHA256):
			return damaged("image %d: bad SHA-256 %q", i+1, img.SHA256)
		case img.Bytes < 1:
			return damaged("image %d: %d bytes", i+1, img.Bytes)
		}
	}
	return nil
}

// same reports whether key's meta.json still holds raw: the entry read
// then is the one there now, not removed, nor written again.
func (c *Cache) same(key string, raw []byte) bool {
	now, err := readMax(filepath.Join(c.entryDir(key), metaFile))
	return err == nil && bytes.Equal(now, raw)
}

// corrupt removes key's damaged entry, whose meta.json was read as raw (nil
// when there was none to read), and returns the *CorruptError saying so. An
// entry replaced since it was read is left alone: the error is then ErrMiss,
// and the caller buys the image (which the new entry may well serve next
// time).
func (c *Cache) corrupt(key string, raw []byte, problem string) error {
	if raw != nil && !c.same(key, raw) {
		return ErrMiss
	}
	return &CorruptError{Key: key, Problem: problem, RemoveErr: c.remove(c.entryDir(key))}
}

// remove removes an entry's folder: first renamed out of objects/ into tmp/,
// so that no reader sees a part of it, then deleted. A folder already gone
// is not an error.
func (c *Cache) remove(dir string) error {
	tmp := filepath.Join(c.dir, tmpDir)
	if err := os.MkdirAll(tmp, 0o777); err != nil {
		return fmt.Errorf("remove cache entry: %w", err)
	}
	dead := filepath.Join(tmp, fmt.Sprintf("dead-%016x", rand.Uint64()))
	if err := os.Rename(dir, dead); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		// Cannot move it (a file open on Windows): make it incomplete,
		// which every reader takes for a miss, then delete what can be.
		if err := os.Remove(filepath.Join(dir, metaFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove cache entry: %w", err)
		}
		dead = dir
	}
	if err := os.RemoveAll(dead); err != nil {
		return fmt.Errorf("remove cache entry: %w", err)
	}
	return nil
}

// Served records that key's entry was served in place of a request whose
// list price is price (micro-credits, ≥ 0; what the cache saved): a line
// appended to hits.log, and the entry marked as used now, which Prune
// reads. An error here loses the record only; the image was served.
func (c *Cache) Served(key string, price cost.Credits) error {
	if !ValidKey(key) {
		return fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	if price < 0 {
		return fmt.Errorf("record cache hit: negative price %v", price)
	}
	now := c.now()
	// One write of one short line with O_APPEND: concurrent processes'
	// lines never interleave on a local filesystem.
	line := fmt.Sprintf("%d %d %s\n", now.Unix(), int64(price), key)
	f, err := os.OpenFile(filepath.Join(c.dir, hitsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o666)
	if err != nil {
		return fmt.Errorf("record cache hit: %w", err)
	}
	_, err = f.Write([]byte(line))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("record cache hit: %w", err)
	}
	if err := os.Chtimes(filepath.Join(c.entryDir(key), metaFile), now, now); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("record cache hit: %w", err)
	}
	return nil
}

// syncDir makes a folder's entries durable, as after a rename; a filesystem
// that cannot sync folders is not an error.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	return nil
}

// Index is the set of keys a cache held when Index read it: plan asks it of
// every job of a manifest for the cost of one pass over the cache's
// folders, not one file lookup per job. It is safe for concurrent use.
type Index struct {
	keys map[[sha256.Size]byte]struct{}
}

// Index reads which keys the cache holds. Like Contains it reads no
// metadata, and it takes an entry's folder for the entry: Get may find an
// entry it holds incomplete, damaged or gone.
func (c *Cache) Index(ctx context.Context) (*Index, error) {
	x := &Index{keys: map[[sha256.Size]byte]struct{}{}}
	top := filepath.Join(c.dir, objectsDir)
	fans, err := os.ReadDir(top)
	if errors.Is(err, fs.ErrNotExist) {
		return x, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read cache: %w", err)
	}
	for _, fan := range fans {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !fan.IsDir() || len(fan.Name()) != 2 {
			continue
		}
		names, err := os.ReadDir(filepath.Join(top, fan.Name()))
		if err != nil {
			return nil, fmt.Errorf("read cache: %w", err)
		}
		for _, d := range names {
			if k, ok := keyBytes(fan.Name() + d.Name()); ok && d.IsDir() {
				x.keys[k] = struct{}{}
			}
		}
	}
	return x, nil
}

// Contains reports whether the cache held key when the index was read.
func (x *Index) Contains(key string) bool {
	k, ok := keyBytes(key)
	if !ok {
		return false
	}
	_, held := x.keys[k]
	return held
}

// Len returns the number of keys in the index.
func (x *Index) Len() int { return len(x.keys) }

// keyBytes decodes a valid key.
func keyBytes(key string) ([sha256.Size]byte, bool) {
	var k [sha256.Size]byte
	if !ValidKey(key) {
		return k, false
	}
	_, err := hex.Decode(k[:], []byte(key))
	return k, err == nil
}
