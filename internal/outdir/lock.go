package outdir

import (
	"github.com/batch-tool/batch/internal/flock"

	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// ErrLocked is wrapped by Lock's error when another run holds the folder.
var ErrLocked = errors.New("one run per output folder at a time")

// Held is an output folder's lock, held by this process until Unlock or
// its exit. Not safe for concurrent use.
type Held struct {
	f *os.File
}

// holder is what LockFile says about the process holding it.
type holder struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Started time.Time `json:"started"` // UTC, whole seconds
}

// Lock takes the lock of the output folder dir, creating dir (0777 less the
// umask) if needed, so that no other run, in this process or another, uses
// it until Unlock. The lock is the OS's (flock(2) on dir/.batch.lock, held
// by an open file): the kernel releases it when its holder dies, so a
// killed run never leaves a stale lock behind. When another run holds it,
// Lock returns at once with an error wrapping ErrLocked that names the
// holder's pid, host and start time.
//
// Having the lock, Lock writes this process's pid, host and start time
// into the lock file and removes the temp files ("*.tmp-PID-RANDOM", see
// (*Dir).CreateTemp) that runs killed earlier left in dir, dir/images and
// dir/filtered: those of this process (none is writing without the lock)
// and of processes that no longer exist, never those of a live process.
// The lock file itself stays: removing it would let two runs lock two
// different files.
//
// A caller takes the lock before it sends anything and holds it until the
// run's report is saved.
func Lock(dir string) (*Held, error) {
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return nil, fmt.Errorf("create output folder: %w", err)
	}
	d, err := OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	f, err := d.OpenFile(LockFile, os.O_RDWR|os.O_CREATE)
	if err != nil {
		return nil, fmt.Errorf("lock output folder: %w", err)
	}
	if err := flock.TryLock(f); err != nil {
		defer f.Close()
		if errors.Is(err, flock.ErrHeld) {
			return nil, lockedError(dir, f)
		}
		return nil, fmt.Errorf("lock output folder: %w", d.pathError("flock", LockFile, err))
	}
	l := &Held{f: f}
	if err := l.write(); err != nil {
		l.Unlock()
		return nil, fmt.Errorf("lock output folder: %w", err)
	}
	if err := d.removeStaleTemps(); err != nil {
		l.Unlock()
		return nil, err
	}
	return l, nil
}

// write puts this process's holder record into the lock file.
func (l *Held) write() error {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "an unknown host"
	}
	line, err := json.Marshal(holder{PID: os.Getpid(), Host: host, Started: time.Now().UTC().Truncate(time.Second)})
	if err != nil {
		return err
	}
	if err := l.f.Truncate(0); err != nil {
		return err
	}
	if _, err := l.f.WriteAt(append(line, '\n'), 0); err != nil {
		return err
	}
	return l.f.Sync()
}

// lockedError names the holder written in the lock file f, when it can be
// read.
func lockedError(dir string, f *os.File) error {
	data, err := io.ReadAll(io.LimitReader(f, 4096))
	var h holder
	if err != nil || json.Unmarshal(data, &h) != nil || h.PID <= 0 {
		// the holder has not written it yet
		return fmt.Errorf("%w: %s is in use by another batch run", ErrLocked, dir)
	}
	return fmt.Errorf("%w: %s is in use by batch pid %d on %s, running since %s", ErrLocked, dir,
		h.PID, h.Host, h.Started.UTC().Format("2006-01-02 15:04:05 UTC"))
}

// Unlock releases the lock. The lock file is emptied, not removed. A
// second Unlock does nothing.
func (l *Held) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0) // a read-only folder keeps the last holder's record; the lock is what counts
	err := flock.Unlock(l.f)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	if err != nil {
		return fmt.Errorf("unlock output folder: %w", err)
	}
	return nil
}

// removeStaleTemps removes temp files that dead processes, or this one,
// left in d, images and filtered. A folder that is missing, a link or not
// a folder is passed over (Prepare refuses the last two).
func (d *Dir) removeStaleTemps() error {
	for _, folder := range []string{".", ImagesDir, FilteredDir} {
		if folder != "." && d.checkFolder(folder) != nil {
			continue
		}
		stale, err := d.staleTemps(folder)
		if err != nil {
			return fmt.Errorf("look for stale temp files: %w", err)
		}
		for _, name := range stale {
			if err := d.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove stale temp file: %w", err)
			}
		}
	}
	return nil
}

// staleTemps lists the temp files in folder that removeStaleTemps removes,
// reading the folder in batches so a folder of a million images costs
// little memory.
func (d *Dir) staleTemps(folder string) ([]string, error) {
	f, err := d.root.Open(folder)
	if err != nil {
		return nil, d.pathError("open", folder, err)
	}
	defer f.Close()
	self := os.Getpid()
	var stale []string
	for {
		entries, err := f.ReadDir(1024)
		for _, e := range entries {
			pid, ok := tempPID(e.Name())
			if ok && e.Type().IsRegular() && (pid == self || !processAlive(pid)) {
				name := e.Name()
				if folder != "." {
					name = folder + "/" + name
				}
				stale = append(stale, name)
			}
		}
		if errors.Is(err, io.EOF) {
			return stale, nil
		}
		if err != nil {
			return nil, d.pathError("read", folder, err)
		}
	}
}
