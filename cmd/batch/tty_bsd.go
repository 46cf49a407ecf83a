//go:build darwin || dragonfly || freebsd || netbsd

package main

import (
	"syscall"
	"unsafe"
)

// isTerminalFd reports whether fd is a terminal: the terminal driver
// answers TIOCGETA (isatty(3) asks the same). A character device such as
// /dev/null does not.
func isTerminalFd(fd uintptr) bool {
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCGETA, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}
