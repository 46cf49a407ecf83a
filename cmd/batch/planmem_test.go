package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// planMaxPeakRSS is the most memory `batch plan` of a 2,000,000-job matrix
// with long prompts may take, in any format.
const planMaxPeakRSS = 256 << 20

// lineCounter counts the lines written to it and keeps the last bytes.
type lineCounter struct {
	lines int
	tail  []byte
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.lines += bytes.Count(p, []byte{'\n'})
	c.tail = append(c.tail, p[max(len(p)-16, 0):]...)
	c.tail = c.tail[max(len(c.tail)-16, 0):]
	return len(p), nil
}

// TestPlanMatrixPeakMemory plans longPromptMatrix at 2,000,000 jobs in a
// process of its own (this test binary, run as batch), as a table and as
// JSON (4.2 GB, every job on a line, counted and dropped), and holds its
// peak RSS, from the kernel, under 256 MiB: the plan keeps 8 bytes of
// price a job and sums by group, never the jobs or rows. Skipped with
// -short, and under the race detector, whose shadow memory multiplies the
// RSS.
func TestPlanMatrixPeakMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("plans two million jobs twice; skipped with -short")
	}
	if raceEnabled {
		t.Skip("the race detector's shadow memory makes the RSS meaningless")
	}
	path := filepath.Join(t.TempDir(), "long.yaml")
	if err := os.WriteFile(path, []byte(longPromptMatrix(250)), 0o644); err != nil {
		t.Fatal(err)
	}
	const jobs = 2_000_000
	for _, tt := range []struct {
		format    string
		lines     int    // at least
		wantLines int    // exactly, when not 0
		tail      string // the output's last bytes
	}{
		{"table", 10, 0, "Budget: none\n"},
		{"json", jobs, jobs + 10, "\n  ]\n}\n"}, // the header's 7 lines and the end's 3
	} {
		t.Run(tt.format, func(t *testing.T) {
			var out lineCounter
			var stderr bytes.Buffer
			cmd := exec.Command(os.Args[0], "plan", "--format", tt.format, path)
			cmd.Env = append(os.Environ(), "BATCH_TEST_MAIN=1")
			cmd.Stdout, cmd.Stderr = &out, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("batch plan --format %s: %v\n%s", tt.format, err, stderr.String())
			}
			if !bytes.HasSuffix(out.tail, []byte(tt.tail)) || out.lines < tt.lines || tt.wantLines > 0 && out.lines != tt.wantLines {
				t.Errorf("plan --format %s wrote %d lines ending %q; want %d, ending %q", tt.format, out.lines, out.tail, max(tt.lines, tt.wantLines), tt.tail)
			}
			ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			if !ok {
				t.Skip("no rusage on this system")
			}
			peak := ru.Maxrss << 10 // KiB on Linux
			t.Logf("plan --format %s of %d jobs: peak RSS %d MiB", tt.format, jobs, peak>>20)
			if peak > planMaxPeakRSS {
				t.Errorf("peak RSS %d MiB, want at most %d MiB", peak>>20, planMaxPeakRSS>>20)
			}
		})
	}
}
