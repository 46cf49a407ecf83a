package report

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSaveWritesEveryFileAndReadsBack(t *testing.T) {
	run := mustReadRun(t, "testdata/run")
	dir := t.TempDir()
	if err := Save(dir, run); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{RunFile, "report.md", "report.html"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Errorf("Save left %d files, want 3 (no temp files)", len(entries))
	}
	back, err := ReadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	if back.ChargedCredits != run.ChargedCredits || len(back.Jobs) != len(run.Jobs) {
		t.Errorf("read back charged %v with %d jobs, saved %v with %d", back.ChargedCredits, len(back.Jobs), run.ChargedCredits, len(run.Jobs))
	}
}

func TestSaveIntoMissingFolderFails(t *testing.T) {
	run := mustReadRun(t, "testdata/run")
	if err := Save(filepath.Join(t.TempDir(), "missing"), run); err == nil {
		t.Error("Save into a folder that does not exist succeeded")
	}
}

// TestSaveReplacesLinks: a link where a report file goes is replaced by
// the report; the file it pointed to is untouched.
func TestSaveReplacesLinks(t *testing.T) {
	run := mustReadRun(t, "testdata/run")
	dir, elsewhere := t.TempDir(), t.TempDir()
	target := filepath.Join(elsewhere, "precious.json")
	if err := os.WriteFile(target, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{RunFile, "report.md"} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Skipf("no symbolic links here: %v", err)
		}
	}
	if err := Save(dir, run); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{RunFile, "report.md", "report.html"} {
		if fi, err := os.Lstat(filepath.Join(dir, name)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: %v, %v; want a regular file", name, fi, err)
		}
	}
	if data, err := os.ReadFile(target); err != nil || string(data) != "keep me" {
		t.Errorf("the links' target = %q, %v; want it untouched", data, err)
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 1 {
		t.Errorf("the links' folder holds %d files, want 1", len(entries))
	}
}
