package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/report"
	"github.com/batch-tool/batch/internal/sandbox"
)

// cacheManifest is eight seeded Core jobs (3 credits each under the
// default sheet, so cacheable) and one without a seed (never cached).
const cacheManifest = "testdata/cache.yaml"

// cacheManifestWith is cacheManifest's text with old replaced by new.
func cacheManifestWith(t *testing.T, old, new string) string {
	t.Helper()
	b, err := os.ReadFile(cacheManifest)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Replace(string(b), old, new, 1)
}

// cacheJobs and cacheSeeded count cacheManifest's jobs and its cacheable
// ones; coreCredits is one Core job's price.
const (
	cacheJobs   = 9
	cacheSeeded = 8
	coreCredits = 3 * cost.Credit
)

// cacheSetup writes the manifest body (cacheManifest itself when "") and
// starts a sandbox; env holds the key and an image cache of the test's
// own, shared by every command given it.
func cacheSetup(t *testing.T, body string, cfg sandbox.Config) (path, url string, sb *sandbox.Server, env map[string]string) {
	t.Helper()
	sheet, err := cost.LookupSheet(cost.DefaultSheet)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Pricer = sheet
	sb, err = sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path = cacheManifest
	if body != "" {
		path = writeFile(t, t.TempDir(), "m.yaml", body)
	}
	env = map[string]string{"STABILITY_API_KEY": "sk-test", "XDG_CACHE_HOME": t.TempDir()}
	return path, startSandboxWith(t, sb), sb, env
}

// mustBatch runs a command line and fails the test unless it exits 0.
func mustBatch(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	r := batchCmd(t, env, args...)
	if r.code != exitOK {
		t.Fatalf("batch %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r
}

// generations is how many requests the sandbox answered with images.
func generations(sb *sandbox.Server) int { return sb.Stats().Generations }

// readReport reads OUT/report.json.
func readReport(t *testing.T, out string) *report.Run {
	t.Helper()
	rep, err := report.ReadRun(out)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestRunCache runs a manifest, then again into a new folder: with the
// cache the second run buys only the job without a seed, and writes the
// same files; without it (--no-cache, cache: false, another --cache) it
// buys everything again.
func TestRunCache(t *testing.T) {
	tests := []struct {
		name   string
		cache  string   // the manifest's cache line; none when ""
		flags  []string // of the second run, and of the first when both
		both   bool
		cached bool
	}{
		{"same cache", "", nil, false, true},
		{"--no-cache", "", []string{"--no-cache"}, false, false},
		{"--no-cache keeps nothing", "", []string{"--no-cache"}, true, false},
		{"another --cache", "", []string{"--cache", "OTHER"}, false, false},
		{"cache: false", "cache: false", nil, false, false},
		{"--cache over cache: false", "cache: false", []string{"--cache", "XDG"}, true, true},
		{"cache: FOLDER", "cache: imgcache", nil, false, true},
	}
	for k, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if raceEnabled && k > 1 {
				// Each case runs 18 jobs of 1536×1536 images; the race pass
				// takes a hit and a miss, go test takes every case.
				t.Skip("one hit and one miss suffice under the race detector")
			}
			body := ""
			if tt.cache != "" {
				body = cacheManifestWith(t, "service:", tt.cache+"\nservice:")
			}
			path, url, sb, env := cacheSetup(t, body, sandbox.Config{})
			for k, f := range tt.flags {
				switch f {
				case "OTHER":
					tt.flags[k] = t.TempDir()
				case "XDG":
					tt.flags[k] = filepath.Join(env["XDG_CACHE_HOME"], "batch", "images")
				}
			}
			out1, out2 := t.TempDir(), t.TempDir()
			first := []string{"run", "--api-url", url, "--out", out1}
			if tt.both {
				first = append(first, tt.flags...)
			}
			mustBatch(t, env, append(first, path)...)
			if n := generations(sb); n != cacheJobs {
				t.Fatalf("first run: %d generations, want %d", n, cacheJobs)
			}
			args := append([]string{"run", "--api-url", url, "--out", out2}, tt.flags...)
			r := mustBatch(t, env, append(args, path)...)
			bought, saved := cacheJobs, 0
			if tt.cached {
				bought, saved = cacheJobs-cacheSeeded, cacheSeeded
			}
			if n := generations(sb) - cacheJobs; n != bought {
				t.Errorf("second run: %d generations, want %d", n, bought)
			}
			paid, rep := readReport(t, out1), readReport(t, out2)
			wantCharged := cost.Credits(bought) * coreCredits
			if rep.ChargedCredits != wantCharged || rep.EstimatedCredits != wantCharged || rep.CachedJobs != saved ||
				rep.CacheSavedCredits != cost.Credits(saved)*coreCredits {
				t.Errorf("second report: charged %v, estimated %v, %d cached saving %v; want %v, %v, %d, %v", rep.ChargedCredits, rep.EstimatedCredits,
					rep.CachedJobs, rep.CacheSavedCredits, wantCharged, wantCharged, saved, cost.Credits(saved)*coreCredits)
			}
			for k, j := range rep.Jobs {
				fromCache := tt.cached && j.ID != "sky"
				if j.Status != report.StatusSucceeded || j.Cached != fromCache || fromCache && (j.Credits != 0 || j.Attempts != 0) {
					t.Errorf("job %s: %s, cached %v, %v credits, %d attempts; want succeeded, cached %v", j.ID, j.Status, j.Cached, j.Credits, j.Attempts, fromCache)
				}
				if !fromCache {
					continue
				}
				for n, im := range j.Images {
					want := paid.Jobs[k].Images[n]
					a, errA := os.ReadFile(filepath.Join(out1, im.Path))
					b, errB := os.ReadFile(filepath.Join(out2, im.Path))
					if errA != nil || errB != nil || !bytes.Equal(a, b) || im != want {
						t.Errorf("job %s image %s differs from the first run's (%v %v)", j.ID, im.Path, errA, errB)
					}
				}
			}
			if tt.cached != strings.Contains(r.stdout, "Cache: 8 jobs from the cache, saving 24.0 credits") {
				t.Errorf("summary, cache used %v:\n%s", tt.cached, r.stdout)
			}
		})
	}
}

// cachedPlan runs batch plan --format json with args and decodes it.
func cachedPlan(t *testing.T, env map[string]string, args ...string) planDoc {
	t.Helper()
	r := mustBatch(t, env, append([]string{"plan", "--format", "json"}, args...)...)
	var doc planDoc
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestPlanCache: after a run, the plan prices what the cache holds at 0
// and says what it saves; --no-cache shows the full price; the budget is
// checked against what will be bought, by plan and by run.
func TestPlanCache(t *testing.T) {
	path, url, sb, env := cacheSetup(t, "", sandbox.Config{})
	full := cost.Credits(cacheJobs) * coreCredits
	if doc := cachedPlan(t, env, "--api-url", url, path); doc.TotalCredits != full || doc.CachedJobs != 0 {
		t.Fatalf("plan before any run: %v, %d cached; want %v, none", doc.TotalCredits, doc.CachedJobs, full)
	}
	// Half the seeded jobs, then plan the whole manifest.
	mustBatch(t, env, "run", "--api-url", url, "--only", "fox-*-1", "--out", t.TempDir(), path)
	doc := cachedPlan(t, env, "--api-url", url, path)
	buy := full - 4*coreCredits
	if doc.TotalCredits != buy || doc.CachedJobs != 4 || doc.CacheSavedCredits != 4*coreCredits || doc.TotalUSD != buy.USD() {
		t.Errorf("plan: %v (%s), %d cached saving %v; want %v, 4 cached saving %v", doc.TotalCredits, doc.TotalUSD, doc.CachedJobs, doc.CacheSavedCredits, buy, 4*coreCredits)
	}
	var sum cost.Credits
	for _, j := range doc.Jobs {
		sum += j.Credits
		if want := strings.HasSuffix(j.ID, "-1") && j.ID != "sky"; j.Cached != want || j.Cached && j.Credits != 0 {
			t.Errorf("plan job %s: cached %v, %v credits; want cached %v", j.ID, j.Cached, j.Credits, want)
		}
	}
	if sum != doc.TotalCredits {
		t.Errorf("plan jobs sum to %v, total says %v", sum, doc.TotalCredits)
	}
	if doc := cachedPlan(t, env, "--api-url", url, "--no-cache", path); doc.TotalCredits != full || doc.CachedJobs != 0 {
		t.Errorf("plan --no-cache: %v, %d cached; want %v, none", doc.TotalCredits, doc.CachedJobs, full)
	}
	// Another API's images do not count.
	if doc := cachedPlan(t, env, path); doc.CachedJobs != 0 {
		t.Errorf("plan against the default API: %d cached, want none", doc.CachedJobs)
	}
	r := mustBatch(t, env, "plan", "--api-url", url, path)
	checkGolden(t, "plan-cache.table", r.stdout)

	// A budget between what will be bought and the full price.
	budget := (buy + full) / 2
	if r := batchCmd(t, env, "plan", "--api-url", url, "--budget", budget.String(), path); r.code != exitOK {
		t.Errorf("plan --budget %v: exit %d, want 0 (the cache pays the rest)\n%s", budget, r.code, r.stderr)
	}
	if r := batchCmd(t, env, "plan", "--api-url", url, "--budget", budget.String(), "--no-cache", path); r.code != exitOverBudget {
		t.Errorf("plan --budget %v --no-cache: exit %d, want %d", budget, r.code, exitOverBudget)
	}
	before := generations(sb)
	if r := batchCmd(t, env, "run", "--api-url", url, "--budget", budget.String(), "--no-cache", "--out", t.TempDir(), path); r.code != exitOverBudget {
		t.Errorf("run --budget %v --no-cache: exit %d, want %d", budget, r.code, exitOverBudget)
	}
	out := t.TempDir()
	mustBatch(t, env, "run", "--api-url", url, "--budget", budget.String(), "--out", out, path)
	if n := generations(sb) - before; n != 5 {
		t.Errorf("run within budget: %d generations, want 5", n)
	}
	if rep := readReport(t, out); rep.ChargedCredits != buy || rep.CachedJobs != 4 {
		t.Errorf("run within budget: charged %v, %d cached; want %v, 4", rep.ChargedCredits, rep.CachedJobs, buy)
	}
}

// TestRunCacheBalance: the balance check counts only what will be bought.
func TestRunCacheBalance(t *testing.T) {
	// Enough for the whole manifest once, and for the job without a seed
	// then, but not for the whole manifest twice.
	full := cost.Credits(cacheJobs) * coreCredits
	path, url, sb, env := cacheSetup(t, "", sandbox.Config{Balance: full + coreCredits})
	mustBatch(t, env, "run", "--api-url", url, "--out", t.TempDir(), path)
	if r := batchCmd(t, env, "run", "--api-url", url, "--no-cache", "--out", t.TempDir(), path); r.code != exitLowBalance {
		t.Errorf("run --no-cache on a low balance: exit %d, want %d\n%s", r.code, exitLowBalance, r.stderr)
	}
	mustBatch(t, env, "run", "--api-url", url, "--out", t.TempDir(), path)
	if n := generations(sb); n != cacheJobs+1 {
		t.Errorf("%d generations, want %d", n, cacheJobs+1)
	}
}

// TestRunCacheDamaged: a damaged entry is reported, removed and bought
// again, and the cache is sound afterwards.
func TestRunCacheDamaged(t *testing.T) {
	path, url, sb, env := cacheSetup(t, "", sandbox.Config{})
	mustBatch(t, env, "run", "--api-url", url, "--out", t.TempDir(), path)
	imgs, err := filepath.Glob(filepath.Join(env["XDG_CACHE_HOME"], "batch", "images", "objects", "*", "*", "1.png"))
	if err != nil || len(imgs) != cacheSeeded {
		t.Fatalf("cache images %d (%v), want %d", len(imgs), err, cacheSeeded)
	}
	b, err := os.ReadFile(imgs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(imgs[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	r := mustBatch(t, env, "run", "--api-url", url, "--out", t.TempDir(), path)
	if got := strings.Count(r.stderr, "is damaged"); got != 1 || !strings.Contains(r.stderr, "was removed; it was bought instead") {
		t.Errorf("stderr tells %d damaged entries, want 1:\n%s", got, r.stderr)
	}
	if n := generations(sb) - cacheJobs; n != 2 {
		t.Errorf("second run: %d generations, want 2 (the job without a seed, the damaged one)", n)
	}
	if r := batchCmd(t, env, "cache", "verify"); r.code != exitOK || !strings.Contains(r.stdout, "checked 8 entries") {
		t.Errorf("cache verify: exit %d\n%s", r.code, r.stdout)
	}
}

// TestRunCacheConcurrent runs the manifest into two folders at once with
// one cache: both succeed, and the cache is sound and complete.
func TestRunCacheConcurrent(t *testing.T) {
	path, url, _, env := cacheSetup(t, "", sandbox.Config{})
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for k := range codes {
		out := t.TempDir()
		wg.Go(func() {
			codes[k] = batchCmd(t, env, "run", "--api-url", url, "--out", out, path).code
		})
	}
	wg.Wait()
	if codes[0] != exitOK || codes[1] != exitOK {
		t.Fatalf("runs at once: exits %v", codes)
	}
	if r := batchCmd(t, env, "cache", "verify"); r.code != exitOK || !strings.Contains(r.stdout, "checked 8 entries") || !strings.Contains(r.stdout, "all sound") {
		t.Errorf("cache verify: exit %d\n%s", r.code, r.stdout)
	}
}

// TestCanaryThenScale: a sample run, then the full run into the same
// folder buys only the rest (the journal holds the sample); a full run into
// another folder buys only the rest too (the cache holds the sample).
func TestCanaryThenScale(t *testing.T) {
	body := cacheManifestWith(t, "  - id: sky\n    prompt: an evening sky\n", "")
	path, url, sb, env := cacheSetup(t, body, sandbox.Config{})
	out := t.TempDir()
	mustBatch(t, env, "run", "--api-url", url, "--sample", "2", "--out", out, path)
	if n := generations(sb); n != 2 {
		t.Fatalf("--sample 2: %d generations, want 2", n)
	}
	mustBatch(t, env, "run", "--api-url", url, "--no-cache", "--out", out, path)
	if n := generations(sb); n != cacheSeeded {
		t.Errorf("full run into the sample's folder, no cache: %d generations in all, want %d", n, cacheSeeded)
	}
	rep := readReport(t, out)
	resumed := 0
	for _, j := range rep.Jobs {
		if j.Resumed {
			resumed++
		}
	}
	if resumed != 2 || rep.Totals.Succeeded != cacheSeeded {
		t.Errorf("full run: %d resumed, %d succeeded; want 2, %d", resumed, rep.Totals.Succeeded, cacheSeeded)
	}
	// That run kept nothing in the cache (--no-cache): the cache holds the
	// sample alone, and a full run elsewhere buys the rest.
	other := t.TempDir()
	mustBatch(t, env, "run", "--api-url", url, "--out", other, path)
	if n := generations(sb) - cacheSeeded; n != cacheSeeded-2 {
		t.Errorf("full run into another folder: %d generations, want %d", n, cacheSeeded-2)
	}
	if rep := readReport(t, other); rep.CachedJobs != 2 {
		t.Errorf("full run into another folder: %d jobs from the cache, want 2", rep.CachedJobs)
	}
}

// TestPipelineFromCache runs examples/pipeline.yaml on the in-process
// sandbox twice, into two folders: the second takes every cacheable job
// from the cache (a source's dependents too, the async job included) and
// buys only the job without a seed; plan --sandbox foresaw it.
func TestPipelineFromCache(t *testing.T) {
	env := map[string]string{"XDG_CACHE_HOME": t.TempDir()}
	const manifest = "../../examples/pipeline.yaml"
	mustBatch(t, env, "run", "--sandbox", "--out", t.TempDir(), manifest)
	doc := cachedPlan(t, env, "--sandbox", manifest)
	planned := map[string]bool{}
	for _, j := range doc.Jobs {
		planned[j.ID] = j.Cached
	}
	out := t.TempDir()
	mustBatch(t, env, "run", "--sandbox", "--out", out, manifest)
	rep := readReport(t, out)
	for _, j := range rep.Jobs {
		want := j.ID != "shelf-teal" // edit/search-and-recolor without a seed
		if j.Cached != want || planned[j.ID] != want || j.Status != report.StatusSucceeded {
			t.Errorf("job %s: %s, cached %v, planned as cached %v; want both %v", j.ID, j.Status, j.Cached, planned[j.ID], want)
		}
	}
	if rep.CachedJobs != 4 || doc.CachedJobs != 4 {
		t.Errorf("%d jobs from the cache, plan said %d; want 4", rep.CachedJobs, doc.CachedJobs)
	}
}
