package report

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// matrixJobs is a plan's jobs made up as they pass, as a manifest's are
// built: groups of a matrix entry each, every job with its own id, seed and
// a prompt of about 1,900 characters.
type matrixJobs struct {
	groups, perGroup int
	prompt           string
}

func (m matrixJobs) Each(fn func(pos int64, j *PlanJob) error) error {
	var j PlanJob
	settings := make([]Setting, 1)
	for i := range m.groups * m.perGroup {
		m.fill(&j, i, settings)
		if err := fn(int64(i), &j); err != nil {
			return err
		}
	}
	return nil
}

func (m matrixJobs) At(pos int64, j *PlanJob) error {
	m.fill(j, int(pos), make([]Setting, 1))
	return nil
}

// fill makes j the i-th job, with settings (of length 1) as its settings.
func (m matrixJobs) fill(j *PlanJob, i int, settings []Setting) {
	group := "scene-" + strconv.Itoa(i/m.perGroup)
	seed := strconv.Itoa(i%m.perGroup + 1)
	settings[0] = Setting{Name: "seed", Value: seed}
	*j = PlanJob{Index: i, ID: group + "-" + seed, Group: group, Service: "generate/core", Width: 2016, Height: 1152,
		AspectRatio: "16:9", Prompt: m.prompt, Settings: settings, Samples: 1, Credits: 3_000_000}
}

// longPrompt is a prompt of 1,900 characters.
func longPrompt() string {
	return strings.Repeat("a lighthouse on a rocky cliff at dawn, waves breaking below, ", 32)[:1900]
}

// BenchmarkWritePlan renders a plan of 200,000 jobs with long prompts,
// made up as they pass, in each streaming format: what rendering costs on
// top of building the jobs (see cmd/batch's BenchmarkPlanLongPrompts for
// the whole command).
func BenchmarkWritePlan(b *testing.B) {
	p := &Plan{Manifest: "long.yaml", Pricing: "stability-2025-08", TotalCredits: 600_000_000_000,
		Jobs: matrixJobs{groups: 4, perGroup: 50_000, prompt: longPrompt()}}
	for _, f := range []string{FormatTable, FormatMarkdown, FormatCSV, FormatJSON} {
		b.Run(f, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := WritePlan(io.Discard, f, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadPlan reads back a plan file of 200,000 jobs with long
// prompts (about 420 MB) and renders it as a table, as `batch report
// PLAN.json` does: a pass to check the file, two to render.
func BenchmarkReadPlan(b *testing.B) {
	path := filepath.Join(b.TempDir(), "plan.json")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	p := &Plan{Manifest: "long.yaml", Pricing: "stability-2025-08", Jobs: matrixJobs{groups: 4, perGroup: 50_000, prompt: longPrompt()}}
	if err := WritePlan(f, FormatJSON, p); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		back, err := ReadPlan(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := WritePlan(io.Discard, FormatTable, back); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDiff diffs two plans of 100,000 jobs in which every tenth job
// changed its size, and writes the diff as JSON.
func BenchmarkDiff(b *testing.B) {
	base := &Plan{Manifest: "a.yaml", Jobs: matrixJobs{groups: 100, perGroup: 1000, prompt: "a fox"}}
	head := &Plan{Manifest: "b.yaml", Jobs: everyTenth{matrixJobs{groups: 100, perGroup: 1000, prompt: "a fox"}}}
	b.ReportAllocs()
	for b.Loop() {
		d, err := Diff(base, head)
		if err != nil {
			b.Fatal(err)
		}
		if d.Differing != 10_000 {
			b.Fatalf("%d jobs differ, want 10000", d.Differing)
		}
		if err := WriteDiff(io.Discard, FormatJSON, d); err != nil {
			b.Fatal(err)
		}
	}
}

// everyTenth is m with every tenth job's width changed.
type everyTenth struct{ m matrixJobs }

func (e everyTenth) Each(fn func(pos int64, j *PlanJob) error) error {
	return e.m.Each(func(pos int64, j *PlanJob) error {
		if pos%10 == 0 {
			j.Width = 1024
		}
		return fn(pos, j)
	})
}

func (e everyTenth) At(pos int64, j *PlanJob) error { return e.m.At(pos, j) }

// BenchmarkDiffFiles diffs two plan files of 100,000 jobs in which every
// tenth job changed its size: the changed jobs of the base are read back
// from their place in its file.
func BenchmarkDiffFiles(b *testing.B) {
	dir := b.TempDir()
	write := func(name string, jobs PlanJobs) *Plan {
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := WritePlan(f, FormatJSON, &Plan{Manifest: name, Jobs: jobs}); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		p, err := ReadPlan(path)
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	m := matrixJobs{groups: 100, perGroup: 1000, prompt: "a fox"}
	base, head := write("a.json", m), write("b.json", everyTenth{m})
	b.ReportAllocs()
	for b.Loop() {
		d, err := Diff(base, head)
		if err != nil {
			b.Fatal(err)
		}
		if d.Differing != 10_000 {
			b.Fatalf("%d jobs differ, want 10000", d.Differing)
		}
	}
}

// editRun is a run of n single-job entries as the run bench makes them:
// edit/inpaint of one input image, a prompt of about 90 characters, a seed
// and one WebP image each, every job succeeded.
func editRun(n int) *Run {
	r := &Run{Manifest: "run.yaml", Pricing: "stability-2025-08"}
	for i := range n {
		id := fmt.Sprintf("job-%07d", i+1)
		prompt := "a watercolor painting of a lighthouse on a rocky northern coast at dusk, soft light, variation " + id[4:]
		seed := strconv.Itoa(i + 1)
		j := RunJob{Index: i, ID: id, Group: id, Service: "edit/inpaint", Width: 64, Height: 64, OutputFormat: "webp",
			Inputs: []Input{{Field: "image", Path: "input.png"}}, Prompt: prompt, Settings: []Setting{{Name: "seed", Value: seed}},
			Samples: 1, Status: StatusSucceeded, Credits: 50_000, Attempts: 1,
			Params: prompt + "\nSeed: " + seed + ", Size: 64x64, Model: edit/inpaint",
			Images: []Image{{Path: "images/" + id + ".webp", Seed: uint32(i + 1), FinishReason: "SUCCESS",
				SHA256: strings.Repeat("be", 32), RequestID: strings.Repeat("6c", 16)}}}
		r.ChargedCredits += j.Credits
		r.Totals.count(j.Status)
		r.Jobs = append(r.Jobs, j)
	}
	r.EstimatedCredits = r.ChargedCredits
	return r
}

// BenchmarkSaveRun adds the rows of a run of 5,000 jobs to a RunSpill, as
// a run does while its jobs finish, and saves its reports (report.json,
// report.md and report.html) from the spill, then renders the summary
// table: what a run costs once its last job is done. The images are not
// on disk, so the page embeds none.
func BenchmarkSaveRun(b *testing.B) {
	r := editRun(5000)
	dir := b.TempDir()
	b.ReportAllocs()
	for b.Loop() {
		s, err := NewRunSpill(dir, len(r.Jobs))
		if err != nil {
			b.Fatal(err)
		}
		for i := range r.Jobs {
			if err := s.Add(i, &r.Jobs[i]); err != nil {
				b.Fatal(err)
			}
		}
		run := *r
		run.Jobs, run.Rows = nil, s
		if err := Save(dir, &run); err != nil {
			b.Fatal(err)
		}
		if err := WriteRun(io.Discard, FormatTable, &run); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
