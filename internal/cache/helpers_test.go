package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cost"
)

// errNoLink fails a hard link, as a link across filesystems fails.
var errNoLink = errors.New("no hard links here")

// clock is a settable fake clock, safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newCache returns a cache in a fresh folder with the fake clock.
func newCache(t testing.TB, clk *clock) *Cache {
	t.Helper()
	c, err := Open(filepath.Join(t.TempDir(), "cache"), Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testKey returns a distinct valid key for n.
func testKey(n int) string {
	sum := sha256.Sum256([]byte("key " + strconv.Itoa(n)))
	return hex.EncodeToString(sum[:])
}

// image returns distinct image bytes of n bytes for seed.
func image(seed, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seed*31 + i*7)
	}
	return b
}

// put writes an entry of PNG images with seeds 1, 2, … and returns it.
func put(t testing.TB, c *Cache, key string, price cost.Credits, images ...[]byte) Entry {
	t.Helper()
	w, err := c.Create(key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for i, img := range images {
		iw, err := w.Begin(i)
		if err != nil {
			t.Fatal(err)
		}
		// in two writes, as an answer streams in
		iw.Write(img[:len(img)/2])
		iw.Write(img[len(img)/2:])
		if err := w.End(i, Image{Format: "png", Seed: uint32(i + 1), FinishReason: "SUCCESS", RequestID: "req-" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	e, err := w.Commit(price)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// readImage reads image i of e through Open, to its end.
func readImage(c *Cache, e Entry, i int) ([]byte, error) {
	r, err := c.Open(e, i)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var buf bytes.Buffer
	_, err = io.Copy(&buf, r)
	return buf.Bytes(), err
}

// imagePath is the file of image i of key's entry.
func imagePath(c *Cache, key string, i int) string {
	return filepath.Join(c.entryDir(key), strconv.Itoa(i+1)+".png")
}

// flipByte changes one byte of the file name in place, keeping its size.
func flipByte(t *testing.T, name string, at int) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	data[at] ^= 0xff
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tmpNames lists the cache's tmp/ folder.
func tmpNames(t *testing.T, c *Cache) []string {
	t.Helper()
	d, err := os.ReadDir(filepath.Join(c.dir, tmpDir))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range d {
		names = append(names, e.Name())
	}
	return names
}
