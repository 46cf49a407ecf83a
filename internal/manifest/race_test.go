//go:build race

package manifest

// raceEnabled reports whether the race detector is on.
const raceEnabled = true
