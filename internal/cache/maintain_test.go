package cache

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cost"
)

// entryBytes sums the sizes of the files in key's folder, as the cache
// should count them.
func entryBytes(t *testing.T, c *Cache, key string) int64 {
	t.Helper()
	var n int64
	files, err := os.ReadDir(c.entryDir(key))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		fi, err := f.Info()
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

func TestStats(t *testing.T) {
	clk := newClock()
	c := newCache(t, clk)
	s, err := c.Stats(t.Context())
	if err != nil || s != (Stats{}) {
		t.Fatalf("Stats of a cache never written = %+v, %v; want zero", s, err)
	}
	if _, err := os.Stat(c.Dir()); !os.IsNotExist(err) {
		t.Errorf("Stats created the cache folder (%v)", err)
	}
	k1, k2, k3 := testKey(1), testKey(2), testKey(3)
	put(t, c, k1, 4*cost.Credit, image(1, 1000))
	put(t, c, k2, 8*cost.Credit, image(2, 2000), image(3, 3000))
	put(t, c, k3, 3*cost.Credit, image(4, 500))
	for _, hit := range []struct {
		key   string
		price cost.Credits
	}{{k1, 4 * cost.Credit}, {k1, 4 * cost.Credit}, {k2, 8 * cost.Credit}, {k3, 250_000}} {
		if err := c.Served(hit.key, hit.price); err != nil {
			t.Fatal(err)
		}
	}
	// a line cut short by a crash, and one that is not a hit
	f, err := os.OpenFile(filepath.Join(c.Dir(), hitsFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "garbage\n1790000000 7000000 %s", k1[:20])
	f.Close()
	// an entry without metadata
	os.Remove(filepath.Join(c.entryDir(k3), metaFile))

	s, err = c.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{
		Entries: 2, Images: 3, Bytes: entryBytes(t, c, k1) + entryBytes(t, c, k2),
		Incomplete: 1, Hits: 4, Saved: 16*cost.Credit + 250_000,
	}
	if s != want {
		t.Errorf("Stats = %+v, want %+v", s, want)
	}
}

// TestServedMarksUse: a hit makes its entry the most recently used.
func TestServedMarksUse(t *testing.T) {
	clk := newClock()
	c := newCache(t, clk)
	put(t, c, testKey(1), cost.Credit, image(1, 100))
	clk.advance(time.Hour)
	put(t, c, testKey(2), cost.Credit, image(2, 100))
	clk.advance(time.Hour)
	if err := c.Served(testKey(1), cost.Credit); err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	res, err := c.Prune(t.Context(), PruneOptions{MaxBytes: &zero, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := removedKeys(res); !slices.Equal(got, []string{testKey(2), testKey(1)}) {
		t.Errorf("least recently used first = %v, want key 2 (written 1h ago) before key 1 (served now)", short12(got))
	}
	if err := c.Served(testKey(1), -1); err == nil {
		t.Error("Served with a negative price succeeded")
	}
}

func removedKeys(res PruneResult) []string {
	var keys []string
	for _, r := range res.Removed {
		keys = append(keys, r.Key)
	}
	return keys
}

func short12(keys []string) []string {
	var s []string
	for _, k := range keys {
		s = append(s, short(k))
	}
	return s
}

func TestPrune(t *testing.T) {
	// Entries 1..4 written a day apart (1 oldest), 1000 bytes of image each.
	setup := func(t *testing.T) (*Cache, *clock, int64) {
		clk := newClock()
		c := newCache(t, clk)
		for i := 1; i <= 4; i++ {
			put(t, c, testKey(i), cost.Credit, image(i, 1000))
			clk.advance(24 * time.Hour)
		}
		return c, clk, entryBytes(t, c, testKey(1)) // every entry has the same size
	}
	size := func(n int64) *int64 { return &n }
	tests := []struct {
		name    string
		opts    func(per int64) PruneOptions
		removed []int
		reasons []Reason
	}{
		{"nothing asked", func(int64) PruneOptions { return PruneOptions{} }, nil, nil},
		{"older than 2.5 days", func(int64) PruneOptions { return PruneOptions{OlderThan: 60 * time.Hour} }, []int{1, 2}, []Reason{Unused, Unused}},
		{"fits already", func(per int64) PruneOptions { return PruneOptions{MaxBytes: size(4 * per)} }, nil, nil},
		{"max size of 2.5 entries", func(per int64) PruneOptions { return PruneOptions{MaxBytes: size(5 * per / 2)} }, []int{1, 2}, []Reason{OverSize, OverSize}},
		{"max size 0 empties", func(int64) PruneOptions { return PruneOptions{MaxBytes: size(0)} }, []int{1, 2, 3, 4}, []Reason{OverSize, OverSize, OverSize, OverSize}},
		{"age, then size", func(per int64) PruneOptions {
			return PruneOptions{OlderThan: 84 * time.Hour, MaxBytes: size(2 * per)}
		}, []int{1, 2}, []Reason{Unused, OverSize}},
	}
	for _, tt := range tests {
		for _, dry := range []bool{false, true} {
			t.Run(tt.name+" dry="+strconv.FormatBool(dry), func(t *testing.T) {
				c, _, per := setup(t)
				o := tt.opts(per)
				o.DryRun = dry
				res, err := c.Prune(t.Context(), o)
				if err != nil {
					t.Fatal(err)
				}
				var wantKeys []string
				for _, i := range tt.removed {
					wantKeys = append(wantKeys, testKey(i))
				}
				var reasons []Reason
				for _, r := range res.Removed {
					reasons = append(reasons, r.Reason)
				}
				if got := removedKeys(res); !slices.Equal(got, wantKeys) || !slices.Equal(reasons, tt.reasons) {
					t.Errorf("removed %v for %v, want %v for %v", short12(got), reasons, short12(wantKeys), tt.reasons)
				}
				left := 4 - len(tt.removed)
				if res.Freed != int64(len(tt.removed))*per || res.Entries != left || res.Bytes != int64(left)*per {
					t.Errorf("freed %d, %d entries of %d bytes left; want %d, %d, %d", res.Freed, res.Entries, res.Bytes, int64(len(tt.removed))*per, left, int64(left)*per)
				}
				for i := 1; i <= 4; i++ {
					gone := slices.Contains(tt.removed, i) && !dry
					if c.Contains(testKey(i)) == gone {
						t.Errorf("entry %d in the cache: %v, want %v", i, !gone, gone)
					}
				}
			})
		}
	}
	t.Run("negative", func(t *testing.T) {
		c, _, _ := setup(t)
		if _, err := c.Prune(t.Context(), PruneOptions{OlderThan: -time.Hour}); err == nil {
			t.Error("Prune with a negative age succeeded")
		}
		if _, err := c.Prune(t.Context(), PruneOptions{MaxBytes: size(-1)}); err == nil {
			t.Error("Prune with a negative size succeeded")
		}
	})
	t.Run("incomplete first", func(t *testing.T) {
		c, _, per := setup(t)
		os.Remove(filepath.Join(c.entryDir(testKey(4)), metaFile))
		os.WriteFile(filepath.Join(c.entryDir(testKey(3)), metaFile), []byte("{"), 0o644)
		res, err := c.Prune(t.Context(), PruneOptions{MaxBytes: size(per)})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{testKey(3), testKey(4), testKey(1)} // key 3 < key 4 in key order, then the oldest
		if testKey(3) > testKey(4) {
			want[0], want[1] = want[1], want[0]
		}
		if got := removedKeys(res); !slices.Equal(got, want) || res.Removed[0].Reason != Incomplete || res.Removed[2].Reason != OverSize {
			t.Errorf("removed %v (%+v), want %v: the incomplete ones, then the oldest until 1 entry fits", short12(got), res.Removed, short12(want))
		}
	})
}

func TestVerify(t *testing.T) {
	c := newCache(t, newClock())
	for i := 1; i <= 5; i++ {
		put(t, c, testKey(i), cost.Credit, image(i, 1000), image(i+10, 2000))
	}
	flipByte(t, imagePath(c, testKey(2), 1), 1500)
	os.Remove(filepath.Join(c.entryDir(testKey(4)), metaFile))
	os.Truncate(imagePath(c, testKey(5), 0), 999)
	res, err := c.Verify(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	problems := map[string]string{}
	for _, b := range res.Bad {
		bad = append(bad, b.Key)
		problems[b.Key] = b.Problem
		if b.RemoveErr != nil {
			t.Errorf("entry %s not removed: %v", short(b.Key), b.RemoveErr)
		}
	}
	want := []string{testKey(2), testKey(4), testKey(5)}
	slices.Sort(want)
	if !slices.Equal(bad, want) {
		t.Fatalf("Verify found %v damaged, want %v", short12(bad), short12(want))
	}
	if !strings.Contains(problems[testKey(2)], "image 2: SHA-256") || problems[testKey(4)] != "no metadata" || !strings.Contains(problems[testKey(5)], "999 bytes") {
		t.Errorf("problems = %q", problems)
	}
	// hashed: entries 1, 2 and 3 (2 images each, 3000 bytes); entries 4 and 5
	// fail before any image is read
	if res.Entries != 5 || res.Images != 6 || res.Bytes != 3*3000 {
		t.Errorf("checked %d entries, %d images, %d bytes; want 5, 6, %d", res.Entries, res.Images, res.Bytes, 3*3000)
	}
	for i, want := range []bool{true, false, true, false, false} {
		if got := c.Contains(testKey(i + 1)); got != want {
			t.Errorf("entry %d in the cache after Verify: %v, want %v", i+1, got, want)
		}
	}
	again, err := c.Verify(t.Context())
	if err != nil || len(again.Bad) != 0 || again.Entries != 2 {
		t.Errorf("Verify again = %+v, %v; want 2 sound entries", again, err)
	}
}

// TestHitsAcrossProcesses: processes appending hits at once lose none and
// tear none.
func TestHitsAcrossProcesses(t *testing.T) {
	if dir := os.Getenv("BATCH_CACHE_HITS_DIR"); dir != "" {
		c, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for range 200 {
			if err := c.Served(testKey(1), cost.Credit); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := newCache(t, newClock())
	put(t, c, testKey(1), cost.Credit, image(1, 100))
	var cmds []*exec.Cmd
	for range 3 {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHitsAcrossProcesses$")
		cmd.Env = append(os.Environ(), "BATCH_CACHE_HITS_DIR="+c.Dir())
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	s, err := c.Stats(t.Context())
	if err != nil || s.Hits != 600 || s.Saved != 600*cost.Credit {
		t.Errorf("Stats = %+v, %v; want 600 hits saving 600 credits", s, err)
	}
}
