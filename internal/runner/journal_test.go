package runner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
)

// fakeJournalFile is a journalFile in memory that remembers what each
// fsync made durable. hold, when set, blocks every Sync until it is
// closed; syncErr and writeErr, when set, fail the Sync or Write whose
// 1-based number they are keyed by (a failed Write still writes half its
// bytes, as a full disk may).
type fakeJournalFile struct {
	hold     chan struct{}
	syncErr  map[int]error
	writeErr map[int]error

	mu      sync.Mutex
	data    []byte
	pos     int64
	durable []byte // data as the last successful Sync left it
	writes  int
	syncs   int
	closed  bool
}

var _ journalFile = (*fakeJournalFile)(nil)

func (f *fakeJournalFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	n, err := len(p), f.writeErr[f.writes]
	if err != nil {
		n = len(p) / 2
	}
	f.data = append(f.data[:f.pos], p[:n]...)
	f.pos += int64(n)
	return n, err
}

func (f *fakeJournalFile) Sync() error {
	if f.hold != nil {
		<-f.hold
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncs++
	if err := f.syncErr[f.syncs]; err != nil {
		return err
	}
	f.durable = bytes.Clone(f.data)
	return nil
}

func (f *fakeJournalFile) Truncate(size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.data = f.data[:size]
	return nil
}

func (f *fakeJournalFile) Seek(offset int64, whence int) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if whence != io.SeekStart {
		return 0, errors.New("fake: only SeekStart")
	}
	f.pos = offset
	return offset, nil
}

func (f *fakeJournalFile) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// state returns the file's bytes, those the last Sync made durable, and
// the counts of writes and syncs.
func (f *fakeJournalFile) state() (data, durable string, writes, syncs int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return string(f.data), string(f.durable), f.writes, f.syncs
}

// jobLine returns an entry for a succeeded job id and its line, as
// append writes it.
func jobLine(id string) (entry, string) {
	e := entry{ID: id, Key: "k-" + id, Status: Succeeded, Attempts: 1}
	data, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	return e, string(data) + "\n"
}

// TestJournalGroupCommit: while one line's fsync runs, the lines appended
// by other goroutines wait and are committed together by one write and one
// fsync; no append returns before an fsync covered its own line.
func TestJournalGroupCommit(t *testing.T) {
	for _, followers := range []int{1, 2, 16} {
		t.Run(fmt.Sprint(followers), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeJournalFile{hold: make(chan struct{})}
				j := newJournal(f, 0)
				var wg sync.WaitGroup
				var mu sync.Mutex
				returned := 0
				appendChecked := func(id string) {
					e, line := jobLine(id)
					err := j.append(e)
					_, durable, _, _ := f.state()
					mu.Lock()
					defer mu.Unlock()
					returned++
					switch {
					case err != nil:
						t.Errorf("append %s: %v", id, err)
					case !strings.Contains(durable, line):
						t.Errorf("append %s returned before its line was synced", id)
					}
				}
				wg.Go(func() { appendChecked("lead") })
				synctest.Wait() // the leader's fsync is under way, held
				for i := range followers {
					wg.Go(func() { appendChecked(fmt.Sprintf("job-%02d", i)) })
				}
				synctest.Wait() // every follower waits for its group
				mu.Lock()
				if returned != 0 {
					t.Errorf("%d appends returned while their fsync was held", returned)
				}
				mu.Unlock()
				close(f.hold)
				wg.Wait()
				data, durable, writes, syncs := f.state()
				if writes != 2 || syncs != 2 {
					t.Errorf("%d appends made %d writes and %d fsyncs, want 2 and 2 (the leader's, then one group)", 1+followers, writes, syncs)
				}
				if durable != data {
					t.Errorf("file ends with lines no fsync covered:\n%s", strings.TrimPrefix(data, durable))
				}
				if l := parseText(t, data); len(l.jobs) != 1+followers || len(l.warnings) != 0 {
					t.Errorf("journal holds %d jobs (warnings %q), want %d", len(l.jobs), l.warnings, 1+followers)
				}
			})
		})
	}
}

// TestJournalGroupFailure: a failed commit fails every append of its
// group, and only those; after a failed write the file is cut back, so
// the next group's lines stay whole, while after a failed fsync nothing
// more is appended.
func TestJournalGroupFailure(t *testing.T) {
	tests := []struct {
		name     string
		f        *fakeJournalFile
		want     error
		usable   bool   // lines can be appended after the failure
		wantFile string // job ids in the file at the end
	}{
		{"disk full", &fakeJournalFile{writeErr: map[int]error{2: syscall.ENOSPC}}, syscall.ENOSPC, true, "after,lead"},
		{"fsync error", &fakeJournalFile{syncErr: map[int]error{2: syscall.EIO}}, syscall.EIO, false, "job-00,job-01,job-02,lead"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tt.f.hold = make(chan struct{}) // in the bubble, so a Sync held on it is durably blocked
				j := newJournal(tt.f, 0)
				var wg sync.WaitGroup
				errs := make([]error, 3)
				var leadErr error
				wg.Go(func() { e, _ := jobLine("lead"); leadErr = j.append(e) })
				synctest.Wait()
				for i := range errs {
					wg.Go(func() { e, _ := jobLine(fmt.Sprintf("job-%02d", i)); errs[i] = j.append(e) })
				}
				synctest.Wait()
				close(tt.f.hold)
				wg.Wait()
				if leadErr != nil {
					t.Errorf("the leader's append, committed before the failure: %v", leadErr)
				}
				for i, err := range errs {
					if !errors.Is(err, tt.want) {
						t.Errorf("append job-%02d = %v, want %v", i, err, tt.want)
					}
				}
				e, _ := jobLine("after")
				err := j.append(e)
				if gotUsable := err == nil; gotUsable != tt.usable {
					t.Errorf("append after the failure = %v, want usable %v", err, tt.usable)
				}
				data, _, _, _ := tt.f.state()
				l := parseText(t, data)
				var ids []string
				for line := range strings.Lines(data) {
					if e, err := decodeEntry([]byte(line)); err == nil {
						ids = append(ids, e.ID)
					}
				}
				slices.Sort(ids)
				if got := strings.Join(ids, ","); got != tt.wantFile || len(l.warnings) != 0 {
					t.Errorf("file holds %s (warnings %q), want %s and none", got, l.warnings, tt.wantFile)
				}
			})
		})
	}
}

// TestJournalRefuses: a line failWrite refuses fails alone, before any
// byte is written; a closed journal refuses lines.
func TestJournalRefuses(t *testing.T) {
	f := &fakeJournalFile{}
	j := newJournal(f, 0)
	j.failWrite = func(name string) error {
		if name != JournalFile {
			t.Errorf("failWrite(%q), want %q", name, JournalFile)
		}
		return syscall.ENOSPC
	}
	e, _ := jobLine("refused")
	if err := j.append(e); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("append with failWrite = %v, want ENOSPC", err)
	}
	j.failWrite = nil
	e, line := jobLine("kept")
	if err := j.append(e); err != nil {
		t.Fatal(err)
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	if err := j.append(e); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("append after close = %v, want a closed journal", err)
	}
	if data, _, writes, syncs := f.state(); data != line || writes != 1 || syncs != 1 || !f.closed {
		t.Errorf("file = %q after %d writes and %d fsyncs (closed %v), want only %q, 1 and 1, closed", data, writes, syncs, f.closed, line)
	}
}

// TestJournalConcurrentAppends: lines appended from many goroutines to a
// real file all arrive whole, mended file included.
func TestJournalConcurrentAppends(t *testing.T) {
	const workers, each = 16, 25
	out, _, j, _ := mendedJournal(t) // mend adds the lost newline
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				e, _ := jobLine(fmt.Sprintf("w%02d-%02d", w, i))
				if err := j.append(e); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(out, JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	l := parseText(t, string(data))
	if len(l.jobs) != 1+workers*each || len(l.warnings) != 0 {
		t.Errorf("journal holds %d jobs (warnings %q), want %d", len(l.jobs), l.warnings, 1+workers*each)
	}
}

// mendedJournal opens, in a new output folder out, a journal whose one
// line, first, lost its newline, and mends it, as a run does; l is the
// journal as parsed before the mend.
func mendedJournal(t *testing.T) (out, first string, j *journal, l *journalLog) {
	t.Helper()
	out = t.TempDir()
	_, first = jobLine("first")
	if err := os.WriteFile(filepath.Join(out, JournalFile), []byte(strings.TrimSuffix(first, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	j, src, err := openJournal(out)
	if err != nil {
		t.Fatal(err)
	}
	if l, err = parseJournal(src); err != nil {
		t.Fatal(err)
	}
	if err := j.mend(l.keep, l.newline); err != nil {
		t.Fatal(err)
	}
	return out, first, j, l
}

// parseText parses a journal holding data.
func parseText(t *testing.T, data string) *journalLog {
	t.Helper()
	l, err := parseJournal(journalSource{path: JournalFile, r: strings.NewReader(data), size: int64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	return l
}
