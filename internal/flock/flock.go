// Package flock takes and drops exclusive advisory locks on open files:
// flock(2) on Unix, LockFileEx on Windows (on one byte far past any data,
// since Windows locks are mandatory and the file must stay readable). A
// lock belongs to the open file (description or handle), so two opens in
// one process exclude each other too, and the system drops it when its
// process dies.
package flock

import "errors"

// ErrHeld is what TryLock returns when another open file holds the lock.
var ErrHeld = errors.New("lock is held")
