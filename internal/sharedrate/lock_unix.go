//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package sharedrate

import (
	"errors"
	"os"
	"syscall"
)

// lockFile waits for flock(2)'s exclusive lock on f. The lock belongs to
// f's open file description, so two Files in one process exclude each
// other too, and the kernel drops it when its process dies.
func lockFile(f *os.File) error { return flock(f, syscall.LOCK_EX) }

func unlockFile(f *os.File) error { return flock(f, syscall.LOCK_UN) }

func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		for {
			ferr = syscall.Flock(int(fd), how)
			if !errors.Is(ferr, syscall.EINTR) {
				return
			}
		}
	}); err != nil {
		return err
	}
	return ferr
}
