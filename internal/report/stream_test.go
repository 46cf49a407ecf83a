package report

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// scribbled is a PlanJobs that hands every job over in one PlanJob whose
// slices it reuses, and scribbles over both once fn returns: a renderer
// that keeps a job, or a slice of one, past its call shows it in its
// output. It counts its passes and the jobs it reads back with At.
type scribbled struct {
	rows         PlanRows
	passes, ats  int
	job          PlanJob
	deps         []string
	inputs       []Input
	settings     []Setting
	failAfter    int // fail the pass at this job; 0 never
	errFailed    error
	scribbleWith string
}

func (s *scribbled) Each(fn func(pos int64, j *PlanJob) error) error {
	s.passes++
	for i, r := range s.rows {
		if s.failAfter > 0 && i == s.failAfter {
			return s.errFailed
		}
		s.fill(r)
		if err := fn(int64(i), &s.job); err != nil {
			return err
		}
		s.scribble()
	}
	return nil
}

func (s *scribbled) At(pos int64, j *PlanJob) error {
	s.ats++
	return s.rows.At(pos, j)
}

func (s *scribbled) fill(r PlanJob) {
	s.deps = append(s.deps[:0], r.DependsOn...)
	s.inputs = append(s.inputs[:0], r.Inputs...)
	s.settings = append(s.settings[:0], r.Settings...)
	s.job = r
	s.job.DependsOn, s.job.Inputs, s.job.Settings = nil, nil, nil
	if len(r.DependsOn) > 0 {
		s.job.DependsOn = s.deps
	}
	if len(r.Inputs) > 0 {
		s.job.Inputs = s.inputs
	}
	if len(r.Settings) > 0 {
		s.job.Settings = s.settings
	}
}

func (s *scribbled) scribble() {
	x := s.scribbleWith
	for i := range s.deps {
		s.deps[i] = x
	}
	for i := range s.inputs {
		s.inputs[i] = Input{Field: x, From: x}
	}
	for i := range s.settings {
		s.settings[i] = Setting{Name: x, Value: x}
	}
	s.job = PlanJob{ID: x, Group: x, Engine: x, Prompt: x, Samples: 99}
}

// TestRenderersKeepNoJob renders plans, one row per job and grouped, from
// a source that reuses and scribbles over each job once it is handed over:
// every format matches what the same plan held in memory renders, in at
// most the passes expected.
func TestRenderersKeepNoJob(t *testing.T) {
	plans := map[string]*Plan{
		"plan":              mustReadPlan(t, "testdata/plan.json"),
		"pipeline-plan":     mustReadPlan(t, "testdata/pipeline-plan.json"),
		"plan-big":          bigPlan(5, 12),
		"pipeline-plan-big": bigPipeline(),
		"many-groups":       bigPlan(120, 1), // past the Markdown table's cap
		"empty":             {Manifest: "empty.yaml", Pricing: "stability-2025-08"},
	}
	// The most passes each format may make: the table and Markdown a
	// first pass, one more to resolve sources and one to measure with
	// them, then the rows; CSV and JSON only the rows.
	maxPasses := map[string]int{FormatTable: 4, FormatMarkdown: 3, FormatCSV: 1, FormatJSON: 1, FormatHTML: 1}
	for name, p := range plans {
		rows := planRows(t, p)
		for _, f := range PlanFormats {
			t.Run(name+"."+f, func(t *testing.T) {
				held := *p
				held.Jobs = rows
				var want bytes.Buffer
				if err := WritePlanWidth(&want, f, &held, 100); err != nil {
					t.Fatal(err)
				}
				src := &scribbled{rows: rows, scribbleWith: "SCRIBBLED"}
				streamed := *p
				streamed.Jobs = src
				var got bytes.Buffer
				if err := WritePlanWidth(&got, f, &streamed, 100); err != nil {
					t.Fatal(err)
				}
				if got.String() != want.String() {
					t.Errorf("rendered from a reusing source:\n%s\nwant\n%s", got.String(), want.String())
				}
				if src.passes > maxPasses[f] {
					t.Errorf("%d passes over the jobs, want at most %d", src.passes, maxPasses[f])
				}
			})
		}
	}
}

// TestRenderStopsOnSourceError: an error reading the jobs ends the render
// with that error.
func TestRenderStopsOnSourceError(t *testing.T) {
	errRead := errors.New("disk gone")
	for _, f := range PlanFormats {
		t.Run(f, func(t *testing.T) {
			p := bigPlan(5, 12)
			p.Jobs = &scribbled{rows: p.Jobs.(PlanRows), failAfter: 30, errFailed: errRead}
			if err := WritePlan(&bytes.Buffer{}, f, p); !errors.Is(err, errRead) {
				t.Errorf("WritePlan(%s) = %v, want %v", f, err, errRead)
			}
		})
	}
}

// TestDiffKeepsNoJob diffs plans whose sources reuse and scribble over
// each job: the jobs that differ are those of the same plans held in
// memory, and the base jobs read back are the changed ones Each lists, and
// those of the first MaxJobRows changed, whose change Diff words for the
// tables.
func TestDiffKeepsNoJob(t *testing.T) {
	bigHead := bigPlan(5, 12)
	for i := range bigHead.Jobs.(PlanRows) {
		if i%4 > 0 { // 45 changed, more than MaxJobRows; 15 not
			bigHead.Jobs.(PlanRows)[i].Steps += 10
		}
	}
	pipelineBase := mustReadPlan(t, "testdata/pipeline-plan.json")
	tests := []struct {
		name       string
		base, head *Plan
	}{
		{"pipeline", pipelineBase, pipelineHead(t)},
		{"many changed", bigPlan(5, 12), bigHead},
		{"sources changed", bigPlan(5, 12), bigPipeline()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			baseRows, headRows := planRows(t, tt.base), planRows(t, tt.head)
			heldBase, heldHead := *tt.base, *tt.head
			heldBase.Jobs, heldHead.Jobs = baseRows, headRows
			want := diffJobs(t, mustDiff(t, &heldBase, &heldHead))

			bs, hs := &scribbled{rows: baseRows, scribbleWith: "B"}, &scribbled{rows: headRows, scribbleWith: "H"}
			sb, sh := *tt.base, *tt.head
			sb.Jobs, sh.Jobs = bs, hs
			d := mustDiff(t, &sb, &sh)
			if got := diffJobs(t, d); !reflect.DeepEqual(got, want) {
				t.Errorf("diff of reusing sources:\n%+v\nwant\n%+v", got, want)
			}
			changed := 0
			for _, j := range want {
				if j.Change == ChangeChanged {
					changed++
				}
			}
			// Diff, then diffJobs: each a pass over both.
			if wantAts := min(changed, MaxJobRows) + changed; bs.passes != 3 || hs.passes != 2 || bs.ats != wantAts {
				t.Errorf("base read in %d passes (%d jobs again), head in %d; want 3 (%d), 2", bs.passes, bs.ats, hs.passes, wantAts)
			}
		})
	}
}

// TestPlanFileReadsBack writes plans as JSON and reads them back: Each
// yields every job as written, and At reads each back from its position.
func TestPlanFileReadsBack(t *testing.T) {
	for name, p := range map[string]*Plan{"pipeline": mustReadPlan(t, "testdata/pipeline-plan.json"), "big": bigPipeline()} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WritePlan(&b, FormatJSON, p); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "plan.json")
			if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			back := mustReadPlan(t, path)
			want := planRows(t, p)
			var got PlanRows
			var pos []int64
			err := back.Jobs.Each(func(at int64, j *PlanJob) error {
				got, pos = append(got, j.clone()), append(pos, at)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("jobs read back:\n%+v\nwant\n%+v", got, want)
			}
			// Backwards, so that no read follows from the one before.
			for i := len(pos) - 1; i >= 0; i-- {
				var j PlanJob
				if err := back.Jobs.At(pos[i], &j); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(j, want[i]) {
					t.Errorf("At(%d) = %+v, want %+v", pos[i], j, want[i])
				}
			}
		})
	}
}

// TestReadPlanFile reads plan files laid out in other ways than batch
// writes them, and refuses what is not a plan.
func TestReadPlanFile(t *testing.T) {
	tests := []struct {
		name, body string
		wantIDs    string // the jobs' ids, joined with ","
		wantErr    string // substring; "" for none
	}{
		{"jobs first", `{"jobs": [{"id": "a", "credits": 1}, {"id": "b"}], "manifest": "m.yaml", "total_credits": 1}`, "a,b", ""},
		{"one line", `{"manifest":"m.yaml","jobs":[{"id":"a"},{"id":"b"},{"id":"c"}]}`, "a,b,c", ""},
		{"no jobs", `{"manifest":"m.yaml","jobs":[]}`, "", ""},
		{"unknown fields", `{"manifest":"m.yaml","extra":{"x":[1,2]},"jobs":[{"id":"a","extra":1}]}`, "a", ""},
		{"null jobs", `{"manifest":"m.yaml","jobs":null}`, "", "not a plan file"},
		{"no jobs key", `{"manifest":"m.yaml"}`, "", "not a plan file"},
		{"jobs not a list", `{"jobs":{"id":"a"}}`, "", "not a list"},
		{"not an object", `[{"id":"a"}]`, "", "not a JSON object"},
		{"two values", `{"jobs":[]} {"jobs":[]}`, "", "more than one JSON value"},
		{"cut short", `{"jobs":[{"id":"a"},`, "", "read"},
		{"bad header", `{"total_credits":"lots","jobs":[]}`, "", "read"},
		{"every problem", `{"jobs":[{"id":"a"},{},{"id":"a","depends_on":["a"]}]}`, "", "jobs[1]: no id\njobs[2]: duplicate id \"a\"\njob a: depends on itself"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "plan.json")
			if err := os.WriteFile(path, []byte(tt.body), 0o644); err != nil {
				t.Fatal(err)
			}
			p, err := ReadPlan(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ReadPlan = %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, j := range planRows(t, p) {
				ids = append(ids, j.ID)
			}
			if got := strings.Join(ids, ","); got != tt.wantIDs || p.Manifest != "m.yaml" {
				t.Errorf("ReadPlan: manifest %q, jobs %q; want m.yaml, %q", p.Manifest, got, tt.wantIDs)
			}
		})
	}
}
