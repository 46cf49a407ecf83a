package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/stability"
)

const creativePrice = 60 * cost.Credit

// inputPNG writes a small PNG input file and returns its path.
func inputPNG(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "in.png")
	if err := os.WriteFile(p, tinyPNG(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// creative is an upscale/creative job (async) of the file in.
func creative(in string) manifest.Job {
	return pipeJob("up", "upscale/creative", manifest.Input{Field: "image", Path: in})
}

// finished answers a poll with a PNG, as Result does when the generation
// is done.
func finished(sink stability.Sink, seed uint32) ([]stability.Artifact, bool, error) {
	w, err := sink.Begin(0)
	if err != nil {
		return nil, false, err
	}
	if _, err := w.Write(tinyPNG()); err != nil {
		return nil, false, err
	}
	a := stability.Artifact{Seed: seed, FinishReason: stability.FinishSuccess, RequestID: "res-1", Format: "png"}
	if err := sink.End(0, a); err != nil {
		return nil, false, err
	}
	return []stability.Artifact{a}, true, nil
}

// journalEntries reads every line of the journal in outDir.
func journalEntries(t *testing.T, outDir string) []entry {
	t.Helper()
	f, err := os.Open(filepath.Join(outDir, JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []entry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("journal line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// checkSpacing checks that each time is at least d after the one before.
func checkSpacing(t *testing.T, times []time.Time, d time.Duration) {
	t.Helper()
	for k := 1; k < len(times); k++ {
		if gap := times[k].Sub(times[k-1]); gap < d {
			t.Errorf("request %d came %v after the one before, want ≥ %v", k, gap, d)
		}
	}
}

// noSubmit and noResult fail the test if called.
func noSubmit(t *testing.T) func(context.Context, string, []stability.Field) (string, error) {
	return func(context.Context, string, []stability.Field) (string, error) {
		t.Errorf("Submit called: the job was submitted again")
		return "", errors.New("no submit")
	}
}

func noResult(t *testing.T) func(context.Context, string, stability.Sink) ([]stability.Artifact, bool, error) {
	return func(context.Context, string, stability.Sink) ([]stability.Artifact, bool, error) {
		t.Errorf("Result called")
		return nil, false, errors.New("no result")
	}
}

// TestAsyncSubmitAndPoll submits an async job whose result takes two
// polls, with a dependent: the id is journaled before the first poll, the
// polls come every 10 s from the submit, the image is saved, and the
// dependent is sent it.
func TestAsyncSubmitAndPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := inputPNG(t)
		jobs := []manifest.Job{creative(in), pipeJob("cut", "edit/remove-background", from("image", "up"))}
		cfg := fastConfig(t)
		rec := &recorder{}
		cfg.Progress = rec
		var submitAt time.Time
		var polls []time.Time
		var cutImage string
		gen := &fakeGen{
			fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
				cutImage = fieldOf(req, "image")
				return succeed(ctx, req, sink)
			},
			submit: func(_ context.Context, service string, fields []stability.Field) (string, error) {
				submitAt = time.Now()
				if service != "upscale/creative" || fieldOf(stability.Request{Fields: fields}, "image") != in || fieldOf(stability.Request{Fields: fields}, "prompt") != "up" {
					t.Errorf("Submit(%s, %v)", service, fields)
				}
				return "gen-1", nil
			},
			result: func(_ context.Context, id string, sink stability.Sink) ([]stability.Artifact, bool, error) {
				polls = append(polls, time.Now())
				if id != "gen-1" {
					t.Errorf("Result(%q), want gen-1", id)
				}
				if len(polls) == 1 {
					es := journalEntries(t, cfg.OutDir)
					if len(es) != 2 || es[0].Status != attempt || es[1].ID != "up" || es[1].Status != submitted || es[1].GenerationID != "gen-1" ||
						es[1].SubmittedAt.IsZero() || es[1].Price != creativePrice {
						t.Errorf("journal at the first poll = %+v, want the attempt and the submitted entry", es)
					}
				}
				if len(polls) < 3 {
					return nil, false, nil
				}
				return finished(sink, 7)
			},
		}
		res, err := runJobs(t.Context(), cfg, gen, jobs, []cost.Credits{creativePrice, 5 * cost.Credit})
		if err != nil {
			t.Fatal(err)
		}
		if len(polls) != 3 {
			t.Fatalf("%d polls, want 3", len(polls))
		}
		times := append([]time.Time{submitAt}, polls...)
		checkSpacing(t, times, MinPollInterval)
		if last := polls[2].Sub(submitAt); last >= 31*time.Second {
			t.Errorf("third poll %v after the submit, want about 30 s", last)
		}
		up := res.Jobs[0]
		if up.Status != Succeeded || up.GenerationID != "gen-1" || up.Credits != creativePrice || up.Unknown != 0 || up.Attempts != 1 ||
			len(up.Images) != 1 || up.Images[0].Path != "images/up.png" || up.Images[0].Seed != 7 {
			t.Errorf("up = %+v", up)
		}
		checkImage(t, cfg.OutDir, up.Images[0])
		if cut := res.Jobs[1]; cut.Status != Succeeded || cutImage != imagePath(t, cfg.OutDir, up) {
			t.Errorf("cut = %s, sent %s; want succeeded with up's image", cut.Status, cutImage)
		}
		if res.Charged != creativePrice+5*cost.Credit || res.Spent != res.Charged {
			t.Errorf("Charged, Spent = %v, %v; want 65.0", res.Charged, res.Spent)
		}
		var statuses []string
		for _, e := range journalEntries(t, cfg.OutDir) {
			statuses = append(statuses, e.ID+" "+string(e.Status)+" "+e.GenerationID)
		}
		if want := "up attempt , up submitted gen-1, up succeeded gen-1, cut attempt , cut succeeded "; strings.Join(statuses, ", ") != want {
			t.Errorf("journal = %q, want %q", strings.Join(statuses, ", "), want)
		}
		sawWaiting := false
		for _, s := range rec.got {
			sawWaiting = sawWaiting || s.Waiting == 1 && s.Done == 0
		}
		if last := rec.got[len(rec.got)-1]; !sawWaiting || last.Waiting != 0 || last.Done != 2 {
			t.Errorf("progress never showed the job waiting, or still does at the end: last %+v", last)
		}
	})
}

// TestAsyncResumeAfterInterrupt interrupts a run while it polls, then
// reruns: the rerun polls the journaled id and never submits, and the
// generation's price counts against the budget meanwhile.
func TestAsyncResumeAfterInterrupt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := inputPNG(t)
		cfg := fastConfig(t)
		ctx, cancel := context.WithCancel(t.Context())
		polling := make(chan struct{})
		var once sync.Once
		gen := &fakeGen{
			submit: func(context.Context, string, []stability.Field) (string, error) { return "gen-kill", nil },
			result: func(ctx context.Context, _ string, _ stability.Sink) ([]stability.Artifact, bool, error) {
				once.Do(func() { close(polling) })
				<-ctx.Done() // blocks until the interrupt
				return nil, false, &stability.TransportError{Sent: true, Err: ctx.Err()}
			},
		}
		go func() { <-polling; cancel() }()
		res, err := runJobs(ctx, cfg, gen, []manifest.Job{creative(in)}, []cost.Credits{creativePrice})
		if err != nil || !res.Interrupted {
			t.Fatalf("Run = %v, interrupted %v", err, res.Interrupted)
		}
		up := res.Jobs[0]
		if up.Status != Skipped || up.GenerationID != "gen-kill" || up.Unknown != creativePrice || up.Credits != 0 || !strings.Contains(up.Error, "a rerun polls generation gen-kill") {
			t.Errorf("interrupted job = %+v", up)
		}
		if res.Charged != 0 || res.Spent != creativePrice {
			t.Errorf("Charged, Spent = %v, %v; want 0, 60.0 (possibly billed)", res.Charged, res.Spent)
		}
		jobs := []manifest.Job{creative(in), pipeJob("x", "generate/core")}
		both := []cost.Credits{creativePrice, 3 * cost.Credit}
		if rem, err := Remaining(cfg.OutDir, JobList(jobs), both); err != nil || rem != 3*cost.Credit {
			t.Errorf("Remaining = %v, %v; want 3.0 (x only: up is paid and only polled)", rem, err)
		}

		// The rerun: up's price is held, so x does not fit the budget; with
		// one worker, x must fail at once rather than wait for up's
		// reservation, which only a poll on that worker would end.
		budget := creativePrice + 2*cost.Credit
		cfg.Budget = &budget
		cfg.Concurrency = 1
		start := time.Now()
		var polls []time.Time
		gen = &fakeGen{
			submit: noSubmit(t),
			fn:     succeed,
			result: func(_ context.Context, id string, sink stability.Sink) ([]stability.Artifact, bool, error) {
				polls = append(polls, time.Now())
				if id != "gen-kill" {
					t.Errorf("Result(%q), want the journaled gen-kill", id)
				}
				return finished(sink, 3)
			},
		}
		res, err = runJobs(t.Context(), cfg, gen, jobs, both)
		if err != nil {
			t.Fatal(err)
		}
		up = res.Jobs[0]
		if up.Status != Succeeded || up.GenerationID != "gen-kill" || up.Credits != creativePrice || up.Resumed || up.Attempts != 1 {
			t.Errorf("rerun up = %+v", up)
		}
		if x := res.Jobs[1]; x.Status != Failed || x.Failure != FailBudget {
			t.Errorf("x = %s %q, want failed on the budget that up's held price fills", x.Status, x.Failure)
		}
		if len(polls) != 1 || polls[0].Sub(start) < MinPollInterval {
			t.Errorf("rerun polled %d times, first %v after its start; want once, ≥ %v", len(polls), polls[0].Sub(start), MinPollInterval)
		}

		// A third run sends nothing.
		cfg.Budget = nil
		jobs = jobs[:1]
		res, err = runJobs(t.Context(), cfg, &fakeGen{submit: noSubmit(t), result: noResult(t)}, jobs, both[:1])
		if err != nil || !res.Jobs[0].Resumed || res.Jobs[0].GenerationID != "gen-kill" {
			t.Errorf("third run = %+v, %v; want up resumed", res.Jobs[0], err)
		}
	})
}

// TestPollSpacingAcrossRestart stops a run while its job waits on the
// server and reruns it at once: across both runs no two requests for the
// generation are closer than 10 s, counting from the submit.
func TestPollSpacingAcrossRestart(t *testing.T) {
	for _, tt := range []struct {
		name    string
		stopAt  time.Duration // after the submit
		polls1  int           // polls in the first run
		wantGap time.Duration // the rerun's first poll after the submit
	}{
		{"before the first poll", 3 * time.Second, 0, 13 * time.Second},
		{"after two polls", 25 * time.Second, 2, 35 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				in := inputPNG(t)
				cfg := fastConfig(t)
				ctx, cancel := context.WithCancel(t.Context())
				var times []time.Time // the submit, then every poll
				gen := &fakeGen{
					submit: func(context.Context, string, []stability.Field) (string, error) {
						times = append(times, time.Now())
						go func() { time.Sleep(tt.stopAt); cancel() }()
						return "gen-2", nil
					},
					result: func(context.Context, string, stability.Sink) ([]stability.Artifact, bool, error) {
						times = append(times, time.Now())
						return nil, false, nil
					},
				}
				jobs := []manifest.Job{creative(in)}
				if _, err := runJobs(ctx, cfg, gen, jobs, []cost.Credits{creativePrice}); err != nil {
					t.Fatal(err)
				}
				if got := len(times) - 1; got != tt.polls1 {
					t.Errorf("first run polled %d times, want %d", got, tt.polls1)
				}
				gen = &fakeGen{submit: noSubmit(t), result: func(_ context.Context, _ string, sink stability.Sink) ([]stability.Artifact, bool, error) {
					times = append(times, time.Now())
					if len(times) < tt.polls1+3 {
						return nil, false, nil
					}
					return finished(sink, 1)
				}}
				res, err := runJobs(t.Context(), cfg, gen, jobs, []cost.Credits{creativePrice})
				if err != nil || res.Jobs[0].Status != Succeeded {
					t.Fatalf("rerun = %v, %s", err, res.Jobs[0].Status)
				}
				checkSpacing(t, times, MinPollInterval)
				if got := times[tt.polls1+1].Sub(times[0]); got != tt.wantGap {
					t.Errorf("rerun's first poll %v after the submit, want %v", got, tt.wantGap)
				}
			})
		})
	}
}

// TestAsyncExpired checks the three ways a result is lost.
func TestAsyncExpired(t *testing.T) {
	tests := []struct {
		name    string
		journal bool // write a submitted entry 25 h old first
		result  func(n int, sink stability.Sink) ([]stability.Artifact, bool, error)
		polls   int
		errText string
	}{
		{"not done within 24 h", false, func(int, stability.Sink) ([]stability.Artifact, bool, error) { return nil, false, nil }, 24,
			"was submitted 25h0m0s ago, and results are kept 24h0m0s"},
		{"404", false, func(int, stability.Sink) ([]stability.Artifact, bool, error) {
			return nil, false, apiErr(404, "generation_not_found", "Generation not found")
		}, 1, "the API no longer knows generation gen-3"},
		{"journaled 25 h ago", true, nil, 0, "was submitted 25h0m0s ago"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				in := inputPNG(t)
				cfg := fastConfig(t)
				cfg.PollInterval = time.Hour
				jobs := []manifest.Job{creative(in)}
				price := []cost.Credits{creativePrice}
				polls := 0
				gen := &fakeGen{
					submit: func(context.Context, string, []stability.Field) (string, error) { return "gen-3", nil },
					result: func(_ context.Context, _ string, sink stability.Sink) ([]stability.Artifact, bool, error) {
						polls++
						return tt.result(polls, sink)
					},
				}
				if tt.journal {
					gen.submit, gen.result = noSubmit(t), noResult(t)
					writeSubmitted(t, cfg.OutDir, jobs[0], "gen-old", time.Now().Add(-25*time.Hour))
				}
				res, err := runJobs(t.Context(), cfg, gen, jobs, price)
				if err != nil {
					t.Fatal(err)
				}
				up := res.Jobs[0]
				if up.Status != Failed || up.Failure != FailExpired || up.Unknown != creativePrice || up.Credits != 0 || !strings.Contains(up.Error, tt.errText) {
					t.Errorf("up = %s %q, unknown %v, credits %v, error %q; want failed expired, 60.0 possibly billed, %q", up.Status, up.Failure, up.Unknown, up.Credits, up.Error, tt.errText)
				}
				if polls != tt.polls {
					t.Errorf("%d polls, want %d", polls, tt.polls)
				}
				// the journal ends the job: a rerun submits it again
				if rem, err := Remaining(cfg.OutDir, JobList(jobs), price); err != nil || rem != creativePrice {
					t.Errorf("Remaining = %v, %v; want 60.0", rem, err)
				}
			})
		})
	}
}

// writeSubmitted appends a submitted entry for j to the journal in outDir,
// with the key j has.
func writeSubmitted(t *testing.T, outDir string, j manifest.Job, id string, at time.Time) {
	t.Helper()
	sums, err := hashInputs(JobList{j})
	if err != nil {
		t.Fatal(err)
	}
	files, err := resolveInputs(outDir, &j, sums, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := requestKey(j, files)
	if err != nil {
		t.Fatal(err)
	}
	line, _ := json.Marshal(entry{ID: j.ID, Key: key, Status: submitted, GenerationID: id, SubmittedAt: at, Attempts: 1, Time: at})
	appendJournal(t, outDir, string(line))
}

func appendJournal(t *testing.T, outDir, line string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(outDir, JournalFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		t.Fatal(err)
	}
}

// TestJournalGenerationIDs skips, with a warning naming it, a journal
// line whose generation id could not safely go into a URL: the id is never
// polled, and the job, whose line is lost, is submitted again.
func TestJournalGenerationIDs(t *testing.T) {
	for name, line := range map[string]string{
		"path":        `{"id":"up","key":"k","status":"submitted","generation_id":"../../v1/user/balance","submitted_at":"2026-11-01T00:00:00Z"}`,
		"space":       `{"id":"up","key":"k","status":"submitted","generation_id":"a b","submitted_at":"2026-11-01T00:00:00Z"}`,
		"too long":    `{"id":"up","key":"k","status":"submitted","generation_id":"` + strings.Repeat("a", 129) + `","submitted_at":"2026-11-01T00:00:00Z"}`,
		"on a result": `{"id":"up","key":"k","status":"succeeded","generation_id":"x/y"}`,
		"no id":       `{"id":"up","key":"k","status":"submitted","submitted_at":"2026-11-01T00:00:00Z"}`,
		"no time":     `{"id":"up","key":"k","status":"submitted","generation_id":"abc"}`,
	} {
		t.Run(name, func(t *testing.T) {
			in := inputPNG(t)
			cfg := fastConfig(t)
			cfg.PollInterval, cfg.FastPolls = time.Millisecond, true
			os.MkdirAll(cfg.OutDir, 0o755)
			appendJournal(t, cfg.OutDir, line)
			appendJournal(t, cfg.OutDir, `{"id":"other","key":"k","status":"failed"}`) // not the last line: not torn
			jobs := []manifest.Job{creative(in)}
			var polled []string
			gen := &fakeGen{
				submit: func(context.Context, string, []stability.Field) (string, error) { return "gen-new", nil },
				result: func(_ context.Context, id string, sink stability.Sink) ([]stability.Artifact, bool, error) {
					polled = append(polled, id)
					return finished(sink, 1)
				},
			}
			var w warnings
			cfg.Warn = w.warn
			if rem, err := Remaining(cfg.OutDir, JobList(jobs), []cost.Credits{creativePrice}); err != nil || rem != creativePrice {
				t.Errorf("Remaining = %v, %v; want 60.0: the job runs again", rem, err)
			}
			res, err := runJobs(t.Context(), cfg, gen, jobs, []cost.Credits{creativePrice})
			if err != nil || res.Jobs[0].Status != Succeeded {
				t.Fatalf("Run = %v, up %s; want it to go on past the line", err, res.Jobs[0].Status)
			}
			if !slices.Equal(polled, []string{"gen-new"}) {
				t.Errorf("polled %q, want the new generation only", polled)
			}
			if want := JournalFile + ":1: damaged line skipped: job up:"; !strings.Contains(w.text(), want) {
				t.Errorf("warnings = %q, want one containing %q", w.text(), want)
			}
		})
	}
}

// TestSubmitBadID gets an id unfit for a URL from Submit: the job fails
// as a broken answer, possibly billed, and is never polled.
func TestSubmitBadID(t *testing.T) {
	in := inputPNG(t)
	cfg := fastConfig(t)
	gen := &fakeGen{
		submit: func(context.Context, string, []stability.Field) (string, error) { return "../../v1/user/balance", nil },
		result: noResult(t),
	}
	res, err := runJobs(t.Context(), cfg, gen, []manifest.Job{creative(in)}, []cost.Credits{creativePrice})
	if err != nil {
		t.Fatal(err)
	}
	if up := res.Jobs[0]; up.Status != Failed || up.Failure != FailAnswer || up.Unknown != creativePrice || up.GenerationID != "" {
		t.Errorf("up = %+v, want failed answer, possibly billed, no generation id", up)
	}
	for _, e := range journalEntries(t, cfg.OutDir) {
		if e.Status == submitted {
			t.Errorf("journaled %+v", e)
		}
	}
}

// TestPollErrors checks each class of failed poll: transient ones are
// polled again, a refused key stops the run and leaves the generation for
// a rerun, a refusal ends the job for good.
func TestPollErrors(t *testing.T) {
	tests := []struct {
		name    string
		errs    []error // per poll; after the list: done
		status  Status
		failure Failure
		polls   int
		fatal   error
		rerun   bool // the journal leaves the generation to poll
	}{
		{"500 then done", []error{apiErr(500, "server_error", "")}, Succeeded, "", 2, nil, false},
		{"dropped then done", []error{&stability.TransportError{Sent: true, Err: errors.New("EOF")}}, Succeeded, "", 2, nil, false},
		{"429 then done", []error{apiErr(429, "rate_limit_exceeded", "")}, Succeeded, "", 2, nil, false},
		{"500 until giving up", []error{apiErr(500, "", ""), apiErr(500, "", ""), apiErr(500, "", ""), apiErr(500, "", ""), apiErr(500, "", "")}, Failed, FailServer, 5, nil, true},
		{"401", []error{apiErr(401, "unauthorized", "bad key")}, Failed, FailUnauthorized, 1, ErrUnauthorized, true},
		{"moderated", []error{apiErr(403, "content_moderation", "flagged")}, Failed, FailModerated, 1, nil, false},
		{"malformed", []error{stability.ErrMalformedResponse}, Failed, FailAnswer, 1, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				in := inputPNG(t)
				cfg := fastConfig(t)
				cfg.Lockout = 30 * time.Second
				jobs := []manifest.Job{creative(in), pipeJob("cut", "edit/remove-background", from("image", "up"))}
				ps := []cost.Credits{creativePrice, 5 * cost.Credit}
				var polls []time.Time
				gen := &fakeGen{
					fn:     succeed,
					submit: func(context.Context, string, []stability.Field) (string, error) { return "gen-4", nil },
					result: func(_ context.Context, _ string, sink stability.Sink) ([]stability.Artifact, bool, error) {
						polls = append(polls, time.Now())
						if n := len(polls); n <= len(tt.errs) {
							return nil, false, tt.errs[n-1]
						}
						return finished(sink, 1)
					},
				}
				res, err := runJobs(t.Context(), cfg, gen, jobs, ps)
				if !errors.Is(err, tt.fatal) || (tt.fatal == nil) != (err == nil) {
					t.Fatalf("Run error = %v, want %v", err, tt.fatal)
				}
				up, cut := res.Jobs[0], res.Jobs[1]
				wantCredits, wantUnknown := creativePrice, cost.Credits(0)
				if tt.status != Succeeded {
					wantCredits, wantUnknown = 0, creativePrice
				}
				if up.Status != tt.status || up.Failure != tt.failure || up.Credits != wantCredits || up.Unknown != wantUnknown || up.Attempts != 1 || len(polls) != tt.polls {
					t.Errorf("up = %s %q, credits %v, unknown %v, %d attempts, %d polls; want %s %q, %v, %v, 1, %d (%s)",
						up.Status, up.Failure, up.Credits, up.Unknown, up.Attempts, len(polls), tt.status, tt.failure, wantCredits, wantUnknown, tt.polls, up.Error)
				}
				checkSpacing(t, polls, MinPollInterval)
				if tt.status != Succeeded && (cut.Status != Skipped || cut.Failure != FailSource && tt.fatal == nil) {
					t.Errorf("cut = %s %q, want skipped", cut.Status, cut.Failure)
				}
				rem, err := Remaining(cfg.OutDir, JobList(jobs[:1]), ps[:1])
				if want := tt.status != Succeeded && !tt.rerun; err != nil || (rem != 0) != want {
					t.Errorf("Remaining = %v, %v; want the job to run again: %v", rem, err, want)
				}
				if tt.rerun && !strings.Contains(up.Error, "a rerun polls generation gen-4 again") {
					t.Errorf("up's error = %q, want it to say a rerun polls again", up.Error)
				}
			})
		})
	}
}
