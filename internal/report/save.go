package report

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// Save writes a run's report into dir as report.json (the canonical file,
// RunFile), report.md and report.html. Each file is replaced atomically:
// readers see the old file or the new one, never a partial one.
func Save(dir string, r *Run) error {
	for _, f := range []struct{ name, format string }{
		{RunFile, FormatJSON}, {"report.md", FormatMarkdown}, {"report.html", FormatHTML},
	} {
		var buf bytes.Buffer
		if err := WriteRun(&buf, f.format, r); err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(dir, f.name), buf.Bytes()); err != nil {
			return fmt.Errorf("save report: %w", err)
		}
	}
	return nil
}

// writeFileAtomic writes data to name through a temp file in the same
// folder, synced and then renamed over name.
func writeFileAtomic(name string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}
