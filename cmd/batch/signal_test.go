package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/report"
	"github.com/batch-tool/batch/internal/sandbox"
)

// TestMain lets a test run this test binary as the batch command itself
// (BATCH_TEST_MAIN=1), so signals reach a real process.
func TestMain(m *testing.M) {
	if os.Getenv("BATCH_TEST_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// startBatch runs the batch command as a child process.
func startBatch(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "BATCH_TEST_MAIN=1", "STABILITY_API_KEY=sk-signal-test")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, &stderr
}

// waitJournal waits until the journal in out has at least n lines.
func waitJournal(t *testing.T, out string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if f, err := os.Open(filepath.Join(out, "journal.jsonl")); err == nil {
			lines := 0
			for s := bufio.NewScanner(f); s.Scan(); {
				lines++
			}
			f.Close()
			if lines >= n {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("journal in %s did not reach %d lines", out, n)
}

func exitCodeOf(t *testing.T, cmd *exec.Cmd, within time.Duration) (code int, signaled bool) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				return -1, true
			}
			return ee.ExitCode(), false
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, false
	case <-time.After(within):
		t.Fatalf("batch did not exit within %v", within)
	}
	return 0, false
}

// signalManifest writes a manifest of n cheap jobs.
func signalManifest(t *testing.T, dir string, n int) string {
	t.Helper()
	values := make([]string, n)
	for i := range values {
		values[i] = strconv.Itoa(i + 1)
	}
	return writeFile(t, dir, "signal.yaml", "version: 1\nengine: stable-diffusion-v1-5\npricing: dreamstudio-2022\n"+
		"defaults: {width: 512, height: 512, steps: 10}\njobs:\n  - id: cat\n"+
		"    prompt: a cat number {n}\n    matrix:\n      n: ["+strings.Join(values, ", ")+"]\n")
}

// TestInterruptSavesAndResumes sends one SIGINT mid-run: in-flight jobs
// finish, the report is saved, the resume command is printed, the exit code
// is 130, and the printed command's rerun sends only what is left.
func TestInterruptSavesAndResumes(t *testing.T) {
	sheet, _ := cost.LookupSheet("dreamstudio-2022")
	sb, err := sandbox.New(sandbox.Config{Pricer: sheet, Latency: sandbox.Latency{Min: 300 * time.Millisecond, Max: 300 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	url := startSandboxWith(t, sb)
	dir := t.TempDir()
	m := signalManifest(t, dir, 40)
	out := filepath.Join(dir, "out")
	cmd, stderr := startBatch(t, "run", "--api-url", url, "--out", out, "--concurrency", "4", m)
	waitJournal(t, out, 4)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	code, _ := exitCodeOf(t, cmd, 20*time.Second)
	if code != exitInterrupted {
		t.Fatalf("exit %d after Ctrl-C, want 130\n%s", code, stderr)
	}
	if !strings.Contains(stderr.String(), "Resume with:") || !strings.Contains(stderr.String(), "--out=") {
		t.Errorf("no resume command in stderr:\n%s", stderr)
	}
	rep, err := report.ReadRun(out)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Interrupted || rep.Totals.Succeeded == 0 || rep.Totals.Skipped == 0 || rep.Totals.Succeeded+rep.Totals.Skipped != 40 {
		t.Fatalf("report after interrupt: interrupted=%v totals %+v", rep.Interrupted, rep.Totals)
	}
	// Every request sent was answered and recorded: in-flight jobs finished.
	if got := sb.Stats().Generations; got != rep.Totals.Succeeded {
		t.Errorf("sandbox generated %d, report has %d succeeded", got, rep.Totals.Succeeded)
	}
	done := rep.Totals.Succeeded

	r := batchCmd(t, map[string]string{"STABILITY_API_KEY": "sk-signal-test"}, "run", "--api-url", url, "--out", out, "--concurrency", "8", m)
	if r.code != exitOK {
		t.Fatalf("resume: exit %d\n%s", r.code, r.stderr)
	}
	if got := sb.Stats().Generations; got != 40 {
		t.Errorf("sandbox generated %d images over both runs, want 40 (the resume sent %d for %d left)", got, got-done, 40-done)
	}
}

// TestSecondInterruptExitsAtOnce: the second SIGINT does not wait for
// generations in flight.
func TestSecondInterruptExitsAtOnce(t *testing.T) {
	sheet, _ := cost.LookupSheet("dreamstudio-2022")
	sb, err := sandbox.New(sandbox.Config{Pricer: sheet, Latency: sandbox.Latency{Min: time.Minute, Max: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	url := startSandboxWith(t, sb)
	dir := t.TempDir()
	m := signalManifest(t, dir, 4)
	cmd, stderr := startBatch(t, "run", "--api-url", url, "--out", filepath.Join(dir, "out"), m)
	deadline := time.Now().Add(20 * time.Second)
	for sb.Stats().Requests < 3 && time.Now().Before(deadline) { // balance + generations in flight
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Signal(os.Interrupt)
	time.Sleep(200 * time.Millisecond)
	_ = cmd.Process.Signal(os.Interrupt)
	if code, signaled := exitCodeOf(t, cmd, 10*time.Second); !signaled && code != exitInterrupted {
		t.Errorf("second Ctrl-C: exit %d, want death by SIGINT or 130\n%s", code, stderr)
	}
}
