// Package manifest reads batch manifests: strict YAML with positions, defaults,
// matrix expansion into jobs with stable ids, and validation that reports
// every problem at once as FILE:LINE:COL: field: message.
//
// A job runs on one operation: a v1 text-to-image engine (engine, with the
// v1 settings width, height, steps, samples, sampler, clip_guidance_preset,
// prompts…) or a Stable Image (v2beta) service (service, e.g.
// generate/core, with the fields of that service in the catalogue of
// package catalog, under the API's names: prompt, negative_prompt,
// aspect_ratio, seed, style_preset, output_format, model, cfg_scale…). The
// engine or service comes from the job, defaults or the top level; a job
// that would get both is a problem. Every field is validated by the
// catalogue row of the job's service (type, range, enum, required fields,
// combination rules), and a field a service does not take is a problem
// that says what to use instead. A default applies only to the jobs whose
// operation takes it; one that no job takes is a problem. Matrix keys work
// for every setting, service included: checks that depend on the service
// then run per row. A matrix key of an integer setting (seed, steps,
// width, left…) may be a range instead of a list, {from: 1, to: 600} or
// {from: 10, to: 50, step: 20}: it counts up, and makes the jobs (and ids)
// the list of its values would.
//
// Image inputs (image, mask, init_image, style_image, subject_image,
// background_reference, light_reference) are a file path relative to the
// manifest's folder, or {from: JOB_ID} / {from: JOB_ID, index: N}: the N-th
// image another job of the manifest makes, which makes a pipeline. Files
// are checked at load time (a regular PNG, JPEG or WebP file whose size fits
// the service's limits, and a request body under the API's 10 MiB); each
// {from} must name a job (a matrix row by its full id), not the job itself,
// and no cycle. Every Stable Image job's output size is computed, through
// its sources, so an input from another job is held against the
// dependent's limits before anything is paid. {placeholders} fill every
// text field and the ids in from.
package manifest

import (
	"iter"
	"slices"
)

// Manifest is a loaded, validated and expanded manifest (version 1). It
// keeps its jobs compact, in memory that follows what the manifest wrote
// rather than how many jobs it makes: a job written without a matrix keeps
// the values it sets itself and shares what it inherits, and a matrix
// keeps its keys and values; Job and All build each job on demand. A
// Manifest is safe for concurrent use.
type Manifest struct {
	Path        string // the file it was read from, as given
	Version     int    // always 1
	Name        string // optional display name; "" when absent
	Engine      string // default v1 engine id, from the top level; "" when absent
	Service     string // default Stable Image service, from the top level, e.g. "generate/core"; "" when absent
	Pricing     string // price sheet id; "" means the default sheet
	Budget      string // credit ceiling as the decimal text written, e.g. "120" or "12.5"; "" when absent
	Output      string // output folder, already joined to the manifest's folder; "" when absent
	Concurrency string // "auto", a positive integer as text, or "" when absent
	Rate        string // N/DURATION as written, e.g. "150/10s"; "" when absent
	// NoCache is set by cache: false, which turns the image cache off.
	NoCache bool
	// CacheDir is the image cache's folder from cache: PATH, already joined
	// to the manifest's folder; "" when absent, for cache: true and for
	// cache: false (the default cache, or none).
	CacheDir string

	// parts are the manifest's jobs in order: runs of plain jobs, stored
	// compactly in recs, and matrix entries, whose rows are built on
	// demand from their plan.
	parts  []segment
	recs   []plainJob        // the plain jobs, in order
	shapes []*shape          // what plain jobs that set the same settings share
	own    []string          // the values plain jobs set themselves, back to back
	ins    []Input           // the image inputs of plain jobs, back to back
	moved  []int32           // matrix rows whose candidate id was taken: they take a hash id; sorted
	keyPos map[string][2]int // line, column of each top-level key
}

// Len returns the number of jobs the manifest expands to; 0 for a manifest
// that lists none.
func (m *Manifest) Len() int {
	if len(m.parts) == 0 {
		return 0
	}
	last := &m.parts[len(m.parts)-1]
	return last.first + last.n
}

// Job returns the i-th job of the manifest, 0 ≤ i < Len(), in manifest
// order (matrix rows in key order). It builds the job from the manifest's
// compact form, in time logarithmic in the number of entries and linear in
// the job's fields; it is safe for concurrent use. Its slices may be
// shared with other jobs; treat them as read-only.
func (m *Manifest) Job(i int) Job {
	pt := m.partOf(i)
	if pt.pl == nil {
		return m.plain(&m.recs[pt.rec+i-pt.first])
	}
	return m.row(pt, i-pt.first, nil)
}

// All yields every job of the manifest with its index, in order. It holds
// one job at a time, and shares a rendered text between consecutive matrix
// rows that agree on it.
func (m *Manifest) All() iter.Seq2[int, Job] {
	return func(yield func(int, Job) bool) {
		var c rowCache
		for k := range m.parts {
			pt := &m.parts[k]
			for r := range pt.n {
				var j Job
				if pt.pl == nil {
					j = m.plain(&m.recs[pt.rec+r])
				} else {
					j = m.row(pt, r, &c)
				}
				if !yield(pt.first+r, j) {
					return
				}
			}
		}
	}
}

// Prompt is one of the API's text_prompts: a text and its weight. A negative
// weight makes it a negative prompt.
type Prompt struct {
	Text   string  `json:"text"`
	Weight float64 `json:"weight"`
}

// Job is one expanded image request, with every default filled in: a v1
// text-to-image request on an Engine, or a Stable Image (v2beta) request on a
// Service. Jobs may share their Prompts, Params, Inputs and
// CfgScale backing memory; treat them as read-only.
type Job struct {
	ID     string // stable, unique, filesystem-safe id: base id plus matrix values
	Base   string // the id of the manifest entry it came from (groups matrix rows)
	Vars   []Var  // the matrix values that made this job, in key order; nil when not from a matrix
	Line   int    // line of the manifest entry (1-based)
	Column int    // column of the manifest entry (1-based)
	Engine string // v1 engine id; "" for a Stable Image job
	// Service is the Stable Image service, e.g. "generate/core"; "" for a v1
	// job.
	Service string
	// Params are the Stable Image form fields the job sets, other than
	// prompt and negative_prompt (which are in Prompts with weight 1 and -1),
	// in the catalogue's field order, with values as sent (numbers in
	// canonical text: "7", "0.5"). generate/sd3's model is always there,
	// with the API's default sd3.5-large when the manifest sets none, so
	// prices and reports know it. nil for a v1 job and for a job that sets
	// none. Jobs that agree on these fields may share one slice.
	Params []Param
	// Inputs are the job's image inputs (image, mask, init_image, …), in
	// the catalogue's field order: files, or images other jobs of the
	// manifest produce. nil when the job takes none. Matrix rows that agree
	// on them may share one slice.
	Inputs  []Input
	Prompts []Prompt // text_prompts as sent; negative_prompt becomes weight -1
	// Width and Height are the image size in pixels: as requested for v1,
	// the size the service returns for a Stable Image job, computed from
	// its fields and, for a job with image inputs, its main input's size
	// (read from the file, or the size its source job returns). 0 only
	// when the catalogue cannot tell it before the run.
	Width, Height int
	Steps         int    // diffusion steps; 0 for a Stable Image job
	Samples       int    // images per request, 1–10; 1 when not given (always 1 for a Stable Image job)
	Seed          uint32 // 0 means the API picks a random seed
	// CfgScale is the v1 API's cfg_scale, 0–35; nil when not given (the API
	// uses 7), and always nil for a Stable Image job (whose cfg_scale, on
	// generate/sd3, is in Params).
	CfgScale *float64
	// Sampler, StylePreset and ClipGuidancePreset are v1 settings: "" lets
	// the API choose (or, for the preset, its default NONE). They are ""
	// for a Stable Image job, whose style_preset is in Params.
	Sampler            string
	StylePreset        string
	ClipGuidancePreset string
}

// Param is one Stable Image form field a job sets: its name and its value
// as sent, e.g. {"aspect_ratio", "16:9"}.
type Param struct {
	Name  string
	Value string
}

// Input is one image input of a Stable Image job: a file, or the image
// another job of the same manifest produces.
type Input struct {
	Field string // the form field, e.g. "image" or "mask"
	// Path is the file, joined to the manifest's folder (as written when
	// absolute); "" for an image from another job. Load checked that it is
	// a regular PNG, JPEG or WebP file; it may change before the run.
	Path string
	// From is the id of the job whose image this is, as Job.ID (lower
	// case); "" for a file. That job is in the same manifest.
	From string
	// Index is which of From's images (1-based: 1 is its first); 0 for a
	// file.
	Index int
	// FromIndex is the index of the job From names, for Manifest.Job; 0
	// for a file (tell by From, which is then "").
	FromIndex int
	// Width and Height are the image's size in pixels: read from the file,
	// or the size From's service returns; 0 when not known before the run.
	Width, Height int
}

// DependsOn returns the ids of the jobs whose images j takes, in input
// order, without repeats; nil when it takes none.
func (j *Job) DependsOn() []string {
	var out []string
	for _, in := range j.Inputs {
		if in.From != "" && !slices.Contains(out, in.From) {
			out = append(out, in.From)
		}
	}
	return out
}

// Param returns the value of the Stable Image field name, and whether the job
// sets it.
func (j *Job) Param(name string) (string, bool) {
	for _, p := range j.Params {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

// Var is one matrix value of an expanded job: a placeholder or setting name
// and the value it took, as text.
type Var struct {
	Key   string
	Value string
}

// KeyPos returns the line and column (1-based) of a top-level key of the
// manifest, e.g. "pricing", so callers can report problems with its value;
// it returns 1, 1 when the key is absent.
func (m *Manifest) KeyPos(key string) (line, col int) {
	if pos, ok := m.keyPos[key]; ok {
		return pos[0], pos[1]
	}
	return 1, 1
}
