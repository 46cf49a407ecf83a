package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/sandbox"
)

// fast is the sandbox of most tests: no rate limit (the runs pass --rate
// 1000/1s), the key checked, a short latency so that runs overlap.
func fast(latency time.Duration) sandbox.Config {
	return sandbox.Config{Key: testKey, RateLimit: -1, Latency: sandbox.Latency{Min: latency, Max: latency}, Seed: 1}
}

// credits is n generate/core results' price.
func credits(n int) cost.Credits { return cost.Credits(n) * corePrice }

// TestConcurrentRunsOnOneOut: a second run on an output folder a run is
// using is refused at once, sends nothing and says who holds the folder;
// the first run finishes with nothing paid twice. Each run has its own key,
// so the server tells their requests apart.
func TestConcurrentRunsOnOneOut(t *testing.T) {
	t.Parallel()
	const keyA, keyB = testKey, "sk-OtherRunUv4WqZxYbNmKjHgTrEdCs"
	const n = 20
	for _, tc := range []struct {
		name     string
		together bool // start both at once, not B once A is sending
		otherJob bool // B runs a different manifest
	}{
		{name: "same manifest, second started while the first sends"},
		{name: "different manifests, second started while the first sends", otherJob: true},
		{name: "same manifest, both started at once", together: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := fast(30 * time.Millisecond)
			cfg.Key = "" // any token: each run has its own
			srv := startServer(t, cfg, corePrice, fault{})
			w := newWorld(t, srv)
			mA := writeManifest(t, w.dir, "a.yaml", jobs(n, "chaos picture"))
			mB := mA
			if tc.otherJob {
				mB = writeManifest(t, w.dir, "b.yaml", jobs(n, "other picture"))
			}
			a := w.startKey(keyA, w.runArgs(mA, "--concurrency", "2")...)
			if !tc.together {
				waitFor(t, a, "the first run's first generation request", func() bool { return srv.snapshot().gens > 0 })
			}
			b := w.startKey(keyB, w.runArgs(mB, "--concurrency", "2")...)

			if tc.together {
				codeA, codeB := a.wait(t), b.wait(t)
				if (codeA == 0) == (codeB == 0) {
					t.Fatalf("two runs on one folder started together exited %d and %d: want exactly one to run\nA stderr:\n%s\nB stderr:\n%s",
						codeA, codeB, a.stderr, b.stderr)
				}
				snap := srv.snapshot()
				if snap.tokens[keyA] > 0 && snap.tokens[keyB] > 0 {
					t.Errorf("both runs sent requests (A %d, B %d): the refused one must send nothing", snap.tokens[keyA], snap.tokens[keyB])
				}
			} else {
				codeB := b.wait(t)
				aRunning := !a.exited()
				codeA := a.wait(t)
				if codeB == 0 {
					t.Errorf("the second run on a folder in use exited 0\nstderr:\n%s", b.stderr)
				}
				if !aRunning {
					t.Errorf("the second run exited only after the first had finished: it waited instead of being refused at once\nstderr:\n%s", b.stderr)
				}
				if got := srv.snapshot().tokens[keyB]; got != 0 {
					t.Errorf("the refused run sent %d requests, want none", got)
				}
				if pid := strconv.Itoa(a.cmd.Process.Pid); !strings.Contains(b.stderr.String(), pid) {
					t.Errorf("the refusal does not name the holder (pid %s):\n%s", pid, b.stderr)
				}
				if codeA != 0 {
					t.Errorf("the first run exited %d\nstderr:\n%s", codeA, a.stderr)
				}
			}
			snap := srv.idle(t)
			if got, want := snap.charged(corePrice), credits(n); got != want {
				t.Errorf("the server charged %s credits for %d jobs of %s: want %s", got, n, corePrice, want)
			}
			checkNotPaidTwice(t, snap, 1)
			rep := checkAgree(t, w.out, agree{})
			if rep != nil && rep.Totals.Succeeded != n {
				t.Errorf("report: %+v, want %d succeeded", rep.Totals, n)
			}
			w.checkNoKey(keyA, keyB)
		})
	}
}

// TestFullDisk: a disk that fills during the run stops new requests at the
// first image or journal line that cannot be saved, the summary is still
// printed, and a rerun once there is room pays again only for what was lost
// in flight; a disk too small from the start is refused before anything is
// paid.
func TestFullDisk(t *testing.T) {
	t.Parallel()
	t.Run("fills during the run", func(t *testing.T) {
		t.Parallel()
		const n, conc = 20, 2
		srv := startServer(t, fast(20*time.Millisecond), corePrice, fault{})
		w := newWorld(t, srv)
		disk := filepath.Join(w.dir, "disk")
		mountTmpfs(t, disk, "200m") // room for the pessimistic estimate of 20 Core images, so the run starts
		w.out = filepath.Join(disk, "out")
		m := writeManifest(t, w.dir, "m.yaml", jobs(n, "chaos picture"))
		args := w.runArgs(m, "--concurrency", strconv.Itoa(conc))

		p := w.start(args...)
		waitFor(t, p, "3 journal lines", func() bool { return journalLines(w.out) >= 3 })
		fill(t, filepath.Join(disk, "filler"))
		if code := p.wait(t); code != 1 {
			t.Errorf("run on a full disk exited %d, want 1\nstderr:\n%s", code, p.stderr)
		}
		first := srv.idle(t)
		if summaryOf(t, p) == nil {
			t.Errorf("no summary on stdout after the disk filled\nstderr:\n%s", p.stderr)
		}
		saved := readJournal(t, w.out).succeeded()
		lost := 0
		for _, j := range jobs(n, "chaos picture") {
			if !saved[j.id] {
				lost += first.jobs[j.prompt].charged
			}
		}
		if lost > conc {
			t.Errorf("%d images were paid for and not saved: the run kept buying after the disk filled (at most %d were in flight)", lost, conc)
		}
		checkAgree(t, w.out, agree{reportMayBeMissing: true})

		if err := os.Remove(filepath.Join(disk, "filler")); err != nil {
			t.Fatal(err)
		}
		p2 := w.run(args...)
		if p2.code != 0 {
			t.Errorf("rerun with room exited %d\nstderr:\n%s", p2.code, p2.stderr)
		}
		final := srv.idle(t)
		for _, j := range jobs(n, "chaos picture") {
			if saved[j.id] && final.jobs[j.prompt].charged != first.jobs[j.prompt].charged {
				t.Errorf("job %s was saved by the first run and paid again", j.id)
			}
		}
		if got, most := final.charged(corePrice), credits(n+lost); got > most {
			t.Errorf("the server charged %s, want at most %s (%d jobs, %d lost in flight)", got, most, n, lost)
		}
		if rep := checkAgree(t, w.out, agree{}); rep != nil && rep.Totals.Succeeded != n {
			t.Errorf("report after the rerun: %+v, want %d succeeded", rep.Totals, n)
		}
		w.checkNoKey()
	})
	t.Run("too small from the start", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, fast(0), corePrice, fault{})
		w := newWorld(t, srv)
		disk := filepath.Join(w.dir, "disk")
		mountTmpfs(t, disk, "512k")
		w.out = filepath.Join(disk, "out")
		m := writeManifest(t, w.dir, "m.yaml", jobs(40, "chaos picture"))
		p := w.run(w.runArgs(m, "--concurrency", "2")...)
		if p.code == 0 {
			t.Errorf("a run whose images cannot fit exited 0")
		}
		if got := srv.idle(t).gens; got != 0 {
			t.Errorf("%d generation requests were sent to fill a 512 KiB disk with 40 images: the free space must be checked first\nstderr:\n%s", got, p.stderr)
		}
		if !strings.Contains(strings.ToLower(p.stderr.String()), "space") {
			t.Errorf("the refusal does not mention the free space:\n%s", p.stderr)
		}
		w.checkNoKey()
	})
}

// TestReadOnlyOut: an output folder that cannot be written is found before
// the first request, with its cause, and never panics.
func TestReadOnlyOut(t *testing.T) {
	t.Parallel()
	srv := startServer(t, fast(0), corePrice, fault{})
	w := newWorld(t, srv)
	disk := filepath.Join(w.dir, "disk")
	mountTmpfs(t, disk, "4m")
	w.out = filepath.Join(disk, "out")
	if err := os.MkdirAll(filepath.Join(w.out, "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := command("mount", "-o", "remount,ro", disk); err != nil {
		t.Fatalf("remount read-only: %v %s", err, out)
	}
	m := writeManifest(t, w.dir, "m.yaml", jobs(6, "chaos picture"))
	p := w.run(w.runArgs(m)...)
	if p.code != 1 {
		t.Errorf("run into a read-only folder exited %d, want 1", p.code)
	}
	if s := p.stderr.String(); strings.Contains(s, "panic") || !strings.Contains(strings.ToLower(s), "read-only") {
		t.Errorf("stderr does not give the cause (read-only file system), or panics:\n%s", s)
	}
	if got := srv.idle(t).gens; got != 0 {
		t.Errorf("%d generation requests were sent before finding the folder read-only", got)
	}
	w.checkNoKey()
}

// TestServerErrors: with 10% of generations answered 500, every job
// succeeds on a retry, and nothing is charged beyond one result per job.
func TestServerErrors(t *testing.T) {
	t.Parallel()
	const n = 40
	cfg := fast(5 * time.Millisecond)
	cfg.FailRate = 0.1
	srv := startServer(t, cfg, corePrice, fault{})
	w := newWorld(t, srv)
	m := writeManifest(t, w.dir, "m.yaml", jobs(n, "chaos picture"))
	before := srv.snapshot()
	p := w.run(w.runArgs(m, "--concurrency", "8", "--budget", credits(n).String())...)
	if p.code != 0 {
		t.Errorf("exit %d with 10%% 5xx, want 0 (retried)\nstderr:\n%s", p.code, p.stderr)
	}
	snap := srv.idle(t)
	if srv.sb.Stats().Failed == 0 {
		t.Fatal("scenario: the sandbox injected no 5xx")
	}
	if got := snap.charged(corePrice); got != credits(n) {
		t.Errorf("the server charged %s for %d jobs, want %s", got, n, credits(n))
	}
	checkNotPaidTwice(t, snap, 1)
	checkBudget(t, snap, corePrice, credits(n))
	rep := checkAgree(t, w.out, agree{})
	checkAccounted(t, rep, before, snap, corePrice)
	if rep != nil && rep.Totals.Succeeded != n {
		t.Errorf("report: %+v, want %d succeeded", rep.Totals, n)
	}
	w.checkNoKey()
}

// TestDroppedConnections: with 5% of generations charged and their
// connection dropped, an attempt whose outcome is unknown is retried at most
// once, every possibly billed credit is in the report and counts against the
// budget, in this run and the next.
func TestDroppedConnections(t *testing.T) {
	t.Parallel()
	const n = 60
	cfg := fast(5 * time.Millisecond)
	cfg.DropRate = 0.05
	srv := startServer(t, cfg, corePrice, fault{})
	w := newWorld(t, srv)
	m := writeManifest(t, w.dir, "m.yaml", jobs(n, "chaos picture"))
	budget := credits(n + n/10)
	args := w.runArgs(m, "--concurrency", "8", "--budget", budget.String())

	before := srv.snapshot()
	p := w.run(args...)
	if p.code != 0 && p.code != 1 {
		t.Errorf("exit %d, want 0 or 1\nstderr:\n%s", p.code, p.stderr)
	}
	first := srv.idle(t)
	if srv.sb.Stats().Dropped == 0 {
		t.Fatal("scenario: the sandbox dropped no connection")
	}
	checkNotPaidTwice(t, first, 2) // the first attempt, and one retry of an unknown outcome
	checkBudget(t, first, corePrice, budget)
	rep := checkAgree(t, w.out, agree{})
	checkAccounted(t, rep, before, first, corePrice)
	if rep != nil && rep.PossiblyBilled == 0 {
		t.Errorf("report.json shows no possibly billed credits after %d dropped connections", srv.sb.Stats().Dropped)
	}
	saved := readJournal(t, w.out).succeeded()

	p2 := w.run(args...)
	if p2.code != 0 && p2.code != 1 && p2.code != 3 {
		t.Errorf("rerun: exit %d\nstderr:\n%s", p2.code, p2.stderr)
	}
	second := srv.idle(t)
	for _, j := range jobs(n, "chaos picture") {
		if saved[j.id] && second.jobs[j.prompt].charged != first.jobs[j.prompt].charged {
			t.Errorf("job %s, saved by the first run, was paid again", j.id)
		}
	}
	checkBudget(t, second, corePrice, budget)
	checkAgree(t, w.out, agree{})
	w.checkNoKey()
}

// TestBudgetAcrossReruns: attempts whose outcome is unknown are possibly
// billed, and what one run possibly spent counts against the budget of
// every later run of the same folder: three runs never take more than the
// budget.
func TestBudgetAcrossReruns(t *testing.T) {
	t.Parallel()
	const n = 2
	cfg := fast(0)
	cfg.DropRate = 1 // every generation charged, its answer lost
	srv := startServer(t, cfg, corePrice, fault{})
	w := newWorld(t, srv)
	m := writeManifest(t, w.dir, "m.yaml", jobs(n, "chaos picture"))
	budget := credits(n)
	for run := 1; run <= 3; run++ {
		before := srv.snapshot()
		p := w.run(w.runArgs(m, "--concurrency", "1", "--budget", budget.String())...)
		if p.code == 0 {
			t.Errorf("run %d exited 0 with every answer dropped", run)
		}
		snap := srv.idle(t)
		checkBudget(t, snap, corePrice, budget)
		if rep := readReport(t, w.out); rep != nil {
			checkAccounted(t, rep, before, snap, corePrice)
		}
	}
	if rep := checkAgree(t, w.out, agree{}); rep != nil && rep.PossiblyBilled == 0 {
		t.Errorf("report.json shows no possibly billed credits; the server charged %s", srv.sb.Stats().Charged)
	}
	w.checkNoKey()
}

// TestRateLimitStorm: a server that allows 10 requests a second and locks
// the key out for a second after, answering 429 with Retry-After: every job
// still succeeds, paid once.
func TestRateLimitStorm(t *testing.T) {
	t.Parallel()
	const n = 30
	cfg := fast(5 * time.Millisecond)
	cfg.RateLimit, cfg.RateWindow, cfg.Lockout, cfg.RetryAfter = 10, time.Second, time.Second, true
	srv := startServer(t, cfg, corePrice, fault{})
	w := newWorld(t, srv)
	m := writeManifest(t, w.dir, "m.yaml", jobs(n, "chaos picture"))
	before := srv.snapshot()
	p := w.run(w.runArgs(m, "--concurrency", "10", "--budget", credits(n).String())...)
	if p.code != 0 {
		t.Errorf("exit %d through a 429 storm, want 0\nstderr:\n%s", p.code, p.stderr)
	}
	snap := srv.idle(t)
	if srv.sb.Stats().RateLimited == 0 {
		t.Fatal("scenario: no request was answered 429")
	}
	if got := snap.charged(corePrice); got != credits(n) {
		t.Errorf("the server charged %s for %d jobs, want %s", got, n, credits(n))
	}
	checkNotPaidTwice(t, snap, 1)
	rep := checkAgree(t, w.out, agree{})
	checkAccounted(t, rep, before, snap, corePrice)
	w.checkNoKey()
}

// refusalStopsRun runs n jobs against srv, which starts refusing (401 or
// 402) midway: the run stops at once (no more requests than were in
// flight), exits 1, and the report and summary are written.
func refusalStopsRun(t *testing.T, srv *server, n, conc int, budget cost.Credits, word string) {
	t.Helper()
	w := newWorld(t, srv)
	m := writeManifest(t, w.dir, "m.yaml", jobs(n, "chaos picture"))
	before := srv.snapshot()
	p := w.run(w.runArgs(m, "--concurrency", strconv.Itoa(conc), "--budget", budget.String())...)
	if p.code != 1 {
		t.Errorf("exit %d, want 1\nstderr:\n%s", p.code, p.stderr)
	}
	snap := srv.idle(t)
	if snap.afterRefusal > conc {
		t.Errorf("%d generation requests were sent after the refusal, want at most %d (in flight)", snap.afterRefusal, conc)
	}
	if !strings.Contains(strings.ToLower(p.stderr.String()), word) {
		t.Errorf("stderr does not say %q:\n%s", word, p.stderr)
	}
	if summaryOf(t, p) == nil {
		t.Errorf("no summary on stdout")
	}
	checkNotPaidTwice(t, snap, 1)
	checkBudget(t, snap, corePrice, budget)
	rep := checkAgree(t, w.out, agree{})
	checkAccounted(t, rep, before, snap, corePrice)
	if rep != nil && rep.Totals.Succeeded == 0 {
		t.Errorf("scenario: no job succeeded before the refusal: %+v", rep.Totals)
	}
	w.checkNoKey()
}

// Test401Midway: the key is revoked after 8 generations.
func Test401Midway(t *testing.T) {
	t.Parallel()
	srv := startServer(t, fast(20*time.Millisecond), corePrice, fault{
		intercept: func(w http.ResponseWriter, r *http.Request, gen int) bool {
			if gen <= 8 {
				return false
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"id":"0123456789abcdef0123456789abcdef","name":"unauthorized","errors":["authentication failed"]}`)
			return true
		},
	})
	refusalStopsRun(t, srv, 30, 4, credits(30), "401")
}

// TestBalanceRunsOutMidway: the account can pay for 10 of 30 jobs, but the
// balance endpoint, lagging as the live one does, says it can pay for all.
func TestBalanceRunsOutMidway(t *testing.T) {
	t.Parallel()
	cfg := fast(20 * time.Millisecond)
	cfg.Balance = credits(10)
	srv := startServer(t, cfg, corePrice, fault{
		intercept: func(w http.ResponseWriter, r *http.Request, gen int) bool {
			if r.URL.Path != "/v1/user/balance" {
				return false
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"credits":1000000}`)
			return true
		},
	})
	refusalStopsRun(t, srv, 30, 4, credits(30), "balance")
}

// TestKeyEchoed: a server that puts the Authorization value (or pieces of
// the key) into every kind of value the client stores or prints: the key
// reaches no file, no report format, no step summary and no output.
func TestKeyEchoed(t *testing.T) {
	t.Parallel()
	k := testKey
	header := func(set func(h http.Header, auth string)) fault {
		return fault{tamper: func(w http.ResponseWriter, r *http.Request, a *answer) {
			set(a.header, r.Header.Get("Authorization"))
			a.write(w)
		}}
	}
	// body answers generation requests itself, before the sandbox charges:
	// the API does not charge for an error answer.
	body := func(status int, contentType, format string) fault {
		return fault{intercept: func(w http.ResponseWriter, r *http.Request, gen int) bool {
			if gen == 0 {
				return false
			}
			auth := r.Header.Get("Authorization")
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(status)
			fmt.Fprintf(w, format, auth, auth, auth)
			return true
		}}
	}
	// image answers with a JSON image whose fields carry the key, in
	// place of the sandbox's (charged) image.
	image := fault{tamper: func(w http.ResponseWriter, r *http.Request, a *answer) {
		auth := r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"image":%q,"finish_reason":%q,"seed":%q}`, auth, auth, auth)
	}}
	balance := func(status int, format string) fault {
		return fault{intercept: func(w http.ResponseWriter, r *http.Request, gen int) bool {
			if r.URL.Path != "/v1/user/balance" {
				return false
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprintf(w, format, r.Header.Get("Authorization"))
			return true
		}}
	}
	for _, tc := range []struct {
		name string
		f    fault
	}{
		{"seed header", header(func(h http.Header, auth string) { h.Set("Seed", auth) })},
		{"finish-reason header", header(func(h http.Header, auth string) { h.Set("Finish-Reason", auth) })},
		{"request-id header", header(func(h http.Header, auth string) { h.Set("X-Request-Id", auth) })},
		{"content-type header", header(func(h http.Header, auth string) { h.Set("Content-Type", "image/"+auth) })},
		{"pieces in three headers", header(func(h http.Header, _ string) {
			h.Set("Seed", k[:12])
			h.Set("Finish-Reason", k[12:24])
			h.Set("X-Request-Id", k[20:])
		})},
		{"JSON image answer", image},
		{"JSON 400 answer", body(http.StatusBadRequest, "application/json", `{"id":%q,"name":%q,"errors":[%q]}`)},
		{"text 500 answer", body(http.StatusInternalServerError, "text/plain", "internal error for %s (%s) %s")},
		{"balance value", balance(http.StatusOK, `{"credits":%q}`)},
		{"balance 401 message", balance(http.StatusUnauthorized, `{"id":"x","name":"unauthorized","message":%q}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const n = 2
			srv := startServer(t, fast(0), corePrice, tc.f)
			w := newWorld(t, srv)
			m := writeManifest(t, w.dir, "m.yaml", jobs(n, "chaos picture"))
			p := w.run(w.runArgs(m, "--concurrency", "2", "--budget", credits(2*n).String())...)
			snap := srv.idle(t)
			checkBudget(t, snap, corePrice, credits(2*n))
			checkAgree(t, w.out, agree{reportMayBeMissing: p.code != 0})
			w.checkNoKey()
		})
	}
}

// TestSymlinksInOut: images/, filtered/, journal.jsonl and report.json as
// symlinks to places outside the output folder: nothing there is written or
// deleted. The run either refuses, before paying for anything, or replaces
// the link with a real folder or file.
func TestSymlinksInOut(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		link   string // inside OUT
		dir    bool   // the target is a folder
		filter bool   // every image comes back CONTENT_FILTERED
	}{
		{name: "images", link: "images", dir: true},
		{name: "filtered", link: "filtered", dir: true, filter: true},
		{name: "journal", link: "journal.jsonl"},
		{name: "report", link: "report.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const n = 4
			cfg := fast(0)
			if tc.filter {
				cfg.FilterWords = []string{"chaos"}
			}
			srv := startServer(t, cfg, corePrice, fault{})
			w := newWorld(t, srv)
			outside := filepath.Join(w.dir, "outside")
			if err := os.MkdirAll(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(outside, "precious.txt")
			if tc.dir {
				target = outside
				// a file a run would take for its own leftover temp file
				writeFile(t, filepath.Join(outside, ".j001.png.tmp123456"), "not a temp file")
				writeFile(t, filepath.Join(outside, "j001.png"), "someone else's picture")
			} else {
				writeFile(t, target, "precious\n")
			}
			if err := os.MkdirAll(w.out, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(w.out, tc.link)); err != nil {
				t.Fatal(err)
			}
			was := tree(t, outside)
			m := writeManifest(t, w.dir, "m.yaml", jobs(n, "chaos picture"))
			p := w.run(w.runArgs(m, "--concurrency", "2")...)
			p2 := w.run(w.runArgs(m, "--concurrency", "2")...) // a rerun reads what the first left
			if now := tree(t, outside); !maps.Equal(was, now) {
				t.Errorf("the folder outside OUT changed through the symlink OUT/%s:\nbefore %v\nafter  %v", tc.link, was, now)
			}
			snap := srv.idle(t)
			refused := strings.Contains(p.stderr.String(), "symlink") || strings.Contains(p.stderr.String(), "symbolic link")
			switch {
			case refused:
				if p.code == 0 {
					t.Errorf("the run complained of the symlink but exited 0")
				}
				if snap.gens != 0 {
					t.Errorf("the run refused the symlink only after sending %d generation requests", snap.gens)
				}
			default:
				if fi, err := os.Lstat(filepath.Join(w.out, tc.link)); err == nil && fi.Mode()&os.ModeSymlink != 0 {
					t.Errorf("OUT/%s is still a symlink and the run did not refuse it (exit %d)\nstderr:\n%s", tc.link, p.code, p.stderr)
				}
				checkAgree(t, w.out, agree{})
			}
			checkNotPaidTwice(t, snap, 1)
			_ = p2
			w.checkNoKey()
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestManifestNotARegularFile: a FIFO or a folder as manifest gets exit 2
// and a message naming it, at once: plan and run never block on a pipe.
func TestManifestNotARegularFile(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"fifo", "folder"} {
		for _, cmd := range []string{"plan", "run"} {
			t.Run(kind+"/"+cmd, func(t *testing.T) {
				t.Parallel()
				srv := startServer(t, fast(0), corePrice, fault{})
				w := newWorld(t, srv)
				path := filepath.Join(w.dir, "manifest.yaml")
				switch kind {
				case "fifo":
					if err := syscall.Mkfifo(path, 0o644); err != nil {
						t.Fatal(err)
					}
				case "folder":
					if err := os.Mkdir(path, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				args := []string{"plan", path}
				if cmd == "run" {
					args = w.runArgs(path)
				}
				p := w.start(args...)
				select {
				case <-p.done:
				case <-time.After(10 * time.Second): // a hang is forever; this only bounds the wait
					p.signal(t, syscall.SIGKILL)
					<-p.done
					t.Fatalf("batch %s of a %s did not exit (killed after 10 s)\nstderr:\n%s", cmd, kind, p.stderr)
				}
				if p.code != 2 {
					t.Errorf("exit %d, want 2\nstderr:\n%s", p.code, p.stderr)
				}
				if !strings.Contains(p.stderr.String(), "manifest.yaml") {
					t.Errorf("the message does not name the manifest:\n%s", p.stderr)
				}
				if got := srv.snapshot().requests; got != 0 {
					t.Errorf("%d requests were sent", got)
				}
			})
		}
	}
}

// TestSIGHUPMidRun: a hang-up behaves like Ctrl-C: in-flight jobs finish
// and are saved, the report is written, the exit code is 130, and the rerun
// pays only for what is left.
func TestSIGHUPMidRun(t *testing.T) {
	t.Parallel()
	const n, conc = 30, 2
	srv := startServer(t, fast(50*time.Millisecond), corePrice, fault{})
	w := newWorld(t, srv)
	m := writeManifest(t, w.dir, "m.yaml", jobs(n, "chaos picture"))
	args := w.runArgs(m, "--concurrency", strconv.Itoa(conc), "--budget", credits(n).String())
	p := w.start(args...)
	waitFor(t, p, "3 journal lines", func() bool { return journalLines(w.out) >= 3 })
	p.signal(t, syscall.SIGHUP)
	if code := p.wait(t); code != 130 {
		t.Fatalf("exit %d after SIGHUP (signal %v), want 130\nstderr:\n%s", code, p.sig, p.stderr)
	}
	rep := checkAgree(t, w.out, agree{})
	if rep != nil && (!rep.Interrupted || rep.Totals.Succeeded == 0 || rep.Totals.Succeeded == n) {
		t.Errorf("report after SIGHUP: interrupted=%v totals %+v", rep.Interrupted, rep.Totals)
	}
	if !strings.Contains(p.stderr.String(), "Resume with") {
		t.Errorf("no resume command after SIGHUP:\n%s", p.stderr)
	}
	p2 := w.run(args...)
	if p2.code != 0 {
		t.Errorf("resume exited %d\nstderr:\n%s", p2.code, p2.stderr)
	}
	snap := srv.idle(t)
	// In-flight jobs finished and were saved, so nothing was lost.
	if got := snap.charged(corePrice); got != credits(n) {
		t.Errorf("the server charged %s over both runs, want %s", got, credits(n))
	}
	checkNotPaidTwice(t, snap, 1)
	checkAgree(t, w.out, agree{})
	w.checkNoKey()
}

// killSeed seeds the moments of TestTenSIGKILLs; change it to explore,
// keep it to replay.
const killSeed = 20261129

// TestTenSIGKILLs kills the run ten times at moments drawn from a seeded
// source (after the r-th generation request arrives, or after the r-th is
// answered, r from 0 to 5), then lets a last run finish. Nothing a run saved
// is ever paid again; what a kill loses is at most the requests in flight;
// a killed run's lock never blocks the next; and at the end the journal,
// report and images agree.
func TestTenSIGKILLs(t *testing.T) {
	t.Parallel()
	const n, conc = 60, 4
	cfg := fast(0)
	cfg.Latency = sandbox.Latency{Min: 10 * time.Millisecond, Max: 60 * time.Millisecond}
	srv := startServer(t, cfg, corePrice, fault{})
	w := newWorld(t, srv)
	js := jobs(n, "chaos picture")
	m := writeManifest(t, w.dir, "m.yaml", js)
	// Each kill may leave up to conc requests in flight, which the next run
	// counts as possibly billed, so the budget leaves room for them.
	budget := credits(n + 10*conc)
	args := w.runArgs(m, "--concurrency", strconv.Itoa(conc), "--budget", budget.String())
	rng := rand.New(rand.NewPCG(killSeed, 0))
	t.Logf("kill moments seeded with %d", killSeed)

	saved := map[string]int{} // job id → the server's charges for it when first seen saved
	lostTotal := 0
	checkSaved := func(when string, snap snapshot) {
		for _, j := range js {
			if c, ok := saved[j.id]; ok && snap.jobs[j.prompt].charged != c {
				t.Errorf("%s: job %s was saved, then paid again (%d charges, %d when saved)", when, j.id, snap.jobs[j.prompt].charged, c)
			}
		}
	}
	for kill := 1; kill <= 10; kill++ {
		r, answered := rng.IntN(6), rng.IntN(2) == 1
		before := srv.snapshot()
		p := w.start(args...)
		what := fmt.Sprintf("kill %d: %d generation requests arrived", kill, r)
		if answered {
			what = fmt.Sprintf("kill %d: %d generation requests answered", kill, r)
		}
		waitFor(t, p, what, func() bool {
			s := srv.snapshot()
			if answered {
				return s.answered-before.answered >= r
			}
			return s.gens-before.gens >= r
		})
		p.signal(t, syscall.SIGKILL)
		p.wait(t)
		snap := srv.idle(t)
		checkSaved(fmt.Sprintf("kill %d", kill), snap)
		done := readJournal(t, w.out).succeeded()
		lost := 0
		for _, j := range js {
			if !done[j.id] {
				lost += snap.jobs[j.prompt].charged - before.jobs[j.prompt].charged
			} else if _, ok := saved[j.id]; !ok {
				saved[j.id] = snap.jobs[j.prompt].charged
			}
		}
		if lost > conc {
			t.Errorf("kill %d (%s): %d requests paid and not saved, more than the %d in flight", kill, what, lost, conc)
		}
		lostTotal += lost
	}
	p := w.run(args...)
	if p.code != 0 {
		t.Fatalf("the run after ten kills exited %d\nstderr:\n%s", p.code, p.stderr)
	}
	snap := srv.idle(t)
	checkSaved("last run", snap)
	t.Logf("%d requests were lost in flight to the kills", lostTotal)
	// A request lost in flight is bought again unless its image reached
	// images/ before the kill: the next run then finds it on disk.
	if got, most := snap.charged(corePrice), credits(n+lostTotal); got > most || got < credits(n) {
		t.Errorf("the server charged %s: want from %s (one result per job) to %s (plus the %d lost in flight to kills)", got, credits(n), most, lostTotal)
	}
	checkBudget(t, snap, corePrice, budget)
	if rep := checkAgree(t, w.out, agree{}); rep != nil && rep.Totals.Succeeded != n {
		t.Errorf("report after the last run: %+v, want %d succeeded", rep.Totals, n)
	}
	w.checkNoKey()
}

// TestBadImages: answers whose image is unusable — truncated, not an image,
// or with a finish reason of ERROR — fail the attempt, never
// land in images/, and what the server charged for them is in the report.
func TestBadImages(t *testing.T) {
	t.Parallel()
	replace := func(edit func(a *answer)) fault {
		return fault{tamper: func(w http.ResponseWriter, r *http.Request, a *answer) {
			if a.status == http.StatusOK {
				edit(a)
				a.header.Set("Content-Length", strconv.Itoa(len(a.body)))
			}
			a.write(w)
		}}
	}
	for _, tc := range []struct {
		name string
		f    fault
	}{
		{"truncated", replace(func(a *answer) { a.body = a.body[:len(a.body)/2] })},
		{"not an image", replace(func(a *answer) { a.body = []byte("<html>gateway error</html>") })},
		{"finish reason ERROR", replace(func(a *answer) { a.header.Set("Finish-Reason", "ERROR") })},
		{"JSON image that is not base64 of an image", fault{tamper: func(w http.ResponseWriter, r *http.Request, a *answer) {
			if a.status != http.StatusOK {
				a.write(w)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"image": "aGVsbG8=", "finish_reason": "SUCCESS", "seed": 1})
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const n = 4
			srv := startServer(t, fast(0), corePrice, tc.f)
			w := newWorld(t, srv)
			m := writeManifest(t, w.dir, "m.yaml", jobs(n, "chaos picture"))
			before := srv.snapshot()
			p := w.run(w.runArgs(m, "--concurrency", "2", "--budget", credits(2*n).String())...)
			if p.code != 1 {
				t.Errorf("exit %d, want 1 (jobs failed)\nstderr:\n%s", p.code, p.stderr)
			}
			snap := srv.idle(t)
			rep := checkAgree(t, w.out, agree{})
			if rep != nil {
				for _, j := range rep.Jobs {
					if j.Status != "failed" {
						t.Errorf("job %s is %s with a bad image, want failed", j.ID, j.Status)
					}
				}
			}
			if entries, _ := os.ReadDir(filepath.Join(w.out, "images")); len(entries) != 0 {
				t.Errorf("images/ holds %d files from bad answers", len(entries))
			}
			checkNotPaidTwice(t, snap, 2)
			checkBudget(t, snap, corePrice, credits(2*n))
			checkAccounted(t, rep, before, snap, corePrice)
			w.checkNoKey()
		})
	}
}

// TestWrongImageSize: a v1 image of 64×64 pixels for a 1024×1024 request
// fails its attempt and never lands in images/.
func TestWrongImageSize(t *testing.T) {
	t.Parallel()
	const n = 4
	sheet, err := cost.LookupSheet("stability-2025-08")
	if err != nil {
		t.Fatal(err)
	}
	price, err := sheet.ImagePrice("stable-diffusion-xl-1024-v1-0", 1024, 1024, 30)
	if err != nil {
		t.Fatal(err)
	}
	var tiny bytes.Buffer
	if err := png.Encode(&tiny, image.NewGray(image.Rect(0, 0, 64, 64))); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, fast(0), price, fault{tamper: func(w http.ResponseWriter, r *http.Request, a *answer) {
		if a.status == http.StatusOK && a.header.Get("Content-Type") == "image/png" {
			a.body = tiny.Bytes()
			a.header.Set("Content-Length", strconv.Itoa(len(a.body)))
		}
		a.write(w)
	}})
	w := newWorld(t, srv)
	m := writeManifestHead(t, w.dir, "m.yaml", "engine: stable-diffusion-xl-1024-v1-0\ndefaults: {width: 1024, height: 1024, steps: 30}\n", jobs(n, "chaos picture"))
	before := srv.snapshot()
	budget := cost.Credits(2*n) * price
	p := w.run(w.runArgs(m, "--concurrency", "2", "--budget", budget.String())...)
	if p.code != 1 {
		t.Errorf("exit %d, want 1 (jobs failed)\nstderr:\n%s", p.code, p.stderr)
	}
	snap := srv.idle(t)
	if snap.charged(price) == 0 {
		t.Fatal("scenario: the sandbox charged nothing")
	}
	rep := checkAgree(t, w.out, agree{})
	if rep != nil {
		for _, j := range rep.Jobs {
			if j.Status != "failed" {
				t.Errorf("job %s is %s with a 64×64 image for 1024×1024, want failed", j.ID, j.Status)
			}
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(w.out, "images")); len(entries) != 0 {
		t.Errorf("images/ holds %d files of the wrong size", len(entries))
	}
	checkNotPaidTwice(t, snap, 2)
	checkBudget(t, snap, price, budget)
	checkAccounted(t, rep, before, snap, price)
	w.checkNoKey()
}

// TestFilePermissions: images, reports and the journal honour the umask
// (0644 under the usual 022), alike.
func TestFilePermissions(t *testing.T) {
	t.Parallel()
	srv := startServer(t, fast(0), corePrice, fault{})
	w := newWorld(t, srv)
	m := writeManifest(t, w.dir, "m.yaml", jobs(2, "chaos picture"))
	if p := w.run(w.runArgs(m)...); p.code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", p.code, p.stderr)
	}
	want := os.FileMode(0o666) &^ processUmask(t)
	for _, rel := range []string{"images/j001.png", "images/j002.png", "report.json", "report.md", "report.html", "journal.jsonl"} {
		fi, err := os.Stat(filepath.Join(w.out, rel))
		if err != nil {
			t.Error(err)
			continue
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %v, want %v (0666 less the umask)", rel, got, want)
		}
	}
}

// processUmask reads this process's umask, which the batch processes
// inherit, without changing it.
func processUmask(t *testing.T) os.FileMode {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status to read the umask from: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			u, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil {
				t.Fatal(err)
			}
			return os.FileMode(u)
		}
	}
	t.Skip("no Umask line in /proc/self/status")
	return 0
}

// TestJournalRecovery: a damaged line in the middle of the journal is
// skipped with a warning naming it; a deleted or truncated journal is
// rebuilt from the images on disk; in neither case is an image on disk
// bought again.
func TestJournalRecovery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, path string)
		rebuys  int    // jobs that may be bought again
		warning string // in stderr
	}{
		{name: "damaged line in the middle", rebuys: 1, warning: "journal.jsonl:3", damage: func(t *testing.T, path string) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lines := bytes.SplitAfter(data, []byte("\n"))
			lines[2] = []byte("{\"id\":\"j0\x00garbage\n")
			writeFile(t, path, string(bytes.Join(lines, nil)))
		}},
		{name: "deleted", damage: func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "truncated to half", damage: func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const n = 8
			srv := startServer(t, fast(0), corePrice, fault{})
			w := newWorld(t, srv)
			m := writeManifest(t, w.dir, "m.yaml", jobs(n, "chaos picture"))
			args := w.runArgs(m, "--concurrency", "2", "--budget", credits(n+tc.rebuys).String())
			if p := w.run(args...); p.code != 0 {
				t.Fatalf("first run exited %d\nstderr:\n%s", p.code, p.stderr)
			}
			first := srv.idle(t)
			tc.damage(t, filepath.Join(w.out, "journal.jsonl"))
			p := w.run(args...)
			if p.code != 0 {
				t.Errorf("run after the damage exited %d\nstderr:\n%s", p.code, p.stderr)
			}
			snap := srv.idle(t)
			if got := snap.gens - first.gens; got > tc.rebuys {
				t.Errorf("%d generation requests after the journal was %s; the images were on disk (want at most %d)", got, tc.name, tc.rebuys)
			}
			if tc.warning != "" && !strings.Contains(p.stderr.String(), tc.warning) {
				t.Errorf("no warning naming %s:\n%s", tc.warning, p.stderr)
			}
			if rep := checkAgree(t, w.out, agree{damagedLinesKept: tc.warning != ""}); rep != nil && rep.Totals.Succeeded != n {
				t.Errorf("report: %+v, want %d succeeded", rep.Totals, n)
			}
			if tc.rebuys == 0 {
				checkNotPaidTwice(t, snap, 1)
			}
			w.checkNoKey()
		})
	}
}

// Flags of the time limits, as the tests pass them.
const (
	ttfbFlag          = "--ttfb-timeout"
	stallFlag         = "--stall-timeout"
	retryAfterCapFlag = "--max-pause"
)

// TestQuietServer: a server that never answers, or stops sending in the
// middle of an image, is given up on by the time-to-first-byte and stall
// limits; the attempt counts as possibly billed, is retried at most once,
// and nothing lands in images/.
func TestQuietServer(t *testing.T) {
	t.Parallel()
	// hold blocks until the client gives up on the request.
	hold := func(r *http.Request) { <-r.Context().Done() }
	for _, tc := range []struct {
		name string
		flag string
		f    fault
	}{
		{"no answer", ttfbFlag, fault{intercept: func(w http.ResponseWriter, r *http.Request, gen int) bool {
			if gen == 0 {
				return false
			}
			hold(r)
			return true
		}}},
		{"stalled body", stallFlag, fault{tamper: func(w http.ResponseWriter, r *http.Request, a *answer) {
			if a.status != http.StatusOK {
				a.write(w)
				return
			}
			for k, v := range a.header {
				w.Header()[k] = v
			}
			w.WriteHeader(a.status)
			*a.cut = true
			_, _ = w.Write(a.body[:len(a.body)/2])
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			hold(r)
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const n = 2
			srv := startServer(t, fast(0), corePrice, tc.f)
			w := newWorld(t, srv)
			m := writeManifest(t, w.dir, "m.yaml", jobs(n, "chaos picture"))
			before := srv.snapshot()
			p := w.run(w.runArgs(m, "--concurrency", "2", "--budget", credits(2*n).String(), tc.flag, "300ms")...)
			if p.code != 1 {
				t.Errorf("exit %d, want 1 (jobs failed)\nstderr:\n%s", p.code, p.stderr)
			}
			snap := srv.idle(t)
			if snap.gens > 2*n {
				t.Errorf("%d generation requests for %d jobs: an attempt whose outcome is unknown is retried at most once", snap.gens, n)
			}
			rep := checkAgree(t, w.out, agree{})
			if rep != nil && rep.PossiblyBilled < credits(snap.gens) {
				t.Errorf("report shows %s possibly billed for %d requests sent and never answered whole", rep.PossiblyBilled, snap.gens)
			}
			checkNotPaidTwice(t, snap, 2)
			checkBudget(t, snap, corePrice, credits(2*n))
			checkAccounted(t, rep, before, snap, corePrice)
			w.checkNoKey()
		})
	}
}

// TestRetryAfterCapped: a 429 asking for a pause of eleven days (Retry-After:
// 1000000) is capped, so the run goes on and finishes.
func TestRetryAfterCapped(t *testing.T) {
	t.Parallel()
	const n = 4
	srv := startServer(t, fast(0), corePrice, fault{intercept: func(w http.ResponseWriter, r *http.Request, gen int) bool {
		if gen != 1 {
			return false
		}
		w.Header().Set("Retry-After", "1000000")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"id":"0123456789abcdef0123456789abcdef","name":"rate_limit_exceeded","errors":["slow down"]}`)
		return true
	}})
	w := newWorld(t, srv)
	m := writeManifest(t, w.dir, "m.yaml", jobs(n, "chaos picture"))
	p := w.run(w.runArgs(m, "--concurrency", "2", "--budget", credits(n).String(), retryAfterCapFlag, "1s")...)
	if p.code != 0 {
		t.Errorf("exit %d, want 0 (the pause capped, then every job done)\nstderr:\n%s", p.code, p.stderr)
	}
	if !strings.Contains(strings.ToLower(p.stderr.String()), "429") && !strings.Contains(strings.ToLower(p.stderr.String()), "rate") {
		t.Errorf("the pause is not shown with its reason:\n%s", p.stderr)
	}
	snap := srv.idle(t)
	if got := snap.charged(corePrice); got != credits(n) {
		t.Errorf("the server charged %s, want %s", got, credits(n))
	}
	checkNotPaidTwice(t, snap, 1)
	checkAgree(t, w.out, agree{})
	w.checkNoKey()
}
