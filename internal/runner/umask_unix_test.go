//go:build unix

package runner

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/batch-tool/batch/internal/stability"
)

const umaskEnv = "BATCH_RUNNER_UMASK_CHILD"

// TestRunFilesHonourUmask runs a job in a child process with its own umask
// (the umask is the whole process's) and checks the modes of what it
// wrote.
func TestRunFilesHonourUmask(t *testing.T) {
	if spec := os.Getenv(umaskEnv); spec != "" {
		var mask int
		var dir string
		if _, err := fmt.Sscanf(spec, "%o %s", &mask, &dir); err != nil {
			t.Fatal(err)
		}
		syscall.Umask(mask)
		jobs, prices := testJobs(1)
		jobs = append(jobs, stableJob("filtered-job", "generate/core", 1024, 1024, "output_format", "png"))
		prices = append(prices, prices[0])
		gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
			if req.Service != "" {
				return generate(req, sink, stability.FinishContentFiltered)
			}
			return succeed(ctx, req, sink)
		}}
		if _, err := runJobs(t.Context(), Config{OutDir: dir}, gen, jobs, prices); err != nil {
			t.Fatal(err)
		}
		return
	}
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	tests := []struct {
		umask        string
		file, folder fs.FileMode
	}{
		{"022", 0o644, 0o755},
		{"027", 0o640, 0o750},
	}
	for _, tt := range tests {
		t.Run(tt.umask, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			cmd := exec.Command(os.Args[0], "-test.run=^TestRunFilesHonourUmask$")
			cmd.Env = append(os.Environ(), umaskEnv+"="+tt.umask+" "+out)
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("child: %v\n%s", err, msg)
			}
			for _, c := range []struct {
				name string
				mode fs.FileMode
			}{
				{".", tt.folder}, {ImagesDir, tt.folder}, {FilteredDir, tt.folder},
				{"images/job-000.png", tt.file}, {"filtered/filtered-job.png", tt.file}, {JournalFile, tt.file},
			} {
				fi, err := os.Lstat(filepath.Join(out, filepath.FromSlash(c.name)))
				if err != nil {
					t.Errorf("%s: %v", c.name, err)
					continue
				}
				if got := fi.Mode().Perm(); got != c.mode {
					t.Errorf("%s: mode %v, want %v", c.name, got, c.mode)
				}
			}
		})
	}
}
