package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/stability"
)

// lineOf is e as append writes it, without its newline.
func lineOf(t *testing.T, e entry) string {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lastLines decodes data line by line, independently of parseJournal,
// and returns each job's last valid line that is not an attempt.
func lastLines(data string) map[string]entry {
	last := map[string]entry{}
	for line := range strings.Lines(data) {
		e, err := decodeEntry([]byte(strings.TrimSuffix(line, "\n")))
		if err == nil && e.Status != attempt && e.Status != runStart {
			last[e.ID] = e
		}
	}
	return last
}

// TestParseJournalRereads: the journal is read as a stream, lines longer
// than the read buffer included, and every job's last line that is not
// an attempt, read again by where it is, is the line the file holds.
func TestParseJournalRereads(t *testing.T) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	img := func(id string) []Image {
		return []Image{{Path: "images/" + id + ".png", Seed: 7, FinishReason: stability.FinishSuccess, SHA256: strings.Repeat("ab", 32)}}
	}
	done := func(id, params string) entry {
		return entry{ID: id, Key: strings.Repeat("0f", 32), Status: Succeeded, Credits: 900, Attempts: 1, Images: img(id), Params: params, Time: at}
	}
	long := strings.Repeat("a studio photo, ", 20_000) // 320 KB: several reads of the buffer
	tries := entry{ID: "c", Key: "k-c", Status: attempt, Price: 900, Attempts: 1, Time: at}
	sub := entry{ID: "c", Key: "k-c", Status: submitted, GenerationID: "gen-1", SubmittedAt: at, Price: 900, Attempts: 1, Time: at}
	run := entry{Status: runStart, Origin: &Origin{Manifest: "/work/cats.yaml"}, Time: at}
	lines := func(es ...string) string { return strings.Join(es, "\n") + "\n" }
	a, b, c := lineOf(t, done("a", "short")), lineOf(t, done("b", long)), lineOf(t, sub)
	tests := []struct {
		name     string
		data     string
		warnings int
		keep     int // -1: all of data
		newline  bool
	}{
		{"long lines", lines(lineOf(t, run), a, b, lineOf(t, tries), c, lineOf(t, done("a", long+long))), 0, -1, false},
		{"last line without its newline", lines(a, b) + c, 0, -1, true},
		{"torn last line", lines(a, b) + c[:len(c)/2], 1, len(a) + len(b) + 2, false},
		{"damaged lines", lines(a, "{not json", b, `{"id":"x","status":"done"}`, c), 2, -1, false},
		{"long damaged line", lines(a, strings.Repeat("x", 200_000), c), 1, -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := parseText(t, tt.data)
			keep := int64(tt.keep)
			if tt.keep < 0 {
				keep = int64(len(tt.data))
			}
			if len(l.warnings) != tt.warnings || l.keep != keep || l.newline != tt.newline {
				t.Errorf("warnings %q, keep %d, newline %v; want %d warning(s), %d, %v", l.warnings, l.keep, l.newline, tt.warnings, keep, tt.newline)
			}
			want := lastLines(tt.data[:keep])
			if len(l.jobs) != len(want) {
				t.Errorf("%d jobs, want %d", len(l.jobs), len(want))
			}
			for id, w := range want {
				got, err := l.last(id)
				if err != nil {
					t.Fatalf("last(%s): %v", id, err)
				}
				if !reflect.DeepEqual(got, w) {
					t.Errorf("last(%s) = %+.200v, want %+.200v", id, got, w)
				}
				if j, _ := l.job(id); !j.resumes(sumKey(w.Key)) && !j.pending(sumKey(w.Key)) || j.resumes(sumKey("other")) {
					t.Errorf("job %s: resumes/pending do not follow its line (status %s)", id, w.Status)
				}
			}
		})
	}
}

// TestJournalScanLimit: scan tells each line's place and length, and
// leaves out the bytes of a line over the limit.
func TestJournalScanLimit(t *testing.T) {
	type line struct {
		no     int
		off, n int64
		text   string
		cut    bool // text is nil
		torn   bool
	}
	long := strings.Repeat("y", 150_000)
	tests := []struct {
		name  string
		data  string
		limit int64
		want  []line
	}{
		{"under and over the limit", "aaaa\n" + strings.Repeat("b", 20) + "\ncc", 8,
			[]line{{1, 0, 4, "aaaa", false, false}, {2, 5, 20, "", true, false}, {3, 26, 2, "cc", false, true}}},
		{"longer than the read buffer", "z\n" + long + "\n\n", maxLine,
			[]line{{1, 0, 1, "z", false, false}, {2, 2, 150_000, long, false, false}, {3, 150_003, 0, "", false, false}}},
		{"over the limit across reads", long + "\nok\n", 100_000,
			[]line{{1, 0, 150_000, "", true, false}, {2, 150_001, 2, "ok", false, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := journalSource{path: JournalFile, r: strings.NewReader(tt.data), size: int64(len(tt.data))}
			var got []line
			err := src.scan(tt.limit, func(no int, off, n int64, text []byte, torn bool) {
				got = append(got, line{no, off, n, string(text), text == nil, torn})
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("lines %.300v, want %.300v", got, tt.want)
			}
		})
	}
}

// TestJournalAppendAtPlaces: appendAt tells where each line went, group
// commits included, after mend added a lost newline.
func TestJournalAppendAtPlaces(t *testing.T) {
	const workers, each = 8, 20
	out, first, j, l := mendedJournal(t)
	refs := make([][]lineRef, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				e, _ := jobLine(fmt.Sprintf("w%d-%02d", w, i))
				at, err := j.appendAt(e)
				if err != nil {
					t.Error(err)
				}
				refs[w] = append(refs[w], at)
			}
		})
	}
	wg.Wait()
	data, err := os.ReadFile(filepath.Join(out, JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	all := slices.Concat(refs...)
	slices.SortFunc(all, func(a, b lineRef) int { return int(a.off - b.off) })
	next := int64(len(first)) // the lines follow one another from the mended first line
	for _, at := range all {
		if at.off != next || data[at.off+int64(at.n)] != '\n' {
			t.Fatalf("line at %d (%d bytes), want one at %d ending in a newline", at.off, at.n, next)
		}
		next = at.off + int64(at.n) + 1
	}
	if next != int64(len(data)) {
		t.Errorf("the lines end at %d, the file at %d", next, len(data))
	}
	for w := range workers {
		for i, at := range refs[w] {
			if e, err := l.line(at); err != nil || e.ID != fmt.Sprintf("w%d-%02d", w, i) {
				t.Errorf("line at %d = %q, %v; want job w%d-%02d", at.off, e.ID, err, w, i)
			}
		}
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
}

// TestWriteAppends: lines recovery added are read from memory until
// written, then from the journal where they went.
func TestWriteAppends(t *testing.T) {
	out := t.TempDir()
	a, first := jobLine("a")
	if err := os.WriteFile(filepath.Join(out, JournalFile), []byte(first), 0o644); err != nil {
		t.Fatal(err)
	}
	j, src, err := openJournal(out)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	l, err := parseJournal(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.mend(l.keep, l.newline); err != nil {
		t.Fatal(err)
	}
	b := entry{ID: "b", Key: "k-b", Status: Succeeded, Credits: 900, Attempts: 1, Rebuilt: true,
		Images: []Image{{Path: "images/b.png", FinishReason: stability.FinishSuccess}}}
	settled := entry{ID: "a", Key: "k-a2", Status: Failed, Failure: FailUnknown, Unknown: 900, Attempts: 1, Error: "in flight"}
	aAt := l.jobs[sumID("a")].at
	l.addUnwritten(b)
	l.addUnwritten(settled)
	rec := &recovery{log: l, saved: map[idSum]lineRef{sumID("a"): aAt, sumID("x"): unwrittenRef(0)}}
	check := func(when string) {
		t.Helper()
		for _, c := range []struct {
			id   string
			want entry
		}{{"a", a}, {"b", b}} {
			if got, err := rec.entry(c.id); err != nil || !reflect.DeepEqual(got, c.want) {
				t.Errorf("%s: entry(%s) = %+v, %v; want %+v", when, c.id, got, err, c.want)
			}
		}
		if got, err := l.last("a"); err != nil || !reflect.DeepEqual(got, settled) {
			t.Errorf("%s: last(a) = %+v, %v; want the settled line", when, got, err)
		}
		if got, err := l.line(rec.saved[sumID("x")]); err != nil || !reflect.DeepEqual(got, b) {
			t.Errorf("%s: a saved place of an unwritten line reads %+v, %v; want b's line", when, got, err)
		}
	}
	check("before writing")
	if err := rec.writeAppends(j); err != nil {
		t.Fatal(err)
	}
	if l.unwritten != nil || l.jobs[sumID("b")].at.off < int64(len(first)) || rec.saved[sumID("x")].off < 0 {
		t.Errorf("after writing, lines are still read from memory: unwritten %v, b at %+v, saved %+v", l.unwritten, l.jobs[sumID("b")].at, rec.saved)
	}
	check("after writing")
}

// failingReader fails every read.
type failingReader struct{ err error }

func (r failingReader) ReadAt([]byte, int64) (int, error) { return 0, r.err }

// TestJournalLineUnreadable: a line that cannot be read again is an
// error, never a job without images.
func TestJournalLineUnreadable(t *testing.T) {
	_, line := jobLine("a")
	l := parseText(t, line)
	l.src.r = failingReader{syscall.EIO}
	if e, err := l.last("a"); !errors.Is(err, syscall.EIO) {
		t.Errorf("last(a) = %+v, %v; want EIO", e, err)
	}
	src := journalSource{path: JournalFile, r: failingReader{syscall.EIO}, size: int64(len(line))}
	if _, err := parseJournal(src); !errors.Is(err, syscall.EIO) {
		t.Errorf("parseJournal of an unreadable file = %v, want EIO", err)
	}
}

// TestJournalHeldOther: what the folder holds of a job answers the request
// of the last line that named images since its last replaced line, even
// when later lines of the job, without images, have another Key.
func TestJournalHeldOther(t *testing.T) {
	keyA, keyB := strings.Repeat("a1", 32), strings.Repeat("b2", 32)
	line := func(status Status, key string, images bool) string {
		e := entry{ID: "j", Key: key, Status: status, Attempts: 1}
		if images {
			e.Images = []Image{{Path: "images/j.png", FinishReason: stability.FinishSuccess}}
		}
		return lineOf(t, e) + "\n"
	}
	tests := []struct {
		name  string
		data  string
		other map[string]bool // key → heldOther
	}{
		{"succeeded", line(Succeeded, keyA, true), map[string]bool{keyA: false, keyB: true}},
		{"then failed for another request", line(Succeeded, keyA, true) + line(Failed, keyB, false),
			map[string]bool{keyA: false, keyB: true}},
		{"then replaced", line(Succeeded, keyA, true) + line(Failed, keyB, false) + line(replaced, keyA, false),
			map[string]bool{keyA: false, keyB: false}},
		{"then succeeded for the other", line(Succeeded, keyA, true) + line(Failed, keyB, false) + line(Succeeded, keyB, true),
			map[string]bool{keyA: true, keyB: false}},
		{"failed without images", line(Failed, keyA, false), map[string]bool{keyA: false, keyB: false}},
		{"keys that are not hex", line(Succeeded, "k-1", true) + line(Skipped, "k-2", false),
			map[string]bool{"k-1": false, "k-2": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := parseText(t, tt.data)
			for key, want := range tt.other {
				if got := l.heldOther("j", key, nil); got != want {
					t.Errorf("heldOther(j, %.8s…) = %v, want %v", key, got, want)
				}
			}
		})
	}
}

// TestResumedAcrossInFlight: a finished job whose later request (another
// Key, since changed back) was in flight when its run stopped is resumed
// from its finished line, not from the line settling that request, and
// the request counts as possibly billed.
func TestResumedAcrossInFlight(t *testing.T) {
	jobs, prices := testJobs(2)
	cfg := fastConfig(t)
	gen := &requestLog{}
	first, err := runJobs(t.Context(), cfg, gen, jobs, prices)
	if err != nil {
		t.Fatal(err)
	}
	other := entry{ID: jobs[0].ID, Key: strings.Repeat("0", 64), Status: attempt, Price: cost.Credit, Attempts: 1}
	appendJournal(t, cfg.OutDir, lineOf(t, other))
	second, err := runJobs(t.Context(), cfg, gen, jobs, prices)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(gen.sent()); n != 2 {
		t.Errorf("%d requests in all, want the first run's 2", n)
	}
	for i, r := range second.Jobs {
		f := first.Jobs[i]
		if !r.Resumed || r.Status != f.Status || !reflect.DeepEqual(r.Images, f.Images) {
			t.Errorf("Jobs[%d] = %+v\nwant resumed %+v", i, r, f)
		}
	}
	if second.PriorCharged != first.Charged || second.PriorPossiblyBilled != first.Spent-first.Charged+cost.Credit {
		t.Errorf("prior charged %v, possibly billed %v; want %v and the request in flight besides", second.PriorCharged, second.PriorPossiblyBilled, first.Charged)
	}
}

// TestRebuildSuperseded: images on disk answering a finished line that a
// later line of the job replaced were charged by that line: the entry
// rebuilt from them charges nothing more.
func TestRebuildSuperseded(t *testing.T) {
	jobs, prices := testJobs(2)
	cfg := fastConfig(t)
	gen := &requestLog{}
	first, err := runJobs(t.Context(), cfg, gen, jobs, prices)
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := requestKey(jobs[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	appendJournal(t, cfg.OutDir, lineOf(t, entry{ID: jobs[0].ID, Key: key, Status: Skipped, Error: "stopped"}))
	var w warnings
	cfg.Warn = w.warn
	second, err := runJobs(t.Context(), cfg, gen, jobs, prices)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(gen.sent()); n != 2 || !strings.Contains(w.text(), "journal rebuilt 1 entries") {
		t.Errorf("%d requests in all, warnings %q; want the first run's 2, one entry rebuilt", n, w.text())
	}
	if r := second.Jobs[0]; !r.Resumed || r.Status != Succeeded || r.Credits != 0 {
		t.Errorf("Jobs[0] = %+v, want resumed, rebuilt charging nothing", r)
	}
	if second.Charged != first.Charged {
		t.Errorf("charged %v, want the first run's %v: the rebuilt images were paid for once", second.Charged, first.Charged)
	}
}
