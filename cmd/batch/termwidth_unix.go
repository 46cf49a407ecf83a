//go:build linux || darwin || dragonfly || freebsd || netbsd

package main

import (
	"syscall"
	"unsafe"
)

// winsize is the kernel's struct winsize, which TIOCGWINSZ fills in.
type winsize struct {
	rows, cols, xpixel, ypixel uint16
}

// terminalWidthFd asks the terminal driver for fd's window size
// (TIOCGWINSZ, as stty size does) and returns its columns; 0 when fd is
// not a terminal (/dev/null, a pipe, a file) or reports no width.
func terminalWidthFd(fd uintptr) int {
	var ws winsize
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, uintptr(syscall.TIOCGWINSZ), uintptr(unsafe.Pointer(&ws))); errno != 0 {
		return 0
	}
	return int(ws.cols)
}
