package flock

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestTwoOpensExclude checks that a lock taken through one open file makes
// TryLock through another fail with ErrHeld, and that Unlock frees it.
func TestTwoOpensExclude(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	open := func() *os.File {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	a, b := open(), open()
	if err := Lock(a); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if err := TryLock(b); !errors.Is(err, ErrHeld) {
		t.Fatalf("TryLock while held: %v, want ErrHeld", err)
	}
	if err := Unlock(a); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if err := TryLock(b); err != nil {
		t.Fatalf("TryLock once freed: %v", err)
	}
	if err := Unlock(b); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
}
