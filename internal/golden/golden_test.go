package golden

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFirstDiff(t *testing.T) {
	tests := []struct{ got, want, diff string }{
		{"a\nb\n", "a\nc\n", "line 2:\n got: b\nwant: c"},
		{"a\n", "a\nb\n", "line 2:\n got: \nwant: b"},
		{"x", "y", "line 1:\n got: x\nwant: y"},
	}
	for _, tt := range tests {
		if got := FirstDiff([]byte(tt.got), []byte(tt.want)); got != tt.diff {
			t.Errorf("FirstDiff(%q, %q) = %q, want %q", tt.got, tt.want, got, tt.diff)
		}
	}
}

func TestCheckUpdateThenMatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.golden")
	Check(t, path, []byte("hello\n"), true)
	if b, err := os.ReadFile(path); err != nil || string(b) != "hello\n" {
		t.Fatalf("update wrote %q, %v", b, err)
	}
	Check(t, path, []byte("hello\n"), false) // must not fail
}

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()                   {}
func (r *recorder) Errorf(string, ...any)     { r.failed = true }
func (r *recorder) Fatalf(f string, a ...any) { r.failed = true }

func TestCheckMismatchFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.golden")
	if err := os.WriteFile(path, []byte("want\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	Check(r, path, []byte("got\n"), false)
	if !r.failed {
		t.Error("Check passed output that differs from the golden file")
	}
	r = &recorder{TB: t}
	Check(r, filepath.Join(t.TempDir(), "missing.golden"), []byte("x"), false)
	if !r.failed {
		t.Error("Check passed with no golden file")
	}
}
