package cache

import (
	"path/filepath"
	"testing"

	"github.com/batch-tool/batch/internal/cost"
)

// BenchmarkContains is what plan pays per cacheable job: one stat.
func BenchmarkContains(b *testing.B) {
	c, err := Open(filepath.Join(b.TempDir(), "cache"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = testKey(i)
		put(b, c, keys[i], cost.Credit, image(i, 100))
	}
	for i := 0; b.Loop(); i++ {
		if !c.Contains(keys[i%1000]) {
			b.Fatal("miss")
		}
	}
}

// BenchmarkPut writes an entry of one 1.5 MiB image (a 1024² PNG's size).
func BenchmarkPut(b *testing.B) {
	c, err := Open(filepath.Join(b.TempDir(), "cache"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	img := image(1, 3<<19)
	b.SetBytes(int64(len(img)))
	for i := 0; b.Loop(); i++ {
		put(b, c, testKey(i), cost.Credit, img)
	}
}

// BenchmarkServe reads an entry of one 1.5 MiB image as run serves a hit:
// Get, then the image read whole and hashed.
func BenchmarkServe(b *testing.B) {
	c, err := Open(filepath.Join(b.TempDir(), "cache"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	img := image(1, 3<<19)
	put(b, c, testKey(1), cost.Credit, img)
	b.SetBytes(int64(len(img)))
	for b.Loop() {
		e, err := c.Get(testKey(1))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := readImage(c, e, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLink hard-links (or with copy, copies) a 1.5 MiB image into
// another folder, verified.
func BenchmarkLink(b *testing.B) {
	for _, copy := range []bool{false, true} {
		name := "link"
		var link func(string, string) error
		if copy {
			name, link = "copy", func(string, string) error { return errNoLink }
		}
		b.Run(name, func(b *testing.B) {
			c, err := Open(filepath.Join(b.TempDir(), "cache"), Options{Link: link})
			if err != nil {
				b.Fatal(err)
			}
			img := image(1, 3<<19)
			e := put(b, c, testKey(1), cost.Credit, img)
			dst := filepath.Join(b.TempDir(), "x.png")
			b.SetBytes(int64(len(img)))
			for b.Loop() {
				if _, err := c.Link(b.Context(), e, 0, dst); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIndex reads the index of a cache of 1000 entries, then looks
// up a key: what plan pays once, then per cacheable job.
func BenchmarkIndex(b *testing.B) {
	c, err := Open(filepath.Join(b.TempDir(), "cache"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		put(b, c, testKey(i), cost.Credit, image(i, 100))
	}
	b.Run("read", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Index(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	})
	x, err := c.Index(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = testKey(i)
	}
	b.Run("contains", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if !x.Contains(keys[i%1000]) {
				b.Fatal("miss")
			}
		}
	})
}
