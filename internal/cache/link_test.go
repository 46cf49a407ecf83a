package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/batch-tool/batch/internal/cost"
)

// crossDevice fails as a hard link across filesystems does.
func crossDevice(oldname, newname string) error {
	return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: syscall.EXDEV}
}

// TestLink: an image is hard-linked where the filesystem allows, copied
// where it does not (a link across filesystems fails with EXDEV), verified
// either way, and put in place whole.
func TestLink(t *testing.T) {
	tests := []struct {
		name       string
		link       func(oldname, newname string) error // nil: os.Link
		damage     bool                                // flip a byte of the cached image first
		existing   bool                                // a file is at dst already
		wantLinked bool
		wantErr    string // "" for success, "corrupt", "miss"
	}{
		{name: "same filesystem", wantLinked: true},
		{name: "over an existing file", existing: true, wantLinked: true},
		{name: "cross device", link: crossDevice},
		{name: "damaged, linked", damage: true, wantErr: "corrupt"},
		{name: "damaged, copied", link: crossDevice, damage: true, wantErr: "corrupt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Open(filepath.Join(t.TempDir(), "cache"), Options{Now: newClock().now, Link: tt.link})
			if err != nil {
				t.Fatal(err)
			}
			key := testKey(1)
			want := image(1, 100_000)
			e := put(t, c, key, cost.Credit, want)
			if tt.damage {
				flipByte(t, imagePath(c, key, 0), 50_000)
			}
			out := t.TempDir()
			dst := filepath.Join(out, "cat.png")
			if tt.existing {
				if err := os.WriteFile(dst, []byte("old"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			linked, err := c.Link(t.Context(), e, 0, dst)
			switch tt.wantErr {
			case "":
				if err != nil {
					t.Fatalf("Link: %v", err)
				}
				got, err := os.ReadFile(dst)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("dst holds %d bytes (%v), want the cached image", len(got), err)
				}
				src, _ := os.Stat(imagePath(c, key, 0))
				now, _ := os.Stat(dst)
				if linked != tt.wantLinked || os.SameFile(src, now) != tt.wantLinked {
					t.Errorf("Link reported linked=%v, dst is the cache's file: %v; want %v", linked, os.SameFile(src, now), tt.wantLinked)
				}
			case "corrupt":
				if ce, ok := errors.AsType[*CorruptError](err); !ok || !strings.Contains(ce.Problem, "SHA-256") {
					t.Fatalf("Link error = %v, want a *CorruptError", err)
				}
				if _, err := os.Stat(dst); !os.IsNotExist(err) {
					t.Errorf("a damaged image was put at dst (%v)", err)
				}
				if c.Contains(key) {
					t.Error("the damaged entry is still in the cache")
				}
			}
			if names, _ := os.ReadDir(out); len(names) > 1 || len(names) == 1 && names[0].Name() != "cat.png" {
				t.Errorf("OUT holds %v; want cat.png alone or nothing (no temp files)", names)
			}
		})
	}
}

// TestLinkRemoved: an entry removed since Get is a miss, not a failure.
func TestLinkRemoved(t *testing.T) {
	for _, copied := range []bool{false, true} {
		var link func(string, string) error
		if copied {
			link = func(string, string) error { return errors.New("no links here") }
		}
		c, err := Open(filepath.Join(t.TempDir(), "cache"), Options{Now: newClock().now, Link: link})
		if err != nil {
			t.Fatal(err)
		}
		e := put(t, c, testKey(1), cost.Credit, image(1, 100))
		if err := c.remove(c.entryDir(e.Key)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Link(t.Context(), e, 0, filepath.Join(t.TempDir(), "x.png")); !errors.Is(err, ErrMiss) {
			t.Errorf("copied=%v: Link of a removed entry = %v, want ErrMiss", copied, err)
		}
		if _, err := c.Open(e, 0); !errors.Is(err, ErrMiss) {
			t.Errorf("Open of a removed entry = %v, want ErrMiss", err)
		}
	}
}

// TestLinkCancelled: a copy stopped by its context leaves nothing at dst
// and keeps the entry: cancelling is not damage.
func TestLinkCancelled(t *testing.T) {
	c, err := Open(filepath.Join(t.TempDir(), "cache"), Options{Now: newClock().now, Link: func(string, string) error { return errors.New("no links here") }})
	if err != nil {
		t.Fatal(err)
	}
	e := put(t, c, testKey(1), cost.Credit, image(1, 1000))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	out := t.TempDir()
	if _, err := c.Link(ctx, e, 0, filepath.Join(out, "x.png")); !errors.Is(err, context.Canceled) {
		t.Errorf("Link with a cancelled context = %v, want context.Canceled", err)
	}
	if names, _ := os.ReadDir(out); len(names) != 0 {
		t.Errorf("OUT holds %v after a cancelled copy", names)
	}
	if !c.Contains(e.Key) {
		t.Error("a cancelled copy removed the entry")
	}
}

// TestAddFile: an image already written in full elsewhere joins an entry
// as a hard link where the filesystem allows, as a checked copy where it
// does not; the entry serves it, or finds it damaged when the sum given
// was not the file's.
func TestAddFile(t *testing.T) {
	tests := []struct {
		name       string
		link       func(oldname, newname string) error // nil: os.Link
		wrongSum   bool                                // the sum given is another file's
		wantLinked bool
		wantErr    string // "" for success, "add" when AddFile fails, "corrupt" when serving does
	}{
		{name: "same filesystem", wantLinked: true},
		{name: "cross device", link: crossDevice},
		{name: "wrong sum, linked", wrongSum: true, wantLinked: true, wantErr: "corrupt"},
		{name: "wrong sum, copied", link: crossDevice, wrongSum: true, wantErr: "add"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Open(filepath.Join(t.TempDir(), "cache"), Options{Now: newClock().now, Link: tt.link})
			if err != nil {
				t.Fatal(err)
			}
			want := image(1, 100_000)
			src := filepath.Join(t.TempDir(), "cat.png")
			if err := os.WriteFile(src, want, 0o644); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(want)
			if tt.wrongSum {
				sum = sha256.Sum256(image(2, 100_000))
			}
			key := testKey(1)
			w, err := c.Create(key)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			err = w.AddFile(0, src, Image{Format: "png", Seed: 7, FinishReason: "SUCCESS", SHA256: hex.EncodeToString(sum[:])})
			if tt.wantErr == "add" {
				if err == nil || !strings.Contains(err.Error(), "changed while it was copied") {
					t.Fatalf("AddFile error = %v, want the copy's sum refused", err)
				}
				if _, err := w.Commit(cost.Credit); err == nil {
					t.Error("Commit after a failed AddFile succeeded")
				}
				return
			}
			if err != nil {
				t.Fatalf("AddFile: %v", err)
			}
			if _, err := w.Commit(cost.Credit); err != nil {
				t.Fatalf("Commit: %v", err)
			}
			a, _ := os.Stat(src)
			b, _ := os.Stat(imagePath(c, key, 0))
			if os.SameFile(a, b) != tt.wantLinked {
				t.Errorf("the entry's image is src: %v, want %v", os.SameFile(a, b), tt.wantLinked)
			}
			e, err := c.Get(key)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if img := e.Images[0]; img.Bytes != int64(len(want)) || img.Seed != 7 || img.File != "1.png" {
				t.Errorf("image = %+v, want 1.png of %d bytes, seed 7", img, len(want))
			}
			got, err := readImage(c, e, 0)
			switch tt.wantErr {
			case "":
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("served %d bytes, %v; want the file", len(got), err)
				}
			case "corrupt":
				if _, ok := errors.AsType[*CorruptError](err); !ok {
					t.Errorf("serving an image whose sum was wrong: %v, want a *CorruptError", err)
				}
			}
		})
	}
}

// TestAddFileMisuse: out of order, an unknown format, a sum that is not
// one and a missing file are refused.
func TestAddFileMisuse(t *testing.T) {
	src := filepath.Join(t.TempDir(), "cat.png")
	if err := os.WriteFile(src, image(1, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		i    int
		src  string
		img  Image
		want string
	}{
		{"out of order", 1, src, Image{Format: "png", SHA256: sum}, "out of order"},
		{"unknown format", 0, src, Image{Format: "gif", SHA256: sum}, "unknown format"},
		{"not a sum", 0, src, Image{Format: "png", SHA256: "abc"}, "not a SHA-256"},
		{"missing file", 0, src + ".gone", Image{Format: "png", SHA256: sum}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCache(t, newClock())
			w, err := c.Create(testKey(1))
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			if err := w.AddFile(tt.i, tt.src, tt.img); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("AddFile error = %v, want one with %q", err, tt.want)
			}
		})
	}
}
