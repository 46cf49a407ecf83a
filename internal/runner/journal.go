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
	"github.com/batch-tool/batch/internal/stability"
)

// entry is one line of OUT/journal.jsonl: a job that finished, or an async
// job whose submit was accepted (Status submitted), written the moment the
// generation id arrived.
type entry struct {
	ID     string `json:"id"`
	Key    string `json:"key"` // see Key
	Status Status `json:"status"`
	// GenerationID is the id an async service answered the submit with;
	// "" for other jobs.
	GenerationID string `json:"generation_id,omitempty"`
	// SubmittedAt is when the submit was answered, by Config.Now; set on
	// submitted entries only.
	SubmittedAt time.Time    `json:"submitted_at,omitzero"`
	Failure     Failure      `json:"failure,omitempty"`
	Credits     cost.Credits `json:"credits"`           // charged
	Unknown     cost.Credits `json:"unknown,omitempty"` // possibly spent on attempts with unknown outcome
	Attempts    int          `json:"attempts"`
	Images      []Image      `json:"images"`
	Params      string       `json:"parameters,omitempty"`
	Error       string       `json:"error,omitempty"`
	Time        time.Time    `json:"time"`
}

// submitted is the status of a journal entry for an async job whose
// generation id arrived: the job is paid for and its result not fetched.
const submitted Status = "submitted"

// journal appends finished jobs to OUT/journal.jsonl, each line fsynced
// before the job is reported (and before its dependents start), and async
// jobs the moment their generation id arrives. It is safe for concurrent
// use.
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
		if err := e.check(); err != nil {
			return nil, 0, fmt.Errorf("journal %s:%d: %w", path, line, err)
		}
		done[e.ID] = e
		good += n + 1
	}
	return done, good, nil
}

// check refuses an entry that cannot be acted on: a generation id that
// could not go into a URL as one path segment, or a submitted entry without
// its id or time.
func (e entry) check() error {
	switch {
	case e.GenerationID != "" && !stability.ValidGenerationID(e.GenerationID):
		return fmt.Errorf("job %s: generation id %q is not 1–128 characters of [A-Za-z0-9_-]", e.ID, clip(e.GenerationID, 64))
	case e.Status == submitted && (e.GenerationID == "" || e.SubmittedAt.IsZero()):
		return fmt.Errorf("job %s: submitted without a generation id and time", e.ID)
	}
	return nil
}

// resumes reports whether e records the job with this key as finished for
// good, so a rerun sends nothing for it.
func (e *entry) resumes(key string) bool {
	return e.Key == key && (e.Status == Succeeded || e.Status == Filtered)
}

// pending reports whether e records the job with this key as submitted to
// an async service and not fetched, so a rerun polls it.
func (e *entry) pending(key string) bool {
	return e.Key == key && e.Status == submitted
}

// fromJournal decides, each job after its sources, which jobs the journal
// records as finished with the same Key (resumed[i]) and which as
// submitted and not fetched (pending[i]). A job taking an image from a job
// the journal does not record as succeeded is neither: its Key depends on
// an image not made yet. outDir is where the sources' images are.
func fromJournal(outDir string, jobs []manifest.Job, g *graph, done map[string]entry, sums map[string]string) (resumed, pending []*entry, err error) {
	resumed, pending = make([]*entry, len(jobs)), make([]*entry, len(jobs))
	for _, i := range g.order {
		e, ok := done[jobs[i].ID]
		if !ok {
			continue
		}
		known := true
		for _, s := range g.sources[i] {
			known = known && resumed[s] != nil && resumed[s].Status == Succeeded
		}
		if !known {
			continue
		}
		files, err := g.resolveInputs(outDir, i, &jobs[i], sums, func(src int) []Image { return resumed[src].Images })
		if err != nil {
			continue // the job fails when it starts, with this error
		}
		_, key, err := requestKey(jobs[i], files)
		if err != nil {
			continue // as above
		}
		switch {
		case e.resumes(key):
			resumed[i] = &e
		case e.pending(key):
			pending[i] = &e
		}
	}
	return resumed, pending, nil
}

// Remaining returns the credits of the jobs (priced as in Run) that a run
// with this output folder would still pay for: every job but those the
// journal records as finished with the same Key, and those it records as
// submitted to an async service (a rerun only polls them). A job taking an
// image from a job not finished yet counts in full. A missing journal
// means every job. It reads every input file, to key jobs on their content.
func Remaining(outDir string, jobs []manifest.Job, prices []cost.Credits) (cost.Credits, error) {
	if len(prices) != len(jobs) {
		return 0, fmt.Errorf("%d prices for %d jobs", len(prices), len(jobs))
	}
	g, err := newGraph(jobs)
	if err != nil {
		return 0, err
	}
	sums, err := hashInputs(jobs)
	if err != nil {
		return 0, err
	}
	path := filepath.Join(outDir, JournalFile)
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("read journal: %w", err)
	}
	done, _, err := parseJournal(path, data)
	if err != nil {
		return 0, err
	}
	resumed, pending, err := fromJournal(outDir, jobs, g, done, sums)
	if err != nil {
		return 0, err
	}
	var sum cost.Credits
	for i := range jobs {
		if resumed[i] == nil && pending[i] == nil {
			sum += prices[i]
		}
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
