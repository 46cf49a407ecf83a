//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd || windows)

package sharedrate

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

func lockFile(*os.File) error {
	return fmt.Errorf("locking a file on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func unlockFile(*os.File) error { return nil }
