//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd || windows)

package outdir

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

func lockFile(*os.File) error {
	return fmt.Errorf("locking a folder on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func unlockFile(*os.File) error { return nil }

func processAlive(int) bool { return true }
