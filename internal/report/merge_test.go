package report

import (
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cost"
)

// shards splits r into n runs the way --shard K/N would (job i goes to
// shard i%n), each with its own totals and credits.
func shards(r *Run, n int) []*Run {
	out := make([]*Run, n)
	for k := range out {
		out[k] = &Run{Manifest: r.Manifest, Name: r.Name, Pricing: r.Pricing, Budget: r.Budget,
			Shard: strings.Join([]string{itoa(k + 1), itoa(n)}, "/"), Jobs: []RunJob{}}
	}
	for i, j := range r.Jobs {
		s := out[i%n]
		s.Jobs = append(s.Jobs, j)
		s.Totals.count(j.Status)
		s.ChargedCredits += j.Credits
		s.PossiblyBilledCredits += j.PossiblyBilledCredits
	}
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestMerge(t *testing.T) {
	whole := mustReadRun(t, "testdata/run")
	parts := shards(whole, 3)
	var est cost.Credits
	for k, s := range parts {
		// Shards run at different times, each with its own balance at
		// start (say, each against its own sandbox).
		s.StartedAt = time.Date(2026, 11, 25, 6, k, 0, 0, time.UTC)
		s.FinishedAt = time.Date(2026, 11, 25, 7, 3-k, 0, 0, time.UTC)
		before := credits("1000") - cost.Credits(k)*cost.Credit
		s.BalanceBefore = &before
		s.EstimatedCredits = cost.Credits(k+1) * cost.Credit
		est += s.EstimatedCredits
	}
	// Give Merge the shards out of order: it must restore manifest order.
	got, err := Merge(parts[2], parts[0], parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var ids, wantIDs []string
	for _, j := range got.Jobs {
		ids = append(ids, j.ID)
	}
	for _, j := range whole.Jobs {
		wantIDs = append(wantIDs, j.ID)
	}
	if strings.Join(ids, " ") != strings.Join(wantIDs, " ") {
		t.Errorf("merged job order = %v, want %v", ids, wantIDs)
	}
	if got.Totals != whole.Totals {
		t.Errorf("merged totals = %+v, want %+v", got.Totals, whole.Totals)
	}
	if got.ChargedCredits != whole.ChargedCredits || got.EstimatedCredits != est || got.PossiblyBilledCredits != whole.PossiblyBilledCredits {
		t.Errorf("merged credits = %s charged, %s possibly billed, %s estimated; want %s, %s, %s", got.ChargedCredits,
			got.PossiblyBilledCredits, got.EstimatedCredits, whole.ChargedCredits, whole.PossiblyBilledCredits, est)
	}
	if whole.PossiblyBilledCredits == 0 {
		t.Errorf("the fixture has no possibly billed credits; the test cannot check their sum")
	}
	if got.Shard != "" {
		t.Errorf("merged shard = %q, want \"\" for a complete set", got.Shard)
	}
	if !got.StartedAt.Equal(parts[0].StartedAt) || !got.FinishedAt.Equal(parts[0].FinishedAt) {
		t.Errorf("merged times = %v → %v, want %v → %v", got.StartedAt, got.FinishedAt, parts[0].StartedAt, parts[0].FinishedAt)
	}
	if got.BalanceBefore != nil {
		t.Errorf("merged balance before = %s from shards that started at 1000.0, 999.0 and 998.0, want none", got.BalanceBefore)
	}
	if got.Budget == nil || *got.Budget != *whole.Budget {
		t.Errorf("merged budget = %v, want %v", got.Budget, whole.Budget)
	}

	partial, err := Merge(parts[0], parts[2])
	if err != nil {
		t.Fatal(err)
	}
	if partial.Shard != "1/3,3/3" {
		t.Errorf("shard of two of three shards = %q, want %q", partial.Shard, "1/3,3/3")
	}
}

// TestMergeBalance: a merged report shows the shards' balance at start only
// when every shard read the same one; it never adds them up.
func TestMergeBalance(t *testing.T) {
	whole := mustReadRun(t, "testdata/run")
	bal := func(s string) *cost.Credits {
		if s == "" {
			return nil
		}
		c := credits(s)
		return &c
	}
	tests := []struct {
		name     string
		balances []string // per shard; "" for none
		want     string   // "" for none
	}{
		{"same sandbox balance", []string{"1000000", "1000000", "1000000"}, "1000000"},
		{"different balances", []string{"1000000", "400", "1000000"}, ""},
		{"one shard without", []string{"1000000", "", "1000000"}, ""},
		{"none at all", []string{"", "", ""}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts := shards(whole, len(tt.balances))
			for k, b := range tt.balances {
				parts[k].BalanceBefore = bal(b)
			}
			got, err := Merge(parts...)
			if err != nil {
				t.Fatal(err)
			}
			if want := bal(tt.want); !sameCredits(got.BalanceBefore, want) {
				t.Errorf("Merge of balances %q: balance before = %v, want %v", tt.balances, got.BalanceBefore, want)
			}
		})
	}
}

func TestMergeErrors(t *testing.T) {
	whole := mustReadRun(t, "testdata/run")
	parts := shards(whole, 2)
	otherSheet := *parts[1]
	otherSheet.Pricing = "sdxl-2024"
	tests := []struct {
		name string
		runs []*Run
		want string
	}{
		{"none", nil, "no reports"},
		{"same shard twice", []*Run{parts[0], parts[0]}, "job mug-front is in both"},
		{"different price sheets", []*Run{parts[0], &otherSheet}, `priced under "sdxl-2024"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Merge(tt.runs...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Merge error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestMergeFolders merges shards read from two folders: image paths must
// then say which folder each image is in.
func TestMergeFolders(t *testing.T) {
	whole := mustReadRun(t, "testdata/run")
	root := t.TempDir()
	var runs []*Run
	for k, s := range shards(whole, 2) {
		dir := filepath.Join(root, "shard-"+itoa(k+1))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, RunFile), data, 0o644); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, mustReadRun(t, dir))
	}
	got, err := Merge(runs...)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.ToSlash(filepath.Join(root, "shard-1", "images/mug-front.png"))
	if p := got.Jobs[0].Images[0].Path; p != want {
		t.Errorf("merged image path = %q, want %q", p, want)
	}
	if p := runs[0].Jobs[0].Images[0].Path; p != "images/mug-front.png" {
		t.Errorf("Merge changed its input: image path = %q", p)
	}
	// Shards whose reports sit in one folder keep their paths relative.
	flat := t.TempDir()
	var inOne []*Run
	for k, s := range shards(whole, 2) {
		data, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Join(flat, "shard-"+itoa(k+1)+".json")
		if err := os.WriteFile(name, data, 0o644); err != nil {
			t.Fatal(err)
		}
		inOne = append(inOne, mustReadRun(t, name))
	}
	same, err := Merge(inOne...)
	if err != nil {
		t.Fatal(err)
	}
	if p := same.Jobs[0].Images[0].Path; p != "images/mug-front.png" {
		t.Errorf("image path from shards in one folder = %q, want %q", p, "images/mug-front.png")
	}
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	job := func(extra string) string {
		return `{"jobs":[{"id":"a","status":"succeeded","images":[{"path":"images/a.png"}]}` + extra + `]}`
	}
	runTests := []struct {
		name, body, want string
	}{
		{"not json", "{", "unexpected EOF"},
		{"two values", job("") + " {}", "more than one JSON value"},
		{"no jobs", `{"manifest":"m.yaml"}`, "not a run report"},
		{"bad status", `{"jobs":[{"id":"a","status":"done"}]}`, `unknown status "done"`},
		{"duplicate id", job(`,{"id":"a","status":"failed"}`), `duplicate id "a"`},
		{"image outside", `{"jobs":[{"id":"a","status":"succeeded","images":[{"path":"../secret.png"}]}]}`, "not inside the run folder"},
		{"absolute image", `{"jobs":[{"id":"a","status":"succeeded","images":[{"path":"/etc/passwd"}]}]}`, "not inside the run folder"},
		{"credits with 7 decimals", `{"jobs":[{"id":"a","status":"failed","credits":0.0000001}]}`, "at most 6 decimals"},
		{"depends on itself", `{"jobs":[{"id":"a","status":"skipped","depends_on":["a"]}]}`, "job a: depends on itself"},
		{"empty dependency", `{"jobs":[{"id":"a","status":"skipped","depends_on":[""]}]}`, "empty id in depends_on"},
		{"input without field", `{"jobs":[{"id":"a","status":"skipped","inputs":[{"path":"x.png"}]}]}`, "inputs[0]: no field"},
		{"input path and from", `{"jobs":[{"id":"a","status":"skipped","inputs":[{"field":"image","path":"x.png","from":"b","index":1}]}]}`, "input image: want exactly one of path and from"},
		{"input neither", `{"jobs":[{"id":"a","status":"skipped","inputs":[{"field":"mask"}]}]}`, "input mask: want exactly one of path and from"},
		{"file input with index", `{"jobs":[{"id":"a","status":"skipped","inputs":[{"field":"image","path":"x.png","index":2}]}]}`, "index 2: want 1 or more with from, none with path"},
		{"negative index", `{"jobs":[{"id":"a","status":"skipped","inputs":[{"field":"image","from":"b","index":-1}]}]}`, "index -1"},
	}
	for _, tt := range runTests {
		t.Run("run "+tt.name, func(t *testing.T) {
			_, err := ReadRun(write("report.json", tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ReadRun error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := ReadRun(filepath.Join(dir, "missing")); err == nil {
		t.Error("ReadRun of a missing folder: no error")
	}
	if _, err := ReadPlan(write("p.json", `{"total_credits": 1}`)); err == nil || !strings.Contains(err.Error(), "not a plan file") {
		t.Errorf("ReadPlan of a plan without jobs: error = %v, want not a plan file", err)
	}
	if _, err := ReadPlan(write("p.json", `{"jobs":[{"id":"a"},{"id":"a"}]}`)); err == nil || !strings.Contains(err.Error(), "duplicate id") {
		t.Errorf("ReadPlan with a duplicate id: error = %v, want duplicate id", err)
	}
	if _, err := ReadPlan(write("p.json", `{"jobs":[{"id":"a","depends_on":["a"]}]}`)); err == nil || !strings.Contains(err.Error(), "depends on itself") {
		t.Errorf("ReadPlan with a job depending on itself: error = %v, want depends on itself", err)
	}
	// A shard's job may take images from another shard's: ids need not be
	// in the file.
	if _, err := ReadPlan(write("p.json", `{"jobs":[{"id":"a","depends_on":["elsewhere"],"inputs":[{"field":"image","from":"elsewhere","index":1}]}]}`)); err != nil {
		t.Errorf("ReadPlan with a source in another shard: %v", err)
	}
}

// TestJSONRoundTrip checks that a plan and a run survive WritePlan/WriteRun
// json and ReadPlan/ReadRun unchanged: the JSON is the file format.
func TestJSONRoundTrip(t *testing.T) {
	dir := t.TempDir()
	run := mustReadRun(t, "testdata/run")
	f, err := os.Create(filepath.Join(dir, RunFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteRun(f, FormatJSON, run); err != nil {
		t.Fatal(err)
	}
	f.Close()
	back := mustReadRun(t, dir)
	a, _ := json.Marshal(run)
	b, _ := json.Marshal(back)
	if string(a) != string(b) {
		t.Errorf("run after a JSON round trip:\n%s\nwant\n%s", b, a)
	}
	var m map[string]any
	if err := json.Unmarshal(a, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"manifest", "pricing", "estimated_credits", "charged_credits", "possibly_billed_credits", "balance_before", "totals", "jobs"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report.json has no %q field", k)
		}
	}
}

func TestJUnitCounts(t *testing.T) {
	run := mustReadRun(t, "testdata/run")
	var b strings.Builder
	if err := WriteRun(&b, FormatJUnit, run); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Suites []struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
			Skipped  int `xml:"skipped,attr"`
			Cases    []struct {
				Name      string    `xml:"name,attr"`
				Classname string    `xml:"classname,attr"`
				Failure   *struct{} `xml:"failure"`
				Skipped   *struct{} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal([]byte(b.String()), &got); err != nil {
		t.Fatalf("JUnit output does not parse: %v", err)
	}
	if len(got.Suites) != 1 {
		t.Fatalf("%d test suites, want 1", len(got.Suites))
	}
	s := got.Suites[0]
	t0 := run.Totals
	if s.Tests != len(run.Jobs) || s.Failures != t0.Failed+t0.Filtered || s.Skipped != t0.Skipped || len(s.Cases) != len(run.Jobs) {
		t.Errorf("suite tests=%d failures=%d skipped=%d cases=%d, want %d, %d, %d, %d",
			s.Tests, s.Failures, s.Skipped, len(s.Cases), len(run.Jobs), t0.Failed+t0.Filtered, t0.Skipped, len(run.Jobs))
	}
	for i, c := range s.Cases {
		j := run.Jobs[i]
		failed := j.Status == StatusFailed || j.Status == StatusFiltered
		if c.Name != j.ID || c.Classname != j.Group || (c.Failure != nil) != failed || (c.Skipped != nil) != (j.Status == StatusSkipped) {
			t.Errorf("test case %d = %s/%s failure=%v skipped=%v, want %s/%s status %s", i, c.Classname, c.Name, c.Failure != nil, c.Skipped != nil, j.Group, j.ID, j.Status)
		}
	}
}

func TestCSVParses(t *testing.T) {
	run := mustReadRun(t, "testdata/run")
	var b strings.Builder
	if err := WriteRun(&b, FormatCSV, run); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(b.String())).ReadAll()
	if err != nil {
		t.Fatalf("CSV output does not parse: %v", err)
	}
	if len(rows) != len(run.Jobs)+1 {
		t.Fatalf("%d CSV rows, want a header and %d jobs", len(rows), len(run.Jobs))
	}
	for i, j := range run.Jobs {
		if rows[i+1][1] != j.ID || rows[i+1][11] != j.Credits.String() || rows[i+1][13] != j.Error {
			t.Errorf("CSV row %d = %q, want id %s, credits %s, error %q", i+1, rows[i+1], j.ID, j.Credits, j.Error)
		}
	}
}

func TestHTMLEscapes(t *testing.T) {
	run := mustReadRun(t, "testdata/run")
	run.Name = `<img src=x onerror=alert(1)>`
	run.Jobs[0].Images[0].Path = "images/a\"b.png"
	var b strings.Builder
	if err := WriteRun(&b, FormatHTML, run); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, bad := range []string{"<script>alert", "<img src=x", `a"b.png`} {
		if strings.Contains(out, bad) {
			t.Errorf("HTML report contains unescaped %q", bad)
		}
	}
	for _, banned := range []string{"http://", "https://", "<link", "<script"} {
		if strings.Contains(out, banned) {
			t.Errorf("HTML report contains %q: it must be self-contained", banned)
		}
	}
}

// TestMergePipeline merges shards of a pipeline run: each job keeps its
// depends_on, inputs and generation_id, and the merged report lays out the
// same chains as the whole run. A shard alone shows the sources it lacks
// as jobs not in the report.
func TestMergePipeline(t *testing.T) {
	whole := mustReadRun(t, "testdata/pipeline-run")
	parts := shards(whole, 2)
	got, err := Merge(parts[1], parts[0])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Jobs, whole.Jobs) {
		t.Errorf("merged jobs = %+v, want %+v", got.Jobs, whole.Jobs)
	}
	wantChains, wantGrid := chainText(whole.Jobs, chains(whole.Jobs))
	gotChains, gotGrid := chainText(got.Jobs, chains(got.Jobs))
	if !slices.Equal(gotChains, wantChains) || !slices.Equal(gotGrid, wantGrid) {
		t.Errorf("merged chains = %q, grid %q; want %q, grid %q", gotChains, gotGrid, wantChains, wantGrid)
	}

	// Shard 2/2 holds the odd jobs: teapot-cutout (1), teapot-big (3),
	// teapot-styled (5) and lamp-relit (7), but none of their sources.
	alone, _ := chainText(parts[1].Jobs, chains(parts[1].Jobs))
	if want := []string{"?teapot → teapot-cutout", "?teapot → teapot-big", "?teapot,?shelf-teal → teapot-styled", "?lamp → lamp-relit"}; !slices.Equal(alone, want) {
		t.Errorf("chains of shard 2/2 = %q, want %q", alone, want)
	}
	var b strings.Builder
	if err := WriteRun(&b, FormatHTML, parts[1]); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), "not in this report"); n != 5 {
		t.Errorf("HTML of shard 2/2 marks %d sources as not in this report, want 5", n)
	}
}
