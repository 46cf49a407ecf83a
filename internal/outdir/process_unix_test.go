//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package outdir

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// helperEnv makes the test binary a helper process (see helper) instead of
// running the tests: its value is the mode, helperEnv+"_DIR" the folder.
const helperEnv = "BATCH_OUTDIR_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := helper(mode, os.Getenv(helperEnv+"_DIR")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helper is a process the tests start:
//   - "lock": takes the lock of dir, creates a temp file in dir/images,
//     prints "locked TEMP" and waits for stdin to close (or to be killed);
//   - "temp": creates a temp file in dir/images without the lock, prints
//     "ready TEMP" and waits for stdin to close;
//   - "umask OCTAL": sets the umask and writes through every function
//     that creates files or folders, then exits.
func helper(mode, dir string) error {
	switch verb, arg, _ := strings.Cut(mode, " "); verb {
	case "lock", "temp":
		if verb == "lock" {
			if _, err := Lock(dir); err != nil {
				return err
			}
		}
		d, err := OpenDir(dir)
		if err != nil {
			return err
		}
		_, tmp, err := d.CreateTemp("images/cats.png")
		if err != nil {
			return err
		}
		word := map[string]string{"lock": "locked", "temp": "ready"}[verb]
		fmt.Printf("%s %s\n", word, tmp)
		_, err = io.Copy(io.Discard, os.Stdin)
		return err
	case "umask":
		mask, err := strconv.ParseUint(arg, 8, 32)
		if err != nil {
			return err
		}
		syscall.Umask(int(mask))
		l, err := Lock(dir)
		if err != nil {
			return err
		}
		if err := Prepare(dir, 1); err != nil {
			return err
		}
		if err := WriteFileAtomic(filepath.Join(dir, "report.json"), []byte("{}\n")); err != nil {
			return err
		}
		f, err := OpenFile(filepath.Join(dir, "journal.jsonl"), os.O_RDWR|os.O_CREATE)
		if err != nil {
			return err
		}
		f.Close()
		d, err := OpenDir(dir)
		if err != nil {
			return err
		}
		f, tmp, err := d.CreateTemp("images/cats.png")
		if err != nil {
			return err
		}
		f.Close()
		if err := d.Rename(tmp, "images/cats.png"); err != nil {
			return err
		}
		return l.Unlock()
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

// child is a helper process with its stdin and first stdout line.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	line  string // the first line it printed, without the newline
}

// startHelper starts a helper process and waits for its first line.
func startHelper(t *testing.T, mode, dir string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperEnv+"_DIR="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		c.stdin.Close()
		c.cmd.Process.Kill()
		c.cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper %q: %v", mode, err)
	}
	c.line = strings.TrimSuffix(line, "\n")
	return c
}

// TestLockAcrossProcesses: a lock held by another process refuses this
// one with that process's pid; once that process is SIGKILLed, the lock
// is taken at once, and the temp files the dead process left are removed
// while a live process's are kept.
func TestLockAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	out := t.TempDir()
	if err := Prepare(out, 0); err != nil {
		t.Fatal(err)
	}
	holder := startHelper(t, "lock", out)
	deadTemp, ok := strings.CutPrefix(holder.line, "locked ")
	if !ok {
		t.Fatalf("lock helper said %q", holder.line)
	}
	l, err := Lock(out)
	if err == nil {
		l.Unlock()
		t.Fatal("Lock while another process holds it = nil error")
	}
	pid := holder.cmd.Process.Pid
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("in use by batch pid %d on ", pid)) {
		t.Errorf("Lock = %v, want ErrLocked naming pid %d", err, pid)
	}

	// files Lock must leave alone: a live process's temp file, other
	// names, os.CreateTemp's style; and one it removes: this process's
	live := startHelper(t, "temp", out)
	liveTemp, ok := strings.CutPrefix(live.line, "ready ")
	if !ok {
		t.Fatalf("temp helper said %q", live.line)
	}
	keep := []string{liveTemp, "images/cats.png", "images/.cats.png.tmp123456789", ".report.json.tmp-x-0123456789abcdef"}
	for _, k := range keep[1:] {
		mustWrite(t, filepath.Join(out, k), "x")
	}
	d, err := OpenDir(out)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	f, ownTemp, err := d.CreateTemp("report.json")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()

	if err := holder.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := holder.cmd.Wait(); err == nil {
		t.Fatal("lock helper exited cleanly, want killed")
	}
	l, err = Lock(out)
	if err != nil {
		t.Fatalf("Lock after the holder was killed = %v", err)
	}
	defer l.Unlock()
	for _, gone := range []string{deadTemp, ownTemp} {
		if _, err := os.Lstat(filepath.Join(out, gone)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stale %s after Lock: %v, want removed", gone, err)
		}
	}
	for _, k := range keep {
		if _, err := os.Lstat(filepath.Join(out, k)); err != nil {
			t.Errorf("%s after Lock: %v, want kept", k, err)
		}
	}
}

// TestFilesHonourUmask writes through every function in a process with
// its own umask (the umask is the whole process's, so not this one's).
func TestFilesHonourUmask(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	tests := []struct {
		umask      string
		file, fold fs.FileMode
	}{
		{"022", 0o644, 0o755},
		{"077", 0o600, 0o700},
		{"002", 0o664, 0o775},
	}
	for _, tt := range tests {
		t.Run(tt.umask, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"=umask "+tt.umask, helperEnv+"_DIR="+out)
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("helper: %v: %s", err, msg)
			}
			want := map[string]fs.FileMode{
				".": tt.fold, ImagesDir: tt.fold, FilteredDir: tt.fold,
				LockFile: tt.file, "report.json": tt.file, "journal.jsonl": tt.file, "images/cats.png": tt.file,
			}
			for _, name := range slices.Sorted(maps.Keys(want)) {
				fi, err := os.Lstat(filepath.Join(out, name))
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				if got := fi.Mode().Perm(); got != want[name] {
					t.Errorf("%s: mode %v, want %v", name, got, want[name])
				}
			}
		})
	}
}

func TestReadFileRefusesFIFO(t *testing.T) {
	name := filepath.Join(t.TempDir(), "journal.jsonl")
	if err := syscall.Mkfifo(name, 0o600); err != nil {
		t.Skip(err)
	}
	if _, err := ReadFile(name); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("ReadFile(FIFO) = %v, want it refused", err)
	}
	if _, err := OpenFile(name, os.O_RDWR|os.O_CREATE); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("OpenFile(FIFO) = %v, want it refused", err)
	}
}
