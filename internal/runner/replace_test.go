package runner

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/stability"
)

// replaceClock is the clock of the replace tests: the folder its files
// move to is named after it.
func replaceClock() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) }

// promptGen is a fake Generator that records the prompts sent and answers
// every image as CONTENT_FILTERED when the prompt holds "filtered".
type promptGen struct {
	mu   sync.Mutex
	sent []string
}

func (g *promptGen) gen() *fakeGen {
	return &fakeGen{fn: func(_ context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
		p := promptOf(req)
		g.mu.Lock()
		g.sent = append(g.sent, p)
		g.mu.Unlock()
		finish := stability.FinishSuccess
		if strings.Contains(p, "filtered") {
			finish = stability.FinishContentFiltered
		}
		return generate(req, sink, finish)
	}}
}

func (g *promptGen) prompts() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Sorted(slices.Values(g.sent))
}

// v1Job is a v1 job with its own id and prompt.
func v1Job(id, prompt string, samples int) manifest.Job {
	jobs, _ := testJobs(1)
	j := jobs[0]
	j.ID, j.Prompts, j.Samples = id, []manifest.Prompt{{Text: prompt, Weight: 1}}, samples
	return j
}

// files lists the files under dir, slash-separated and relative to it,
// with their SHA-256.
func files(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = fileSum(t, p)
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// TestReplace runs a manifest, then one that changes four jobs (a v1 job
// with two samples, a JPEG, a WebP with its record file, a filtered one),
// keeps one, drops one and adds one. Standing names the changed and
// removed jobs; a run with Replace moves exactly their files, paths kept,
// under replaced/, sends only the changed and new jobs, and leaves
// images/ holding the new manifest's images only. The money of the
// replaced jobs still counts.
func TestReplace(t *testing.T) {
	first := []manifest.Job{
		v1Job("multi", "two cats", 2),
		stableJob("jp", "generate/ultra", 1344, 768, "aspect_ratio", "16:9", "output_format", "jpeg"),
		stableJob("wp", "generate/sd3", 1024, 1024, "model", "sd3.5-flash", "output_format", "webp"),
		v1Job("flt", "a filtered cat", 1),
		v1Job("keep", "a kept cat", 1),
		v1Job("gone", "a removed cat", 1),
	}
	firstPrices := []cost.Credits{2 * cost.Credit, 8 * cost.Credit, 2500, cost.Credit, cost.Credit, cost.Credit}
	cfg := fastConfig(t)
	cfg.Now = replaceClock
	res1, err := runJobs(t.Context(), cfg, (&promptGen{}).gen(), first, firstPrices)
	if err != nil {
		t.Fatal(err)
	}
	before := files(t, cfg.OutDir)
	wantOld := []string{"images/multi-1.png", "images/multi-2.png", "images/jp.jpg", "images/wp.webp", "images/wp.webp" + sidecarExt,
		"filtered/flt.png", "images/gone.png"}
	for _, p := range append(slices.Clone(wantOld), "images/keep.png") {
		if before[p] == "" {
			t.Fatalf("first run wrote no %s; files: %v", p, slices.Sorted(maps.Keys(before)))
		}
	}

	second := slices.Clone(first[:5])
	second[0].Prompts = []manifest.Prompt{{Text: "two dogs", Weight: 1}}
	second[1].Prompts = []manifest.Prompt{{Text: "a jpeg lighthouse", Weight: 1}}
	second[2].Prompts = []manifest.Prompt{{Text: "a webp lighthouse", Weight: 1}}
	second[3].Prompts = []manifest.Prompt{{Text: "a cat now", Weight: 1}}
	second = append(second, v1Job("new", "a new cat", 1))
	secondPrices := append(slices.Clone(firstPrices[:5]), cost.Credit)

	st, err := ReadStanding(cfg.OutDir, JobList(second), secondPrices, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"multi", "jp", "wp", "flt"}; !slices.Equal(st.Changed, want) || !slices.Equal(st.Removed, []string{"gone"}) {
		t.Errorf("Standing: changed %q, removed %q; want %q, [gone]", st.Changed, st.Removed, want)
	}
	if st.Charged != res1.Charged {
		t.Errorf("Standing.Charged = %v, want the first run's %v", st.Charged, res1.Charged)
	}
	if st, err := ReadStanding(cfg.OutDir, JobList(second), secondPrices, JobList(append(slices.Clone(second), manifest.Job{ID: "gone"}))); err != nil || st.Removed != nil {
		t.Errorf("Standing with gone in another shard: removed %q, %v; want none", st.Removed, err)
	}

	cfg.Replace = true
	g := &promptGen{}
	res2, err := runJobs(t.Context(), cfg, g.gen(), second, secondPrices)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := g.prompts(), []string{"a cat now", "a jpeg lighthouse", "a new cat", "a webp lighthouse", "two dogs"}; !slices.Equal(got, want) {
		t.Errorf("sent %q, want %q", got, want)
	}
	dir := "replaced/20261125T120000Z"
	want := Replaced{Dir: dir, Changed: []string{"multi", "jp", "wp", "flt"}, Removed: []string{"gone"}, Files: len(wantOld)}
	if !reflect.DeepEqual(res2.Replaced, want) {
		t.Errorf("Replaced = %+v, want %+v", res2.Replaced, want)
	}
	moved := files(t, filepath.Join(cfg.OutDir, filepath.FromSlash(dir)))
	for _, p := range wantOld {
		if moved[p] != before[p] {
			t.Errorf("%s/%s: sha256 %q, want the first run's %q", dir, p, moved[p], before[p])
		}
	}
	if len(moved) != len(wantOld) {
		t.Errorf("moved %v, want %v", slices.Sorted(maps.Keys(moved)), wantOld)
	}
	after := files(t, cfg.OutDir)
	var left []string
	for p := range after {
		if strings.HasPrefix(p, ImagesDir+"/") || strings.HasPrefix(p, FilteredDir+"/") {
			left = append(left, p)
		}
	}
	slices.Sort(left)
	wantLeft := []string{"images/flt.png", "images/jp.jpg", "images/keep.png", "images/multi-1.png", "images/multi-2.png",
		"images/new.png", "images/wp.webp", "images/wp.webp" + sidecarExt}
	if !slices.Equal(left, wantLeft) {
		t.Errorf("images after the replace: %q, want %q", left, wantLeft)
	}
	if after["images/keep.png"] != before["images/keep.png"] || !res2.Jobs[4].Resumed {
		t.Errorf("keep was not kept: resumed %v", res2.Jobs[4].Resumed)
	}
	for _, j := range res2.Jobs {
		for _, im := range j.Images {
			if after[im.Path] != im.SHA256 {
				t.Errorf("job %s: image %s is not on disk as reported", j.ID, im.Path)
			}
		}
	}

	// Money: the replaced jobs' charges stay in the books.
	var newSpend cost.Credits
	for i := range 4 {
		newSpend += secondPrices[i]
	}
	newSpend += secondPrices[5]
	if res2.Charged != res1.Charged+newSpend || res2.PriorCharged != res1.Charged {
		t.Errorf("second run charged %v (prior %v), want %v + %v", res2.Charged, res2.PriorCharged, res1.Charged, newSpend)
	}
	st, err = ReadStanding(cfg.OutDir, JobList(second), secondPrices, nil)
	if err != nil || st.Changed != nil || st.Removed != nil || st.Remaining != 0 || st.Charged != res2.Charged {
		t.Errorf("Standing after the replace = %+v, %v; want nothing changed, removed or remaining, %v charged", st, err, res2.Charged)
	}
	var replacedLines int
	for _, e := range journalEntries(t, cfg.OutDir) {
		if e.Status == replaced {
			replacedLines++
			if e.Replaced != dir || e.Credits != 0 || e.Unknown != 0 {
				t.Errorf("replaced line %+v, want folder %s and no money", e, dir)
			}
		}
	}
	if replacedLines != 5 {
		t.Errorf("%d replaced lines, want 5", replacedLines)
	}

	// A second replace in the same second gets a folder of its own.
	third := slices.Clone(second)
	third[5].Prompts = []manifest.Prompt{{Text: "a newer cat", Weight: 1}}
	res3, err := runJobs(t.Context(), cfg, (&promptGen{}).gen(), third, secondPrices)
	if err != nil {
		t.Fatal(err)
	}
	if res3.Replaced.Dir != dir+"-2" || res3.Replaced.Files != 1 || !slices.Equal(res3.Replaced.Changed, []string{"new"}) {
		t.Errorf("third run replaced %+v, want new's image in %s-2", res3.Replaced, dir)
	}
}

// TestReplaceBudget checks that the budget still counts what replaced
// jobs cost: two jobs charged 1.0 each, both changed, and a budget of 3.0
// leaves room for one of them only.
func TestReplaceBudget(t *testing.T) {
	jobs := []manifest.Job{v1Job("a", "a cat", 1), v1Job("b", "a dog", 1)}
	cfg := fastConfig(t)
	cfg.Now = replaceClock
	if _, err := runJobs(t.Context(), cfg, (&promptGen{}).gen(), jobs, prices(2)); err != nil {
		t.Fatal(err)
	}
	jobs[0].Prompts[0].Text, jobs[1].Prompts[0].Text = "a cat again", "a dog again"
	budget := 3 * cost.Credit
	cfg.Budget, cfg.Replace, cfg.Concurrency = &budget, true, 1
	g := &promptGen{}
	res, err := runJobs(t.Context(), cfg, g.gen(), jobs, prices(2))
	if err != nil {
		t.Fatal(err)
	}
	if got := g.prompts(); !slices.Equal(got, []string{"a cat again"}) {
		t.Errorf("sent %q, want the first changed job only", got)
	}
	if b := res.Jobs[1]; b.Status != Failed || b.Failure != FailBudget {
		t.Errorf("b = %s %q, want failed for the budget", b.Status, b.Failure)
	}
	if res.Spent != budget {
		t.Errorf("spent %v, want the budget %v", res.Spent, budget)
	}
}

// TestStandingDependents: a job whose source changed answers another
// request too (its input image will change), so it is Changed as well.
func TestStandingDependents(t *testing.T) {
	jobs := []manifest.Job{
		pipeJob("a", "generate/core"),
		pipeJob("b", "control/sketch", from("image", "a")),
		pipeJob("c", "generate/core"),
	}
	cfg := fastConfig(t)
	if _, err := runJobs(t.Context(), cfg, &pipeGen{}, jobs, prices(3)); err != nil {
		t.Fatal(err)
	}
	jobs[0].Params = []manifest.Param{{Name: "seed", Value: "9"}}
	st, err := ReadStanding(cfg.OutDir, JobList(jobs), prices(3), nil)
	if err != nil || !slices.Equal(st.Changed, []string{"a", "b"}) || st.Removed != nil {
		t.Errorf("Standing: changed %q, removed %q, %v; want [a b], none", st.Changed, st.Removed, err)
	}
	cfg.Replace = true
	gen := &pipeGen{}
	res, err := runJobs(t.Context(), cfg, gen, jobs, prices(3))
	if err != nil {
		t.Fatal(err)
	}
	if got := gen.order(); !slices.Equal(got, []string{"a", "b"}) || res.Replaced.Files != 2 {
		t.Errorf("sent %q, moved %d files; want a, b and 2", got, res.Replaced.Files)
	}
}

// TestStandingLostJournal: with the journal gone, an image on disk whose
// record is of its job's earlier request makes the job Changed.
func TestStandingLostJournal(t *testing.T) {
	jobs := []manifest.Job{v1Job("a", "a cat", 1), v1Job("b", "a dog", 1)}
	cfg := fastConfig(t)
	if _, err := runJobs(t.Context(), cfg, (&promptGen{}).gen(), jobs, prices(2)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(cfg.OutDir, JournalFile)); err != nil {
		t.Fatal(err)
	}
	jobs[1].Prompts[0].Text = "a dog again"
	st, err := ReadStanding(cfg.OutDir, JobList(jobs), prices(2), nil)
	if err != nil || !slices.Equal(st.Changed, []string{"b"}) || st.Remaining != cost.Credit {
		t.Errorf("Standing = %+v, %v; want b changed, 1.0 remaining", st, err)
	}
	old := fileSum(t, filepath.Join(cfg.OutDir, "images", "b.png"))
	cfg.Replace, cfg.Now = true, replaceClock
	res, err := runJobs(t.Context(), cfg, (&promptGen{}).gen(), jobs, prices(2))
	if err != nil || res.Replaced.Files != 1 || !res.Jobs[0].Resumed {
		t.Fatalf("run = %+v, %v; want b's image moved, a resumed", res.Replaced, err)
	}
	if got := fileSum(t, filepath.Join(cfg.OutDir, "replaced", "20261125T120000Z", "images", "b.png")); got != old {
		t.Errorf("replaced b.png has sha256 %s, want the old image's %s", got, old)
	}
}

// TestReplaceAbandonsGeneration: an async job submitted and not fetched
// whose request then changed is Changed; Replace journals its generation
// as abandoned, still possibly billed, and the job is submitted anew.
func TestReplaceAbandonsGeneration(t *testing.T) {
	in := inputPNG(t)
	cfg := fastConfig(t)
	cfg.Now = replaceClock
	cfg.PollInterval, cfg.FastPolls = time.Millisecond, true
	jobs := []manifest.Job{creative(in)}
	price := []cost.Credits{creativePrice}
	writeSubmitted(t, cfg.OutDir, jobs[0], "gen-old", replaceClock())
	jobs[0].Params = []manifest.Param{{Name: "seed", Value: "9"}}
	st, err := ReadStanding(cfg.OutDir, JobList(jobs), price, nil)
	if err != nil || !slices.Equal(st.Changed, []string{"up"}) || st.PossiblyBilled != creativePrice || st.Remaining != creativePrice {
		t.Fatalf("Standing = %+v, %v; want up changed, 60.0 possibly billed and remaining", st, err)
	}
	cfg.Replace = true
	var submits int
	gen := &fakeGen{
		submit: func(context.Context, string, []stability.Field) (string, error) { submits++; return "gen-new", nil },
		result: func(_ context.Context, id string, sink stability.Sink) ([]stability.Artifact, bool, error) {
			if id != "gen-new" {
				t.Errorf("polled %s, want gen-new", id)
			}
			return finished(sink, 1)
		},
	}
	res, err := runJobs(t.Context(), cfg, gen, jobs, price)
	if err != nil || res.Jobs[0].Status != Succeeded || submits != 1 {
		t.Fatalf("run = %v, %s, %d submits; want succeeded after 1", err, res.Jobs[0].Status, submits)
	}
	if res.Charged != creativePrice || res.Spent != 2*creativePrice {
		t.Errorf("charged %v, spent %v; want 60.0 and 120.0 (the abandoned generation possibly billed)", res.Charged, res.Spent)
	}
	var found bool
	for _, e := range journalEntries(t, cfg.OutDir) {
		if e.Status == replaced {
			found = e.GenerationID == "gen-old" && e.Unknown == creativePrice && e.Replaced == ""
		}
	}
	if !found {
		t.Errorf("no replaced line ending gen-old with 60.0 possibly billed:\n%s", strings.Join(journalLines(t, cfg.OutDir), "\n"))
	}
}

// TestOriginRecorded: a run journals its manifest once; Standing reads it
// back.
func TestOriginRecorded(t *testing.T) {
	cfg := fastConfig(t)
	o, err := NewOrigin(filepath.Join(t.TempDir(), "cats.yaml"), "cats", cfg.OutDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Origin = o
	jobs, p := testJobs(1)
	for range 2 {
		if _, err := runJobs(t.Context(), cfg, (&promptGen{}).gen(), jobs, p); err != nil {
			t.Fatal(err)
		}
	}
	var runs int
	for _, e := range journalEntries(t, cfg.OutDir) {
		if e.Status == runStart {
			runs++
		}
	}
	st, err := ReadStanding(cfg.OutDir, JobList(jobs), p, nil)
	if err != nil || st.Origin != o || runs != 1 {
		t.Errorf("Standing.Origin = %+v, %v after %d run lines; want %+v, 1 line", st.Origin, err, runs, o)
	}
}

func TestOriginSame(t *testing.T) {
	tests := []struct {
		name string
		a, b Origin
		want bool
	}{
		{"same path", Origin{Manifest: "/w/a.yaml"}, Origin{Manifest: "/w/a.yaml", Name: "renamed"}, true},
		{"moved with its folder", Origin{Manifest: "/old/a.yaml", FromOut: "../a.yaml"}, Origin{Manifest: "/new/a.yaml", FromOut: "../a.yaml"}, true},
		{"another file", Origin{Manifest: "/w/a.yaml", FromOut: "../a.yaml"}, Origin{Manifest: "/w/b.yaml", FromOut: "../b.yaml"}, false},
		{"none", Origin{}, Origin{}, false},
	}
	for _, tt := range tests {
		if got := tt.a.Same(tt.b); got != tt.want {
			t.Errorf("%s: %+v.Same(%+v) = %v, want %v", tt.name, tt.a, tt.b, got, tt.want)
		}
	}
}

func TestDecodeJournalKinds(t *testing.T) {
	tests := []struct {
		line string
		ok   bool
	}{
		{`{"status":"run","origin":{"manifest":"/w/a.yaml"},"time":"2026-11-25T12:00:00Z"}`, true},
		{`{"status":"run","time":"2026-11-25T12:00:00Z"}`, false},
		{`{"id":"a","status":"replaced","replaced":"replaced/x","credits":0,"time":"2026-11-25T12:00:00Z"}`, true},
		{`{"status":"replaced","credits":0,"time":"2026-11-25T12:00:00Z"}`, false},
	}
	for _, tt := range tests {
		if _, err := decodeEntry([]byte(tt.line)); (err == nil) != tt.ok {
			t.Errorf("decodeEntry(%s) = %v, want ok %v", tt.line, err, tt.ok)
		}
	}
}
