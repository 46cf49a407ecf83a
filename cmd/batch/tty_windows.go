package main

import "syscall"

// isTerminalFd reports whether fd is a console: GetConsoleMode succeeds
// only on one (the NUL device and pipes fail it).
func isTerminalFd(fd uintptr) bool {
	var mode uint32
	return syscall.GetConsoleMode(syscall.Handle(fd), &mode) == nil
}
