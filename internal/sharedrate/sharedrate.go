// Package sharedrate keeps a request limiter's schedule (the next free
// send slot and the end of a pause after a 429) in a small file that every
// process using the same API key on one machine reads and updates under an
// OS file lock, so that their requests are spaced as one stream.
package sharedrate

import (
	"github.com/batch-tool/batch/internal/flock"

	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Name returns the file name of the schedule of the account behind key: the
// first 32 hex digits of a SHA-256 of the key, which names the account
// without revealing the key (the file holds no key either).
func Name(key string) string {
	sum := sha256.Sum256([]byte("batch rate\n" + key))
	return hex.EncodeToString(sum[:16])
}

// MaxAhead guards against a clock that was set back: a pause that ends
// more than MaxAhead from now, or a next slot further than both MaxAhead
// and 100 intervals, is taken for a time written by a clock that ran
// ahead (or a damaged file), and ignored. Legitimate values stay far
// below: each process holds at most one slot ahead of now, so the next
// slot is at most one interval per waiting process away, and a pause
// lasts at most MaxAhead (Pause caps it).
const MaxAhead = time.Hour

// File is the schedule of one account, shared through the file it was
// opened from with every other File (in this process or another) opened
// from the same path. Every method reads and updates the file under an
// exclusive OS lock (flock(2); LockFileEx on Windows), held for a read and
// a write of one line. The file holds two times in unix nanoseconds, so
// the clock is the wall clock every process on the machine shares. A File
// is safe for concurrent use; the zero File is not usable (see Open).
type File struct {
	// mu serialises this File's goroutines: the OS lock belongs to the
	// open file, so it excludes other Files, not goroutines sharing one.
	mu sync.Mutex
	f  *os.File
}

// Open opens the schedule file at path, creating its folder (0700) and the
// file (0600) when missing, and checks that it can be locked and read.
func Open(path string) (*File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("shared rate limit: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("shared rate limit: %w", err)
	}
	s := &File{f: f}
	// One read under the lock proves the file can be locked and read,
	// before a run depends on it.
	if _, err := s.PausedUntil(time.Now()); err != nil {
		_ = f.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the file; its schedule stays for the other processes.
func (s *File) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("shared rate limit: %w", err)
	}
	return nil
}

// Take reserves a send slot at now for a sender that spaces its requests
// interval apart: the latest of now, the next free slot and the end of any
// pause. The next free slot becomes the returned slot plus interval, so
// consecutive slots taken through any File of the path are at least the
// earlier taker's interval apart. The caller waits until the slot, then
// sends; a slot it gives up is lost, which only slows everyone down.
func (s *File) Take(now time.Time, interval time.Duration) (time.Time, error) {
	var slot time.Time
	err := s.update(func(st *state) {
		next := st.next
		if next.Sub(now) > max(MaxAhead, 100*interval) {
			next = time.Time{}
		}
		slot = latest(now, next, st.pausedUntil(now))
		st.next = slot.Add(interval)
	})
	return slot, err
}

// Pause stops every process's sends for d from now (at most MaxAhead); a
// pause that ends earlier than the one already set changes nothing.
func (s *File) Pause(now time.Time, d time.Duration) error {
	until := now.Add(min(d, MaxAhead))
	return s.update(func(st *state) {
		st.pause = latest(st.pausedUntil(now), until)
	})
}

// PausedUntil returns when the current pause ends: a time not after now
// (the zero Time included) when none runs.
func (s *File) PausedUntil(now time.Time) (time.Time, error) {
	var until time.Time
	err := s.update(func(st *state) { until = st.pausedUntil(now) })
	return until, err
}

// state is what the file holds; a zero time means none.
type state struct {
	next  time.Time // the earliest time the next slot may be at
	pause time.Time // no slot before it
}

// pausedUntil returns the pause's end, or the zero Time when it is past or
// further than MaxAhead from now.
func (st *state) pausedUntil(now time.Time) time.Time {
	if st.pause.Sub(now) > MaxAhead || !st.pause.After(now) {
		return time.Time{}
	}
	return st.pause
}

// lineLen is the length of the file's one line: a version word and two
// times in unix nanoseconds, each 20 digits wide (time.Time's unix
// nanoseconds fit in 19 digits and a sign until the year 2262), so every
// write overwrites the whole line in place.
const lineLen = len("batch-rate-1 ") + 20 + 1 + 20 + 1

// update runs fn on the file's state under the OS lock, and writes the
// state back if fn changed it.
func (s *File) update(fn func(*state)) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := flock.Lock(s.f); err != nil {
		return fmt.Errorf("shared rate limit: lock: %w", err)
	}
	defer func() {
		if uerr := flock.Unlock(s.f); uerr != nil && err == nil {
			err = fmt.Errorf("shared rate limit: unlock: %w", uerr)
		}
	}()
	buf := make([]byte, lineLen+1) // one byte more tells a longer file
	n, err := s.f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("shared rate limit: %w", err)
	}
	st, ok := decode(buf[:n])
	fn(&st)
	line := encode(st)
	if ok && bytes.Equal(line, buf[:n]) {
		return nil
	}
	if !ok && n > 0 {
		// Damaged or of another format: start afresh (see decode).
		if err := s.f.Truncate(0); err != nil {
			return fmt.Errorf("shared rate limit: %w", err)
		}
	}
	if _, err := s.f.WriteAt(line, 0); err != nil {
		return fmt.Errorf("shared rate limit: %w", err)
	}
	return nil
}

// encode writes st as the file's line.
func encode(st state) []byte {
	return fmt.Appendf(nil, "batch-rate-1 %020d %020d\n", unixNano(st.next), unixNano(st.pause))
}

// decode reads the file's line. An empty file, or one that is not exactly
// one such line (a write cut short by a crash of the machine, another
// format), is the zero state: at worst one request more goes out at once.
func decode(b []byte) (state, bool) {
	if len(b) != lineLen || b[lineLen-1] != '\n' {
		return state{}, false
	}
	fields := bytes.Fields(b)
	if len(fields) != 3 || string(fields[0]) != "batch-rate-1" {
		return state{}, false
	}
	next, err1 := strconv.ParseInt(string(fields[1]), 10, 64)
	pause, err2 := strconv.ParseInt(string(fields[2]), 10, 64)
	if err1 != nil || err2 != nil {
		return state{}, false
	}
	return state{next: fromUnixNano(next), pause: fromUnixNano(pause)}, true
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// latest returns the latest of ts.
func latest(ts ...time.Time) time.Time {
	var l time.Time
	for _, t := range ts {
		if t.After(l) {
			l = t
		}
	}
	return l
}
