// Package golden compares test output with golden files under testdata and
// rewrites them when a test runs with -update. Each test package keeps its
// own -update flag and passes its value in.
package golden

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
)

// Check compares got with the file at path. When update is true it
// rewrites the file instead. A mismatch fails the test, showing the first
// line that differs and how to refresh the file.
func Check(t testing.TB, path string, got []byte, update bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s at %s\n(if the change is intended, rerun with -update and review the git diff)", path, FirstDiff(got, want))
	}
}

// FirstDiff describes the first line where got and want differ, or "the
// end" when they differ only in length of the last line.
func FirstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n got: %s\nwant: %s", i+1, gl, wl)
		}
	}
	return "the end"
}
