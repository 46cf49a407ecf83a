package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cache"
	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/golden"
)

// fillCache writes entries to the cache in dir, each made at its time
// (the command's clock reads 2026-11-25 12:00 UTC) with images of the given
// sizes, and returns their keys in order.
func fillCache(t *testing.T, dir string, entries ...cachedEntry) []string {
	t.Helper()
	var keys []string
	for n, ce := range entries {
		c, err := cache.Open(dir, cache.Options{Now: func() time.Time { return ce.made }})
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(ce.name))
		key := hex.EncodeToString(sum[:])
		w, err := c.Create(key)
		if err != nil {
			t.Fatal(err)
		}
		for i, size := range ce.sizes {
			iw, err := w.Begin(i)
			if err != nil {
				t.Fatal(err)
			}
			img := make([]byte, size)
			for j := range img {
				img[j] = byte(n + i + j)
			}
			iw.Write(img)
			if err := w.End(i, cache.Image{Format: "png", Seed: 7, FinishReason: "SUCCESS"}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.Commit(ce.price); err != nil {
			t.Fatal(err)
		}
		for range ce.hits {
			if err := c.Served(key, ce.price); err != nil {
				t.Fatal(err)
			}
		}
		keys = append(keys, key)
	}
	return keys
}

type cachedEntry struct {
	name  string
	made  time.Time
	price cost.Credits
	sizes []int // bytes of each image
	hits  int
}

func day(d int) time.Time { return time.Date(2026, 11, d, 9, 30, 0, 0, time.UTC) }

// sampleCache makes a fresh folder the working directory (so the output
// names the cache "c", whatever the folder) and writes a cache of four
// entries in c: one from September, three from November, two served. It
// returns the entries' keys and where the golden files are.
func sampleCache(t *testing.T) (keys []string, testdata string) {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	return fillCache(t, "c",
		cachedEntry{"september", day(1).AddDate(0, -2, 0), 4 * cost.Credit, []int{300_000}, 0},
		cachedEntry{"samples", day(2), 8 * cost.Credit, []int{200_000, 200_000}, 1},
		cachedEntry{"core", day(20), 3 * cost.Credit, []int{150_000}, 3},
		cachedEntry{"upscale", day(24), 25 * cost.Credit / 100, []int{1_000_000}, 0},
	), filepath.Join(wd, "testdata")
}

func TestCacheStatsGolden(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			_, testdata := sampleCache(t)
			r := batchCmd(t, nil, "cache", "stats", "--cache", "c", "--format", format)
			if r.code != exitOK {
				t.Fatalf("cache stats: exit %d\n%s", r.code, r.stderr)
			}
			golden.Check(t, filepath.Join(testdata, "cache-stats."+format+".golden"), []byte(r.stdout), *update)
		})
	}
}

func TestCachePruneGolden(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"age", []string{"--older-than", "30d"}},
		{"age-and-size", []string{"--older-than", "30d", "--max-size", "1MiB"}},
		{"dry-run", []string{"--max-size", "0", "--dry-run"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, testdata := sampleCache(t)
			r := batchCmd(t, nil, append([]string{"cache", "prune", "--cache", "c"}, tt.args...)...)
			if r.code != exitOK {
				t.Fatalf("cache prune: exit %d\n%s", r.code, r.stderr)
			}
			golden.Check(t, filepath.Join(testdata, "cache-prune-"+tt.name+".golden"), []byte(r.stdout), *update)
		})
	}
}

// TestCachePruneThenStats: what prune says it freed is gone from stats.
func TestCachePruneThenStats(t *testing.T) {
	keys, _ := sampleCache(t)
	if r := batchCmd(t, nil, "cache", "prune", "--cache", "c", "--max-size", "0"); r.code != exitOK {
		t.Fatalf("cache prune: exit %d\n%s", r.code, r.stderr)
	}
	r := batchCmd(t, nil, "cache", "stats", "--cache", "c")
	if r.code != exitOK || !strings.Contains(r.stdout, "entries: 0 (0 images)") || !strings.Contains(r.stdout, "by 4 hits") {
		t.Errorf("stats after emptying: exit %d\n%s\nwant no entries, the 4 hits still counted", r.code, r.stdout)
	}
	if _, err := os.Stat(filepath.Join("c", "objects", keys[0][:2], keys[0][2:])); !os.IsNotExist(err) {
		t.Errorf("an entry's folder is still there: %v", err)
	}
}

func TestCacheVerifyGolden(t *testing.T) {
	keys, testdata := sampleCache(t)
	r := batchCmd(t, nil, "cache", "verify", "--cache", "c")
	if r.code != exitOK {
		t.Fatalf("cache verify of a sound cache: exit %d\n%s", r.code, r.stderr)
	}
	golden.Check(t, filepath.Join(testdata, "cache-verify-sound.golden"), []byte(r.stdout), *update)

	// flip one byte of the second image of "samples"
	img := filepath.Join("c", "objects", keys[1][:2], keys[1][2:], "2.png")
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	data[100] ^= 1
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r = batchCmd(t, nil, "cache", "verify", "--cache", "c")
	if r.code != exitFailed || r.stderr != "" {
		t.Fatalf("cache verify of a damaged entry: exit %d, stderr %q; want 1 and nothing more on stderr", r.code, r.stderr)
	}
	golden.Check(t, filepath.Join(testdata, "cache-verify-damaged.golden"), []byte(r.stdout), *update)
	if r := batchCmd(t, nil, "cache", "verify", "--cache", "c"); r.code != exitOK {
		t.Errorf("cache verify after the damaged entry was removed: exit %d\n%s", r.code, r.stdout)
	}
}

// TestCacheDefaultDir: without --cache the cache is under the user's cache
// folder, read through the environment.
func TestCacheDefaultDir(t *testing.T) {
	xdg := t.TempDir()
	env := map[string]string{"XDG_CACHE_HOME": xdg, "HOME": "/nonexistent", "LocalAppData": xdg}
	want, err := cache.DefaultDir(func(k string) string { return env[k] })
	if err != nil {
		t.Skip(err) // an OS whose cache folder comes from elsewhere
	}
	fillCache(t, want, cachedEntry{"one", day(1), cost.Credit, []int{10}, 0})
	r := batchCmd(t, env, "cache", "stats")
	if r.code != exitOK || !strings.Contains(r.stdout, "cache:   "+want+"\n") || !strings.Contains(r.stdout, "entries: 1 (1 image)") {
		t.Errorf("cache stats: exit %d\n%s%s\nwant the cache in %s with its entry", r.code, r.stdout, r.stderr, want)
	}
	r = batchCmd(t, map[string]string{"XDG_CACHE_HOME": "", "HOME": "", "LocalAppData": ""}, "cache", "stats")
	if r.code != exitFailed || !strings.Contains(r.stderr, "give --cache DIR") {
		t.Errorf("cache stats without a cache folder: exit %d\n%s", r.code, r.stderr)
	}
}

func TestCacheUsage(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string // substring
		stderr string // substring
	}{
		{[]string{"cache"}, exitUsage, "", "give stats, prune or verify"},
		{[]string{"cache", "frob"}, exitUsage, "", `unknown command "frob"`},
		{[]string{"cache", "-h"}, exitOK, "", "usage: batch cache stats|prune|verify"},
		{[]string{"help", "cache"}, exitOK, "usage: batch cache stats|prune|verify", ""},
		{[]string{"cache", "prune", "-h"}, exitOK, "", "-max-size S"},
		{[]string{"cache", "prune", "--cache", "c"}, exitUsage, "", "give --older-than D, --max-size S or both"},
		{[]string{"cache", "prune", "--cache", "c", "--max-size", "10XB"}, exitUsage, "", `"10XB" is not a size`},
		{[]string{"cache", "prune", "--cache", "c", "--older-than", "0d"}, exitUsage, "", `"0d" is not a positive number of days`},
		{[]string{"cache", "stats", "--cache", "c", "extra"}, exitUsage, "", "too many arguments"},
		{[]string{"cache", "stats", "--cache", "c", "--format", "csv"}, exitUsage, "", `unknown format "csv"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Chdir(t.TempDir())
			r := batchCmd(t, nil, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stdout, tt.stdout) || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("batch %v: exit %d, want %d, %q in stdout and %q in stderr\nstdout:\n%s\nstderr:\n%s",
					tt.args, r.code, tt.code, tt.stdout, tt.stderr, r.stdout, r.stderr)
			}
			if _, err := os.Stat("c"); !os.IsNotExist(err) {
				t.Errorf("a refused command created the cache (%v)", err)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1234", 1234, true},
		{"10GB", 10_000_000_000, true},
		{"10gb", 10_000_000_000, true},
		{"500MiB", 500 << 20, true},
		{"1.5KiB", 1536, true},
		{"2TB", 2_000_000_000_000, true},
		{"7B", 7, true},
		{"", 0, false},
		{"GB", 0, false},
		{"-1GB", 0, false},
		{"1e3", 0, false},
		{"1.2.3MB", 0, false},
		{"10 GB", 0, false},
		{"10XB", 0, false},
		{"99999999999TB", 0, false},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseAge(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30d", 30 * 24 * time.Hour, true},
		{"2w", 14 * 24 * time.Hour, true},
		{"12h", 12 * time.Hour, true},
		{"1h30m", 90 * time.Minute, true},
		{"0d", 0, false},
		{"-1d", 0, false},
		{"0s", 0, false},
		{"d", 0, false},
		{"1.5d", 0, false},
		{"30", 0, false},
		{"99999999999999d", 0, false},
	}
	for _, tt := range tests {
		got, err := parseAge(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("parseAge(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
