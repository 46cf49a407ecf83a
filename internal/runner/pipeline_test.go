package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/batch-tool/batch/internal/catalog"
	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/stability"
)

// pipeJob returns a Stable Image job with the given inputs whose prompt,
// when its service takes one, is its id.
func pipeJob(id, service string, inputs ...manifest.Input) manifest.Job {
	j := manifest.Job{ID: id, Base: id, Service: service, Samples: 1, Inputs: inputs}
	if op, ok := catalog.Lookup(service); ok {
		if _, ok := op.Field("prompt"); ok {
			j.Prompts = []manifest.Prompt{{Text: id, Weight: 1}}
		}
	}
	return j
}

// from is an image input taking the first image of job id.
func from(field, id string) manifest.Input {
	return manifest.Input{Field: field, From: id, Index: 1}
}

// pipeGen is a fake Generator for synchronous Stable Image jobs whose
// prompt is their id. It records the requests; before (may block, may
// fail the request) and after (once the image is written) are optional.
type pipeGen struct {
	before func(ctx context.Context, id string) error
	after  func(id string)

	mu   sync.Mutex
	sent []string                     // ids, in the order sent
	reqs map[string]stability.Request // by id, the last request
}

func (g *pipeGen) Generate(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
	id := fieldOf(req, "prompt")
	g.mu.Lock()
	g.sent = append(g.sent, id)
	if g.reqs == nil {
		g.reqs = map[string]stability.Request{}
	}
	g.reqs[id] = req
	g.mu.Unlock()
	if g.before != nil {
		if err := g.before(ctx, id); err != nil {
			return nil, err
		}
	}
	arts, err := succeed(ctx, req, sink)
	if err == nil && g.after != nil {
		g.after(id)
	}
	return arts, err
}

func (g *pipeGen) Submit(context.Context, string, []stability.Field) (string, error) {
	return "", errors.New("fake: unexpected Submit")
}

func (g *pipeGen) Result(context.Context, string, stability.Sink) ([]stability.Artifact, bool, error) {
	return nil, false, errors.New("fake: unexpected Result")
}

func (g *pipeGen) order() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.sent)
}

func (g *pipeGen) request(id string) stability.Request {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reqs[id]
}

// prices returns 1 credit per job.
func prices(n int) []cost.Credits {
	p := make([]cost.Credits, n)
	for i := range p {
		p[i] = cost.Credit
	}
	return p
}

// imagePath returns the absolute path of a result's first image.
func imagePath(t *testing.T, outDir string, r JobResult) string {
	t.Helper()
	if len(r.Images) == 0 {
		t.Fatalf("job %s wrote no image (%s %s)", r.ID, r.Status, r.Error)
	}
	abs, err := filepath.Abs(filepath.Join(outDir, r.Images[0].Path))
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// TestDiamond runs a → b, a → c, (b, c) → d with d first in the slice: d
// starts only after b and c, and is sent their images, in catalogue field
// order, as absolute paths.
func TestDiamond(t *testing.T) {
	jobs := []manifest.Job{
		pipeJob("d", "edit/inpaint", from("image", "b"), from("mask", "c")),
		pipeJob("a", "generate/core"),
		pipeJob("b", "control/sketch", from("image", "a")),
		pipeJob("c", "upscale/conservative", from("image", "a")),
	}
	gen := &pipeGen{}
	cfg := fastConfig(t)
	res, err := runJobs(t.Context(), cfg, gen, jobs, prices(4))
	if err != nil {
		t.Fatal(err)
	}
	order := gen.order()
	if len(order) != 4 || order[0] != "a" || order[3] != "d" {
		t.Errorf("sent %q, want a first and d last", order)
	}
	wantDeps := [][]string{{"b", "c"}, nil, {"a"}, {"a"}}
	for i, r := range res.Jobs {
		if r.ID != jobs[i].ID || r.Status != Succeeded || !slices.Equal(r.DependsOn, wantDeps[i]) {
			t.Errorf("Jobs[%d] = %s %s, depends on %q; want %s succeeded, %q (%s)", i, r.ID, r.Status, r.DependsOn, jobs[i].ID, wantDeps[i], r.Error)
		}
	}
	b, c := res.Jobs[2], res.Jobs[3]
	want := []stability.Field{
		{Name: "image", Value: imagePath(t, cfg.OutDir, b)},
		{Name: "prompt", Value: "d"},
		{Name: "mask", Value: imagePath(t, cfg.OutDir, c)},
	}
	if got := gen.request("d"); got.Service != "edit/inpaint" || !reflect.DeepEqual(got.Fields, want) {
		t.Errorf("d's request = %+v, want edit/inpaint %+v", got, want)
	}
	if fileSum(t, want[0].Value) != b.Images[0].SHA256 || fileSum(t, want[2].Value) != c.Images[0].SHA256 {
		t.Errorf("d was not sent the images b and c wrote")
	}
	if res.Charged != 4*cost.Credit {
		t.Errorf("Charged = %v, want 4.0", res.Charged)
	}
}

// TestChain runs c ← b ← a given in reverse order, with an independent x.
func TestChain(t *testing.T) {
	jobs := []manifest.Job{
		pipeJob("c", "upscale/conservative", from("image", "b")),
		pipeJob("b", "control/sketch", from("image", "a")),
		pipeJob("x", "generate/core"),
		pipeJob("a", "generate/core"),
	}
	gen := &pipeGen{}
	cfg := fastConfig(t)
	cfg.Concurrency = 1
	res, err := runJobs(t.Context(), cfg, gen, jobs, prices(4))
	if err != nil {
		t.Fatal(err)
	}
	// one worker, earliest ready job in the manifest first: x (index 2)
	// before a (3), then b as soon as a is done, then c
	if got, want := gen.order(), []string{"x", "a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("sent %q, want %q", got, want)
	}
	for i, r := range res.Jobs {
		if r.ID != jobs[i].ID || r.Status != Succeeded {
			t.Errorf("Jobs[%d] = %s %s, want %s succeeded (%s)", i, r.ID, r.Status, jobs[i].ID, r.Error)
		}
	}
	if got := fieldOf(gen.request("c"), "image"); got != imagePath(t, cfg.OutDir, res.Jobs[1]) {
		t.Errorf("c was sent %s, want b's image", got)
	}
}

// TestSourceSkipsDependents makes a source fail or be filtered: its chain
// is skipped transitively, at no cost and without a request, the
// independent job still runs, and a rerun once the source succeeds runs
// the chain.
func TestSourceSkipsDependents(t *testing.T) {
	tests := []struct {
		name    string
		answer  func(id string) error
		finish  string
		aStatus Status
		bError  string
	}{
		{"failed", func(id string) error {
			if id == "a" {
				return apiErr(403, "content_moderation", "flagged")
			}
			return nil
		}, stability.FinishSuccess, Failed, "source a failed: "},
		{"filtered", nil, stability.FinishContentFiltered, Filtered, "source a was filtered: image 1 was content filtered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jobs := []manifest.Job{
				pipeJob("a", "generate/core"),
				pipeJob("b", "control/sketch", from("image", "a")),
				pipeJob("c", "upscale/conservative", from("image", "b")),
				pipeJob("x", "generate/core"),
			}
			var sent []string
			var mu sync.Mutex
			gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
				id := fieldOf(req, "prompt")
				mu.Lock()
				sent = append(sent, id)
				mu.Unlock()
				if tt.answer != nil {
					if err := tt.answer(id); err != nil {
						return nil, err
					}
				}
				if id == "a" {
					return generate(req, sink, tt.finish)
				}
				return succeed(ctx, req, sink)
			}}
			cfg := fastConfig(t)
			cfg.Concurrency = 2
			res, err := runJobs(t.Context(), cfg, gen, jobs, []cost.Credits{cost.Credit, 40 * cost.Credit, 40 * cost.Credit, cost.Credit})
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(sent)
			if !slices.Equal(sent, []string{"a", "x"}) {
				t.Errorf("sent %q, want a and x only", sent)
			}
			if a := res.Jobs[0]; a.Status != tt.aStatus {
				t.Errorf("a = %s, want %s", a.Status, tt.aStatus)
			}
			b, c := res.Jobs[1], res.Jobs[2]
			for _, r := range []JobResult{b, c} {
				if r.Status != Skipped || r.Failure != FailSource || r.Credits != 0 || r.Unknown != 0 || r.Attempts != 0 || len(r.Images) != 0 {
					t.Errorf("%s = %s %q, credits %v, unknown %v, %d attempts; want skipped %q at no cost", r.ID, r.Status, r.Failure, r.Credits, r.Unknown, r.Attempts, FailSource)
				}
			}
			if !strings.HasPrefix(b.Error, tt.bError) {
				t.Errorf("b's error = %q, want it to start with %q", b.Error, tt.bError)
			}
			if want := "source b was skipped: " + b.Error; c.Error != want {
				t.Errorf("c's error = %q, want %q", c.Error, want)
			}
			if x := res.Jobs[3]; x.Status != Succeeded {
				t.Errorf("x = %s, want succeeded", x.Status)
			}
			wantSpent := cost.Credit // x
			if tt.aStatus == Filtered {
				wantSpent += cost.Credit
			}
			if res.Spent != wantSpent || res.Charged != wantSpent {
				t.Errorf("Charged, Spent = %v, %v; want %v (nothing for the skipped chain)", res.Charged, res.Spent, wantSpent)
			}
			if rem, err := Remaining(cfg.OutDir, JobList(jobs), []cost.Credits{cost.Credit, 40 * cost.Credit, 40 * cost.Credit, cost.Credit}); err != nil || rem < 80*cost.Credit {
				t.Errorf("Remaining = %v, %v; want the skipped chain counted", rem, err)
			}

			// the source now succeeds: the rerun runs the chain
			tt.answer, tt.finish = nil, stability.FinishSuccess
			jobs[0].Prompts = []manifest.Prompt{{Text: "a", Weight: 1}} // same job
			sent = nil
			if tt.aStatus == Filtered { // a filtered job is finished; change it to run again
				jobs[0].Params = []manifest.Param{{Name: "seed", Value: "2"}}
			}
			res, err = runJobs(t.Context(), cfg, gen, jobs, prices(4))
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(sent)
			if !slices.Equal(sent, []string{"a", "b", "c"}) {
				t.Errorf("rerun sent %q, want a, b, c", sent)
			}
			for i, r := range res.Jobs {
				if r.Status != Succeeded {
					t.Errorf("rerun Jobs[%d] = %s (%s)", i, r.Status, r.Error)
				}
			}
		})
	}
}

// TestNoBarrier holds the first chain's source in flight until the second
// chain's last job has finished: with stages, the second chain's dependent
// could not start while a job of the first stage runs.
func TestNoBarrier(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		jobs := []manifest.Job{
			pipeJob("a1", "generate/core"),
			pipeJob("a2", "control/sketch", from("image", "a1")),
			pipeJob("b1", "generate/core"),
			pipeJob("b2", "control/sketch", from("image", "b1")),
		}
		b2done := make(chan struct{})
		var mu sync.Mutex
		var finished []string
		gen := &pipeGen{
			before: func(ctx context.Context, id string) error {
				if id != "a1" {
					return nil
				}
				select {
				case <-b2done:
				case <-time.After(time.Hour):
					t.Errorf("a1 was in flight for an hour and b2 never finished")
				}
				return nil
			},
			after: func(id string) {
				mu.Lock()
				finished = append(finished, id)
				mu.Unlock()
				if id == "b2" {
					close(b2done)
				}
			},
		}
		cfg := fastConfig(t)
		cfg.Concurrency = 2
		res, err := runJobs(t.Context(), cfg, gen, jobs, prices(4))
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"b1", "b2", "a1", "a2"}; !slices.Equal(finished, want) {
			t.Errorf("finished %q, want %q", finished, want)
		}
		for i, r := range res.Jobs {
			if r.Status != Succeeded {
				t.Errorf("Jobs[%d] = %s (%s)", i, r.Status, r.Error)
			}
		}
	})
}

// TestDAGConcurrency runs many chains of three with random latencies: the
// requests in flight never pass Concurrency, and no job starts before its
// source has finished.
func TestDAGConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var jobs []manifest.Job
		for k := range 12 {
			a, b := string(rune('a'+k))+"1", string(rune('a'+k))+"2"
			jobs = append(jobs,
				pipeJob(a, "generate/core"),
				pipeJob(b, "control/sketch", from("image", a)),
				pipeJob(string(rune('a'+k))+"3", "upscale/conservative", from("image", b)))
		}
		var inFlight, maxInFlight atomic.Int32
		var mu sync.Mutex
		started, ended := map[string]time.Time{}, map[string]time.Time{}
		gen := &pipeGen{
			before: func(ctx context.Context, id string) error {
				mu.Lock()
				started[id] = time.Now()
				mu.Unlock()
				n := inFlight.Add(1)
				for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
				}
				time.Sleep(time.Duration(1+rand.IntN(1000)) * time.Millisecond)
				inFlight.Add(-1)
				return nil
			},
			after: func(id string) {
				mu.Lock()
				ended[id] = time.Now()
				mu.Unlock()
			},
		}
		cfg := fastConfig(t)
		cfg.Concurrency = 3
		res, err := runJobs(t.Context(), cfg, gen, jobs, prices(len(jobs)))
		if err != nil {
			t.Fatal(err)
		}
		if got := maxInFlight.Load(); got > 3 || got < 2 {
			t.Errorf("max in flight = %d, want 2..3", got)
		}
		for i, r := range res.Jobs {
			if r.ID != jobs[i].ID || r.Status != Succeeded {
				t.Errorf("Jobs[%d] = %s %s (%s)", i, r.ID, r.Status, r.Error)
			}
			for _, src := range r.DependsOn {
				if started[r.ID].Before(ended[src]) {
					t.Errorf("%s started before its source %s ended", r.ID, src)
				}
			}
		}
	})
}

// TestInterruptSkipsDependents interrupts while a source is in flight: it
// finishes, and its dependent is not started.
func TestInterruptSkipsDependents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		jobs := []manifest.Job{
			pipeJob("a", "generate/core"),
			pipeJob("b", "control/sketch", from("image", "a")),
		}
		ctx, cancel := context.WithCancel(t.Context())
		gen := &pipeGen{before: func(_ context.Context, id string) error {
			cancel()
			time.Sleep(time.Second)
			return nil
		}}
		res, err := runJobs(ctx, fastConfig(t), gen, jobs, prices(2))
		if err != nil || !res.Interrupted {
			t.Fatalf("Run = %v, interrupted %v; want interrupted", err, res.Interrupted)
		}
		if a, b := res.Jobs[0], res.Jobs[1]; a.Status != Succeeded || b.Status != Skipped || b.Failure != "" || b.Error != "not started: interrupted" {
			t.Errorf("a = %s; b = %s %q %q; want succeeded, then skipped as not started", a.Status, b.Status, b.Failure, b.Error)
		}
	})
}

// TestInputsFromResumedSources fails a dependent, then reruns: the source
// is resumed from the journal and the dependent is sent its image.
func TestInputsFromResumedSources(t *testing.T) {
	jobs := []manifest.Job{
		pipeJob("a", "generate/core"),
		pipeJob("b", "control/sketch", from("image", "a")),
	}
	cfg := fastConfig(t)
	cfg.MaxAttempts = 1
	fail := &pipeGen{before: func(_ context.Context, id string) error {
		if id == "b" {
			return apiErr(500, "server_error", "")
		}
		return nil
	}}
	first, err := runJobs(t.Context(), cfg, fail, jobs, prices(2))
	if err != nil || first.Jobs[1].Status != Failed {
		t.Fatalf("first run: %v, b %s", err, first.Jobs[1].Status)
	}
	if rem, err := Remaining(cfg.OutDir, JobList(jobs), prices(2)); err != nil || rem != cost.Credit {
		t.Errorf("Remaining = %v, %v; want 1.0 (b)", rem, err)
	}
	gen := &pipeGen{}
	second, err := runJobs(t.Context(), cfg, gen, jobs, prices(2))
	if err != nil {
		t.Fatal(err)
	}
	if got := gen.order(); !slices.Equal(got, []string{"b"}) {
		t.Errorf("rerun sent %q, want b only", got)
	}
	a := second.Jobs[0]
	if !a.Resumed || second.Jobs[1].Status != Succeeded {
		t.Fatalf("rerun: a resumed %v, b %s", a.Resumed, second.Jobs[1].Status)
	}
	sent := fieldOf(gen.request("b"), "image")
	if sent != imagePath(t, cfg.OutDir, a) || fileSum(t, sent) != a.Images[0].SHA256 {
		t.Errorf("b was sent %s, want a's journaled image %s", sent, a.Images[0].Path)
	}
	if rem, err := Remaining(cfg.OutDir, JobList(jobs), prices(2)); err != nil || rem != 0 {
		t.Errorf("Remaining after the rerun = %v, %v; want 0", rem, err)
	}

	// a's settings change: a runs again, so b's input is a new image and
	// b runs again too
	jobs[0].Params = []manifest.Param{{Name: "seed", Value: "9"}}
	if rem, err := Remaining(cfg.OutDir, JobList(jobs), prices(2)); err != nil || rem != 2*cost.Credit {
		t.Errorf("Remaining after changing a = %v, %v; want 2.0", rem, err)
	}
	gen = &pipeGen{}
	if _, err := runJobs(t.Context(), cfg, gen, jobs, prices(2)); err != nil {
		t.Fatal(err)
	}
	if got := gen.order(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("run after changing a sent %q, want a, b", got)
	}
}

// TestInputFileContent keys a job on its input file's bytes: rewriting
// or moving the same bytes resumes, other bytes run the job again.
func TestInputFileContent(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "logo.png")
	if err := os.WriteFile(in, tinyPNG(), 0o644); err != nil {
		t.Fatal(err)
	}
	jobs := []manifest.Job{pipeJob("cut", "edit/remove-background", manifest.Input{Field: "image", Path: in})}
	price := []cost.Credits{5 * cost.Credit}
	cfg := fastConfig(t)
	var calls atomic.Int32
	var sentPath atomic.Value
	gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
		calls.Add(1)
		sentPath.Store(fieldOf(req, "image"))
		return succeed(ctx, req, sink)
	}}
	if _, err := runJobs(t.Context(), cfg, gen, jobs, price); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 || sentPath.Load() != in {
		t.Fatalf("%d calls, image %v; want 1 call sending %s", calls.Load(), sentPath.Load(), in)
	}
	moved := filepath.Join(dir, "moved.png")
	steps := []struct {
		name  string
		apply func()
		rem   cost.Credits
	}{
		{"same bytes rewritten", func() { os.WriteFile(in, tinyPNG(), 0o644) }, 0},
		{"same bytes elsewhere", func() {
			os.WriteFile(moved, tinyPNG(), 0o644)
			jobs[0].Inputs = []manifest.Input{{Field: "image", Path: moved}}
		}, 0},
		{"other bytes", func() { os.WriteFile(moved, tinyJPEG(), 0o644) }, 5 * cost.Credit},
	}
	for _, st := range steps {
		st.apply()
		rem, err := Remaining(cfg.OutDir, JobList(jobs), price)
		if err != nil || rem != st.rem {
			t.Errorf("%s: Remaining = %v, %v; want %v", st.name, rem, err, st.rem)
		}
		calls.Store(0)
		if _, err := runJobs(t.Context(), cfg, gen, jobs, price); err != nil {
			t.Fatal(err)
		}
		if want := int32(st.rem / price[0]); calls.Load() != want {
			t.Errorf("%s: %d requests, want %d", st.name, calls.Load(), want)
		}
	}
	os.Remove(moved)
	calls.Store(0)
	if _, err := runJobs(t.Context(), cfg, gen, jobs, price); err == nil || !strings.Contains(err.Error(), "job cut: image input image") || calls.Load() != 0 {
		t.Errorf("Run with a missing input = %v after %d requests, want an error naming the input before any", err, calls.Load())
	}
}

// TestBadGraphs checks that Run and Remaining refuse dependencies that
// cannot be scheduled, before anything is sent.
func TestBadGraphs(t *testing.T) {
	tests := []struct {
		name string
		jobs []manifest.Job
		want string
	}{
		{"unknown source", []manifest.Job{pipeJob("b", "control/sketch", from("image", "nope"))}, `takes an image from job "nope"`},
		{"self", []manifest.Job{pipeJob("b", "control/sketch", from("image", "b"))}, "job b takes its own image"},
		{"cycle", []manifest.Job{
			pipeJob("x", "generate/core"),
			pipeJob("a", "control/sketch", from("image", "c")),
			pipeJob("b", "control/sketch", from("image", "a")),
			pipeJob("c", "control/sketch", from("image", "b")),
		}, "jobs a, b, c take images from each other in a cycle"},
		{"id twice", []manifest.Job{pipeJob("a", "generate/core"), pipeJob("a", "generate/core")}, `job id "a" is used twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gen := &pipeGen{}
			cfg := fastConfig(t)
			if _, err := runJobs(t.Context(), cfg, gen, tt.jobs, prices(len(tt.jobs))); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run error = %v, want it to contain %q", err, tt.want)
			}
			if _, err := Remaining(cfg.OutDir, JobList(tt.jobs), prices(len(tt.jobs))); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Remaining error = %v, want it to contain %q", err, tt.want)
			}
			if len(gen.order()) != 0 {
				t.Errorf("sent %q", gen.order())
			}
		})
	}
}

// TestMissingSourceImage asks for an image its source did not write: the
// job fails without a request.
func TestMissingSourceImage(t *testing.T) {
	jobs := []manifest.Job{
		pipeJob("a", "generate/core"),
		pipeJob("b", "control/sketch", manifest.Input{Field: "image", From: "a", Index: 2}),
	}
	gen := &pipeGen{}
	res, err := runJobs(t.Context(), fastConfig(t), gen, jobs, prices(2))
	if err != nil {
		t.Fatal(err)
	}
	b := res.Jobs[1]
	if b.Status != Failed || b.Failure != FailInvalid || !strings.Contains(b.Error, "job a wrote 1 image(s), not an image 2") || b.Attempts != 0 {
		t.Errorf("b = %s %q %q after %d attempts; want failed invalid, no attempt", b.Status, b.Failure, b.Error, b.Attempts)
	}
	if got := gen.order(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("sent %q, want a only", got)
	}
}
