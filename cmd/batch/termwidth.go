package main

import (
	"os"
	"strconv"
	"strings"
)

// tableWidth is the width, in columns, that the plan table fits its
// prompts to: $COLUMNS when it is a positive number, else the width of the
// terminal stdout is; 0 (no limit) when stdout is not a terminal, so
// output piped or redirected to a file keeps every prompt whole.
func (e *env) tableWidth() int {
	if n, err := strconv.Atoi(strings.TrimSpace(e.getenv("COLUMNS"))); err == nil && n > 0 {
		return n
	}
	f, ok := e.stdout.(*os.File)
	if !ok {
		return 0
	}
	return terminalWidth(f)
}

// terminalWidth is the number of columns of the terminal f is, or 0 when
// f is not a terminal or its width is unknown.
func terminalWidth(f *os.File) int {
	// Control, unlike Fd, leaves a non-blocking file non-blocking.
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	width := 0
	if err := rc.Control(func(fd uintptr) { width = terminalWidthFd(fd) }); err != nil {
		return 0
	}
	return width
}
