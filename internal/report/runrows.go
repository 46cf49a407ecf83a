package report

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/batch-tool/batch/internal/outdir"
)

// A run's report is written once every job has finished, in job order,
// while the jobs finish in any order: RunSpill keeps each job's row on
// disk as it comes, and the renderers read the rows back one at a time
// (Run.Rows), so that a run of a million jobs holds neither its rows nor
// its report in memory.

// RunJobs is where a run's jobs come from when Run.Rows holds them: job i
// of Len, read into j on each call.
type RunJobs interface {
	// Len is the number of jobs.
	Len() int
	// Job reads job i (0 ≤ i < Len) into j. j's slices may be reused by
	// the next call.
	Job(i int, j *RunJob) error
}

// RunSpill keeps a run's report rows in a temporary file in the output
// folder, each in a compact binary form (see appendSpillRow) after its
// length, in the order they are added, with the offset of each job's row:
// 8 bytes a job in memory, and the last few blocks of the file read (512
// KiB). It counts the rows' statuses as they come. Rows that cannot be
// written (a full disk) are kept in memory instead, so the report can
// still be shown. It is not safe for concurrent use. Close removes the
// file; a crash leaves it, and the next run that locks the folder removes
// it.
type RunSpill struct {
	d      *outdir.Dir
	f      *os.File
	name   string  // the file's name in d
	size   int64   // bytes of rows added
	at     []int64 // per job: 1 + the offset of its row; 0 before it is added
	totals Totals
	// pend holds the rows from offset written on: not written yet, or,
	// once a write failed (failed), kept in memory for good.
	pend    []byte
	written int64
	failed  error
	enc     []byte                      // the row being added
	blocks  [spillBlocks]spillBlockData // blocks of the file read, block n in blocks[n%spillBlocks]
	buf     []byte                      // a row read that spans blocks, put together
}

// spillBlockData is a block of a RunSpill's file as read: no is 1 + the
// block's number (0 before one is read), data its bytes up to where the
// file ended when it was read.
type spillBlockData struct {
	no   int64
	data []byte
}

// spillName is the name the temporary file of a RunSpill is made beside.
const spillName = "report-rows"

// spillChunk is how many bytes of rows a RunSpill gathers per write.
const spillChunk = 64 << 10

// A RunSpill reads its file in blocks of spillBlock bytes and keeps
// spillBlocks of them (512 KiB), block n in place n % spillBlocks. Jobs
// finish in about their order (a job is added some rows from its place, as
// many as run at once), so a pass reading the rows in job order finds most
// in the blocks kept, and reads each block about once.
const (
	spillBlock  = 32 << 10
	spillBlocks = 16
)

// NewRunSpill creates the temporary file of the rows of a run of jobs
// jobs in the output folder dir.
func NewRunSpill(dir string, jobs int) (*RunSpill, error) {
	d, err := outdir.OpenDir(dir)
	if err != nil {
		return nil, fmt.Errorf("report rows: %w", err)
	}
	f, name, err := d.CreateTemp(spillName)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("report rows: %w", err)
	}
	return &RunSpill{d: d, f: f, name: name, at: make([]int64, jobs)}, nil
}

// Add records job i's row; each job is added once.
func (s *RunSpill) Add(i int, j *RunJob) error {
	switch {
	case i < 0 || i >= len(s.at):
		return fmt.Errorf("report rows: no job %d of %d", i, len(s.at))
	case s.at[i] != 0:
		return fmt.Errorf("report rows: job %s added twice", j.ID)
	}
	s.enc = appendSpillRow(s.enc[:0], j)
	n := len(s.pend)
	s.pend = binary.AppendUvarint(s.pend, uint64(len(s.enc)))
	s.pend = append(s.pend, s.enc...)
	s.at[i] = s.size + 1
	s.size += int64(len(s.pend) - n)
	s.totals.count(j.Status)
	if len(s.pend) >= spillChunk {
		s.flush()
	}
	return nil
}

// flush writes the pending rows to the file, unless a write failed
// before; a failed write keeps them, and every later row, in memory.
func (s *RunSpill) flush() {
	if s.failed != nil || len(s.pend) == 0 {
		return
	}
	if _, err := s.f.WriteAt(s.pend, s.written); err != nil {
		s.failed = err
		return
	}
	s.written += int64(len(s.pend))
	s.pend = s.pend[:0]
}

// Err is the error that made the spill keep rows in memory; nil while it
// writes them all to its file.
func (s *RunSpill) Err() error { return s.failed }

// Totals counts the jobs added by status.
func (s *RunSpill) Totals() Totals { return s.totals }

// Len is the number of jobs of the run.
func (s *RunSpill) Len() int { return len(s.at) }

// Job reads job i's row into j, reusing j's slices.
func (s *RunSpill) Job(i int, j *RunJob) error {
	row, err := s.row(i)
	if err != nil {
		return err
	}
	if err := decodeSpillRow(row, j); err != nil {
		return fmt.Errorf("report rows: job %d: %w", i, err)
	}
	return nil
}

// row returns job i's row as added, without its length; it is valid
// until the next call.
func (s *RunSpill) row(i int) ([]byte, error) {
	if i < 0 || i >= len(s.at) || s.at[i] == 0 {
		return nil, fmt.Errorf("report rows: job %d of %d has no row", i, len(s.at))
	}
	s.flush()
	off := s.at[i] - 1
	if off >= s.written {
		rest := s.pend[off-s.written:]
		n, k := binary.Uvarint(rest)
		return rest[k : k+int(n)], nil
	}
	head, err := s.read(off, min(binary.MaxVarintLen64, s.written-off))
	if err != nil {
		return nil, fmt.Errorf("report rows: job %d: %w", i, err)
	}
	n, k := binary.Uvarint(head)
	if k <= 0 || n > uint64(s.written-off-int64(k)) {
		return nil, fmt.Errorf("report rows: job %d: malformed row", i)
	}
	row, err := s.read(off+int64(k), int64(n))
	if err != nil {
		return nil, fmt.Errorf("report rows: job %d: %w", i, err)
	}
	return row, nil
}

// read returns the n bytes of the file at off, all written; they are
// valid until the next call.
func (s *RunSpill) read(off, n int64) ([]byte, error) {
	first, last := off/spillBlock, (off+n-1)/spillBlock
	if n <= 0 || first == last {
		b, err := s.block(first, off+n)
		if err != nil {
			return nil, err
		}
		return b[off-first*spillBlock:][:n], nil
	}
	s.buf = s.buf[:0]
	for no := first; no <= last; no++ {
		b, err := s.block(no, min(off+n, (no+1)*spillBlock))
		if err != nil {
			return nil, err
		}
		lo, hi := max(off-no*spillBlock, 0), min(off+n-no*spillBlock, int64(len(b)))
		s.buf = append(s.buf, b[lo:hi]...)
	}
	return s.buf, nil
}

// block returns block no of the file from the blocks kept, or read anew
// when it is not kept or ends before the offset end.
func (s *RunSpill) block(no, end int64) ([]byte, error) {
	c := &s.blocks[no%spillBlocks]
	if c.no == no+1 && no*spillBlock+int64(len(c.data)) >= end {
		return c.data, nil
	}
	if c.data == nil {
		c.data = make([]byte, spillBlock)
	}
	c.no = 0
	size := min(spillBlock, s.written-no*spillBlock)
	m, err := s.f.ReadAt(c.data[:size], no*spillBlock)
	if int64(m) < size {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	c.no, c.data = no+1, c.data[:size]
	return c.data, nil
}

// Close removes the file.
func (s *RunSpill) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	if rm := s.d.Remove(s.name); err == nil {
		err = rm
	}
	s.d.Close()
	s.f, s.pend, s.blocks = nil, nil, [spillBlocks]spillBlockData{}
	return err
}

// jobCount is the number of r's jobs.
func (r *Run) jobCount() int {
	if r.Rows != nil {
		return r.Rows.Len()
	}
	return len(r.Jobs)
}

// each calls fn with every job of r, in order: r.Jobs, or the jobs of
// r.Rows, read one at a time (j is then reused by the next call). It
// stops at the first error, fn's or the read's, and returns it.
func (r *Run) each(fn func(i int, j *RunJob) error) error {
	if r.Rows == nil {
		for i := range r.Jobs {
			if err := fn(i, &r.Jobs[i]); err != nil {
				return err
			}
		}
		return nil
	}
	var j RunJob
	for i := range r.Rows.Len() {
		if err := r.Rows.Job(i, &j); err != nil {
			return err
		}
		if err := fn(i, &j); err != nil {
			return err
		}
	}
	return nil
}

// job returns job i of r.
func (r *Run) job(i int) (RunJob, error) {
	if r.Rows == nil {
		return r.Jobs[i], nil
	}
	var j RunJob
	err := r.Rows.Job(i, &j)
	return j, err
}

// runJSON writes r as report.json: indented, its "jobs" last, each job
// compact on a line of its own, as writeJobsJSON does, reading the jobs one
// at a time.
func runJSON(w io.Writer, r *Run) error {
	head := *r
	head.Jobs, head.Rows = nil, nil
	var j RunJob
	var line []byte
	return writeJobsJSON(w, &head, r.jobCount(), func(i int) ([]byte, error) {
		jp := &j
		if r.Rows == nil {
			jp = &r.Jobs[i]
		} else if err := r.Rows.Job(i, &j); err != nil {
			return nil, err
		}
		line = appendRunJob(line[:0], jp)
		return line, nil
	})
}
