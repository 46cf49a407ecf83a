package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/stability"
)

// builtJobs is Jobs that builds each job anew on every call, as a
// manifest expanded on demand does, and counts the calls.
type builtJobs struct {
	list  []manifest.Job
	calls atomic.Int64
}

func (b *builtJobs) Len() int { return len(b.list) }

func (b *builtJobs) Job(i int) manifest.Job {
	b.calls.Add(1)
	j := b.list[i]
	j.Prompts = append([]manifest.Prompt(nil), j.Prompts...)
	return j
}

// TestRunBuiltJobs runs jobs that are built on every call: every job is
// told once to Finished, in manifest order by index, and Run asks for each
// job a bounded number of times, whatever their number.
func TestRunBuiltJobs(t *testing.T) {
	list, prices := testJobs(40)
	jobs := &builtJobs{list: list}
	got := make([]string, len(list))
	cfg := fastConfig(t)
	cfg.Finished = func(i int, res JobResult) error {
		if got[i] != "" {
			return fmt.Errorf("job %d told twice", i)
		}
		got[i] = res.ID + " " + string(res.Status)
		return nil
	}
	res, err := Run(t.Context(), cfg, &fakeGen{fn: succeed}, jobs, prices)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reported != len(list) {
		t.Errorf("Reported = %d, want %d", res.Reported, len(list))
	}
	for i, j := range list {
		if want := j.ID + " succeeded"; got[i] != want {
			t.Errorf("job %d: told %q, want %q", i, got[i], want)
		}
	}
	// the passes before sending (ids and checks, the free room, the
	// journal) and the job's start
	if calls, most := jobs.calls.Load(), int64(5*len(list)); calls > most {
		t.Errorf("Run built jobs %d times, want at most %d (5 a job)", calls, most)
	}
}

// TestRunFinishedError stops a run whose Finished fails, as a file that
// cannot be written does: no request starts after it, every job is still
// told, and Run returns the error.
func TestRunFinishedError(t *testing.T) {
	jobs, prices := testJobs(20)
	full := errors.New("disk full")
	var sent atomic.Int32
	gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
		sent.Add(1)
		return succeed(ctx, req, sink)
	}}
	cfg := fastConfig(t)
	cfg.Concurrency = 1
	cfg.Finished = func(i int, res JobResult) error {
		if res.Status == Succeeded {
			return full
		}
		return nil
	}
	res, err := runJobs(t.Context(), cfg, gen, jobs, prices)
	if !errors.Is(err, full) || !strings.Contains(err.Error(), "result not recorded") {
		t.Fatalf("error %v, want the Finished error", err)
	}
	if n := sent.Load(); n > 2 {
		t.Errorf("%d requests sent, want the run to stop after the first result (at most one more in flight)", n)
	}
	skipped := 0
	for _, j := range res.Jobs {
		if j.Status == Skipped {
			skipped++
		}
	}
	if skipped < len(jobs)-2 {
		t.Errorf("%d jobs skipped, want every job not started", skipped)
	}
}

// TestIDIndex checks lookups by id and the refusal of an id used twice.
func TestIDIndex(t *testing.T) {
	jobs := JobList{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	x, err := newIDIndex(jobs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, j := range jobs {
		if got, ok := x.find(j.ID); !ok || got != i {
			t.Errorf("find(%q) = %d, %v; want %d, true", j.ID, got, ok, i)
		}
	}
	if got, ok := x.find("d"); ok {
		t.Errorf("find(d) = %d, want none", got)
	}
	if _, err := newIDIndex(JobList{{ID: "a"}, {ID: "b"}, {ID: "a"}}, nil); err == nil || !strings.Contains(err.Error(), `"a" is used twice`) {
		t.Errorf("duplicate ids: error %v, want a refusal naming a", err)
	}
}
