//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd || windows)

package flock

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

// Lock is not supported here.
func Lock(*os.File) error {
	return fmt.Errorf("locking a file on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// TryLock is not supported here.
func TryLock(f *os.File) error { return Lock(f) }

// Unlock does nothing here.
func Unlock(*os.File) error { return nil }
