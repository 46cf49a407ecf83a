package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/report"
	"github.com/batch-tool/batch/internal/sandbox"
)

// planningMark is what a child run with BATCH_TEST_HOLD_PLANNING=1 prints
// once it handles signals and starts to plan.
const planningMark = "test: planning"

// TestMain lets a test run this test binary as the batch command itself
// (BATCH_TEST_MAIN=1), so signals reach a real process. With
// BATCH_TEST_HOLD_PLANNING=1 the child, about to plan a manifest, prints
// planningMark and waits for a signal, so a test can signal it there.
func TestMain(m *testing.M) {
	if os.Getenv("BATCH_TEST_MAIN") == "1" {
		e := newEnv(os.Getenv, os.Stdout, os.Stderr)
		if os.Getenv("BATCH_TEST_HOLD_PLANNING") == "1" {
			e.planning = func(ctx context.Context) {
				fmt.Fprintln(os.Stderr, planningMark)
				<-ctx.Done()
			}
		}
		os.Exit(e.run(os.Args[1:]))
	}
	os.Exit(testMain(m))
}

// testMain runs the tests with the shared rate-limit files and the image
// cache of the child processes in a temp folder, never the user's own
// cache folder.
func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "batch-rate-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	os.Setenv(rateDirEnv, dir)
	for _, k := range []string{"XDG_CACHE_HOME", "HOME", "LocalAppData"} { // the user's cache folder on each OS
		os.Setenv(k, dir)
	}
	return m.Run()
}

// interruptNotice is what batch prints when the first signal arrives, after
// it has removed its handlers.
const interruptNotice = "batch: interrupted; stopping"

// testSignals are the signals that stop batch, each the same way.
func testSignals() []syscall.Signal {
	return []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}
}

// stderrWatch collects a child's stderr and lets a test wait for a text to
// appear in it. It is safe for concurrent use.
type stderrWatch struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed, and replaced, by every write
}

func newStderrWatch() *stderrWatch { return &stderrWatch{changed: make(chan struct{})} }

func (w *stderrWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	close(w.changed)
	w.changed = make(chan struct{})
	return len(p), nil
}

func (w *stderrWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// waitFor waits until the output holds text, and fails the test if it does
// not within a generous limit (which only a broken build reaches).
func (w *stderrWatch) waitFor(t *testing.T, text string) {
	t.Helper()
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for {
		w.mu.Lock()
		found, changed := strings.Contains(w.buf.String(), text), w.changed
		w.mu.Unlock()
		if found {
			return
		}
		select {
		case <-changed:
		case <-timeout.C:
			t.Fatalf("stderr never showed %q:\n%s", text, w)
		}
	}
}

// startBatch runs the batch command as a child process; extraEnv adds to
// its environment.
func startBatch(t *testing.T, extraEnv []string, args ...string) (*exec.Cmd, *stderrWatch) {
	t.Helper()
	return startBatchWith(t, exec.Command(os.Args[0], args...), extraEnv)
}

// startBatchWith starts cmd, which runs this test binary (perhaps through
// a wrapper), as the batch command.
func startBatchWith(t *testing.T, cmd *exec.Cmd, extraEnv []string) (*exec.Cmd, *stderrWatch) {
	t.Helper()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GITHUB_STEP_SUMMARY=") { // not the CI job's summary
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "BATCH_TEST_MAIN=1", "STABILITY_API_KEY=sk-signal-test")
	cmd.Env = append(cmd.Env, extraEnv...)
	stderr := newStderrWatch()
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, stderr
}

// waitExit waits for the child to end and returns its exit code, or the
// signal that killed it (code -1). It fails the test if the child is still
// running after a generous limit.
func waitExit(t *testing.T, cmd *exec.Cmd) (code int, killedBy syscall.Signal) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				return -1, ws.Signal()
			}
			return ee.ExitCode(), 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, 0
	case <-timeout.C:
		t.Fatalf("batch did not exit")
	}
	return 0, 0
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

// holdingSandbox is a sandbox whose generations, once received, wait until
// release is closed (or their client leaves). Each one sends on entered as
// it starts waiting, so a test knows what is in flight.
func holdingSandbox(t *testing.T) (url string, sb *sandbox.Server, entered chan struct{}, release chan struct{}) {
	t.Helper()
	entered, release = make(chan struct{}, 100), make(chan struct{})
	sheet, err := cost.LookupSheet("dreamstudio-2022")
	if err != nil {
		t.Fatal(err)
	}
	sb, err = sandbox.New(sandbox.Config{Pricer: sheet, Sleep: func(ctx context.Context, _ time.Duration) error {
		entered <- struct{}{}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	return startSandboxWith(t, sb), sb, entered, release
}

// waitEntered waits until n generations are in flight at the sandbox.
func waitEntered(t *testing.T, entered <-chan struct{}, n int, stderr *stderrWatch) {
	t.Helper()
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for range n {
		select {
		case <-entered:
		case <-timeout.C:
			t.Fatalf("fewer than %d generations reached the sandbox\n%s", n, stderr)
		}
	}
}

// TestInterruptSavesAndResumes sends one SIGINT mid-run, with four
// generations held in flight at the sandbox: once released they finish, the
// report is saved, the resume command is printed, the exit code is 130, and
// a rerun with the printed --out sends only what is left.
func TestInterruptSavesAndResumes(t *testing.T) {
	url, sb, entered, release := holdingSandbox(t)
	dir := t.TempDir()
	m := signalManifest(t, dir, 40)
	out := filepath.Join(dir, "out")
	cmd, stderr := startBatch(t, nil, "run", "--api-url", url, "--out", out, "--concurrency", "4", m)
	waitEntered(t, entered, 4, stderr)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	stderr.waitFor(t, interruptNotice)
	close(release)
	if code, sig := waitExit(t, cmd); code != exitInterrupted {
		t.Fatalf("exit %d (signal %v) after Ctrl-C, want 130\n%s", code, sig, stderr)
	}
	if want := "Resume with:\n  batch run --api-url=" + url + " --concurrency=4 --out=" + out + " " + m + "\n"; !strings.HasSuffix(stderr.String(), want) {
		t.Errorf("stderr does not end with %q (the resume command, and nothing after it):\n%s", want, stderr)
	}
	rep, err := report.ReadRun(out)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Interrupted || rep.Totals.Succeeded != 4 || rep.Totals.Skipped != 36 {
		t.Fatalf("report after interrupt: interrupted=%v totals %+v, want 4 succeeded and 36 skipped", rep.Interrupted, rep.Totals)
	}
	// Every request sent was answered and recorded: in-flight jobs finished.
	if got := sb.Stats().Generations; got != 4 {
		t.Errorf("sandbox generated %d, want the 4 in flight at the signal", got)
	}

	r := batchCmd(t, map[string]string{"STABILITY_API_KEY": "sk-signal-test"}, "run", "--api-url", url, "--out", out, "--concurrency", "8", "--rate", "1000/1s", m)
	if r.code != exitOK {
		t.Fatalf("resume: exit %d\n%s", r.code, r.stderr)
	}
	if got := sb.Stats().Generations; got != 40 {
		t.Errorf("sandbox generated %d images over both runs, want 40 (the resume sent %d for 36 left)", got, got-4)
	}
}

// TestFirstSignalStopsAndSaves: SIGINT, SIGTERM and SIGHUP each stop a run
// the same way. With two generations held in flight at the sandbox, the
// signal stops new ones; once released, the two finish and are saved, the
// report covers all six jobs, and the exit code is 130.
func TestFirstSignalStopsAndSaves(t *testing.T) {
	for _, sig := range testSignals() {
		t.Run(sig.String(), func(t *testing.T) {
			url, sb, entered, release := holdingSandbox(t)
			dir := t.TempDir()
			m := signalManifest(t, dir, 6)
			out := filepath.Join(dir, "out")
			cmd, stderr := startBatch(t, nil, "run", "--api-url", url, "--out", out, "--concurrency", "2", m)
			waitEntered(t, entered, 2, stderr)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			stderr.waitFor(t, interruptNotice)
			close(release)
			if code, killedBy := waitExit(t, cmd); code != exitInterrupted {
				t.Fatalf("exit %d (signal %v) after %v, want 130\n%s", code, killedBy, sig, stderr)
			}
			rep, err := report.ReadRun(out)
			if err != nil {
				t.Fatalf("no report after %v: %v\n%s", sig, err, stderr)
			}
			if !rep.Interrupted || rep.Totals.Jobs != 6 || rep.Totals.Succeeded != 2 || rep.Totals.Skipped != 4 {
				t.Errorf("report after %v: interrupted=%v totals %+v, want interrupted, 2 succeeded and 4 skipped of 6", sig, rep.Interrupted, rep.Totals)
			}
			if got := sb.Stats().Generations; got != 2 {
				t.Errorf("sandbox generated %d images, want the 2 in flight at the signal", got)
			}
			if !strings.Contains(stderr.String(), "Resume with:") {
				t.Errorf("no resume command in stderr:\n%s", stderr)
			}
			if strings.Contains(stderr.String(), "context canceled") {
				t.Errorf("stderr holds a bare \"context canceled\" after %v:\n%s", sig, stderr)
			}
		})
	}
}

// TestSecondInterruptExitsAtOnce: the second SIGINT ends the process at
// once, without waiting for the generations in flight. The sandbox holds
// them forever, so a first Ctrl-C can end nothing: were it to abort them
// and exit 130, this test would see that exit code instead of death by the
// second SIGINT. The second signal is sent only once batch has said that it
// handled the first (and so removed its handlers).
func TestSecondInterruptExitsAtOnce(t *testing.T) {
	url, _, entered, _ := holdingSandbox(t) // never released
	dir := t.TempDir()
	m := signalManifest(t, dir, 4)
	out := filepath.Join(dir, "out")
	cmd, stderr := startBatch(t, nil, "run", "--api-url", url, "--out", out, "--concurrency", "2", m)
	waitEntered(t, entered, 2, stderr)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	stderr.waitFor(t, interruptNotice)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("second Ctrl-C: %v (the first one ended the process)\n%s", err, stderr)
	}
	if code, killedBy := waitExit(t, cmd); killedBy != syscall.SIGINT {
		t.Fatalf("second Ctrl-C: exit %d (signal %v), want death by SIGINT\n%s", code, killedBy, stderr)
	}
	if _, err := os.Stat(filepath.Join(out, report.RunFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a report exists after the second Ctrl-C (stat: %v): the process did not exit at once", err)
	}
}

// TestSignalDuringPlanning: SIGINT, SIGTERM and SIGHUP while a manifest is
// planned (plan or run) stop the command with exit 130 and a message;
// nothing is sent and no output folder is made.
func TestSignalDuringPlanning(t *testing.T) {
	for _, command := range []string{"plan", "run"} {
		for _, sig := range testSignals() {
			t.Run(command+"/"+sig.String(), func(t *testing.T) {
				dir := t.TempDir()
				m := signalManifest(t, dir, 3)
				out := filepath.Join(dir, "out")
				args := []string{command, m}
				if command == "run" {
					args = []string{command, "--sandbox", "--out", out, m}
				}
				cmd, stderr := startBatch(t, []string{"BATCH_TEST_HOLD_PLANNING=1"}, args...)
				stderr.waitFor(t, planningMark)
				if err := cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
				if code, killedBy := waitExit(t, cmd); code != exitInterrupted {
					t.Fatalf("%s: exit %d (signal %v) after %v while planning, want 130\n%s", command, code, killedBy, sig, stderr)
				}
				if want := "plan " + m + ": interrupted; nothing was sent\n"; !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr does not say %q:\n%s", want, stderr)
				}
				if strings.Contains(stderr.String(), "context canceled") {
					t.Errorf("stderr holds a bare \"context canceled\":\n%s", stderr)
				}
				if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s interrupted while planning made %s (stat: %v)", command, out, err)
				}
			})
		}
	}
}

// TestNohupKeepsHangupIgnored: started under nohup, which ignores SIGHUP,
// batch leaves it ignored (Go's signal.Notify would install a handler and
// undo nohup), while SIGTERM still stops it with exit 130. The kernel's
// view of the process, /proc/PID/status, shows which signals it ignores.
func TestNohupKeepsHangupIgnored(t *testing.T) {
	nohup, err := exec.LookPath("nohup")
	if err != nil {
		t.Skip("no nohup here")
	}
	dir := t.TempDir()
	m := signalManifest(t, dir, 2)
	cmd := exec.Command(nohup, os.Args[0], "plan", m)
	cmd.Dir = dir // where nohup.out would go, were stdout a terminal
	cmd, stderr := startBatchWith(t, cmd, []string{"BATCH_TEST_HOLD_PLANNING=1"})
	stderr.waitFor(t, planningMark)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	ignored, caught := sigMask(t, status, "SigIgn:"), sigMask(t, status, "SigCgt:")
	if ignored&sigBit(syscall.SIGHUP) == 0 {
		t.Errorf("SIGHUP is not ignored under nohup (SigIgn %x, SigCgt %x)", ignored, caught)
	}
	if caught&sigBit(syscall.SIGTERM) == 0 {
		t.Errorf("SIGTERM is not caught (SigCgt %x)", caught)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil { // discarded by the kernel
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, killedBy := waitExit(t, cmd); code != exitInterrupted {
		t.Errorf("exit %d (signal %v) after SIGHUP and SIGTERM under nohup, want 130\n%s", code, killedBy, stderr)
	}
}

// sigMask reads a signal mask line (e.g. "SigIgn:") of /proc/PID/status.
func sigMask(t *testing.T, status []byte, field string) uint64 {
	t.Helper()
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, field); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatalf("%s %q: %v", field, v, err)
			}
			return m
		}
	}
	t.Fatalf("no %s in /proc status", field)
	return 0
}

// sigBit is a signal's bit in a /proc signal mask.
func sigBit(s syscall.Signal) uint64 { return 1 << (uint(s) - 1) }
