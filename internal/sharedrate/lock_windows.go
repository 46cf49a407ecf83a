package sharedrate

import (
	"os"
	"syscall"
	"unsafe"
)

// lockfileExclusiveLock is LockFileEx's flag for an exclusive lock; without
// LOCKFILE_FAIL_IMMEDIATELY the call waits for it.
const lockfileExclusiveLock = 0x2

// lockOffsetHigh places the one locked byte far past the schedule's line:
// Windows locks are mandatory, and the line must stay readable.
const lockOffsetHigh = 0x7fffffff

// lockFile waits for an exclusive LockFileEx lock on f.
func lockFile(f *os.File) error {
	ol := syscall.Overlapped{OffsetHigh: lockOffsetHigh}
	proc := syscall.NewLazyDLL("kernel32.dll").NewProc("LockFileEx")
	if r, _, err := proc.Call(f.Fd(), lockfileExclusiveLock, 0, 1, 0, uintptr(unsafe.Pointer(&ol))); r == 0 {
		return err
	}
	return nil
}

func unlockFile(f *os.File) error {
	ol := syscall.Overlapped{OffsetHigh: lockOffsetHigh}
	proc := syscall.NewLazyDLL("kernel32.dll").NewProc("UnlockFileEx")
	if r, _, err := proc.Call(f.Fd(), 0, 1, 0, uintptr(unsafe.Pointer(&ol))); r == 0 {
		return err
	}
	return nil
}
