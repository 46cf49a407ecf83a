//go:build !(linux || darwin || dragonfly || freebsd || netbsd)

package main

// terminalWidthFd does not know a terminal's width here (Windows among
// others): the plan table then fits prompts only to $COLUMNS, when set.
func terminalWidthFd(uintptr) int { return 0 }
