//go:build linux || darwin

package outdir

import (
	"math"
	"syscall"
)

// FreeBytes returns the bytes an unprivileged process may still write on
// the filesystem holding dir (statfs(2): available blocks × block size).
func FreeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return clampBytes(uint64(st.Bavail), uint64(st.Bsize)), nil
}

// clampBytes is blocks × size, at most math.MaxInt64.
func clampBytes(blocks, size uint64) int64 {
	if size != 0 && blocks > math.MaxInt64/size {
		return math.MaxInt64
	}
	return int64(blocks * size)
}
