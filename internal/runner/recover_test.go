package runner

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/outdir"
	"github.com/batch-tool/batch/internal/stability"
)

// checkRecord checks that img, image k (from 0) of job j, carries the
// record of the request the journal ended j with.
func checkRecord(t *testing.T, outDir string, j manifest.Job, k int, img Image) {
	t.Helper()
	var key string
	for _, e := range journalEntries(t, outDir) {
		if e.ID == j.ID && e.Status != attempt {
			key = e.Key
		}
	}
	d, err := outdir.OpenDir(outDir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	format, _ := outputFormat(j)
	rec, sum, err := readRecord(d, img.Path, format)
	if err != nil {
		t.Errorf("%s: %v", img.Path, err)
		return
	}
	wantSeed, wantRequestID := &img.Seed, img.RequestID
	if format.name == "jpeg" {
		wantSeed, wantRequestID = nil, "" // written before they are known
	}
	if rec.ID != j.ID || rec.Key != key || key == "" || rec.Image != k+1 || sum != img.SHA256 || rec.RequestID != wantRequestID ||
		(rec.Seed == nil) != (wantSeed == nil) || rec.Seed != nil && *rec.Seed != *wantSeed {
		t.Errorf("%s: record %+v (file sha256 %s), want job %s, key %s, image %d, seed %v, request id %q, sha256 %s",
			img.Path, rec, sum, j.ID, key, k+1, wantSeed, wantRequestID, img.SHA256)
	}
}

// withoutRecord returns an image file's bytes without the record a JPEG
// carries after its SOI marker: what the API sent.
func withoutRecord(data []byte) []byte {
	if len(data) < 6 || !bytes.Equal(data[:4], []byte{0xFF, 0xD8, 0xFF, 0xFE}) {
		return data
	}
	n := int(binary.BigEndian.Uint16(data[4:6]))
	return append(slices.Clip(data[:2]), data[4+n:]...)
}

// warnings collects what a run's Config.Warn is told.
type warnings struct {
	mu    sync.Mutex
	lines []string
}

func (w *warnings) warn(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines = append(w.lines, s)
}

func (w *warnings) text() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}

// journalLines returns the journal's lines, without their newlines.
func journalLines(t *testing.T, outDir string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(outDir, JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

func writeJournal(t *testing.T, outDir string, lines []string) {
	t.Helper()
	data := strings.Join(lines, "\n")
	if len(lines) > 0 {
		data += "\n"
	}
	if err := os.WriteFile(filepath.Join(outDir, JournalFile), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkStanding checks that what the journal records after a run is what
// the run reported.
func checkStanding(t *testing.T, outDir string, jobs []manifest.Job, prices []cost.Credits, res Result) {
	t.Helper()
	st, err := ReadStanding(outDir, JobList(jobs), prices, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Charged != res.Charged || st.Spent() != res.Spent {
		t.Errorf("journal after the run: charged %v, spent %v; the run said %v, %v", st.Charged, st.Spent(), res.Charged, res.Spent)
	}
}

// TestDamagedJournal damages the journal of a finished run in each way a
// crash, a disk or a person can, and reruns: every damaged line is skipped
// with a warning naming it, every good line is kept, and only the job
// whose outcome was lost with nothing on disk to show for it runs again.
func TestDamagedJournal(t *testing.T) {
	badID := `{"id":"job-002","key":"k","status":"submitted","generation_id":"../../v1/user/balance","submitted_at":"2026-11-01T00:00:00Z"}`
	tests := []struct {
		name   string
		damage func(t *testing.T, outDir string, lines []string) []string
		warn   string // in the warnings; "" for none
		sent   []string
	}{
		{"garbage in the middle", func(_ *testing.T, _ string, l []string) []string {
			l[2] = `{"id":"job-001","key": not json`
			return l
		}, JournalFile + ":3: damaged line skipped: not a journal entry", nil},
		{"a job's outcome lost, and its image", func(t *testing.T, out string, l []string) []string {
			os.Remove(filepath.Join(out, ImagesDir, "job-001.png"))
			l[3] = "#####"
			return l
		}, JournalFile + ":4: damaged line skipped", []string{"a cat number 1"}},
		{"an unsafe generation id", func(_ *testing.T, _ string, l []string) []string {
			return slices.Insert(l, 4, badID)
		}, JournalFile + ":5: damaged line skipped: job job-002: generation id \"../../v1/user/balance\"", nil},
		{"an unknown status", func(_ *testing.T, _ string, l []string) []string {
			return slices.Insert(l, 1, `{"id":"job-000","key":"k","status":"paid"}`)
		}, JournalFile + ":2: damaged line skipped: job \"job-000\": status \"paid\"", nil},
		{"no job id", func(_ *testing.T, _ string, l []string) []string {
			return slices.Insert(l, 0, `{"key":"k","status":"failed"}`)
		}, JournalFile + ":1: damaged line skipped: no job id", nil},
		{"a torn last line", func(_ *testing.T, _ string, l []string) []string {
			return append(l, `{"id":"job-003","key":"TORN`) // writeJournal ends it with a newline: cut below
		}, JournalFile + ":9: incomplete last line cut off", nil},
		{"a last line without its newline", func(_ *testing.T, _ string, l []string) []string {
			return l // written without its newline below
		}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jobs, prices := testJobs(4)
			cfg := fastConfig(t)
			cfg.Concurrency = 1 // journal lines in manifest order: attempt, outcome, attempt, ...
			first, err := runJobs(t.Context(), cfg, &requestLog{}, jobs, prices)
			if err != nil {
				t.Fatal(err)
			}
			lines := tt.damage(t, cfg.OutDir, journalLines(t, cfg.OutDir))
			writeJournal(t, cfg.OutDir, lines)
			path := filepath.Join(cfg.OutDir, JournalFile)
			data, _ := os.ReadFile(path)
			switch tt.name {
			case "a torn last line", "a last line without its newline":
				os.WriteFile(path, data[:len(data)-1], 0o644)
			}

			var w warnings
			cfg.Warn = w.warn
			if rem, err := Remaining(cfg.OutDir, JobList(jobs), prices); err != nil || rem != cost.Credits(len(tt.sent))*cost.Credit {
				t.Errorf("Remaining = %v, %v; want %d.0", rem, err, len(tt.sent))
			}
			gen := &requestLog{}
			second, err := runJobs(t.Context(), cfg, gen, jobs, prices)
			if err != nil {
				t.Fatalf("rerun = %v, want it to go on past the damage", err)
			}
			if got := gen.sent(); !slices.Equal(got, tt.sent) {
				t.Errorf("rerun sent %q, want %q", got, tt.sent)
			}
			warned := w.text()
			if tt.warn == "" && warned != "" || tt.warn != "" && !strings.Contains(warned, cfg.OutDir+string(filepath.Separator)+tt.warn) {
				t.Errorf("warnings:\n%s\nwant one containing %q", warned, tt.warn)
			}
			for i, r := range second.Jobs {
				if r.Status != Succeeded || r.Resumed == slices.Contains(tt.sent, jobs[i].Prompts[0].Text) {
					t.Errorf("Jobs[%d] = %s, resumed %v (%s)", i, r.Status, r.Resumed, r.Error)
				}
			}
			if want := first.Spent + cost.Credits(len(tt.sent))*cost.Credit; second.Spent != want {
				t.Errorf("Spent = %v, want %v: the first run's and the jobs sent again", second.Spent, want)
			}
			// every line but the damaged ones is there, and what the rerun
			// appended starts on a line of its own
			after := journalLines(t, cfg.OutDir)
			for _, l := range lines {
				if !slices.Contains(after, l) && !strings.Contains(l, "TORN") {
					t.Errorf("line %q is gone from the journal", l)
				}
			}
			for _, l := range after {
				if strings.Contains(l, "TORN") {
					t.Errorf("the torn line %q is still there", l)
				}
			}
			if !bytes.HasSuffix(mustRead(t, path), []byte("}\n")) {
				t.Errorf("journal does not end with a complete line")
			}
			checkStanding(t, cfg.OutDir, jobs, prices, second.Result)
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestRebuildFromImages loses the journal of a finished run in four ways
// and reruns: every job whose images are on disk (PNG, JPEG, WebP,
// filtered, several samples, one taking another's image) is recognised by
// the record in or beside its images, nothing is sent, and the journal is
// rebuilt with what the lost lines had charged.
func TestRebuildFromImages(t *testing.T) {
	tests := []struct {
		name string
		lose func(t *testing.T, path string, lines []string)
	}{
		{"deleted", func(t *testing.T, path string, _ []string) { os.Remove(path) }},
		{"emptied", func(t *testing.T, path string, _ []string) { os.WriteFile(path, nil, 0o644) }},
		{"cut after four lines", func(t *testing.T, path string, l []string) {
			os.WriteFile(path, []byte(strings.Join(l[:4], "\n")+"\n"), 0o644)
		}},
		{"cut in the middle of a line", func(t *testing.T, path string, l []string) {
			os.WriteFile(path, []byte(strings.Join(l[:7], "\n")+"\n"+l[7][:20]), 0o644)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v1, _ := testJobs(2)
			v1[0].Samples = 2
			jobs := []manifest.Job{
				v1[0], // two PNGs
				v1[1], // filtered
				stableJob("core", "generate/core", 1536, 1536),
				stableJob("ultra", "generate/ultra", 1344, 768, "aspect_ratio", "16:9", "output_format", "jpeg"),
				stableJob("flash", "generate/sd3", 1024, 1024, "model", "sd3.5-flash", "output_format", "webp"),
				pipeJob("cut", "edit/remove-background", from("image", "core")),
			}
			prices := []cost.Credits{2 * cost.Credit, cost.Credit, 3 * cost.Credit, 8 * cost.Credit, 2_500_000, 2 * cost.Credit}
			var calls atomic.Int32
			gen := &fakeGen{fn: func(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
				calls.Add(1)
				if promptOf(req) == "a cat number 1" {
					return generate(req, sink, stability.FinishContentFiltered)
				}
				return succeed(ctx, req, sink)
			}}
			cfg := fastConfig(t)
			cfg.Concurrency = 1
			first, err := runJobs(t.Context(), cfg, gen, jobs, prices)
			if err != nil || calls.Load() != 6 {
				t.Fatalf("first run: %v after %d requests", err, calls.Load())
			}
			lines := journalLines(t, cfg.OutDir)
			path := filepath.Join(cfg.OutDir, JournalFile)
			tt.lose(t, path, lines)
			kept := 0
			if data, err := os.ReadFile(path); err == nil {
				for l := range strings.Lines(string(data)) {
					if e, err := decodeEntry([]byte(l)); err == nil && e.Status != attempt {
						kept++
					}
				}
			}

			if st, err := ReadStanding(cfg.OutDir, JobList(jobs), prices, nil); err != nil || st.Remaining != 0 || st.Spent() != first.Spent {
				t.Errorf("ReadStanding = %+v, %v; want nothing remaining and %v spent", st, err, first.Spent)
			}
			calls.Store(0)
			var w warnings
			cfg.Warn = w.warn
			second, err := runJobs(t.Context(), cfg, gen, jobs, prices)
			if err != nil {
				t.Fatal(err)
			}
			if n := calls.Load(); n != 0 {
				t.Errorf("rerun sent %d requests, want none: every image is on disk", n)
			}
			if want := "journal rebuilt " + strconv.Itoa(len(jobs)-kept) + " entries from images on disk"; !strings.Contains(w.text(), want) {
				t.Errorf("warnings:\n%s\nwant %q", w.text(), want)
			}
			for i, r := range second.Jobs {
				f := first.Jobs[i]
				if !r.Resumed || r.Status != f.Status || r.Credits != f.Credits || r.Params != f.Params && jobs[i].ID != "ultra" || len(r.Images) != len(f.Images) {
					t.Errorf("Jobs[%d] = %+v\nwant resumed %+v", i, r, f)
					continue
				}
				for k, img := range r.Images {
					want := f.Images[k]
					if jobs[i].ID == "ultra" {
						// a JPEG's record is written before the seed and
						// request id are known
						want.Seed, want.RequestID = 0, ""
					}
					if img != want {
						t.Errorf("Jobs[%d].Images[%d] = %+v, want %+v", i, k, img, want)
					}
				}
			}
			if second.Charged != first.Charged || second.Spent != first.Spent {
				t.Errorf("Charged, Spent = %v, %v; want %v, %v (the lost lines' credits)", second.Charged, second.Spent, first.Charged, first.Spent)
			}
			checkStanding(t, cfg.OutDir, jobs, prices, second.Result)

			// the journal is whole again: a third run finds everything in it
			w = warnings{}
			cfg.Warn = w.warn
			third, err := runJobs(t.Context(), cfg, gen, jobs, prices)
			if err != nil || calls.Load() != 0 || w.text() != "" || third.Charged != first.Charged {
				t.Errorf("third run: %v, %d requests, charged %v, warnings %q", err, calls.Load(), third.Charged, w.text())
			}
		})
	}
}
