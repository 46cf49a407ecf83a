package runner

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cache"
	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/stability"
)

// testEndpoint is the API the cache keys of these tests name.
const testEndpoint = "https://api.test"

// openCache opens a cache in a new temp folder.
func openCache(t *testing.T) *cache.Cache {
	t.Helper()
	c, err := cache.Open(t.TempDir(), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cacheConfig is fastConfig with the cache c, in a new output folder.
func cacheConfig(t *testing.T, c Cache) Config {
	cfg := fastConfig(t)
	cfg.Cache, cfg.CacheEndpoint = c, testEndpoint
	return cfg
}

// countingGen answers every request and poll as the API would, counting
// what is sent: generations, submits and polls.
type countingGen struct {
	sent atomic.Int32
}

func (g *countingGen) Generate(ctx context.Context, req stability.Request, sink stability.Sink) ([]stability.Artifact, error) {
	g.sent.Add(1)
	return succeed(ctx, req, sink)
}

func (g *countingGen) Submit(context.Context, string, []stability.Field) (string, error) {
	g.sent.Add(1)
	return "gen-1", nil
}

func (g *countingGen) Result(_ context.Context, _ string, sink stability.Sink) ([]stability.Artifact, bool, error) {
	g.sent.Add(1)
	return finished(sink, 77)
}

// silentGen fails the test on any request: the run must send nothing.
func silentGen(t *testing.T) *fakeGen {
	return &fakeGen{
		fn: func(context.Context, stability.Request, stability.Sink) ([]stability.Artifact, error) {
			t.Errorf("Generate called: a cached job was bought")
			return nil, errors.New("no request")
		},
		submit: noSubmit(t),
		result: noResult(t),
	}
}

// mustRun runs jobs and fails the test when the run fails.
func mustRun(t *testing.T, cfg Config, gen Generator, jobs []manifest.Job) testResult {
	t.Helper()
	res, err := runJobs(t.Context(), cfg, gen, jobs, prices(len(jobs)))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

// outFiles returns the SHA-256 of each image file a run wrote, by path.
func outFiles(t *testing.T, outDir string, res testResult) map[string]string {
	t.Helper()
	sums := map[string]string{}
	for _, j := range res.Jobs {
		for _, img := range j.Images {
			sums[img.Path] = fileSum(t, filepath.Join(outDir, img.Path))
		}
	}
	return sums
}

// cachedJobs are jobs of every kind the cache keeps, by case name.
func cachedJobs(t *testing.T) map[string][]manifest.Job {
	in := inputPNG(t)
	v1, _ := testJobs(3)
	samples, _ := testJobs(1)
	samples[0].Samples = 2
	async := pipeJob("up", "upscale/creative", manifest.Input{Field: "image", Path: in})
	async.Params = []manifest.Param{{Name: "seed", Value: "9"}}
	return map[string][]manifest.Job{
		"v1":               v1,
		"v1 samples":       samples,
		"png":              {stableJob("core", "generate/core", 0, 0, "seed", "7")},
		"jpeg":             {stableJob("core", "generate/core", 0, 0, "seed", "7", "output_format", "jpeg")},
		"webp":             {stableJob("core", "generate/core", 0, 0, "seed", "7", "output_format", "webp")},
		"service w/o seed": {pipeJob("cut", "edit/remove-background", manifest.Input{Field: "image", Path: in})},
		"async":            {async},
	}
}

// TestCacheServesAnotherFolder runs jobs into one folder, then into a new
// one with the same cache: the second run sends nothing, charges nothing,
// and writes the same files, journaled as cached; a third run into that
// folder resumes them from its journal.
func TestCacheServesAnotherFolder(t *testing.T) {
	for name, jobs := range cachedJobs(t) {
		t.Run(name, func(t *testing.T) {
			c := openCache(t)
			first := cacheConfig(t, c)
			first.PollInterval, first.FastPolls = time.Millisecond, true
			gen := &countingGen{}
			paid := mustRun(t, first, gen, jobs)
			for _, j := range paid.Jobs {
				if j.Status != Succeeded || j.Cached || j.CacheError != "" {
					t.Fatalf("first run: job %s %s cached %v: %s %s", j.ID, j.Status, j.Cached, j.Error, j.CacheError)
				}
			}
			want := outFiles(t, first.OutDir, paid)

			second := cacheConfig(t, c)
			got := mustRun(t, second, silentGen(t), jobs)
			if got.Charged != 0 || got.Spent != 0 {
				t.Errorf("second run charged %v, spent %v; want 0", got.Charged, got.Spent)
			}
			for k, j := range got.Jobs {
				p := paid.Jobs[k]
				if j.Status != Succeeded || !j.Cached || j.Credits != 0 || j.Attempts != 0 || j.Resumed {
					t.Errorf("second run: job %s = %s cached %v, %v credits, %d attempts, resumed %v; want succeeded, cached, 0, 0, false (%s)",
						j.ID, j.Status, j.Cached, j.Credits, j.Attempts, j.Resumed, j.Error)
				}
				if !slices.Equal(j.Images, p.Images) || j.Params != p.Params {
					t.Errorf("second run: job %s images %+v, params %q; want the first run's %+v, %q", j.ID, j.Images, j.Params, p.Images, p.Params)
				}
			}
			if files := outFiles(t, second.OutDir, got); !maps.Equal(files, want) {
				t.Errorf("second run's files %v, want the first run's %v", files, want)
			}
			for _, e := range journalEntries(t, second.OutDir) {
				if e.ID != "" && (!e.Cached || e.Credits != 0 || e.Status != Succeeded || e.Attempts != 0) {
					t.Errorf("journal line %+v, want a succeeded, cached line with 0 credits", e)
				}
			}
			st, err := c.Stats(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if st.Hits != int64(len(jobs)) || st.Saved != cost.Credits(len(jobs))*cost.Credit {
				t.Errorf("cache stats after the second run: %d hits saving %v, want %d saving %v", st.Hits, st.Saved, len(jobs), cost.Credits(len(jobs))*cost.Credit)
			}

			again := mustRun(t, second, silentGen(t), jobs)
			for _, j := range again.Jobs {
				if !j.Resumed || !j.Cached || j.Credits != 0 {
					t.Errorf("rerun: job %s resumed %v, cached %v, %v credits; want resumed, cached, 0", j.ID, j.Resumed, j.Cached, j.Credits)
				}
			}

			// A WebP file in OUT is the API's bytes: a hard link to the
			// cache's, so two folders served from it share it. The other
			// formats carry the job's record and are written anew.
			third := cacheConfig(t, c)
			mustRun(t, third, silentGen(t), jobs)
			for _, j := range got.Jobs {
				for _, img := range j.Images {
					a, errA := os.Stat(filepath.Join(second.OutDir, img.Path))
					b, errB := os.Stat(filepath.Join(third.OutDir, img.Path))
					if errA != nil || errB != nil {
						t.Fatal(errA, errB)
					}
					if linked, webp := os.SameFile(a, b), strings.HasSuffix(img.Path, ".webp"); linked != webp {
						t.Errorf("%s: the two folders share the file: %v, want %v", img.Path, linked, webp)
					}
				}
			}
		})
	}
}

// TestCacheNeverKeepsRandomSeeds buys jobs whose seed is left to the API
// every time, and keeps none of them.
func TestCacheNeverKeepsRandomSeeds(t *testing.T) {
	v1, _ := testJobs(1)
	v1[0].Seed = 0
	tests := map[string]manifest.Job{
		"v1 seed 0":          v1[0],
		"service, no seed":   stableJob("core", "generate/core", 0, 0),
		"service, seed 0":    stableJob("core", "generate/core", 0, 0, "seed", "0"),
		"sd3, no seed, webp": stableJob("sd3", "generate/sd3", 0, 0, "output_format", "webp"),
	}
	for name, job := range tests {
		t.Run(name, func(t *testing.T) {
			if Cacheable(job) {
				t.Errorf("Cacheable(%s) = true, want false", name)
			}
			c := openCache(t)
			gen := &countingGen{}
			for range 2 {
				res := mustRun(t, cacheConfig(t, c), gen, []manifest.Job{job})
				if j := res.Jobs[0]; j.Status != Succeeded || j.Cached {
					t.Errorf("job %s cached %v, want succeeded and bought", j.Status, j.Cached)
				}
			}
			if n := gen.sent.Load(); n != 2 {
				t.Errorf("two runs sent %d requests, want 2", n)
			}
			if st, err := c.Stats(t.Context()); err != nil || st.Entries != 0 {
				t.Errorf("cache holds %d entries (%v), want none", st.Entries, err)
			}
		})
	}
}

// entryImage returns the path of the first image of the only entry in c.
func entryImage(t *testing.T, c *cache.Cache) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(c.Dir(), "objects", "*", "*", "1.*"))
	if err != nil || len(files) != 1 {
		t.Fatalf("cache images %v (%v), want one", files, err)
	}
	return files[0]
}

// TestCacheDamagedEntry damages the cached image of a job: the next run
// reports it, the cache removes it, and the job is bought (and kept
// again); when the budget cannot pay for it, the job fails unsent.
func TestCacheDamagedEntry(t *testing.T) {
	tests := []struct {
		name   string
		damage func(path string) error
	}{
		{"a byte changed", func(path string) error {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			b[len(b)/2] ^= 0xff
			return os.WriteFile(path, b, 0o644)
		}},
		{"cut short", func(path string) error { return os.Truncate(path, 10) }},
		{"gone", os.Remove},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jobs, _ := testJobs(1)
			c := openCache(t)
			gen := &countingGen{}
			mustRun(t, cacheConfig(t, c), gen, jobs)
			if err := tt.damage(entryImage(t, c)); err != nil {
				t.Fatal(err)
			}
			res := mustRun(t, cacheConfig(t, c), gen, jobs)
			j := res.Jobs[0]
			if j.Status != Succeeded || j.Cached || j.Credits != cost.Credit || !strings.Contains(j.CacheDamaged, "damaged") {
				t.Errorf("job after damage: %s, cached %v, %v credits, damage %q; want bought, the damage told", j.Status, j.Cached, j.Credits, j.CacheDamaged)
			}
			if n := gen.sent.Load(); n != 2 {
				t.Errorf("sent %d requests, want 2 (the damaged entry bought again)", n)
			}
			v, err := c.Verify(t.Context())
			if err != nil || len(v.Bad) != 0 || v.Entries != 1 {
				t.Errorf("cache after the rerun: %d entries, bad %v (%v); want the bought image kept, sound", v.Entries, v.Bad, err)
			}

			// Damaged again, with no budget left for the purchase.
			if err := tt.damage(entryImage(t, c)); err != nil {
				t.Fatal(err)
			}
			cfg := cacheConfig(t, c)
			cfg.Budget = new(cost.Credits)
			res = mustRun(t, cfg, silentGen(t), jobs)
			if j := res.Jobs[0]; j.Status != Failed || j.Failure != FailBudget || j.CacheDamaged == "" {
				t.Errorf("job without budget: %s %s, damage %q; want failed for the budget, the damage told", j.Status, j.Failure, j.CacheDamaged)
			}
		})
	}
}

// failingCache is a cache that cannot keep anything.
type failingCache struct{ *cache.Cache }

func (failingCache) Create(string) (*cache.Writer, error) { return nil, errors.New("disk full") }

// TestCacheKeepFailure: a cache that cannot keep an answer never fails the
// job that bought it.
func TestCacheKeepFailure(t *testing.T) {
	jobs, _ := testJobs(2)
	c := failingCache{openCache(t)}
	gen := &countingGen{}
	for run := range 2 {
		res := mustRun(t, cacheConfig(t, c), gen, jobs)
		for _, j := range res.Jobs {
			if j.Status != Succeeded || j.Cached || !strings.Contains(j.CacheError, "disk full") {
				t.Errorf("run %d: job %s %s cached %v, cache error %q; want succeeded, bought, the error told", run, j.ID, j.Status, j.Cached, j.CacheError)
			}
		}
	}
	if n := gen.sent.Load(); n != 4 {
		t.Errorf("sent %d requests, want 4", n)
	}
}

// TestCachePipeline runs a source and a job taking its image, then reruns
// them into a new folder: both come from the cache, and CacheHits, what
// plan asks, foresees exactly that, whatever the source's format. A new
// dependent of a cached source is bought, taking the source's file.
func TestCachePipeline(t *testing.T) {
	for _, format := range []string{"png", "jpeg", "webp"} {
		t.Run(format, func(t *testing.T) {
			src := stableJob("src", "generate/core", 0, 0, "seed", "5", "output_format", format)
			up := pipeJob("up", "upscale/fast", from("image", "src"))
			jobs := []manifest.Job{up, src} // the dependent first: sources may come later
			c := openCache(t)
			hits := func(jobs []manifest.Job) []int {
				var got []int
				var mu sync.Mutex
				err := CacheHits(t.Context(), c, c.Contains, testEndpoint, JobList(jobs), func(i int) {
					mu.Lock()
					got = append(got, i)
					mu.Unlock()
				})
				if err != nil {
					t.Fatal(err)
				}
				slices.Sort(got)
				return got
			}
			if got := hits(jobs); len(got) != 0 {
				t.Errorf("CacheHits before any run = %v, want none", got)
			}
			mustRun(t, cacheConfig(t, c), &countingGen{}, jobs)
			if got := hits(jobs); !slices.Equal(got, []int{0, 1}) {
				t.Errorf("CacheHits after a run = %v, want [0 1]", got)
			}
			res := mustRun(t, cacheConfig(t, c), silentGen(t), jobs)
			for _, j := range res.Jobs {
				if !j.Cached || j.Status != Succeeded {
					t.Errorf("job %s: %s cached %v, want succeeded from the cache", j.ID, j.Status, j.Cached)
				}
			}

			// Another dependent of the cached source: the source comes from
			// the cache, the new job is bought with the source's file.
			crop := pipeJob("cut", "edit/remove-background", from("image", "src"))
			jobs = []manifest.Job{src, crop}
			if got := hits(jobs); !slices.Equal(got, []int{0}) {
				t.Errorf("CacheHits with a new dependent = %v, want [0]", got)
			}
			gen := &pipeGen{}
			cfg := cacheConfig(t, c)
			res = mustRun(t, cfg, gen, jobs)
			if s, d := res.Jobs[0], res.Jobs[1]; !s.Cached || d.Cached || d.Status != Succeeded {
				t.Errorf("source cached %v, dependent %s cached %v; want the source cached, the dependent bought", s.Cached, d.Status, d.Cached)
			}
			if sent := gen.order(); len(sent) != 1 {
				t.Errorf("sent %v, want the dependent alone", sent)
			}
			if got := hits(jobs); !slices.Equal(got, []int{0, 1}) {
				t.Errorf("CacheHits once both ran = %v, want [0 1]", got)
			}
		})
	}
}

// TestReplaySumMatchesRun holds replaySum, which plan uses to key a job
// taking a cached source's image, to the files a run writes: the sum it
// works out from the entry is the file's, in every format.
func TestReplaySumMatchesRun(t *testing.T) {
	v1, _ := testJobs(1)
	v1[0].Samples = 2
	for name, job := range map[string]manifest.Job{
		"v1 samples": v1[0],
		"png":        stableJob("core", "generate/core", 0, 0, "seed", "7"),
		"jpeg":       stableJob("core", "generate/core", 0, 0, "seed", "7", "output_format", "jpeg"),
		"webp":       stableJob("core", "generate/core", 0, 0, "seed", "7", "output_format", "webp"),
	} {
		t.Run(name, func(t *testing.T) {
			c := openCache(t)
			cfg := cacheConfig(t, c)
			res := mustRun(t, cfg, &countingGen{}, []manifest.Job{job})
			es := journalEntries(t, cfg.OutDir)
			key := es[len(es)-1].Key
			imgs, err := replaySums(c, testEndpoint, job, key)
			if err != nil {
				t.Fatal(err)
			}
			want := res.Jobs[0].Images
			if len(imgs) != len(want) {
				t.Fatalf("replaySums = %d images, want %d", len(imgs), len(want))
			}
			for k := range want {
				if imgs[k].SHA256 != fileSum(t, filepath.Join(cfg.OutDir, want[k].Path)) || imgs[k].Path != want[k].Path {
					t.Errorf("replaySums image %d = %s %s, want the run's file %s %s", k, imgs[k].Path, imgs[k].SHA256, want[k].Path, want[k].SHA256)
				}
			}
		})
	}
}

// TestCacheConcurrentRuns runs the same jobs into two folders at once with
// one cache: both succeed, the cache ends sound with one entry per
// request, and a third run buys nothing.
func TestCacheConcurrentRuns(t *testing.T) {
	jobs, _ := testJobs(12)
	c := openCache(t)
	gen := &countingGen{}
	var wg sync.WaitGroup
	results := make([]testResult, 2)
	cfgs := []Config{cacheConfig(t, c), cacheConfig(t, c)}
	for k := range results {
		wg.Go(func() {
			res, err := runJobs(t.Context(), cfgs[k], gen, jobs, prices(len(jobs)))
			if err != nil {
				t.Errorf("run %d: %v", k, err)
			}
			results[k] = res
		})
	}
	wg.Wait()
	for k, res := range results {
		for _, j := range res.Jobs {
			if j.Status != Succeeded || j.CacheError != "" {
				t.Errorf("run %d: job %s %s (%s)", k, j.ID, j.Status, j.CacheError)
			}
		}
	}
	v, err := c.Verify(t.Context())
	if err != nil || len(v.Bad) != 0 || v.Entries != len(jobs) {
		t.Errorf("cache after two runs at once: %d entries, bad %v (%v); want %d, sound", v.Entries, v.Bad, err, len(jobs))
	}
	res := mustRun(t, cacheConfig(t, c), silentGen(t), jobs)
	for _, j := range res.Jobs {
		if !j.Cached {
			t.Errorf("third run: job %s was not served from the cache", j.ID)
		}
	}
}

// BenchmarkRunCache runs 200 seeded v1 jobs against a fake API three
// ways: without a cache; with an empty one, every answer kept (what the
// cache adds to a paid run); and with one holding them all, every job
// served. One op is a whole run into a new output folder.
func BenchmarkRunCache(b *testing.B) {
	jobs, ps := testJobs(200)
	run := func(b *testing.B, c Cache) {
		cfg := Config{OutDir: b.TempDir(), Rate: Rate{N: 1 << 30, Window: time.Second}, Concurrency: 8}
		if c != nil {
			cfg.Cache, cfg.CacheEndpoint = c, testEndpoint
		}
		if _, err := Run(b.Context(), cfg, &countingGen{}, JobList(jobs), ps); err != nil {
			b.Fatal(err)
		}
	}
	newCache := func(b *testing.B) *cache.Cache {
		c, err := cache.Open(b.TempDir(), cache.Options{})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	b.Run("off", func(b *testing.B) {
		for b.Loop() {
			run(b, nil)
		}
	})
	b.Run("keep", func(b *testing.B) {
		for b.Loop() {
			run(b, newCache(b))
		}
	})
	b.Run("hit", func(b *testing.B) {
		c := newCache(b)
		run(b, c)
		for b.Loop() {
			run(b, c)
		}
	})
}
