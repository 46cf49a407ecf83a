package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

// ReadPlan reads a plan file, as `batch plan --format json` prints it.
func ReadPlan(path string) (*Plan, error) {
	var p Plan
	if err := readJSON(path, &p); err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("read plan %s: %w", path, err)
	}
	return &p, nil
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

func (p *Plan) validate() error {
	if p.Jobs == nil {
		return errors.New(`no "jobs" list: not a plan file`)
	}
	seen := make(map[string]bool, len(p.Jobs))
	var errs []error
	for i, j := range p.Jobs {
		if j.ID == "" {
			errs = append(errs, fmt.Errorf("jobs[%d]: no id", i))
		} else if seen[j.ID] {
			errs = append(errs, fmt.Errorf("jobs[%d]: duplicate id %q", i, j.ID))
		}
		seen[j.ID] = true
		errs = append(errs, validateInputs(j.ID, j.DependsOn, j.Inputs)...)
	}
	return errors.Join(errs...)
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
