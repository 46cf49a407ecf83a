package outdir

import (
	"errors"
	"os"
	"syscall"
	"unsafe"
)

// Windows LockFileEx flags and error.
const (
	lockfileFailImmediately = 0x1
	lockfileExclusiveLock   = 0x2
	errorLockViolation      = syscall.Errno(33)
)

// lockOffsetHigh places the one locked byte far past the holder record,
// which stays readable by the processes that find the lock taken.
const lockOffsetHigh = 0x7fffffff

// lockFile takes an exclusive LockFileEx lock on f without waiting: errHeld
// when another handle holds it.
func lockFile(f *os.File) error {
	ol := syscall.Overlapped{OffsetHigh: lockOffsetHigh}
	proc := syscall.NewLazyDLL("kernel32.dll").NewProc("LockFileEx")
	r, _, err := proc.Call(f.Fd(), lockfileExclusiveLock|lockfileFailImmediately, 0, 1, 0, uintptr(unsafe.Pointer(&ol)))
	if r != 0 {
		return nil
	}
	if errors.Is(err, errorLockViolation) {
		return errHeld
	}
	return err
}

func unlockFile(f *os.File) error {
	ol := syscall.Overlapped{OffsetHigh: lockOffsetHigh}
	proc := syscall.NewLazyDLL("kernel32.dll").NewProc("UnlockFileEx")
	if r, _, err := proc.Call(f.Fd(), 0, 1, 0, uintptr(unsafe.Pointer(&ol))); r == 0 {
		return err
	}
	return nil
}

// processAlive says yes: without a check here, a temp file of another
// process is never taken for stale.
func processAlive(int) bool { return true }
