package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/pngtext"
	"github.com/batch-tool/batch/internal/stability"
)

// requestLog is a fake Generator that records every request and answers by
// the request's prompt: an error from errs, else an image.
type requestLog struct {
	mu   sync.Mutex
	reqs []stability.Request
	errs map[string]error // prompt → error answered
}

func (g *requestLog) Generate(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
	g.mu.Lock()
	g.reqs = append(g.reqs, req)
	err := g.errs[promptOf(req)]
	g.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return succeed(ctx, req, sink)
}

func (g *requestLog) Submit(ctx context.Context, service string, fields []stability.Field) (string, error) {
	return "", errors.New("fake: unexpected Submit")
}

func (g *requestLog) Result(ctx context.Context, id string, sink stability.Sink) ([]stability.Artifact, bool, error) {
	return nil, false, errors.New("fake: unexpected Result")
}

// sent returns the prompts sent, in order.
func (g *requestLog) sent() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, len(g.reqs))
	for i, r := range g.reqs {
		out[i] = promptOf(r)
	}
	return out
}

func TestStableImageOutputs(t *testing.T) {
	v1, _ := testJobs(1)
	core := stableJob("core", "generate/core", 1536, 1536, "seed", "5")
	core.Prompts = append(core.Prompts, manifest.Prompt{Text: "fog", Weight: -1})
	jobs := []manifest.Job{
		v1[0],
		core,
		stableJob("ultra", "generate/ultra", 1344, 768, "aspect_ratio", "16:9", "output_format", "jpeg"),
		stableJob("flash", "generate/sd3", 1024, 1024, "model", "sd3.5-flash", "output_format", "webp"),
	}
	prices := []cost.Credits{900_000, 3 * cost.Credit, 8 * cost.Credit, 2_500_000}
	gen := &requestLog{}
	cfg := fastConfig(t)
	res, err := runJobs(t.Context(), cfg, gen, jobs, prices)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, format, requestID string
	}{
		{"images/job-000.png", "", ""},
		{"images/core.png", "png", "req-a lighthouse core"},
		{"images/ultra.jpg", "jpeg", "req-a lighthouse ultra"},
		{"images/flash.webp", "webp", "req-a lighthouse flash"},
	}
	for i, tt := range tests {
		r := res.Jobs[i]
		if r.Status != Succeeded || len(r.Images) != 1 {
			t.Fatalf("Jobs[%d] = %s with %d images (%s)", i, r.Status, len(r.Images), r.Error)
		}
		img := r.Images[0]
		if img.Path != tt.path || img.RequestID != tt.requestID {
			t.Errorf("Jobs[%d] image = %s, request id %q; want %s, %q", i, img.Path, img.RequestID, tt.path, tt.requestID)
		}
		data, err := os.ReadFile(filepath.Join(cfg.OutDir, img.Path))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != img.SHA256 {
			t.Errorf("%s: sha256 differs from the recorded one", img.Path)
		}
		if want := Parameters(jobs[i], img.Seed); r.Params != want {
			t.Errorf("Jobs[%d].Params = %q, want %q", i, r.Params, want)
		}
		checkRecord(t, cfg.OutDir, jobs[i], 0, img)
		if tt.format == "jpeg" || tt.format == "webp" {
			// no parameters: the file is what the API sent, with the
			// record after a JPEG's SOI (a WebP's is beside it)
			if !bytes.Equal(withoutRecord(data), imageBytes(tt.format)) {
				t.Errorf("%s: %d bytes differ from the %d the API sent", img.Path, len(data), len(imageBytes(tt.format)))
			}
			continue
		}
		texts, err := pngtext.ReadText(bytes.NewReader(data))
		if err != nil || len(texts) != 2 || texts[0].Text != r.Params || texts[1].Keyword != recordKeyword {
			t.Errorf("%s: text chunks %q, %v; want the parameters and the record", img.Path, texts, err)
		}
	}
	if want := "a lighthouse core\nNegative prompt: fog\nSeed: 1005, Size: 1536x1536, Model: generate/core"; res.Jobs[1].Params != want {
		t.Errorf("core parameters = %q, want %q", res.Jobs[1].Params, want)
	}
	// the requests carry the service and the fields in catalogue order
	want := map[string]stability.Request{
		"a lighthouse core": {Service: "generate/core", Fields: []stability.Field{
			{Name: "prompt", Value: "a lighthouse core"}, {Name: "negative_prompt", Value: "fog"}, {Name: "seed", Value: "5"}}},
		"a lighthouse flash": {Service: "generate/sd3", Fields: []stability.Field{
			{Name: "prompt", Value: "a lighthouse flash"}, {Name: "model", Value: "sd3.5-flash"}, {Name: "output_format", Value: "webp"}}},
	}
	for _, r := range gen.reqs {
		if w, ok := want[promptOf(r)]; ok && (r.Service != w.Service || !reflect.DeepEqual(r.Fields, w.Fields)) {
			t.Errorf("request = %+v, want %+v", r, w)
		}
	}
	if left := tempFiles(t, cfg.OutDir); len(left) > 0 {
		t.Errorf("temp files left: %v", left)
	}
}

// TestStableImageBudget runs v1 and Stable Image jobs one at a time under a
// budget: a moderated job releases its reservation, a job that would pass
// the budget is not sent, and later jobs that fit still run.
func TestStableImageBudget(t *testing.T) {
	v1, _ := testJobs(1)
	jobs := []manifest.Job{
		v1[0],
		stableJob("moderated", "generate/core", 1536, 1536),
		stableJob("flash", "generate/sd3", 1024, 1024, "model", "sd3.5-flash"),
		stableJob("ultra", "generate/ultra", 1024, 1024),
		stableJob("core", "generate/core", 1536, 1536),
	}
	prices := []cost.Credits{900_000, 3 * cost.Credit, 2_500_000, 8 * cost.Credit, 3 * cost.Credit}
	gen := &requestLog{errs: map[string]error{
		"a lighthouse moderated": apiErr(403, "content_moderation", "Your request was flagged by our content moderation system"),
	}}
	cfg := fastConfig(t)
	cfg.Concurrency = 1
	budget := 7 * cost.Credit
	cfg.Budget = &budget
	res, err := runJobs(t.Context(), cfg, gen, jobs, prices)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		status  Status
		failure Failure
		credits cost.Credits
	}{
		{Succeeded, "", 900_000},
		{Failed, FailModerated, 0},
		{Succeeded, "", 2_500_000},
		{Failed, FailBudget, 0},          // 3.4 + 8 > 7
		{Succeeded, "", 3 * cost.Credit}, // fits only because the moderated job's 3.0 was released
	}
	for i, w := range want {
		r := res.Jobs[i]
		if r.Status != w.status || r.Failure != w.failure || r.Credits != w.credits || r.Unknown != 0 {
			t.Errorf("Jobs[%d] = %s %q, credits %v, unknown %v; want %s %q, %v (%s)", i, r.Status, r.Failure, r.Credits, r.Unknown, w.status, w.failure, w.credits, r.Error)
		}
	}
	if res.Charged != 6_400_000 || res.Spent != res.Charged {
		t.Errorf("Charged, Spent = %v, %v; want 6.4, 6.4", res.Charged, res.Spent)
	}
	if got := gen.sent(); slices.Contains(got, "a lighthouse ultra") || len(got) != 4 {
		t.Errorf("sent %q, want every job but ultra", got)
	}
	if !strings.Contains(res.Jobs[3].Error, "would exceed budget: needs 8.0 credits") {
		t.Errorf("over-budget error = %q", res.Jobs[3].Error)
	}
}

// TestStableImageResume reruns a mixed run from its journal: finished
// Stable Image jobs are not sent again, count against the budget, and a
// job whose model or output format changed runs again.
func TestStableImageResume(t *testing.T) {
	v1, _ := testJobs(1)
	jobs := []manifest.Job{
		v1[0],
		stableJob("flash", "generate/sd3", 1024, 1024, "model", "sd3.5-flash"),
		stableJob("core", "generate/core", 1536, 1536, "output_format", "webp"),
		stableJob("ultra", "generate/ultra", 1344, 768, "aspect_ratio", "16:9"),
	}
	prices := []cost.Credits{900_000, 2_500_000, 3 * cost.Credit, 8 * cost.Credit}
	cfg := fastConfig(t)
	first, err := runJobs(t.Context(), cfg, &requestLog{}, jobs, prices)
	if err != nil || first.Charged != 14_400_000 {
		t.Fatalf("first run: charged %v, %v", first.Charged, err)
	}
	if rem, err := Remaining(cfg.OutDir, JobList(jobs), prices); err != nil || rem != 0 {
		t.Errorf("Remaining after the first run = %v, %v; want 0", rem, err)
	}

	jobs[1].Params = []manifest.Param{{Name: "model", Value: "sd3.5-large"}}
	jobs[2].Params = []manifest.Param{{Name: "output_format", Value: "png"}}
	prices[1] = 6_500_000
	if rem, err := Remaining(cfg.OutDir, JobList(jobs), prices); err != nil || rem != 9_500_000 {
		t.Errorf("Remaining after changing two jobs = %v, %v; want 9.5", rem, err)
	}
	// What the journal charged counts against the budget, the results
	// replaced included: 14.4 charged and 6.5 + 3.0 to send is 23.9, just
	// over it.
	budget := cost.Credits(23_900_000 - 1)
	cfg.Budget = &budget
	cfg.Concurrency = 1
	gen := &requestLog{}
	second, err := runJobs(t.Context(), cfg, gen, jobs, prices)
	if err != nil {
		t.Fatal(err)
	}
	if got := gen.sent(); !slices.Equal(got, []string{"a lighthouse flash"}) {
		t.Errorf("rerun sent %q, want flash only", got)
	}
	for i, resumed := range []bool{true, false, false, true} {
		if r := second.Jobs[i]; r.Resumed != resumed {
			t.Errorf("Jobs[%d].Resumed = %v, want %v", i, r.Resumed, resumed)
		}
	}
	if r := second.Jobs[2]; r.Status != Failed || r.Failure != FailBudget {
		t.Errorf("core after flash = %s %q, want failed on the budget (%s)", r.Status, r.Failure, r.Error)
	}
	if r := second.Jobs[3]; r.Params != first.Jobs[3].Params || len(r.Images) != 1 || r.Images[0] != first.Jobs[3].Images[0] {
		t.Errorf("resumed ultra = %+v, want the first run's images and parameters", r)
	}
	if second.Charged != 20_900_000 || second.PriorCharged != 14_400_000 || second.PriorPossiblyBilled != 0 {
		t.Errorf("Charged = %v, prior %v + %v; want 20.9 (14.4 charged before, 6.5 sent), prior 14.4 + 0", second.Charged, second.PriorCharged, second.PriorPossiblyBilled)
	}
}

// TestLocalFailureStopsRun makes the images folder vanish under a running
// job: the image cannot be written, the job fails as local and possibly
// billed, and the run stops before sending more.
func TestLocalFailureStopsRun(t *testing.T) {
	jobs := []manifest.Job{
		stableJob("a", "generate/core", 1536, 1536),
		stableJob("b", "generate/core", 1536, 1536),
		stableJob("c", "generate/core", 1536, 1536),
	}
	prices := []cost.Credits{3 * cost.Credit, 3 * cost.Credit, 3 * cost.Credit}
	cfg := fastConfig(t)
	cfg.Concurrency = 1
	calls := 0
	gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
		calls++
		if err := os.RemoveAll(filepath.Join(cfg.OutDir, ImagesDir)); err != nil {
			t.Fatal(err)
		}
		return succeed(ctx, req, sink)
	}}
	res, err := runJobs(t.Context(), cfg, gen, jobs, prices)
	if err == nil || !strings.Contains(err.Error(), "image not saved") {
		t.Fatalf("Run error = %v, want the local failure", err)
	}
	if r := res.Jobs[0]; r.Status != Failed || r.Failure != FailLocal || r.Unknown != 3*cost.Credit {
		t.Errorf("job a = %s %q, unknown %v; want failed local, 3.0 (%s)", r.Status, r.Failure, r.Unknown, r.Error)
	}
	if calls != 1 || res.Jobs[1].Status != Skipped || res.Jobs[2].Status != Skipped {
		t.Errorf("%d requests, jobs b, c = %s, %s; want 1 request and the rest skipped", calls, res.Jobs[1].Status, res.Jobs[2].Status)
	}
	if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrNoCredit) {
		t.Errorf("Run error %v is not a local failure", err)
	}
}

// TestRunRefusesBadJobs checks that a job whose request cannot be built
// stops the run before anything is sent.
func TestRunRefusesBadJobs(t *testing.T) {
	good := stableJob("good", "generate/core", 1536, 1536)
	for name, bad := range map[string]manifest.Job{
		"unknown service": stableJob("bad", "generate/sd9", 1024, 1024),
		"bad format":      stableJob("bad", "generate/core", 1536, 1536, "output_format", "gif"),
	} {
		t.Run(name, func(t *testing.T) {
			gen := &requestLog{}
			_, err := runJobs(t.Context(), fastConfig(t), gen, []manifest.Job{good, bad}, []cost.Credits{cost.Credit, cost.Credit})
			if err == nil || !strings.Contains(err.Error(), "job bad") {
				t.Errorf("Run error = %v, want one naming job bad", err)
			}
			if len(gen.sent()) != 0 {
				t.Errorf("sent %q before refusing", gen.sent())
			}
		})
	}
}
