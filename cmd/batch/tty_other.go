//go:build !(linux || darwin || dragonfly || freebsd || netbsd || windows)

package main

// isTerminalFd says no where batch has no terminal check: progress is then
// printed as plain lines, which any reader of stderr can follow.
func isTerminalFd(uintptr) bool { return false }
