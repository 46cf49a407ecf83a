package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/pngtext"
	"github.com/batch-tool/batch/internal/stability"
)

func TestConcurrencyAndOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		jobs, prices := testJobs(40)
		var inFlight, maxInFlight atomic.Int32
		gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for {
				m := maxInFlight.Load()
				if n <= m || maxInFlight.CompareAndSwap(m, n) {
					break
				}
			}
			// finish in an order unrelated to the manifest's
			time.Sleep(time.Duration(rand.IntN(1000)) * time.Millisecond)
			return succeed(ctx, req, sink)
		}}
		cfg := fastConfig(t)
		cfg.Concurrency = 5
		res, err := runJobs(t.Context(), cfg, gen, jobs, prices)
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
		if got := maxInFlight.Load(); got > 5 || got < 2 {
			t.Errorf("max in flight = %d, want 2..5", got)
		}
		for i, r := range res.Jobs {
			if r.ID != jobs[i].ID || r.Status != Succeeded {
				t.Errorf("Jobs[%d] = %s %s, want %s succeeded", i, r.ID, r.Status, jobs[i].ID)
			}
		}
		if res.Charged != 40*cost.Credit || res.Spent != res.Charged {
			t.Errorf("Charged, Spent = %v, %v; want 40.0, 40.0", res.Charged, res.Spent)
		}
	})
}

// TestBudgetNeverExceeded runs many concurrent jobs whose attempts end in
// every way, and checks the credits the API could have billed never pass
// the budget.
func TestBudgetNeverExceeded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		jobs, prices := testJobs(200)
		budget := 37 * cost.Credit
		var mu sync.Mutex
		var billed cost.Credits // success or unknown outcome: may have been billed
		gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
			time.Sleep(time.Duration(rand.IntN(500)) * time.Millisecond)
			switch rand.IntN(4) {
			case 0:
				mu.Lock()
				billed += cost.Credit
				mu.Unlock()
				return nil, &stability.TransportError{Sent: true, Err: errors.New("connection reset")}
			case 1:
				return nil, &stability.APIError{Status: 500, Name: "server_error"}
			case 2:
				return nil, &stability.TransportError{Sent: false, Err: errors.New("connection refused")}
			}
			mu.Lock()
			billed += cost.Credit
			mu.Unlock()
			return succeed(ctx, req, sink)
		}}
		cfg := fastConfig(t)
		cfg.Concurrency = 50
		cfg.Budget = &budget
		res, err := runJobs(t.Context(), cfg, gen, jobs, prices)
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
		if billed > budget || res.Spent > budget {
			t.Errorf("billed %v, Spent %v; budget %v", billed, res.Spent, budget)
		}
		if res.Spent != billed {
			t.Errorf("Spent = %v, want %v (every billable attempt)", res.Spent, billed)
		}
		over := 0
		for _, r := range res.Jobs {
			if strings.Contains(r.Error, "would exceed budget") {
				over++
			}
		}
		if over == 0 {
			t.Errorf("no job failed with \"would exceed budget\"; the test did not reach the budget")
		}
	})
}

func apiErr(status int, name, msg string) error {
	return &stability.APIError{Status: status, Name: name, Message: msg}
}

func TestRetryClasses(t *testing.T) {
	sentErr := &stability.TransportError{Sent: true, Err: errors.New("EOF")}
	unsentErr := &stability.TransportError{Sent: false, Err: errors.New("connection refused")}
	timeout := &stability.TransportError{Sent: true, Err: context.DeadlineExceeded}
	const c = cost.Credit
	tests := []struct {
		name     string
		answers  []error // per attempt; nil = success; after the list: success
		status   Status
		failure  Failure
		attempts int
		credits  cost.Credits
		unknown  cost.Credits
		fatal    error
		errText  string // in the job's error
	}{
		{"success", nil, Succeeded, "", 1, c, 0, nil, ""},
		{"500 then success", []error{apiErr(500, "server_error", "")}, Succeeded, "", 2, c, 0, nil, ""},
		{"503 then 502 then success", []error{apiErr(503, "", ""), apiErr(502, "", "")}, Succeeded, "", 3, c, 0, nil, ""},
		{"500 until giving up", []error{apiErr(500, "", ""), apiErr(500, "", ""), apiErr(500, "", ""), apiErr(500, "", ""), apiErr(500, "", ""), nil}, Failed, FailServer, 5, 0, 0, nil, "giving up after 5"},
		{"429 then success", []error{apiErr(429, "rate_limit_exceeded", "")}, Succeeded, "", 2, c, 0, nil, ""},
		{"400 never retried", []error{apiErr(400, "invalid_prompts", "Invalid prompts detected")}, Failed, FailInvalid, 1, 0, 0, nil, "invalid_prompts"},
		{"404 never retried", []error{apiErr(404, "not_found", "engine not found")}, Failed, FailInvalid, 1, 0, 0, nil, "not_found"},
		{"413 is a validation bug", []error{apiErr(413, "payload_too_large", "too big")}, Failed, FailInvalid, 1, 0, 0, nil, "a validation bug in batch"},
		{"refused by the client", []error{fmt.Errorf("stable-image generate/core: %w: image not found", stability.ErrInvalidRequest)}, Failed, FailInvalid, 1, 0, 0, nil, "image not found"},
		{"403 moderation never retried", []error{apiErr(403, "content_moderation", "Your request was flagged")}, Failed, FailModerated, 1, 0, 0, nil, "content_moderation"},
		{"422 never retried", []error{apiErr(422, "public_figure", "public figure")}, Failed, FailRejected, 1, 0, 0, nil, "public_figure"},
		{"not sent then success", []error{unsentErr}, Succeeded, "", 2, c, 0, nil, ""},
		{"sent then success", []error{sentErr}, Succeeded, "", 2, c, c, nil, ""},
		{"sent until giving up", []error{apiErr(500, "", ""), unsentErr, sentErr, sentErr, nil}, Failed, FailUnknown, 4, 0, 2 * c, nil, "2 with unknown outcome"},
		{"timed out twice", []error{timeout, timeout, nil}, Failed, FailUnknown, 2, 0, 2 * c, nil, "no answer within"},
		{"malformed answer", []error{stability.ErrMalformedResponse}, Failed, FailAnswer, 1, 0, c, nil, "malformed"},
		{"401 fatal", []error{apiErr(401, "unauthorized", "missing authorization header")}, Failed, FailUnauthorized, 1, 0, 0, ErrUnauthorized, "unauthorized"},
		{"403 fatal", []error{apiErr(403, "permission_denied", "")}, Failed, FailUnauthorized, 1, 0, 0, ErrUnauthorized, "permission_denied"},
		{"402 fatal", []error{apiErr(402, "", "")}, Failed, FailNoCredit, 1, 0, 0, ErrNoCredit, "402"},
		{"balance message fatal", []error{apiErr(400, "bad_request", "Your organization does not have enough balance to request this action")}, Failed, FailNoCredit, 1, 0, 0, ErrNoCredit, "enough balance"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				jobs, prices := testJobs(1)
				calls := 0
				gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
					calls++
					if calls <= len(tt.answers) && tt.answers[calls-1] != nil {
						return nil, tt.answers[calls-1]
					}
					return succeed(ctx, req, sink)
				}}
				cfg := fastConfig(t)
				cfg.BackoffBase, cfg.BackoffCap, cfg.Lockout = time.Second, 30*time.Second, 60*time.Second
				res, err := runJobs(t.Context(), cfg, gen, jobs, prices)
				if !errors.Is(err, tt.fatal) || (tt.fatal == nil) != (err == nil) {
					t.Fatalf("Run error = %v, want %v", err, tt.fatal)
				}
				r := res.Jobs[0]
				if r.Status != tt.status || r.Failure != tt.failure || r.Attempts != tt.attempts || calls != tt.attempts || r.Credits != tt.credits || r.Unknown != tt.unknown {
					t.Errorf("job = %s %q, %d attempts (%d calls), credits %v, unknown %v; want %s %q, %d, %v, %v (error %q)",
						r.Status, r.Failure, r.Attempts, calls, r.Credits, r.Unknown, tt.status, tt.failure, tt.attempts, tt.credits, tt.unknown, r.Error)
				}
				if res.Charged != tt.credits || res.Spent != tt.credits+tt.unknown {
					t.Errorf("run charged %v, spent %v; want %v, %v", res.Charged, res.Spent, tt.credits, tt.credits+tt.unknown)
				}
				if !strings.Contains(r.Error, tt.errText) {
					t.Errorf("job error = %q, want it to contain %q", r.Error, tt.errText)
				}
				if tt.status == Failed && r.Error == "" {
					t.Errorf("failed job has no error text")
				}
			})
		})
	}
}

// TestPauseOn429 checks that a 429 stops every worker, not just the one
// that got it, for Retry-After (or the lock-out when there is none).
func TestPauseOn429(t *testing.T) {
	for _, tt := range []struct {
		name       string
		retryAfter time.Duration
		want       time.Duration
	}{{"lockout", 0, 60 * time.Second}, {"retry-after", 7 * time.Second, 7 * time.Second}} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				jobs, prices := testJobs(30)
				var mu sync.Mutex
				var sends []time.Time
				var limited time.Time
				gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
					mu.Lock()
					now := time.Now()
					sends = append(sends, now)
					first := limited.IsZero() && len(sends) == 5
					if first {
						limited = now
					}
					mu.Unlock()
					if first {
						return nil, &stability.APIError{Status: 429, Name: "rate_limit_exceeded", RetryAfter: tt.retryAfter}
					}
					time.Sleep(100 * time.Millisecond)
					return succeed(ctx, req, sink)
				}}
				cfg := fastConfig(t)
				cfg.Concurrency = 8
				cfg.Rate = Rate{N: 20, Window: time.Second}
				cfg.Lockout = 60 * time.Second
				res, err := runJobs(t.Context(), cfg, gen, jobs, prices)
				if err != nil {
					t.Fatalf("Run = %v", err)
				}
				during := 0
				for _, s := range sends {
					if s.After(limited) && s.Before(limited.Add(tt.want)) {
						during++
					}
				}
				if during > 0 {
					t.Errorf("%d requests sent during the %v pause", during, tt.want)
				}
				if last := sends[len(sends)-1]; last.Sub(limited) < tt.want {
					t.Errorf("last request %v after the 429, want ≥ %v", last.Sub(limited), tt.want)
				}
				for i, r := range res.Jobs {
					if r.Status != Succeeded {
						t.Errorf("Jobs[%d] = %s (%s), want succeeded", i, r.Status, r.Error)
					}
				}
			})
		})
	}
}

func TestFatalStopsRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		jobs, prices := testJobs(50)
		var calls atomic.Int32
		cancelledInFlight := atomic.Bool{}
		gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
			if calls.Add(1) == 6 {
				time.Sleep(time.Second)
				return nil, apiErr(401, "unauthorized", "bad key")
			}
			select {
			case <-time.After(10 * time.Second):
				return succeed(ctx, req, sink)
			case <-ctx.Done():
				cancelledInFlight.Store(true)
				return nil, &stability.TransportError{Sent: true, Err: ctx.Err()}
			}
		}}
		cfg := fastConfig(t)
		cfg.Concurrency = 8
		start := time.Now()
		res, err := runJobs(t.Context(), cfg, gen, jobs, prices)
		if !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("Run error = %v, want ErrUnauthorized", err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("Run took %v after a fatal error at 1s, want the in-flight requests cancelled", took)
		}
		if !cancelledInFlight.Load() {
			t.Errorf("in-flight requests were not cancelled")
		}
		if got := calls.Load(); got != 8 {
			t.Errorf("%d requests sent, want 8 (the first wave only)", got)
		}
		skipped := 0
		for _, r := range res.Jobs {
			if r.Status == Skipped {
				skipped++
			}
		}
		if skipped != 42 {
			t.Errorf("%d jobs skipped, want 42", skipped)
		}
	})
}

func TestInterrupt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		jobs, prices := testJobs(20)
		ctx, cancel := context.WithCancel(t.Context())
		var calls atomic.Int32
		gen := &fakeGen{fn: func(rctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
			calls.Add(1)
			time.Sleep(5 * time.Second)
			if rctx.Err() != nil {
				t.Errorf("request context cancelled by the interrupt: %v", rctx.Err())
			}
			return succeed(rctx, req, sink)
		}}
		cfg := fastConfig(t)
		cfg.Concurrency = 4
		go func() { time.Sleep(time.Second); cancel() }()
		res, err := runJobs(ctx, cfg, gen, jobs, prices)
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
		if !res.Interrupted {
			t.Errorf("Interrupted = false, want true")
		}
		var ok, skipped int
		for _, r := range res.Jobs {
			switch r.Status {
			case Succeeded:
				ok++
			case Skipped:
				skipped++
			}
		}
		if ok != 4 || skipped != 16 || calls.Load() != 4 {
			t.Errorf("%d succeeded, %d skipped, %d calls; want 4, 16, 4", ok, skipped, calls.Load())
		}
		// the in-flight jobs were journaled: a rerun sends only the rest
		calls.Store(0)
		res, err = runJobs(t.Context(), cfg, gen, jobs, prices)
		if err != nil || res.Interrupted {
			t.Fatalf("rerun = %v, interrupted %v", err, res.Interrupted)
		}
		if calls.Load() != 16 {
			t.Errorf("rerun sent %d requests, want 16", calls.Load())
		}
	})
}

func TestResume(t *testing.T) {
	jobs, prices := testJobs(6)
	cfg := fastConfig(t)
	var calls sync.Map // job prompt → count
	gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
		n, _ := calls.LoadOrStore(promptOf(req), new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		switch seedOf(req) {
		case 2:
			return nil, apiErr(400, "invalid_prompts", "no")
		case 3:
			return generate(req, sink, stability.FinishContentFiltered)
		}
		return succeed(ctx, req, sink)
	}}
	first, err := runJobs(t.Context(), cfg, gen, jobs, prices)
	if err != nil {
		t.Fatal(err)
	}
	// a torn line from a crash mid-write must be ignored and cut off
	jpath := filepath.Join(cfg.OutDir, JournalFile)
	f, err := os.OpenFile(jpath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"id":"job-005","key":"`)
	f.Close()

	jobs[4].Prompts[0].Text = "a changed prompt" // must run again
	calls.Clear()
	second, err := runJobs(t.Context(), cfg, gen, jobs, prices)
	if err != nil {
		t.Fatal(err)
	}
	sent := map[string]int32{}
	calls.Range(func(k, v any) bool { sent[k.(string)] = v.(*atomic.Int32).Load(); return true })
	want := map[string]int32{"a cat number 1": 1, "a changed prompt": 1}
	if len(sent) != len(want) || sent["a cat number 1"] != 1 || sent["a changed prompt"] != 1 {
		t.Errorf("rerun sent %v, want %v", sent, want)
	}
	for i, r := range second.Jobs {
		wantResumed := i != 1 && i != 4
		if r.Resumed != wantResumed {
			t.Errorf("Jobs[%d].Resumed = %v, want %v", i, r.Resumed, wantResumed)
		}
		if r.Status != first.Jobs[i].Status {
			t.Errorf("Jobs[%d].Status = %s, want %s", i, r.Status, first.Jobs[i].Status)
		}
	}
	if second.Jobs[2].Status != Filtered || len(second.Jobs[2].Images) != 1 {
		t.Errorf("resumed filtered job = %+v", second.Jobs[2])
	}
	if second.Charged != 6*cost.Credit || second.PriorCharged != 5*cost.Credit {
		t.Errorf("Charged = %v, prior %v; want 6.0 (the first run's 5.0, job-004 again), prior 5.0", second.Charged, second.PriorCharged)
	}
	data, _ := os.ReadFile(jpath)
	if !strings.HasSuffix(string(data), "}\n") || strings.Contains(string(data), `"key":"{`) {
		t.Errorf("journal still holds the torn line:\n%s", data)
	}
	outcomes := 0
	for _, e := range journalEntries(t, cfg.OutDir) {
		if e.Status != attempt {
			outcomes++
		}
	}
	if got := strings.Count(string(data), "\n"); got != 16 || outcomes != 8 {
		t.Errorf("journal has %d lines, %d outcomes; want 16, 8 (6 + 2 reruns, each after its attempt)", got, outcomes)
	}
}

func TestOutputs(t *testing.T) {
	jobs, prices := testJobs(3)
	jobs[1].Samples = 3
	jobs[1].Prompts = append(jobs[1].Prompts, manifestPrompt("blurry", -1))
	cfg := fastConfig(t)
	gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
		if seedOf(req) == 3 {
			return generate(req, sink, stability.FinishContentFiltered)
		}
		return succeed(ctx, req, sink)
	}}
	res, err := runJobs(t.Context(), cfg, gen, jobs, prices)
	if err != nil {
		t.Fatal(err)
	}
	wantPaths := [][]string{
		{"images/job-000.png"},
		{"images/job-001-1.png", "images/job-001-2.png", "images/job-001-3.png"},
		{"filtered/job-002.png"},
	}
	wantStatus := []Status{Succeeded, Succeeded, Filtered}
	for i, r := range res.Jobs {
		if r.Status != wantStatus[i] || len(r.Images) != len(wantPaths[i]) {
			t.Fatalf("Jobs[%d] = %s with %d images, want %s with %d", i, r.Status, len(r.Images), wantStatus[i], len(wantPaths[i]))
		}
		for k, img := range r.Images {
			if img.Path != wantPaths[i][k] {
				t.Errorf("Jobs[%d].Images[%d].Path = %q, want %q", i, k, img.Path, wantPaths[i][k])
			}
			data, err := os.ReadFile(filepath.Join(cfg.OutDir, img.Path))
			if err != nil {
				t.Fatal(err)
			}
			if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != img.SHA256 {
				t.Errorf("%s: sha256 differs from the recorded one", img.Path)
			}
			texts, err := pngtext.ReadText(strings.NewReader(string(data)))
			if err != nil || len(texts) != 2 || texts[0].Keyword != "parameters" || texts[1].Keyword != recordKeyword {
				t.Fatalf("%s: text chunks %q, %v; want the parameters and the record", img.Path, texts, err)
			}
			if want := Parameters(jobs[i], img.Seed); texts[0].Text != want {
				t.Errorf("%s: parameters = %q, want %q", img.Path, texts[0].Text, want)
			}
			checkRecord(t, cfg.OutDir, jobs[i], k, img)
		}
	}
	if !strings.Contains(res.Jobs[1].Params, "\nNegative prompt: blurry\n") {
		t.Errorf("Params = %q, want a negative prompt line", res.Jobs[1].Params)
	}
	if left := tempFiles(t, cfg.OutDir); len(left) > 0 {
		t.Errorf("temp files left: %v", left)
	}
}

// TestFailedAttemptLeavesNoFiles breaks the answer in the middle of the
// second image: nothing of the attempt may remain.
func TestFailedAttemptLeavesNoFiles(t *testing.T) {
	jobs, prices := testJobs(1)
	jobs[0].Samples = 2
	cfg := fastConfig(t)
	cfg.MaxAttempts = 1
	gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
		if _, err := generate(stability.Request{TextToImage: stability.TextToImageRequest{Samples: 1}}, sink, stability.FinishSuccess); err != nil {
			return nil, err
		}
		w, _ := sink.Begin(1)
		w.Write(tinyPNG()[:20])
		return nil, &stability.TransportError{Sent: true, Err: errors.New("unexpected EOF")}
	}}
	res, err := runJobs(t.Context(), cfg, gen, jobs, prices)
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Jobs[0]; r.Status != Failed || r.Unknown != cost.Credit {
		t.Errorf("job = %s, unknown %v; want failed, 1.0", r.Status, r.Unknown)
	}
	for _, d := range []string{ImagesDir, FilteredDir} {
		if entries, _ := os.ReadDir(filepath.Join(cfg.OutDir, d)); len(entries) > 0 {
			t.Errorf("%s holds %d files after a failed attempt, want none", d, len(entries))
		}
	}
}

func TestFileBase(t *testing.T) {
	tests := []struct {
		id   string
		safe bool
	}{
		{"mug-front", true},
		{"mug-angles-left-1", true},
		{"../etc/passwd", false},
		{"a/b", false},
		{`a\b`, false},
		{".hidden", false},
		{"", false},
		{strings.Repeat("x", 300), false},
		{"c:d", false},
	}
	for _, tt := range tests {
		got := fileBase(tt.id)
		if (got == tt.id) != tt.safe {
			t.Errorf("fileBase(%q) = %q, want unchanged: %v", tt.id, got, tt.safe)
		}
		if !filepath.IsLocal(got) || filepath.Base(got) != got || strings.HasPrefix(got, ".") || len(got) > maxBase {
			t.Errorf("fileBase(%q) = %q, not a safe local name", tt.id, got)
		}
	}
	if fileBase("a/b") == fileBase("a_b") {
		t.Errorf("fileBase maps distinct ids to one name")
	}
}

func TestRunArguments(t *testing.T) {
	jobs, prices := testJobs(2)
	gen := &fakeGen{fn: succeed}
	if _, err := runJobs(t.Context(), Config{OutDir: t.TempDir()}, gen, jobs, prices[:1]); err == nil {
		t.Errorf("Run with 1 price for 2 jobs = nil error")
	}
	if _, err := runJobs(t.Context(), Config{}, gen, jobs, prices); err == nil {
		t.Errorf("Run without OutDir = nil error")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := runJobs(ctx, Config{OutDir: t.TempDir()}, gen, jobs, prices); !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a cancelled context = %v, want context.Canceled", err)
	}
	_ = http.StatusOK
}
