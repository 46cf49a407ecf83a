package manifest

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCacheKey reads the top-level cache key: off, the default folder, or
// a folder joined to the manifest's own.
func TestCacheKey(t *testing.T) {
	dir := t.TempDir()
	abs := filepath.Join(dir, "elsewhere")
	tests := []struct {
		name    string
		line    string // the cache line; "" for none
		noCache bool
		dir     string
	}{
		{"absent", "", false, ""},
		{"true", "cache: true", false, ""},
		{"false", "cache: false", true, ""},
		{"relative folder", "cache: .cache/images", false, filepath.Join(dir, ".cache/images")},
		{"absolute folder", "cache: " + abs, false, abs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "m.yaml")
			src := "version: 1\nengine: stable-diffusion-xl-1024-v1-0\n" + tt.line + "\njobs:\n  - prompt: a fox\n"
			if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := Load(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			if m.NoCache != tt.noCache || m.CacheDir != tt.dir {
				t.Errorf("Load(%q) cache = off %v, dir %q; want off %v, dir %q", tt.line, m.NoCache, m.CacheDir, tt.noCache, tt.dir)
			}
		})
	}
}
