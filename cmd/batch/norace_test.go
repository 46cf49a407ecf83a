//go:build !race

package main

// raceEnabled reports whether the race detector is on: its shadow memory
// makes a process's RSS meaningless.
const raceEnabled = false
