//go:build !linux && !darwin

package outdir

import (
	"errors"
	"fmt"
	"runtime"
)

// FreeBytes returns an error wrapping errors.ErrUnsupported here: the free
// space of a folder is asked of the filesystem only on Linux and macOS.
func FreeBytes(dir string) (int64, error) {
	return 0, fmt.Errorf("free space on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
