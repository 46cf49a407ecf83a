package report

import (
	"bytes"
	"fmt"

	"github.com/batch-tool/batch/internal/outdir"
)

// Save writes a run's report into dir as report.json (the canonical file,
// RunFile), report.md and report.html. Each file is replaced atomically:
// readers see the old file or the new one, never a partial one. A symbolic
// link at one of those names is replaced by the file, never written
// through; the files are created 0666 less the umask. report.html embeds
// thumbnails of the run's images, read from dir (see WriteRunHTML).
func Save(dir string, r *Run) error {
	d, err := outdir.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("save report: %w", err)
	}
	defer d.Close()
	in := *r
	in.dir = dir // the images' paths are relative to it
	for _, f := range []struct{ name, format string }{
		{RunFile, FormatJSON}, {"report.md", FormatMarkdown}, {"report.html", FormatHTML},
	} {
		var buf bytes.Buffer
		if err := WriteRun(&buf, f.format, &in); err != nil {
			return err
		}
		if err := d.WriteFileAtomic(f.name, buf.Bytes()); err != nil {
			return fmt.Errorf("save report: %w", err)
		}
	}
	return nil
}
