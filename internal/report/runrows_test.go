package report

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// spilled returns a copy of r whose jobs are in a RunSpill in a new
// folder, added in reverse order, as a run's jobs finish in any order.
func spilled(t *testing.T, r *Run) *Run {
	t.Helper()
	s, err := NewRunSpill(t.TempDir(), len(r.Jobs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	for i := len(r.Jobs) - 1; i >= 0; i-- {
		if err := s.Add(i, &r.Jobs[i]); err != nil {
			t.Fatal(err)
		}
	}
	out := *r
	out.Jobs, out.Rows = nil, s
	return &out
}

// TestSpilledRunGolden renders the runs of the golden files with their
// jobs read back one at a time from a RunSpill: the same bytes as the
// golden files.
func TestSpilledRunGolden(t *testing.T) {
	bigPipeRun := bigRun(5, 12)
	for i := range bigPipeRun.Jobs {
		bigPipeRun.Jobs[i].DependsOn = bigPipeline().Jobs.(PlanRows)[i].DependsOn
	}
	subjects := []struct {
		name    string
		run     *Run
		formats []string
	}{
		{"run", mustReadRun(t, "testdata/run"), RunFormats},
		{"run-big", bigRun(5, 12), []string{FormatTable, FormatMarkdown, FormatJUnit, FormatHTML}},
		{"pipeline-run", mustReadRun(t, "testdata/pipeline-run"), RunFormats},
		{"pipeline-run-big", bigPipeRun, []string{FormatTable, FormatMarkdown}},
		{"matrix-run", mustReadRun(t, matrixRunDir), []string{FormatHTML}},
	}
	ext := map[string]string{FormatTable: "txt", FormatJSON: "json", FormatMarkdown: "md", FormatCSV: "csv", FormatJUnit: "xml", FormatHTML: "html"}
	for _, s := range subjects {
		r := spilled(t, s.run)
		for _, f := range s.formats {
			name := s.name + "." + ext[f]
			t.Run(name, func(t *testing.T) {
				var got bytes.Buffer
				if err := WriteRun(&got, f, r); err != nil {
					t.Fatal(err)
				}
				want, err := os.ReadFile(filepath.Join("testdata", name+".golden"))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Bytes(), want) {
					t.Errorf("%s from a spill differs from %s.golden", name, name)
				}
			})
		}
	}
}

// TestSaveSpilled saves a run from a spill: the files are those Save writes
// from the run in memory, and no temp file is left.
func TestSaveSpilled(t *testing.T) {
	r := mustReadRun(t, matrixRunDir)
	mem, spill := t.TempDir(), t.TempDir()
	for _, d := range []string{mem, spill} {
		if err := os.CopyFS(d, os.DirFS(matrixRunDir)); err != nil {
			t.Fatal(err)
		}
	}
	if err := Save(mem, r); err != nil {
		t.Fatal(err)
	}
	s, err := NewRunSpill(spill, len(r.Jobs))
	if err != nil {
		t.Fatal(err)
	}
	for i := range r.Jobs {
		if err := s.Add(i, &r.Jobs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := s.Totals(), r.Totals; got != want {
		t.Errorf("spill totals %+v, want the report's %+v", got, want)
	}
	head := *r
	head.Jobs, head.Rows = nil, s
	if err := Save(spill, &head); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{RunFile, "report.md", "report.html"} {
		a, err := os.ReadFile(filepath.Join(mem, name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(spill, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s saved from a spill differs from the one saved from memory", name)
		}
	}
	entries, err := os.ReadDir(spill)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("%s left in the folder", e.Name())
		}
	}
}

// TestRunSpillRefuses checks what a spill refuses: a job added twice, one
// out of range, and a report missing a job's row.
func TestRunSpillRefuses(t *testing.T) {
	s, err := NewRunSpill(t.TempDir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	j := RunJob{ID: "a", Status: StatusSucceeded, Images: []Image{}}
	if err := s.Add(0, &j); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		i    int
		want string
	}{
		{"twice", 0, "added twice"},
		{"out of range", 2, "no job 2 of 2"},
	} {
		if err := s.Add(tt.i, &j); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
	r := &Run{Rows: s}
	if err := WriteRun(io.Discard, FormatJSON, r); err == nil || !strings.Contains(err.Error(), "job 1 of 2 has no row") {
		t.Errorf("report with a job missing: error %v, want it named", err)
	}
}

// TestRunSpillKeepsRowsItCannotWrite: rows that cannot be written (a full
// disk, here a file closed under the spill) stay in memory, so the report
// is still whole.
func TestRunSpillKeepsRowsItCannotWrite(t *testing.T) {
	r := mustReadRun(t, "testdata/run")
	dir := t.TempDir()
	s, err := NewRunSpill(dir, len(r.Jobs))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	half := len(r.Jobs) / 2
	for i := range half {
		if err := s.Add(i, &r.Jobs[i]); err != nil {
			t.Fatal(err)
		}
	}
	s.flush()
	// The disk fills: the file still reads, and no longer writes.
	ro, err := os.Open(filepath.Join(dir, s.name))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.f.Close(); err != nil {
		t.Fatal(err)
	}
	s.f = ro
	for i := half; i < len(r.Jobs); i++ {
		if err := s.Add(i, &r.Jobs[i]); err != nil {
			t.Fatalf("add job %d after the disk filled: %v", i, err)
		}
	}
	var want, got bytes.Buffer
	if err := WriteRun(&want, FormatJSON, r); err != nil {
		t.Fatal(err)
	}
	head := *r
	head.Jobs, head.Rows = nil, s
	if err := WriteRun(&got, FormatJSON, &head); err != nil {
		t.Fatal(err)
	}
	if s.Err() == nil {
		t.Error("Err() = nil after a write failed")
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Error("the report from a spill that could not write differs from the report in memory")
	}
}

// TestSpillRowRoundTrip decodes what appendSpillRow encodes: every field
// of RunJob set (a field added to RunJob but not to the row fails here),
// none, empty lists apart from nil ones, into a job that held another row
// (its slices reused).
func TestSpillRowRoundTrip(t *testing.T) {
	long := fullRunJob(strings.Repeat("a long prompt, ", 1000))
	long.Vars = append(long.Vars, Var{"k", "v"}, Var{"k2", "v2"})
	tests := []struct {
		name string
		job  RunJob
		into RunJob // what j holds before
	}{
		{"zero", RunJob{}, RunJob{}},
		{"every field", fullRunJob("a fox"), RunJob{}},
		{"every field over a longer job", fullRunJob("a fox"), long},
		{"unicode and invalid utf-8", fullRunJob("狐 🦊 \u2028 \xff\xfe\x00"), RunJob{}},
		{"empty lists", RunJob{Vars: []Var{}, DependsOn: []string{}, Inputs: []Input{}, Settings: []Setting{}, Images: []Image{}}, RunJob{}},
		{"nil lists over full ones", RunJob{ID: "a"}, fullRunJob("a fox")},
		{"negative and large numbers", RunJob{Index: -1, Width: 1 << 40, Credits: -(1 << 62), Images: []Image{{Seed: 1<<32 - 1}}}, RunJob{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row := appendSpillRow(nil, &tt.job)
			got := tt.into
			if err := decodeSpillRow(row, &got); err != nil {
				t.Fatalf("decodeSpillRow: %v", err)
			}
			if !reflect.DeepEqual(got, tt.job) {
				t.Errorf("decodeSpillRow(appendSpillRow(j)) =\n%+v\nwant\n%+v", got, tt.job)
			}
		})
	}
}

// TestSpillRowMalformed: a row cut short, or with bytes left over, is an
// error, not a job.
func TestSpillRowMalformed(t *testing.T) {
	j := fullRunJob("a fox")
	row := appendSpillRow(nil, &j)
	for _, tt := range []struct {
		name string
		row  []byte
	}{
		{"empty", nil},
		{"cut", row[:len(row)/2]},
		{"one byte short", row[:len(row)-1]},
		{"a byte over", append(slices.Clone(row), 0)},
	} {
		var got RunJob
		if err := decodeSpillRow(tt.row, &got); err == nil {
			t.Errorf("%s: decodeSpillRow = nil error, want one", tt.name)
		}
	}
}

// TestRunSpillReadsBack reads every job of a spill back, as added: rows of
// every size (some longer than a block of the file, so across blocks),
// added out of order, read while others are still being added (the last
// block of the file grows after it was read), in order and backwards.
func TestRunSpillReadsBack(t *testing.T) {
	const n = 300
	jobs := make([]RunJob, n)
	for i := range jobs {
		jobs[i] = fullRunJob("a fox")
		jobs[i].Index, jobs[i].Prompt = i, strings.Repeat("x", i*i%(3*spillBlock/2))
	}
	// Jobs finish out of order: a fixed shuffle.
	order := make([]int, n)
	for i := range order {
		order[i] = i * 7 % n
	}
	for _, tt := range []struct {
		name    string
		reverse bool
	}{
		{"in order", false},
		{"backwards", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewRunSpill(t.TempDir(), n)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			check := func(added []int) {
				t.Helper()
				ids := slices.Clone(added)
				slices.Sort(ids)
				if tt.reverse {
					slices.Reverse(ids)
				}
				var got RunJob
				for _, i := range ids {
					if err := s.Job(i, &got); err != nil {
						t.Fatalf("Job(%d): %v", i, err)
					}
					if !reflect.DeepEqual(got, jobs[i]) {
						t.Fatalf("Job(%d) after %d rows added differs from the job added", i, len(added))
					}
				}
			}
			for k, i := range order {
				if err := s.Add(i, &jobs[i]); err != nil {
					t.Fatal(err)
				}
				if k%97 == 0 {
					check(order[:k+1])
				}
			}
			check(order)
			if s.written == 0 || s.written < 2*spillBlocks*spillBlock {
				t.Errorf("the spill wrote %d bytes, want more than its %d blocks", s.written, spillBlocks)
			}
		})
	}
}
