package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/batch-tool/batch/internal/sandbox"
	"github.com/batch-tool/batch/internal/sharedrate"
)

func TestRateDir(t *testing.T) {
	tests := []struct {
		goos    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{"linux", map[string]string{"HOME": "/home/ann"}, "/home/ann/.cache/batch/rate", ""},
		{"linux", map[string]string{"HOME": "/home/ann", "XDG_CACHE_HOME": "/var/cache/ann"}, "/var/cache/ann/batch/rate", ""},
		{"freebsd", map[string]string{"HOME": "/home/ann", rateDirEnv: "/srv/rate"}, "/srv/rate", ""},
		{"darwin", map[string]string{"HOME": "/Users/ann", "XDG_CACHE_HOME": "/ignored"}, "/Users/ann/Library/Caches/batch/rate", ""},
		{"linux", map[string]string{}, "", "neither $XDG_CACHE_HOME nor $HOME is set"},
		{"linux", map[string]string{"XDG_CACHE_HOME": "cache"}, "", "relative path"},
		{"darwin", map[string]string{}, "", "$HOME is not set"},
		{"windows", map[string]string{}, "", "%LocalAppData% is not set"},
	}
	for _, tt := range tests {
		got, err := rateDir(tt.goos, func(k string) string { return tt.env[k] })
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("rateDir(%s, %v) = %q, %v; want an error saying %q", tt.goos, tt.env, got, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != filepath.FromSlash(tt.want)):
			t.Errorf("rateDir(%s, %v) = %q, %v; want %q", tt.goos, tt.env, got, err, tt.want)
		}
	}
}

// TestRunSharedRateFile checks where a run keeps the shared schedule: in
// the rate folder, under a hash of the key, holding no key; that a folder
// it cannot use leaves the run with a limit of its own and a warning; and
// that the in-process sandbox, an account of the run's own, shares
// nothing.
func TestRunSharedRateFile(t *testing.T) {
	const key = "sk-shared-rate-test"
	url := startSandboxServer(t, sandbox.Config{})
	qs := "../../examples/quickstart.yaml"
	blocked := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocked, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		dir      string
		args     []string
		wantFile bool
		warning  string
	}{
		{"shared", t.TempDir(), []string{"--api-url", url}, true, ""},
		{"unusable folder", filepath.Join(blocked, "rate"), []string{"--api-url", url}, false, "batch: warning: the rate limit is not shared with other runs on this machine"},
		{"in-process sandbox", t.TempDir(), []string{"--sandbox"}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"run"}, tt.args...), "--out", t.TempDir(), qs)
			r := batchCmd(t, map[string]string{"STABILITY_API_KEY": key, rateDirEnv: tt.dir}, args...)
			if r.code != exitOK {
				t.Fatalf("run: exit %d\n%s", r.code, r.stderr)
			}
			if got := strings.Contains(r.stderr, "warning: the rate limit"); got != (tt.warning != "") || !strings.Contains(r.stderr, tt.warning) {
				t.Errorf("stderr:\n%s\nwant a warning: %q", r.stderr, tt.warning)
			}
			if strings.Contains(r.stderr, key) {
				t.Errorf("stderr shows the key:\n%s", r.stderr)
			}
			data, err := os.ReadFile(filepath.Join(tt.dir, sharedrate.Name(key)))
			if (err == nil) != tt.wantFile {
				t.Fatalf("rate file: %v, want one: %v", err, tt.wantFile)
			}
			if strings.Contains(string(data), key) {
				t.Errorf("the rate file holds the key: %q", data)
			}
			if entries, err := os.ReadDir(tt.dir); err == nil && !tt.wantFile && len(entries) > 0 {
				t.Errorf("the rate folder holds %s, want nothing", entries[0].Name())
			}
		})
	}
}
