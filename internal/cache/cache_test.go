package cache

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cost"
)

func TestValidKey(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{testKey(1), true},
		{strings.Repeat("0", 64), true},
		{strings.Repeat("0", 63), false},
		{strings.Repeat("0", 65), false},
		{strings.ToUpper(testKey(1)), false},
		{strings.Repeat("g", 64), false},
		{"../" + strings.Repeat("0", 61), false},
		{"", false},
	}
	for _, tt := range tests {
		if got := ValidKey(tt.key); got != tt.want {
			t.Errorf("ValidKey(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
}

// TestKeyFor: the key depends on the endpoint and on the request, and on
// nothing else.
func TestKeyFor(t *testing.T) {
	real, sandbox, req1, req2 := "https://api.stability.ai", "http://127.0.0.1:8080", testKey(1), testKey(2)
	k := func(endpoint, request string) string {
		t.Helper()
		key, err := KeyFor(endpoint, request)
		if err != nil {
			t.Fatalf("KeyFor(%q, %q): %v", endpoint, request, err)
		}
		if !ValidKey(key) {
			t.Fatalf("KeyFor(%q, %q) = %q, not a key", endpoint, request, key)
		}
		return key
	}
	if k(real, req1) != k(real, req1) {
		t.Error("KeyFor differs for the same request")
	}
	for _, other := range []string{k(sandbox, req1), k(real, req2), req1} {
		if other == k(real, req1) {
			t.Errorf("KeyFor(%q, %q) = %s, the same as another request's", real, req1, other)
		}
	}
	for _, tt := range []struct{ endpoint, request string }{
		{"", req1},
		{real + "\n", req1},
		{real, ""},
		{real, strings.ToUpper(req1)},
	} {
		if _, err := KeyFor(tt.endpoint, tt.request); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("KeyFor(%q, %q) error = %v, want ErrInvalidKey", tt.endpoint, tt.request, err)
		}
	}
}

func TestCacheable(t *testing.T) {
	tests := []struct {
		name      string
		takesSeed bool
		seed      uint64
		want      bool
	}{
		{"v1 seed 0: random", true, 0, false},
		{"v1 fixed seed", true, 42, true},
		{"service with seed, none given", true, 0, false},
		{"service with seed 4294967294", true, 4294967294, true},
		{"service without seed (upscale/fast)", false, 0, true},
	}
	for _, tt := range tests {
		if got := Cacheable(tt.takesSeed, tt.seed); got != tt.want {
			t.Errorf("%s: Cacheable(%v, %d) = %v, want %v", tt.name, tt.takesSeed, tt.seed, got, tt.want)
		}
	}
}

func TestDefaultDir(t *testing.T) {
	tests := []struct {
		goos    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{"linux", map[string]string{"XDG_CACHE_HOME": "/x/cache", "HOME": "/home/u"}, "/x/cache/batch/images", ""},
		{"linux", map[string]string{"HOME": "/home/u"}, "/home/u/.cache/batch/images", ""},
		{"freebsd", map[string]string{"HOME": "/home/u"}, "/home/u/.cache/batch/images", ""},
		{"linux", map[string]string{"XDG_CACHE_HOME": "cache"}, "", "relative"},
		{"linux", nil, "", "neither"},
		{"darwin", map[string]string{"HOME": "/Users/u", "XDG_CACHE_HOME": "/x"}, "/Users/u/Library/Caches/batch/images", ""},
		{"darwin", nil, "", "$HOME"},
		{"windows", nil, "", "LocalAppData"},
	}
	for _, tt := range tests {
		got, err := defaultDir(tt.goos, func(k string) string { return tt.env[k] })
		if got != filepath.FromSlash(tt.want) || (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("defaultDir(%s, %v) = %q, %v; want %q, error containing %q", tt.goos, tt.env, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestPutGet(t *testing.T) {
	clk := newClock()
	c := newCache(t, clk)
	key := testKey(1)
	imgs := [][]byte{image(1, 3000), image(2, 5000)}
	if c.Contains(key) {
		t.Fatal("Contains before the entry was written")
	}
	put(t, c, key, 8*cost.Credit, imgs...)
	if !c.Contains(key) {
		t.Fatal("Contains = false after Commit")
	}
	e, err := c.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	if e.Key != key || !e.Created.Equal(clk.now()) || e.Price != 8*cost.Credit || len(e.Images) != 2 {
		t.Fatalf("Get = key %s, created %v, price %v, %d images; want %s, %v, 8, 2", e.Key, e.Created, e.Price, len(e.Images), key, clk.now())
	}
	for i, want := range imgs {
		img := e.Images[i]
		if img.Format != "png" || img.Seed != uint32(i+1) || img.FinishReason != "SUCCESS" || img.RequestID != "req-"+string(rune('0'+i)) || img.Bytes != int64(len(want)) {
			t.Errorf("image %d metadata = %+v", i, img)
		}
		got, err := readImage(c, e, i)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("image %d: read %d bytes, %v; want the %d bytes written", i, len(got), err, len(want))
		}
	}
	if names := tmpNames(t, c); len(names) != 0 {
		t.Errorf("tmp/ holds %v after a commit", names)
	}
	if _, err := c.Get(testKey(2)); !errors.Is(err, ErrMiss) {
		t.Errorf("Get(unknown) error = %v, want ErrMiss", err)
	}
	if _, err := c.Get("abc"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Get(abc) error = %v, want ErrInvalidKey", err)
	}
	if _, err := c.Create("../../etc"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Create(../../etc) error = %v, want ErrInvalidKey", err)
	}
}

// TestUncommittedInvisible: an entry whose writer died (its files under
// tmp/, meta.json among them or not) is never seen, and is cleaned once a
// day old; Abort removes it at once.
func TestUncommittedInvisible(t *testing.T) {
	for _, stage := range []string{"image begun", "image ended"} {
		t.Run(stage, func(t *testing.T) {
			clk := newClock()
			c := newCache(t, clk)
			key := testKey(1)
			w, err := c.Create(key)
			if err != nil {
				t.Fatal(err)
			}
			iw, _ := w.Begin(0)
			iw.Write(image(1, 1000))
			if stage == "image ended" {
				if err := w.End(0, Image{Format: "png"}); err != nil {
					t.Fatal(err)
				}
				// and its metadata, as Commit writes it before the rename
				if _, err := writeMeta(filepath.Join(w.dir, metaFile), meta{Version: metaVersion, Key: key, Images: w.images}); err != nil {
					t.Fatal(err)
				}
				if err := w.touch(); err != nil {
					t.Fatal(err)
				}
			}
			// the writer "crashes": no Commit, no Abort
			if c.Contains(key) {
				t.Error("Contains = true for an uncommitted entry")
			}
			if _, err := c.Get(key); !errors.Is(err, ErrMiss) {
				t.Errorf("Get error = %v, want ErrMiss", err)
			}
			s, err := c.Stats(t.Context())
			if err != nil || s.Entries != 0 || s.Incomplete != 0 {
				t.Errorf("Stats = %+v, %v; want no entries, and a write in progress not incomplete", s, err)
			}
			// Prune leaves a fresh write alone: its writer may be alive.
			if res, err := c.Prune(t.Context(), PruneOptions{}); err != nil || res.Leftovers != 0 || len(tmpNames(t, c)) != 1 {
				t.Errorf("Prune of a fresh write: %+v, %v, tmp/ %v; want it left", res, err, tmpNames(t, c))
			}
			clk.advance(staleAfter + time.Minute)
			if s, err := c.Stats(t.Context()); err != nil || s.Incomplete != 1 {
				t.Errorf("Stats a day later = %+v, %v; want 1 incomplete", s, err)
			}
			res, err := c.Prune(t.Context(), PruneOptions{})
			if err != nil || res.Leftovers != 1 {
				t.Errorf("Prune a day later: %+v, %v; want 1 leftover removed", res, err)
			}
			if names := tmpNames(t, c); len(names) != 0 {
				t.Errorf("tmp/ holds %v after Prune", names)
			}
		})
	}
	t.Run("abort", func(t *testing.T) {
		c := newCache(t, newClock())
		w, err := c.Create(testKey(1))
		if err != nil {
			t.Fatal(err)
		}
		iw, _ := w.Begin(0)
		iw.Write(image(1, 100))
		w.Abort()
		if names := tmpNames(t, c); len(names) != 0 {
			t.Errorf("tmp/ holds %v after Abort", names)
		}
		if _, err := w.Commit(0); err == nil {
			t.Error("Commit after Abort succeeded")
		}
	})
}

// TestConcurrentPut: writers of the same key at once all succeed and leave
// one entry; readers meanwhile see no entry or the whole one.
func TestConcurrentPut(t *testing.T) {
	c := newCache(t, newClock())
	key := testKey(1)
	imgs := [][]byte{image(1, 20000), image(2, 30000)}
	const writers, readers = 8, 4
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, writers+readers)
	for i := range writers {
		wg.Go(func() {
			<-start
			w, err := c.Create(key)
			if err != nil {
				errs[i] = err
				return
			}
			defer w.Abort()
			for j, img := range imgs {
				iw, err := w.Begin(j)
				if err != nil {
					errs[i] = err
					return
				}
				iw.Write(img)
				if err := w.End(j, Image{Format: "png"}); err != nil {
					errs[i] = err
					return
				}
			}
			_, errs[i] = w.Commit(cost.Credit)
		})
	}
	for i := range readers {
		wg.Go(func() {
			<-start
			for range 50 {
				e, err := c.Get(key)
				if errors.Is(err, ErrMiss) {
					continue
				}
				if err != nil {
					errs[writers+i] = err
					return
				}
				for j, want := range imgs {
					got, err := readImage(c, e, j)
					if err != nil || !bytes.Equal(got, want) {
						errs[writers+i] = errors.New("a reader saw a partial or wrong image")
						return
					}
				}
			}
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("goroutine %d: %v", i, err)
		}
	}
	e, err := c.Get(key)
	if err != nil || len(e.Images) != 2 {
		t.Fatalf("Get after the writers = %d images, %v; want the entry", len(e.Images), err)
	}
	if names := tmpNames(t, c); len(names) != 0 {
		t.Errorf("tmp/ holds %v after every writer finished", names)
	}
	if s, err := c.Stats(t.Context()); err != nil || s.Entries != 1 {
		t.Errorf("Stats = %+v, %v; want one entry", s, err)
	}
}

// TestCorruption: a damaged entry is reported as a *CorruptError, never
// served, and removed; the key is a miss afterwards.
func TestCorruption(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, c *Cache, key string)
		atGet  bool   // Get notices (else only reading the image does)
		want   string // in the problem
	}{
		{"byte flipped", func(t *testing.T, c *Cache, key string) { flipByte(t, imagePath(c, key, 1), 10) }, false, "image 2: SHA-256"},
		{"truncated", func(t *testing.T, c *Cache, key string) { os.Truncate(imagePath(c, key, 0), 10) }, true, "image 1: 10 bytes instead of 2000"},
		{"grown", func(t *testing.T, c *Cache, key string) {
			f, _ := os.OpenFile(imagePath(c, key, 0), os.O_WRONLY|os.O_APPEND, 0)
			f.Write([]byte("x"))
			f.Close()
		}, true, "2001 bytes instead of 2000"},
		{"image missing", func(t *testing.T, c *Cache, key string) { os.Remove(imagePath(c, key, 1)) }, true, "image 2: missing"},
		{"metadata garbage", func(t *testing.T, c *Cache, key string) {
			os.WriteFile(filepath.Join(c.entryDir(key), metaFile), []byte("{\"version\":1,"), 0o644)
		}, true, "metadata"},
		{"metadata of another key", func(t *testing.T, c *Cache, key string) {
			other := filepath.Join(c.entryDir(key), metaFile)
			data, _ := os.ReadFile(other)
			os.WriteFile(other, bytes.Replace(data, []byte(key), []byte(testKey(9)), 1), 0o644)
		}, true, "metadata of key " + testKey(9)[:12]},
		{"image file renamed", func(t *testing.T, c *Cache, key string) {
			other := filepath.Join(c.entryDir(key), metaFile)
			data, _ := os.ReadFile(other)
			os.WriteFile(other, bytes.Replace(data, []byte(`"1.png"`), []byte(`"../1.png"`), 1), 0o644)
		}, true, `file "../1.png"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCache(t, newClock())
			key := testKey(1)
			put(t, c, key, cost.Credit, image(1, 2000), image(2, 2000))
			tt.damage(t, c, key)
			e, err := c.Get(key)
			if !tt.atGet {
				if err != nil {
					t.Fatalf("Get: %v", err)
				}
				_, err = readImage(c, e, 0)
				if err != nil {
					t.Fatalf("image 1 is sound, read: %v", err)
				}
				_, err = readImage(c, e, 1)
			}
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Key != key || !strings.Contains(ce.Problem, tt.want) || ce.RemoveErr != nil {
				t.Fatalf("error = %v, want a *CorruptError of %s about %q, removed", err, key[:12], tt.want)
			}
			if _, err := c.Get(key); !errors.Is(err, ErrMiss) {
				t.Errorf("Get after the damage was found: %v, want ErrMiss", err)
			}
			if _, err := os.Stat(c.entryDir(key)); !os.IsNotExist(err) {
				t.Errorf("the entry's folder is still there: %v", err)
			}
			// and a new purchase is cached again
			put(t, c, key, cost.Credit, image(1, 2000), image(2, 2000))
			if _, err := c.Get(key); err != nil {
				t.Errorf("Get of the entry written again: %v", err)
			}
		})
	}
}

// TestCorruptReplacedEntryKept: a damaged entry found by a reader that
// another process replaced meanwhile is left alone, not removed.
func TestCorruptReplacedEntryKept(t *testing.T) {
	c := newCache(t, newClock())
	key := testKey(1)
	e := put(t, c, key, cost.Credit, image(1, 2000))
	flipByte(t, imagePath(c, key, 0), 3)
	// Another process finds it damaged and writes the image again.
	if _, err := readImage(c, e, 0); err == nil {
		t.Fatal("a flipped byte was served")
	}
	put(t, c, key, cost.Credit, image(1, 2000))
	// This reader still holds the old entry's metadata.
	if err := c.corrupt(key, e.raw, "stale"); !errors.Is(err, ErrMiss) {
		t.Errorf("corrupt of a replaced entry = %v, want ErrMiss", err)
	}
	if _, err := c.Get(key); err != nil {
		t.Errorf("the replacing entry: %v", err)
	}
}

func TestWriterMisuse(t *testing.T) {
	tests := []struct {
		name string
		use  func(w *Writer) error
		want string
	}{
		{"begin out of order", func(w *Writer) error { _, err := w.Begin(1); return err }, "out of order"},
		{"end without begin", func(w *Writer) error { return w.End(0, Image{Format: "png"}) }, "without beginning"},
		{"no images", func(w *Writer) error { _, err := w.Commit(0); return err }, "no images"},
		{"unknown format", func(w *Writer) error {
			iw, _ := w.Begin(0)
			iw.Write([]byte("x"))
			return w.End(0, Image{Format: "gif"})
		}, "unknown format"},
		{"empty image", func(w *Writer) error {
			w.Begin(0)
			return w.End(0, Image{Format: "png"})
		}, "is empty"},
		{"image not ended", func(w *Writer) error {
			iw, _ := w.Begin(0)
			iw.Write([]byte("x"))
			_, err := w.Commit(0)
			return err
		}, "not ended"},
		{"negative price", func(w *Writer) error {
			iw, _ := w.Begin(0)
			iw.Write([]byte("x"))
			w.End(0, Image{Format: "png"})
			_, err := w.Commit(-1)
			return err
		}, "negative"},
		{"a failed store never fails the writes", func(w *Writer) error {
			os.RemoveAll(w.dir) // the cache's disk goes away
			iw, err := w.Begin(0)
			if err != nil {
				return errors.New("Begin failed: " + err.Error())
			}
			if n, err := iw.Write([]byte("abc")); n != 3 || err != nil {
				return errors.New("Write failed")
			}
			return w.End(0, Image{Format: "png"})
		}, "write cache entry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCache(t, newClock())
			w, err := c.Create(testKey(1))
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			if err := tt.use(w); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one containing %q", err, tt.want)
			}
			if c.Contains(testKey(1)) {
				t.Error("a failed entry is in the cache")
			}
		})
	}
}

// TestFormats: each image's file is named by its position and format.
func TestFormats(t *testing.T) {
	c := newCache(t, newClock())
	w, err := c.Create(testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for i, f := range []string{"png", "jpeg", "webp"} {
		iw, _ := w.Begin(i)
		iw.Write(image(i, 100))
		if err := w.End(i, Image{Format: f}); err != nil {
			t.Fatal(err)
		}
	}
	e, err := w.Commit(0)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, img := range e.Images {
		files = append(files, img.File)
	}
	if want := []string{"1.png", "2.jpg", "3.webp"}; !slices.Equal(files, want) {
		t.Errorf("files = %v, want %v", files, want)
	}
}

// TestPutOverIncomplete: an entry's folder left without metadata is a miss
// and does not stop the image being cached again.
func TestPutOverIncomplete(t *testing.T) {
	c := newCache(t, newClock())
	key := testKey(1)
	put(t, c, key, cost.Credit, image(1, 100))
	if err := os.Remove(filepath.Join(c.entryDir(key), metaFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(key); !errors.Is(err, ErrMiss) {
		t.Fatalf("Get of an entry without metadata = %v, want ErrMiss", err)
	}
	e := put(t, c, key, cost.Credit, image(2, 200))
	got, err := readImage(c, e, 0)
	if err != nil || !bytes.Equal(got, image(2, 200)) {
		t.Errorf("the entry written again reads %d bytes, %v; want its own image", len(got), err)
	}
}

func TestIndex(t *testing.T) {
	c := newCache(t, newClock())
	x, err := c.Index(t.Context())
	if err != nil || x.Len() != 0 {
		t.Fatalf("Index of a cache never written = %d keys, %v", x.Len(), err)
	}
	for i := range 3 {
		put(t, c, testKey(i), cost.Credit, image(i, 10))
	}
	w, _ := c.Create(testKey(3)) // being written: not held
	defer w.Abort()
	x, err = c.Index(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, true, true, false, false} {
		if got := x.Contains(testKey(i)); got != want {
			t.Errorf("Index.Contains(key %d) = %v, want %v", i, got, want)
		}
	}
	if x.Contains("zz") || x.Len() != 3 {
		t.Errorf("Index holds %d keys (or an invalid one); want 3", x.Len())
	}
}
