package runner

import (
	"bufio"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
	// Cached marks a finished job whose images came from the image cache:
	// nothing was sent, and Credits is zero.
	Cached bool `json:"cached,omitempty"`
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
//
// It commits in groups, as databases do: the lines appended while one
// commit (write and fsync) runs wait together, and the first of them to
// see it end commits them all with one write and one fsync, while the
// lines that arrive meanwhile gather for the next. An append returns only
// once a commit that covered its own line succeeded, so no line is
// reported durable that is not; a failed commit fails every line of its
// group. With many jobs in flight a run so pays one fsync per group of
// finished jobs instead of one per line, and no goroutine holds the lock
// across the disk's latency.
type journal struct {
	mu   sync.Mutex
	cond sync.Cond // on mu: broadcast when a commit ends
	f    journalFile
	// size is the bytes of the file that are committed: where the next
	// write goes, and what a failed write is cut back to.
	size int64
	// open is the group that appended lines join, pending its lines in
	// order; nil when no line waits.
	open    *commitGroup
	pending []byte
	spare   []byte // a cleared buffer for the next pending, reused
	// committing is set while a goroutine writes and syncs a group with
	// mu unlocked; only one does at a time.
	committing bool
	// broken is a failed fsync's error: after one, dirty pages may be
	// dropped and a later fsync succeed without them, so no line is
	// appended after it.
	broken error
	// failWrite, when set, is asked before each line is written and fails
	// it with its error (Config.failWrite).
	failWrite func(name string) error
}

// journalFile is what a journal writes to: an *os.File, or a test's fake.
type journalFile interface {
	io.Writer
	Sync() error
	Truncate(size int64) error
	Seek(offset int64, whence int) (int64, error)
	Close() error
}

// commitGroup is lines committed together. at is where they go, set
// when their commit starts; done and err are set once it ended. All
// three under the journal's mu.
type commitGroup struct {
	at   int64
	done bool
	err  error
}

// newJournal returns a journal appending to f, of which size bytes are
// committed.
func newJournal(f journalFile, size int64) *journal {
	j := &journal{f: f, size: size}
	j.cond.L = &j.mu
	return j
}

// journalSource is a journal's lines to read: the first size bytes of r,
// path naming the file in warnings.
type journalSource struct {
	path string
	r    io.ReaderAt
	size int64
}

// openJournal opens the journal in outDir for reading and appending,
// creating it, and returns it with its lines to read (see parseJournal).
// Call mend before appending.
func openJournal(outDir string) (*journal, journalSource, error) {
	path := filepath.Join(outDir, JournalFile)
	// no symbolic link, FIFO or device: refused with an error naming it
	f, err := outdir.OpenFile(path, os.O_RDWR|os.O_CREATE)
	if err != nil {
		return nil, journalSource{}, fmt.Errorf("open journal: %w", err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, journalSource{}, fmt.Errorf("read journal: %w", err)
	}
	return newJournal(f, size), journalSource{path: path, r: f, size: size}, nil
}

// mend makes the journal ready for appending after parseJournal read it:
// it cuts it to keep bytes (dropping a torn last line) and, when newline
// is set (the kept bytes end in an entry whose newline was lost), adds the
// newline, so the next line starts clean.
func (j *journal) mend(keep int64, newline bool) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.committing {
		j.cond.Wait()
	}
	if err := j.usable(); err != nil {
		return err
	}
	if err := j.f.Truncate(keep); err != nil {
		return fmt.Errorf("cut torn journal line: %w", err)
	}
	if _, err := j.f.Seek(keep, io.SeekStart); err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	j.size = keep
	if newline {
		if _, err := j.f.Write([]byte{'\n'}); err != nil {
			return fmt.Errorf("write journal: %w", err)
		}
		j.size++
	}
	return nil
}

// journalLog is what a journal's lines say, in a few dozen bytes a job
// whatever its lines hold: per job id, where its last line that is not an
// attempt is, with what that line decides (its status and Key), so that a
// job's whole line (images, parameters, error…) is read again from the
// journal only when it is needed; and the books.
type journalLog struct {
	src  journalSource
	jobs map[idSum]jobNote
	// heldKeys is, for the jobs whose jobNote has heldApart set, the Key
	// of the last line naming images since their last replaced line: one
	// other than their last line's (a job that ran again and failed).
	heldKeys map[idSum]keySum
	// unwritten are lines taken in that are not in the journal yet (see
	// addUnwritten); a lineRef names unwritten[k] by off -1-k.
	unwritten []entry
	books     books
	// origin is the manifest of the last run line; zero when none.
	origin Origin
	// superseded holds the job and Key of succeeded or filtered lines that
	// a later line of their job replaced: that job's images with that Key
	// were charged already, should they turn up on disk.
	superseded map[jobKey]bool
	warnings   []string
	keep       int64 // bytes to keep: all but a torn last line
	newline    bool  // the kept bytes end in an entry without its newline
}

// idSum stands for a job id: the first 16 bytes of its SHA-256.
type idSum [16]byte

func sumID(id string) idSum {
	s := sha256.Sum256([]byte(id))
	return idSum(s[:16])
}

// keySum stands for a Key: the 32 bytes its 64 lower-case hex digits
// spell (every Key that Key returns), or the SHA-256 of any other text.
type keySum [32]byte

func sumKey(key string) keySum {
	var k keySum
	lowerHex := func(r rune) bool { return '0' <= r && r <= '9' || 'a' <= r && r <= 'f' }
	if len(key) == 2*len(k) && !strings.ContainsFunc(key, func(r rune) bool { return !lowerHex(r) }) {
		hex.Decode(k[:], []byte(key))
		return k
	}
	return sha256.Sum256([]byte("key\n" + key))
}

// jobKey is a job id with a Key.
type jobKey struct {
	id  idSum
	key keySum
}

// lineRef is where a line is: n bytes, its newline left out, at off in
// the journal; or, for off < 0, the journalLog's unwritten[-1-off].
type lineRef struct {
	off int64
	n   int32
}

// unwrittenRef names the journalLog's unwritten[k].
func unwrittenRef(k int) lineRef { return lineRef{off: -1 - int64(k)} }

// lineKind is what a job's line that is not an attempt decides, in a byte.
type lineKind uint8

const (
	lineOther     lineKind = iota // failed, skipped or replaced
	lineSucceeded                 // succeeded
	lineFiltered                  // filtered
	lineSubmitted                 // submitted
)

func kindOf(s Status) lineKind {
	switch s {
	case Succeeded:
		return lineSucceeded
	case Filtered:
		return lineFiltered
	case submitted:
		return lineSubmitted
	}
	return lineOther
}

// jobNote is what a journal says of one job, in 56 bytes: its last line
// that is not an attempt, and whether the folder holds images of it.
type jobNote struct {
	key  keySum  // the last line's
	at   lineRef // the last line
	kind lineKind
	// held is set when a line of the job named images since its last
	// replaced line: the folder holds images of the job, for the request
	// of the last such line, whose Key is key unless heldApart is set (see
	// journalLog.heldKeys).
	held, heldApart bool
	inRun           bool // the job is among the run's jobs (see journalLog.mark)
}

// resumes reports whether the job's last line records it, with this
// key, as finished for good, so a rerun sends nothing for it.
func (j jobNote) resumes(key keySum) bool {
	return j.key == key && (j.kind == lineSucceeded || j.kind == lineFiltered)
}

// pending reports whether the job's last line records it, with this key,
// as submitted to an async service and not fetched, so a rerun polls it.
func (j jobNote) pending(key keySum) bool {
	return j.key == key && j.kind == lineSubmitted
}

// maxLine is the longest journal line read, in bytes: a job's line holds
// some kilobytes at most, so a longer one is damage, skipped without
// being held in memory.
const maxLine = 64 << 20

// errLongLine is the damage of a line longer than maxLine.
var errLongLine = fmt.Errorf("not a journal entry: longer than %d MiB", maxLine>>20)

// parseJournal reads a journal's lines as a stream, path naming it in
// warnings, and keeps what they decide (see journalLog). A line that is
// not a valid entry is skipped with a warning naming it; a last line
// without its newline is kept when it is a valid entry (a crash took only
// its newline) and otherwise cut off (a crash mid-write). The error is
// the file's, when it cannot be read.
func parseJournal(src journalSource) (*journalLog, error) {
	l := &journalLog{src: src, jobs: map[idSum]jobNote{}, heldKeys: map[idSum]keySum{}, books: newBooks(), superseded: map[jobKey]bool{}}
	err := src.scan(maxLine, func(no int, off, n int64, text []byte, torn bool) {
		e, err := entry{}, errLongLine
		if text != nil {
			e, err = decodeEntry(text)
		}
		switch {
		case err == nil:
			l.add(e, lineRef{off: off, n: int32(n)})
			l.keep, l.newline = min(off+n+1, src.size), torn
		case torn:
			l.warnings = append(l.warnings, fmt.Sprintf("%s:%d: incomplete last line cut off (a run stopped while writing it)", src.path, no))
		default:
			l.warnings = append(l.warnings, fmt.Sprintf("%s:%d: damaged line skipped: %v", src.path, no, err))
			l.keep = off + n + 1
		}
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// scan calls fn with each line of the journal, in order: its number from
// 1, its offset, its length n without the newline, its bytes (valid only
// during the call; nil for a line longer than limit bytes), and whether
// the file ends before its newline. It holds one line in memory at most.
func (src journalSource) scan(limit int64, fn func(no int, off, n int64, text []byte, torn bool)) error {
	rd := bufio.NewReaderSize(io.NewSectionReader(src.r, 0, src.size), 64<<10)
	var long []byte // a line longer than rd's buffer, gathered
	for no, off := 1, int64(0); off < src.size; no++ {
		var text []byte
		n, torn := int64(0), false
		long = long[:0]
		for {
			chunk, err := rd.ReadSlice('\n')
			end := err == nil
			if end {
				chunk = chunk[:len(chunk)-1]
			}
			switch n += int64(len(chunk)); {
			case n > limit:
				long = long[:0]
			case end && len(long) == 0:
				text = chunk // the whole line, in rd's buffer
			default:
				long = append(long, chunk...)
				text = long
			}
			if end {
				break
			}
			if err == io.EOF {
				torn = true
				break
			}
			if err != bufio.ErrBufferFull {
				return fmt.Errorf("read journal: %w", err)
			}
		}
		switch {
		case torn && n == 0:
			return fmt.Errorf("read journal: %w", io.ErrUnexpectedEOF) // it shrank while read
		case n > limit:
			text = nil
		}
		fn(no, off, n, text, torn)
		off += n + 1
	}
	return nil
}

// add takes in one line, found at at, in file order.
func (l *journalLog) add(e entry, at lineRef) {
	if e.Status == runStart {
		l.origin = *e.Origin
		return
	}
	l.books.add(e)
	if e.Status != attempt {
		l.note(e, at)
	}
}

// note records e, a line that is not an attempt, found at at, as the
// last line of its job.
func (l *journalLog) note(e entry, at lineRef) {
	id := sumID(e.ID)
	j := l.jobs[id]
	if j.kind == lineSucceeded || j.kind == lineFiltered {
		l.superseded[jobKey{id, j.key}] = true
	}
	heldKey := l.heldKey(id, j)
	j.key, j.at, j.kind = sumKey(e.Key), at, kindOf(e.Status)
	switch {
	case e.Status == replaced:
		j.held = false
	case len(e.Images) > 0:
		j.held, heldKey = true, j.key
	}
	if j.heldApart = j.held && heldKey != j.key; j.heldApart {
		l.heldKeys[id] = heldKey
	} else {
		delete(l.heldKeys, id)
	}
	l.jobs[id] = j
}

// heldKey is the Key of the last line of job j, whose id sum is id, that
// named images since its last replaced line; meaningful when j.held.
func (l *journalLog) heldKey(id idSum, j jobNote) keySum {
	if j.heldApart {
		return l.heldKeys[id]
	}
	return j.key
}

// addUnwritten takes in a line that is not in the journal yet, after
// every other; unwritten lists it until the journal has it.
func (l *journalLog) addUnwritten(e entry) {
	l.unwritten = append(l.unwritten, e)
	l.add(e, unwrittenRef(len(l.unwritten)-1))
}

// job returns what the journal says of the job with this id; ok is false
// when it holds no line of the job but attempts.
func (l *journalLog) job(id string) (j jobNote, ok bool) {
	j, ok = l.jobs[sumID(id)]
	return j, ok
}

// mark records that the job with this id is among the run's jobs.
func (l *journalLog) mark(id string) {
	s := sumID(id)
	if j, ok := l.jobs[s]; ok {
		j.inRun = true
		l.jobs[s] = j
	}
}

// last returns the last line of the job with this id that is not an
// attempt, read again; the zero entry when there is none.
func (l *journalLog) last(id string) (entry, error) {
	j, ok := l.job(id)
	if !ok {
		return entry{}, nil
	}
	return l.line(j.at)
}

// line returns the line at at, read again from the journal. It is safe
// for concurrent use once no line is taken in.
func (l *journalLog) line(at lineRef) (entry, error) {
	if at.off < 0 {
		return l.unwritten[-1-at.off], nil
	}
	buf := make([]byte, at.n)
	if n, err := l.src.r.ReadAt(buf, at.off); n < len(buf) {
		return entry{}, fmt.Errorf("read journal: %w", cmp.Or(err, io.ErrUnexpectedEOF))
	}
	e, err := decodeEntry(buf)
	if err != nil {
		return entry{}, fmt.Errorf("read journal: %s, byte %d: %w", l.src.path, at.off, err)
	}
	return e, nil
}

// holding is what the journal says the folder holds of one job: the files
// its lines named since its last replaced line, and the Key of the last
// line that named any.
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

// holdings reads the journal's first size bytes again and returns what
// the folder holds of each of the jobs ids names, by id; a job it holds
// nothing of is left out. Damaged lines are skipped (parseJournal warned
// of them).
func (l *journalLog) holdings(size int64, ids map[idSum]bool) (map[idSum]*holding, error) {
	held := map[idSum]*holding{}
	src := l.src
	src.size = size
	err := src.scan(maxLine, func(_ int, _, _ int64, text []byte, _ bool) {
		if text == nil {
			return
		}
		e, err := decodeEntry(text)
		if err != nil || e.Status == runStart || e.Status == attempt {
			return
		}
		id := sumID(e.ID)
		switch {
		case !ids[id]:
		case e.Status == replaced:
			delete(held, id)
		case len(e.Images) > 0:
			h := held[id]
			if h == nil {
				h = &holding{}
				held[id] = h
			}
			h.add(e)
		}
	})
	return held, err
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

// append writes e as one line and returns once an fsync covered it,
// committing it with the lines other goroutines append meanwhile (see
// journal). An error means the line may not be durable: it was not
// written, or its group's write or fsync failed.
func (j *journal) append(e entry) error {
	_, err := j.appendAt(e)
	return err
}

// appendAt is append, also returning where the line went.
func (j *journal) appendAt(e entry) (lineRef, error) {
	line, err := json.Marshal(e)
	if err != nil {
		return lineRef{}, fmt.Errorf("encode journal entry: %w", err)
	}
	line = append(line, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.usable(); err != nil {
		return lineRef{}, err
	}
	if j.failWrite != nil {
		if err := j.failWrite(JournalFile); err != nil {
			return lineRef{}, fmt.Errorf("write journal: %w", err)
		}
	}
	if j.open == nil {
		j.open = &commitGroup{}
	}
	g, pos := j.open, int64(len(j.pending))
	j.pending = append(j.pending, line...)
	for !g.done {
		if j.committing {
			j.cond.Wait()
			continue
		}
		// No commit runs and g is not done, so g is still the open
		// group: commit it, with every line that joined it.
		j.commit()
	}
	return lineRef{off: g.at + pos, n: int32(len(line) - 1)}, g.err
}

// committed returns the bytes of the file that are committed.
func (j *journal) committed() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.size
}

// usable returns why no line can be appended: the journal is closed, or
// a commit failed in a way that leaves the file untrustworthy.
func (j *journal) usable() error {
	switch {
	case j.f == nil:
		return errors.New("journal is closed")
	case j.broken != nil:
		return fmt.Errorf("write journal: no line is appended after a failed commit: %w", j.broken)
	}
	return nil
}

// commit writes and syncs the open group's lines, with mu unlocked while
// the disk works, and wakes every waiter. mu is held on entry and on
// return.
func (j *journal) commit() {
	g, lines := j.open, j.pending
	j.open, j.pending, j.spare = nil, j.spare[:0], nil
	g.at = j.size
	err := j.usable()
	if err == nil {
		j.committing = true
		f, size := j.f, j.size
		j.mu.Unlock()
		var broken error
		err, broken = writeGroup(f, size, lines)
		j.mu.Lock()
		j.committing = false
		if err == nil {
			j.size += int64(len(lines))
		}
		if broken != nil {
			j.broken = broken
		}
	}
	g.done, g.err = true, err
	j.spare = lines[:0]
	j.cond.Broadcast()
}

// writeGroup writes lines to f, whose first size bytes are committed, and
// fsyncs it. A failed write is cut back to size, so a torn group never
// runs into the next line; when that fails too, or the fsync failed, the
// file cannot be trusted any more and broken says why.
func writeGroup(f journalFile, size int64, lines []byte) (err, broken error) {
	if _, err := f.Write(lines); err != nil {
		err = fmt.Errorf("write journal: %w", err)
		if terr := f.Truncate(size); terr != nil {
			return err, terr
		}
		if _, serr := f.Seek(size, io.SeekStart); serr != nil {
			return err, serr
		}
		return err, nil
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync journal: %w", err), err
	}
	return nil, nil
}

// close closes the file once no commit runs; appends after it fail.
func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.committing {
		j.cond.Wait()
	}
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}
