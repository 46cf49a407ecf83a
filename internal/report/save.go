package report

import (
	"bufio"
	"fmt"
	"io"
	"path"

	"github.com/batch-tool/batch/internal/outdir"
)

// Save writes a run's report into dir as report.json (the canonical file,
// RunFile), report.md and report.html. Each file is replaced atomically:
// readers see the old file or the new one, never a partial one. A symbolic
// link at one of those names is replaced by the file, never written
// through; the files are created 0666 less the umask. report.html embeds
// thumbnails of the run's images, read from dir (see WriteRunHTML). Each
// file streams to disk as it is rendered, so a report of a million jobs
// (see Run.Rows) is never held in memory.
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
		if err := writeAtomic(d, f.name, func(w io.Writer) error { return WriteRun(w, f.format, &in) }); err != nil {
			return err
		}
	}
	return nil
}

// writeAtomic writes the file name in d with write, as
// (*outdir.Dir).WriteFileAtomic does, streaming: into a temp file beside
// name, synced, renamed over name, then the folder synced; on failure the
// temp file is removed. Errors of write are returned as they are; those
// of the file are wrapped.
func writeAtomic(d *outdir.Dir, name string, write func(io.Writer) error) (err error) {
	f, tmp, err := d.CreateTemp(name)
	if err != nil {
		return fmt.Errorf("save report: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close() // a second Close is harmless
			_ = d.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 256<<10)
	if err = write(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err == nil {
		if err = f.Sync(); err == nil {
			err = f.Close()
		}
	}
	if err == nil {
		err = d.Rename(tmp, name)
	}
	if err == nil {
		err = d.SyncFolder(path.Dir(name))
	}
	if err != nil {
		return fmt.Errorf("save report: %w", err)
	}
	return nil
}
