//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package outdir

import (
	"errors"
	"os"
	"syscall"
)

// lockFile takes flock(2)'s exclusive lock on f without waiting: errHeld
// when another open file holds it. The lock belongs to f's open file
// description, so two opens in one process exclude each other too.
func lockFile(f *os.File) error {
	return flock(f, syscall.LOCK_EX|syscall.LOCK_NB)
}

func unlockFile(f *os.File) error {
	return flock(f, syscall.LOCK_UN)
}

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
	if errors.Is(ferr, syscall.EWOULDBLOCK) {
		return errHeld
	}
	return ferr
}

// processAlive reports whether a process with this id exists (EPERM: it
// does, another user's).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
