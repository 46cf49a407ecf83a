package runner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/batch-tool/batch/internal/cost"
)

// entry is one line of OUT/journal.jsonl: a job that finished.
type entry struct {
	ID       string       `json:"id"`
	Key      string       `json:"key"` // see Key
	Status   Status       `json:"status"`
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
	done := map[string]entry{}
	good := 0 // length of the prefix made of complete, valid lines
	for line := 1; good < len(data); line++ {
		rest := data[good:]
		n := bytes.IndexByte(rest, '\n')
		last := n < 0 || good+n+1 == len(data)
		if n < 0 {
			break // torn: no newline yet
		}
		var e entry
		if err := json.Unmarshal(rest[:n], &e); err != nil || e.ID == "" {
			if last {
				break
			}
			f.Close()
			return nil, nil, fmt.Errorf("journal %s:%d: damaged entry", path, line)
		}
		done[e.ID] = e
		good += n + 1
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
