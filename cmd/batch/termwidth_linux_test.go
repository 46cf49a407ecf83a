package main

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"unsafe"
)

// openPTY opens a pseudo-terminal pair and returns its terminal end, or
// skips the test where the system has none to give.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	var unlock int32
	if err := ioctl(ptmx, syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		t.Skipf("unlock pseudo-terminal: %v", err)
	}
	var n uint32
	if err := ioctl(ptmx, syscall.TIOCGPTN, unsafe.Pointer(&n)); err != nil {
		t.Skipf("pseudo-terminal number: %v", err)
	}
	pts, err := os.OpenFile("/dev/pts/"+strconv.FormatUint(uint64(n), 10), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { pts.Close() })
	return pts
}

func ioctl(f *os.File, req uintptr, arg unsafe.Pointer) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}

// TestTerminalWidth checks the width read from a terminal against one set
// on a pseudo-terminal, and that what is not a terminal has none.
func TestTerminalWidth(t *testing.T) {
	pts := openPTY(t)
	for _, cols := range []uint16{123, 80} {
		ws := winsize{rows: 40, cols: cols}
		if err := ioctl(pts, syscall.TIOCSWINSZ, unsafe.Pointer(&ws)); err != nil {
			t.Fatalf("set window size: %v", err)
		}
		if got := terminalWidth(pts); got != int(cols) {
			t.Errorf("terminalWidth(a %d-column terminal) = %d", cols, got)
		}
		e := &env{getenv: func(string) string { return "" }, stdout: pts}
		if got := e.tableWidth(); got != int(cols) {
			t.Errorf("tableWidth() with stdout a %d-column terminal = %d", cols, got)
		}
		e.getenv = func(k string) string { return map[string]string{"COLUMNS": "99"}[k] }
		if got := e.tableWidth(); got != 99 {
			t.Errorf("tableWidth() with COLUMNS=99 = %d, want 99", got)
		}
	}

	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "plan.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for name, f := range map[string]*os.File{"/dev/null": null, "a pipe": w, "a file": file} {
		if got := terminalWidth(f); got != 0 {
			t.Errorf("terminalWidth(%s) = %d, want 0", name, got)
		}
	}
}
