package runner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/batch-tool/batch/internal/outdir"
	"github.com/batch-tool/batch/internal/stability"
)

// treeOf returns every path under dir with its mode and content, to show
// a folder outside OUT was left untouched.
func treeOf(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v", p, fi.Mode())
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %q", data)
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestRunRefusesOutputFolder: an output folder that cannot be used is an
// error before anything is sent, never a panic, and a folder outside it
// that a link points to is left untouched.
func TestRunRefusesOutputFolder(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, out, target string)
		want  string
	}{
		{"images is a link", func(t *testing.T, out, target string) {
			symlink(t, target, filepath.Join(out, ImagesDir))
		}, "images is a symbolic link"},
		{"filtered is a link", func(t *testing.T, out, target string) {
			symlink(t, target, filepath.Join(out, FilteredDir))
		}, "filtered is a symbolic link"},
		{"journal is a link", func(t *testing.T, out, target string) {
			symlink(t, filepath.Join(target, "precious.txt"), filepath.Join(out, JournalFile))
		}, "journal.jsonl is a symbolic link"},
		{"images is a file", func(t *testing.T, out, target string) {
			writeFile(t, filepath.Join(out, ImagesDir), "x")
		}, "images is not a folder"},
		{"read-only", func(t *testing.T, out, target string) {
			if os.Geteuid() == 0 {
				t.Skip("root writes into a read-only folder; the cases above cover a folder that cannot be used")
			}
			if err := os.Chmod(out, 0o555); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(out, 0o755) })
		}, "permission denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fastConfig(t)
			target := t.TempDir()
			writeFile(t, filepath.Join(target, "precious.txt"), "keep me")
			tt.setup(t, cfg.OutDir, target)
			before := treeOf(t, target)
			var calls atomic.Int32
			gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
				calls.Add(1)
				return succeed(ctx, req, sink)
			}}
			jobs, prices := testJobs(3)
			_, err := runJobs(t.Context(), cfg, gen, jobs, prices)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run = %v, want an error with %q", err, tt.want)
			}
			if n := calls.Load(); n != 0 {
				t.Errorf("%d requests sent, want none", n)
			}
			if after := treeOf(t, target); after != before {
				t.Errorf("the link's target changed:\n%s\nwant\n%s", after, before)
			}
		})
	}
}

// TestRunReplacesLinkedImage: a link where an image goes is replaced by
// the image; what it pointed to is untouched.
func TestRunReplacesLinkedImage(t *testing.T) {
	cfg := fastConfig(t)
	target := t.TempDir()
	writeFile(t, filepath.Join(target, "precious.txt"), "keep me")
	if err := os.Mkdir(filepath.Join(cfg.OutDir, ImagesDir), 0o755); err != nil {
		t.Fatal(err)
	}
	symlink(t, filepath.Join(target, "precious.txt"), filepath.Join(cfg.OutDir, ImagesDir, "job-000.png"))
	before := treeOf(t, target)
	jobs, prices := testJobs(1)
	res, err := runJobs(t.Context(), cfg, &fakeGen{fn: succeed}, jobs, prices)
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Jobs[0]; r.Status != Succeeded || len(r.Images) != 1 {
		t.Fatalf("job = %s with %d images (%s), want succeeded with 1", r.Status, len(r.Images), r.Error)
	}
	checkImage(t, cfg.OutDir, res.Jobs[0].Images[0])
	if fi, err := os.Lstat(filepath.Join(cfg.OutDir, ImagesDir, "job-000.png")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("images/job-000.png: %v, %v; want a regular file", fi, err)
	}
	if after := treeOf(t, target); after != before {
		t.Errorf("the link's target changed:\n%s\nwant\n%s", after, before)
	}
}

// TestPrepareOutSpace: the space asked for is that of the images not on
// disk yet, and too little of it stops the run before it starts.
func TestPrepareOutSpace(t *testing.T) {
	pngSize := outdir.ExpectedBytes(testSide, testSide, "png")
	jobs, _ := testJobs(4)
	jobs[3].Samples = 2
	jpeg := stableJob("jpeg-job", "generate/core", 1024, 1024, "output_format", "jpeg")
	jobs = append(jobs, jpeg)
	jpegSize := outdir.ExpectedBytes(1024, 1024, "jpeg")
	tests := []struct {
		name  string
		files []string // present before the run
		want  int64
	}{
		{"fresh", nil, 5*pngSize + jpegSize},
		{"one image there", []string{"images/job-000.png"}, 4*pngSize + jpegSize},
		{"filtered counts", []string{"images/job-000.png", "filtered/job-001.png"}, 3*pngSize + jpegSize},
		{"one of two samples", []string{"images/job-003-2.png"}, 4*pngSize + jpegSize},
		{"every file", []string{"images/job-000.png", "images/job-001.png", "images/job-002.png",
			"images/job-003-1.png", "filtered/job-003-2.png", "images/jpeg-job.jpg"}, 0},
		{"temp files and other names do not count", []string{"images/.job-000.png.tmp-1-0123456789abcdef", "images/job-000.jpg"},
			5*pngSize + jpegSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := t.TempDir()
			for _, f := range tt.files {
				p := filepath.Join(out, filepath.FromSlash(f))
				os.MkdirAll(filepath.Dir(p), 0o755)
				writeFile(t, p, "x")
			}
			got, err := bytesToWrite(out, JobList(jobs))
			if err != nil || got != tt.want {
				t.Errorf("bytesToWrite = %d, %v; want %d", got, err, tt.want)
			}
			p := outdir.Preparer{FreeBytes: func(string) (int64, error) { return 1 << 10, nil }}
			err = prepareOut(out, JobList(jobs), p)
			if tt.want > 1<<10 && !errors.Is(err, outdir.ErrNoSpace) {
				t.Errorf("prepareOut with 1 KiB free = %v, want outdir.ErrNoSpace", err)
			}
			if tt.want == 0 && err != nil {
				t.Errorf("prepareOut with nothing to write = %v, want nil", err)
			}
		})
	}
}

func symlink(t *testing.T, oldname, newname string) {
	t.Helper()
	if err := os.Symlink(oldname, newname); err != nil {
		t.Skipf("no symbolic links here: %v", err)
	}
}

func writeFile(t *testing.T, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
