package flock

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

// lockOffsetHigh places the one locked byte far past the file's data,
// which stays readable by the processes that find the lock taken.
const lockOffsetHigh = 0x7fffffff

// Lock waits for the exclusive lock on f.
func Lock(f *os.File) error { return lockFileEx(f, lockfileExclusiveLock) }

// TryLock takes the exclusive lock on f without waiting: ErrHeld when
// another handle holds it.
func TryLock(f *os.File) error {
	err := lockFileEx(f, lockfileExclusiveLock|lockfileFailImmediately)
	if errors.Is(err, errorLockViolation) {
		return ErrHeld
	}
	return err
}

func lockFileEx(f *os.File, flags uintptr) error {
	ol := syscall.Overlapped{OffsetHigh: lockOffsetHigh}
	proc := syscall.NewLazyDLL("kernel32.dll").NewProc("LockFileEx")
	if r, _, err := proc.Call(f.Fd(), flags, 0, 1, 0, uintptr(unsafe.Pointer(&ol))); r == 0 {
		return err
	}
	return nil
}

// Unlock drops the lock on f.
func Unlock(f *os.File) error {
	ol := syscall.Overlapped{OffsetHigh: lockOffsetHigh}
	proc := syscall.NewLazyDLL("kernel32.dll").NewProc("UnlockFileEx")
	if r, _, err := proc.Call(f.Fd(), 0, 1, 0, uintptr(unsafe.Pointer(&ol))); r == 0 {
		return err
	}
	return nil
}
