package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// RunFile is the name of a run's canonical report inside its output folder.
const RunFile = "report.json"

// ReadRun reads the run report in dir (dir/report.json); dir may also name
// the report file itself. It checks that every status is known, job ids are
// unique, image paths stay inside the run folder and each input is a file
// or another job's image. Reports written before jobs had inputs read as
// jobs without any.
func ReadRun(dir string) (*Run, error) {
	path := dir
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		path = filepath.Join(dir, RunFile)
	} else {
		dir = filepath.Dir(dir)
	}
	var r Run
	if err := readJSON(path, &r); err != nil {
		return nil, err
	}
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("read run report %s: %w", path, err)
	}
	r.dir = dir
	return &r, nil
}

// ReadPlan reads a plan file, as `batch plan --format json` prints it: its
// header, and its jobs one at a time, checking that every job has an id,
// no two the same, and that each input is a file or another job's image.
// It keeps no job: the plan's Jobs read the file again, once a pass, so the
// file must stay as it is while the plan is used.
func ReadPlan(path string) (*Plan, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	} else if !fi.Mode().IsRegular() {
		// It is read more than once.
		return nil, fmt.Errorf("read %s: not a regular file", path)
	}
	pf := &planFile{path: path, jobsAt: -1}
	head, problems, err := pf.scan(json.NewDecoder(bufio.NewReaderSize(f, 64<<10)))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var p Plan
	if err := json.Unmarshal(head, &p); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if pf.jobsAt < 0 {
		return nil, fmt.Errorf(`read plan %s: no "jobs" list: not a plan file`, path)
	}
	if problems != nil {
		return nil, fmt.Errorf("read plan %s: %w", path, errors.Join(problems...))
	}
	p.Jobs = pf
	return &p, nil
}

// planFile is a plan file's jobs, read from the file in each pass.
type planFile struct {
	path   string
	jobsAt int64 // offset of the "jobs" value's ':' or '[' (after its key); -1 when there is none
}

// scan reads the single JSON object dec holds: it returns every field but
// "jobs" as a JSON object, and checks the jobs one at a time, returning what
// is wrong with them as problems, and noting where they start.
func (pf *planFile) scan(dec *json.Decoder) (head []byte, problems []error, err error) {
	if t, err := dec.Token(); err != nil {
		return nil, nil, err
	} else if t != json.Delim('{') {
		return nil, nil, errors.New("not a JSON object")
	}
	fields := make(map[string]json.RawMessage)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		key, _ := t.(string)
		if !strings.EqualFold(key, "jobs") { // encoding/json matches keys so
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				return nil, nil, err
			}
			fields[key] = v
			continue
		}
		at := dec.InputOffset()
		list, errs, err := checkJobs(dec)
		if err != nil {
			return nil, nil, err
		}
		pf.jobsAt, problems = -1, errs
		if list {
			pf.jobsAt = at
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, errors.New("more than one JSON value")
	}
	head, err = json.Marshal(fields)
	return head, problems, err
}

// checkJobs reads the "jobs" value dec is at, one job at a time, and
// returns whether it is a list (not null) and what is wrong with its jobs.
func checkJobs(dec *json.Decoder) (list bool, problems []error, err error) {
	t, err := dec.Token()
	switch {
	case err != nil:
		return false, nil, err
	case t == nil:
		return false, nil, nil
	case t != json.Delim('['):
		return false, nil, errors.New(`"jobs" is not a list`)
	}
	ids := newIDHasher()
	seen := make(map[idKey]struct{})
	var errs []error
	var j PlanJob
	for i := 0; dec.More(); i++ {
		j = PlanJob{}
		if err := dec.Decode(&j); err != nil {
			return false, nil, fmt.Errorf("jobs[%d]: %w", i, err)
		}
		if j.ID == "" {
			errs = append(errs, fmt.Errorf("jobs[%d]: no id", i))
		} else {
			k := ids.key(j.ID)
			if _, dup := seen[k]; dup {
				errs = append(errs, fmt.Errorf("jobs[%d]: duplicate id %q", i, j.ID))
			}
			seen[k] = struct{}{}
		}
		errs = append(errs, validateInputs(j.ID, j.DependsOn, j.Inputs)...)
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return false, nil, err
	}
	return true, errs, nil
}

// Each reads the jobs from the file, one at a time, into the same PlanJob.
func (pf *planFile) Each(fn func(pos int64, j *PlanJob) error) error {
	f, base, err := pf.open(pf.jobsAt)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReaderSize(io.NewSectionReader(f, base, math.MaxInt64-base), 64<<10))
	if t, err := dec.Token(); err != nil || t != json.Delim('[') {
		return fmt.Errorf("read %s: the jobs list moved: was the file changed?", pf.path)
	}
	var j PlanJob
	for dec.More() {
		pos := base + dec.InputOffset()
		j = PlanJob{} // Decode leaves fields a job does not have as they were
		if err := dec.Decode(&j); err != nil {
			return fmt.Errorf("read %s: %w", pf.path, err)
		}
		if err := fn(pos, &j); err != nil {
			return err
		}
	}
	return nil
}

// At reads the job Each gave at pos, reading little more than the job.
func (pf *planFile) At(pos int64, j *PlanJob) error {
	f, start, err := pf.open(pos)
	if err != nil {
		return err
	}
	defer f.Close()
	*j = PlanJob{}
	if err := json.NewDecoder(io.NewSectionReader(f, start, math.MaxInt64-start)).Decode(j); err != nil {
		return fmt.Errorf("read %s: %w", pf.path, err)
	}
	return nil
}

// open opens the file and finds the first byte at or after off that is
// not blank, ':' or ',' (the separators before a value): where a decoder
// of the value there starts.
func (pf *planFile) open(off int64) (*os.File, int64, error) {
	f, err := os.Open(pf.path)
	if err != nil {
		return nil, 0, fmt.Errorf("read report: %w", err)
	}
	var b [64]byte
	for {
		n, err := f.ReadAt(b[:], off)
		if i := bytes.IndexFunc(b[:n], func(r rune) bool { return !strings.ContainsRune(" \t\r\n:,", r) }); i >= 0 {
			return f, off + int64(i), nil
		}
		if err != nil {
			_ = f.Close()
			return nil, 0, fmt.Errorf("read %s: the jobs list moved: was the file changed?", pf.path)
		}
		off += int64(n)
	}
}

// readJSON decodes the single JSON object in the file at path into v.
func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read report: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("read %s: more than one JSON value", path)
	}
	return nil
}

// validateInputs checks a job's depends_on and inputs. It does not require
// the jobs named to be in the same file: a shard's job may take images from
// another shard's.
func validateInputs(id string, deps []string, inputs []Input) []error {
	var errs []error
	for _, d := range deps {
		switch d {
		case "":
			errs = append(errs, fmt.Errorf("job %s: empty id in depends_on", id))
		case id:
			errs = append(errs, fmt.Errorf("job %s: depends on itself", id))
		}
	}
	for k, in := range inputs {
		switch {
		case in.Field == "":
			errs = append(errs, fmt.Errorf("job %s: inputs[%d]: no field", id, k))
		case (in.Path == "") == (in.From == ""):
			errs = append(errs, fmt.Errorf("job %s: input %s: want exactly one of path and from", id, in.Field))
		case in.Index < 0 || in.Path != "" && in.Index != 0:
			errs = append(errs, fmt.Errorf("job %s: input %s: index %d: want 1 or more with from, none with path", id, in.Field, in.Index))
		}
	}
	return errs
}

func (r *Run) validate() error {
	if r.Jobs == nil {
		return errors.New(`no "jobs" list: not a run report`)
	}
	seen := make(map[string]bool, len(r.Jobs))
	var errs []error
	for i, j := range r.Jobs {
		switch {
		case j.ID == "":
			errs = append(errs, fmt.Errorf("jobs[%d]: no id", i))
		case seen[j.ID]:
			errs = append(errs, fmt.Errorf("jobs[%d]: duplicate id %q", i, j.ID))
		}
		seen[j.ID] = true
		switch j.Status {
		case StatusSucceeded, StatusFailed, StatusFiltered, StatusSkipped:
		default:
			errs = append(errs, fmt.Errorf("job %s: unknown status %q", j.ID, j.Status))
		}
		errs = append(errs, validateInputs(j.ID, j.DependsOn, j.Inputs)...)
		for _, img := range j.Images {
			// The HTML report links these paths; one outside the run
			// folder would point the reader at an arbitrary file.
			if !filepath.IsLocal(filepath.FromSlash(img.Path)) {
				errs = append(errs, fmt.Errorf("job %s: image path %q is not inside the run folder", j.ID, img.Path))
			}
		}
	}
	return errors.Join(errs...)
}
