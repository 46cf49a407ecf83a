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
