package runner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
)

// entry is one line of OUT/journal.jsonl: a job that finished.
type entry struct {
	ID       string       `json:"id"`
	Key      string       `json:"key"` // see Key
	Status   Status       `json:"status"`
	Failure  Failure      `json:"failure,omitempty"`
	Credits  cost.Credits `json:"credits"`           // charged
	Unknown  cost.Credits `json:"unknown,omitempty"` // possibly spent on attempts with unknown outcome
	Attempts int          `json:"attempts"`
	Images   []Image      `json:"images"`
	Params   string       `json:"parameters,omitempty"`
	Error    string       `json:"error,omitempty"`
	Time     time.Time    `json:"time"`
}

// journal appends finished jobs to OUT/journal.jsonl, each line fsynced
// before the job is reported. It is safe for concurrent use.
type journal struct {
	mu sync.Mutex
	f  *os.File
}

// openJournal reads the journal in outDir (if any) and opens it for
// appending. It returns the last entry of each job id. A torn last line,
// left by a crash in the middle of a write, is ignored and cut off so the
// next line starts clean; a damaged line before it is an error.
func openJournal(outDir string) (*journal, map[string]entry, error) {
	path := filepath.Join(outDir, JournalFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("open journal: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("read journal: %w", err)
	}
	done, good, err := parseJournal(path, data)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if good < len(data) {
		if err := f.Truncate(int64(good)); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("cut torn journal line: %w", err)
		}
	}
	if _, err := f.Seek(int64(good), io.SeekStart); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("open journal: %w", err)
	}
	return &journal{f: f}, done, nil
}

// parseJournal reads journal lines and returns the last entry of each job id
// and the length of the prefix made of complete, valid lines. A torn last
// line is left out of that prefix; a damaged line before it is an error.
func parseJournal(path string, data []byte) (map[string]entry, int, error) {
	done := map[string]entry{}
	good := 0
	for line := 1; good < len(data); line++ {
		rest := data[good:]
		n := bytes.IndexByte(rest, '\n')
		if n < 0 {
			break // torn: no newline yet
		}
		var e entry
		if err := json.Unmarshal(rest[:n], &e); err != nil || e.ID == "" {
			if good+n+1 == len(data) {
				break
			}
			return nil, 0, fmt.Errorf("journal %s:%d: damaged entry", path, line)
		}
		done[e.ID] = e
		good += n + 1
	}
	return done, good, nil
}

// resumes reports whether e records the job with this key as finished for
// good, so a rerun sends nothing for it.
func (e entry) resumes(key string) bool {
	return e.Key == key && (e.Status == Succeeded || e.Status == Filtered)
}

// Remaining returns the credits of the jobs (priced as in Run) that the
// journal in outDir does not record as finished: what a run with that
// output folder would still spend. A missing journal means every job.
func Remaining(outDir string, jobs []manifest.Job, prices []cost.Credits) (cost.Credits, error) {
	path := filepath.Join(outDir, JournalFile)
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("read journal: %w", err)
	}
	done, _, err := parseJournal(path, data)
	if err != nil {
		return 0, err
	}
	var sum cost.Credits
	for i, j := range jobs {
		if e, ok := done[j.ID]; ok {
			key, err := jobKey(j)
			if err != nil {
				return 0, fmt.Errorf("job %s: %w", j.ID, err)
			}
			if e.resumes(key) {
				continue
			}
		}
		sum += prices[i]
	}
	return sum, nil
}

// append writes e as one line and fsyncs it.
func (j *journal) append(e entry) error {
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode journal entry: %w", err)
	}
	line = append(line, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return errors.New("journal is closed")
	}
	if _, err := j.f.Write(line); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
	return nil
}

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}
