package main

import (
	"os"
	"testing"
)

// TestIsTerminalFindsATerminal: a pseudo-terminal (the master side of
// /dev/ptmx answers TCGETS like any terminal) is one.
func TestIsTerminalFindsATerminal(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	defer ptmx.Close()
	if !isTerminal(ptmx) {
		t.Error("isTerminal(/dev/ptmx) = false, want true")
	}
}
