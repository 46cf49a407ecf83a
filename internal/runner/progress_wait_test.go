package runner

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/stability"
)

func TestWaitingText(t *testing.T) {
	at := time.Date(2026, 11, 25, 19, 42, 10, 0, time.UTC)
	tests := []struct {
		s    Snapshot
		want string
	}{
		{Snapshot{Waiting: 2, NextPoll: at}, "2 waiting on the server, next poll 19:42:10"},
		{Snapshot{Waiting: 1}, "1 waiting on the server"},
	}
	for _, tt := range tests {
		if got := waitingText(tt.s); got != tt.want {
			t.Errorf("waitingText(%+v) = %q, want %q", tt.s, got, tt.want)
		}
	}
}

// TestLineProgressShowsWaiting: CI's plain lines print one when jobs start
// waiting on the server, with the next poll, though no other line is due.
func TestLineProgressShowsWaiting(t *testing.T) {
	at := time.Date(2026, 11, 25, 19, 42, 10, 0, time.UTC)
	snaps := []Snapshot{
		{Total: 100, Done: 1, Elapsed: time.Second},
		{Total: 100, Done: 1, Waiting: 2, NextPoll: at, Elapsed: 2 * time.Second},
		{Total: 100, Done: 1, Waiting: 2, NextPoll: at.Add(10 * time.Second), Elapsed: 3 * time.Second},
	}
	var b bytes.Buffer
	p := &LineProgress{W: &b}
	for _, s := range snaps {
		p.Update(s)
	}
	if got, want := b.String(), line(snaps[0])+"\n"+line(snaps[1])+"\n"; got != want {
		t.Errorf("lines:\n%s\nwant:\n%s", got, want)
	}
	if l := line(snaps[1]); !strings.Contains(l, "  2 waiting on the server, next poll 19:42:10") {
		t.Errorf("line = %q, want it to say when the next poll leaves", l)
	}
}

// TestProgressShowsNextPoll runs an async job polled every 10 s whose
// result is ready at the second poll: while it waits, the progress line
// says when the next poll leaves.
func TestProgressShowsNextPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := inputPNG(t)
		cfg := fastConfig(t)
		cfg.Now = func() time.Time { return time.Now().UTC() }
		rec := &recorder{}
		cfg.Progress = rec
		start := cfg.Now()
		polls := 0
		gen := &fakeGen{
			submit: func(context.Context, string, []stability.Field) (string, error) { return "gen-1", nil },
			result: func(_ context.Context, _ string, sink stability.Sink) ([]stability.Artifact, bool, error) {
				if polls++; polls < 2 {
					return nil, false, nil
				}
				return finished(sink, 1)
			},
		}
		res, err := runJobs(t.Context(), cfg, gen, []manifest.Job{creative(in)}, []cost.Credits{creativePrice})
		if err != nil || res.Jobs[0].Status != Succeeded {
			t.Fatalf("Run = %v, %s", err, res.Jobs[0].Status)
		}
		var got []string
		for _, s := range rec.got {
			if s.Waiting > 0 {
				got = append(got, waitingText(s))
			} else if !s.NextPoll.IsZero() {
				t.Errorf("snapshot %+v: a next poll with nothing waiting", s)
			}
		}
		want := []string{
			"1 waiting on the server, next poll " + start.Add(MinPollInterval).Format(time.TimeOnly),
			"1 waiting on the server, next poll " + start.Add(2*MinPollInterval).Format(time.TimeOnly),
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("waiting shown as\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}
