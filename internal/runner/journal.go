package runner

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/outdir"
	"github.com/batch-tool/batch/internal/stability"
)

// entry is one line of OUT/journal.jsonl. A job's lines, in file order,
// tell what happened to it in every run on the folder, by Status:
//
//   - attempt: written and fsynced just before a paid request leaves, so a
//     run killed mid-request leaves evidence that it may have been billed.
//   - submitted: an async job's generation id, written the moment it
//     arrived.
//   - succeeded, filtered, failed: the job ended in a run.
//   - skipped: a run stopped after some of the job's attempts; the line
//     closes them with what they possibly billed.
//   - replaced: the job changed or left the manifest, and a run moved its
//     files to Replaced (a folder under OUT/replaced/); a run sends it
//     again. The line closes the generation it names (one submitted and
//     not fetched, abandoned), counting its price as possibly billed, and
//     no attempt line.
//   - run: not a job's line (its ID is ""): a run started from the
//     manifest Origin names; written when it differs from the last one.
//
// Money: a line's Credits (charged) and Unknown (possibly billed) are
// credits no earlier line recorded, so what the folder cost is their sum
// over the lines, plus two provisional amounts (see books): an attempt
// line's Unknown and Price while no later line of its job follows it (the
// request was in flight when its run stopped), and a submitted line's
// Price while no later line ends its generation (a line with the same
// GenerationID and another status, whose own credits then count the
// generation).
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
	Unknown     cost.Credits `json:"unknown,omitempty"` // possibly billed: attempts with unknown outcome, a generation given up
	// Price is what is at stake on an attempt line (the request about to
	// leave) and a submitted line (the generation accepted); zero on other
	// lines, and on submitted lines written before lines carried it.
	Price    cost.Credits `json:"price,omitempty"`
	Attempts int          `json:"attempts"`
	Images   []Image      `json:"images"`
	Params   string       `json:"parameters,omitempty"`
	Error    string       `json:"error,omitempty"`
	// Rebuilt marks an entry written from images found on disk, for a job
	// the journal had lost.
	Rebuilt bool `json:"rebuilt,omitempty"`
	// Replaced is, on a replaced line, the folder the job's files moved
	// to, relative to OUT ("replaced/20261125T120000Z"); "" when none was
	// on disk.
	Replaced string `json:"replaced,omitempty"`
	// Origin is, on a run line, the manifest the run started from.
	Origin *Origin   `json:"origin,omitempty"`
	Time   time.Time `json:"time"`
}

// Journal-only statuses.
const (
	// submitted: an async job's generation id arrived; the job is paid for
	// and its result not fetched.
	submitted Status = "submitted"
	// attempt: a paid request is about to leave.
	attempt Status = "attempt"
	// replaced: the job's files moved under OUT/replaced/.
	replaced Status = "replaced"
	// runStart: a run started, from the manifest its line names.
	runStart Status = "run"
)

// journal appends finished jobs to OUT/journal.jsonl, each line fsynced
// before the job is reported (and before its dependents start), async jobs
// the moment their generation id arrives, and each paid request before it
// is sent. It is safe for concurrent use.
type journal struct {
	mu sync.Mutex
	f  *os.File
	// failWrite, when set, is asked before each line is written and fails
	// it with its error (Config.failWrite).
	failWrite func(name string) error
}

// openJournal opens the journal in outDir for reading and appending,
// creating it, and returns what it holds. Call mend before appending.
func openJournal(outDir string) (*journal, []byte, error) {
	path := filepath.Join(outDir, JournalFile)
	// no symbolic link, FIFO or device: refused with an error naming it
	f, err := outdir.OpenFile(path, os.O_RDWR|os.O_CREATE)
	if err != nil {
		return nil, nil, fmt.Errorf("open journal: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("read journal: %w", err)
	}
	return &journal{f: f}, data, nil
}

// mend makes the journal ready for appending after parseJournal read it:
// it cuts it to keep bytes (dropping a torn last line) and, when newline
// is set (the kept bytes end in an entry whose newline was lost), adds the
// newline, so the next line starts clean.
func (j *journal) mend(keep int, newline bool) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.f.Truncate(int64(keep)); err != nil {
		return fmt.Errorf("cut torn journal line: %w", err)
	}
	if _, err := j.f.Seek(int64(keep), io.SeekStart); err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	if newline {
		if _, err := j.f.Write([]byte{'\n'}); err != nil {
			return fmt.Errorf("write journal: %w", err)
		}
	}
	return nil
}

// journalLog is what a journal's lines say.
type journalLog struct {
	done  map[string]entry // per job id, its last line that is not an attempt
	books books
	// held is, per job id, the image files its lines name since its last
	// replaced line: what the folder holds of it.
	held map[string]*holding
	// origin is the manifest of the last run line; zero when none.
	origin Origin
	// superseded holds id+"\n"+key of succeeded or filtered lines that a
	// later line of their job replaced: that job's images with that key
	// were charged already, should they turn up on disk.
	superseded map[string]bool
	warnings   []string
	keep       int  // bytes to keep: all but a torn last line
	newline    bool // the kept bytes end in an entry without its newline
}

// parseJournal reads a journal's lines, path naming it in warnings. A line
// that is not a valid entry is skipped with a warning naming it; a last
// line without its newline is kept when it is a valid entry (a crash took
// only its newline) and otherwise cut off (a crash mid-write).
func parseJournal(path string, data []byte) *journalLog {
	l := &journalLog{done: map[string]entry{}, books: newBooks(), held: map[string]*holding{}, superseded: map[string]bool{}}
	for line, off := 1, 0; off < len(data); line++ {
		rest := data[off:]
		n := bytes.IndexByte(rest, '\n')
		torn := n < 0
		if torn {
			n = len(rest)
		}
		e, err := decodeEntry(rest[:n])
		switch {
		case err == nil:
			l.add(e)
			l.keep, l.newline = min(off+n+1, len(data)), torn
		case torn:
			l.warnings = append(l.warnings, fmt.Sprintf("%s:%d: incomplete last line cut off (a run stopped while writing it)", path, line))
		default:
			l.warnings = append(l.warnings, fmt.Sprintf("%s:%d: damaged line skipped: %v", path, line, err))
			l.keep = off + n + 1
		}
		off += n + 1
	}
	return l
}

// add takes in one line, in file order.
func (l *journalLog) add(e entry) {
	if e.Status == runStart {
		l.origin = *e.Origin
		return
	}
	l.books.add(e)
	if e.Status == attempt {
		return
	}
	if prev, ok := l.done[e.ID]; ok && (prev.Status == Succeeded || prev.Status == Filtered) {
		l.superseded[e.ID+"\n"+prev.Key] = true
	}
	l.done[e.ID] = e
	switch {
	case e.Status == replaced:
		delete(l.held, e.ID)
	case len(e.Images) > 0:
		h := l.held[e.ID]
		if h == nil {
			h = &holding{}
			l.held[e.ID] = h
		}
		h.add(e)
	}
}

// holding is what the journal says the folder holds of one job: the files
// its lines named, and the Key of the last line that named any.
type holding struct {
	key   string
	paths []string // slash-separated, relative to OUT, in journal order, each once
}

func (h *holding) add(e entry) {
	h.key = e.Key
	for _, im := range e.Images {
		if !slices.Contains(h.paths, im.Path) {
			h.paths = append(h.paths, im.Path)
		}
	}
}

// decodeEntry reads one line, refusing what cannot be acted on.
func decodeEntry(line []byte) (entry, error) {
	var e entry
	if err := json.Unmarshal(line, &e); err != nil {
		return entry{}, fmt.Errorf("not a journal entry: %w", err)
	}
	switch e.Status {
	case Succeeded, Filtered, Failed, Skipped, submitted, attempt, replaced:
	case runStart:
		if e.Origin == nil || e.Origin.Manifest == "" {
			return entry{}, errors.New("run line without its manifest")
		}
		return e, nil
	default:
		return entry{}, fmt.Errorf("job %q: status %q is not one a journal holds", clip(e.ID, 64), clip(string(e.Status), 32))
	}
	switch {
	case e.ID == "":
		return entry{}, errors.New("no job id")
	case e.Credits < 0 || e.Unknown < 0 || e.Price < 0:
		return entry{}, fmt.Errorf("job %s: negative credits", e.ID)
	}
	if err := e.check(); err != nil {
		return entry{}, err
	}
	return e, nil
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

// books adds up the money a journal records, line by line (see entry).
type books struct {
	charged, unknown cost.Credits     // of the lines that are not provisional
	open             map[string]entry // job id → its attempt line, while no later line of the job follows it
	gens             map[string]entry // generation id → its submitted line, while no later line ends the generation
}

func newBooks() books {
	return books{open: map[string]entry{}, gens: map[string]entry{}}
}

// add takes in one line, in file order.
func (b *books) add(e entry) {
	if e.Status == attempt {
		b.open[e.ID] = e
		return
	}
	if e.Status != replaced {
		delete(b.open, e.ID)
	}
	b.charged += e.Credits
	b.unknown += e.Unknown
	switch {
	case e.Status == submitted:
		b.gens[e.GenerationID] = e
	case e.GenerationID != "":
		delete(b.gens, e.GenerationID)
	}
}

// genPrice is what the open generation of submitted line e counts: its
// price, or for a line written before lines carried one, price(e.ID).
func genPrice(e entry, price func(id string) cost.Credits) cost.Credits {
	return cmp.Or(e.Price, price(e.ID))
}

// totals returns the credits charged and those possibly billed,
// provisional amounts included; price is as for genPrice.
func (b *books) totals(price func(id string) cost.Credits) (charged, possibly cost.Credits) {
	possibly = b.unknown
	for _, e := range b.open {
		possibly += e.Unknown + e.Price
	}
	for _, e := range b.gens {
		possibly += genPrice(e, price)
	}
	return b.charged, possibly
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
	if j.failWrite != nil {
		if err := j.failWrite(JournalFile); err != nil {
			return fmt.Errorf("write journal: %w", err)
		}
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
