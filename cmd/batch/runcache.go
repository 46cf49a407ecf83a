package main

import (
	"context"
	"fmt"

	"github.com/batch-tool/batch/internal/cache"
	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/runner"
)

// sandboxEndpoint names the in-process sandbox of --sandbox in cache keys:
// its address changes from run to run, and its images must never be
// served to a run against another API.
const sandboxEndpoint = "sandbox"

// indexAbove is the number of jobs above which a plan reads the cache's
// index of keys in one pass over its folders instead of looking each job's
// entry up: a few jobs against a big cache take a few lookups.
const indexAbove = 1000

// cacheEndpoint is the API that the cache keys of a plan or run name:
// apiURL, or sandboxEndpoint with --sandbox.
func cacheEndpoint(apiURL string, sandbox bool) string {
	if sandbox {
		return sandboxEndpoint
	}
	return apiURL
}

// openImageCache returns the image cache a plan or run of m uses: none with
// --no-cache, --cache DIR, else the manifest's cache: (false: none; a
// folder), else the default folder under the user's cache folder. When the
// default folder cannot be worked out (no $HOME), there is no cache, and
// the user is warned. The cache is created only when an image is added.
func (e *env) openImageCache(f *planFlags, m *manifest.Manifest) (*cache.Cache, error) {
	dir := f.cacheDir
	switch {
	case f.noCache:
		return nil, nil
	case dir != "":
	case m.NoCache:
		return nil, nil
	case m.CacheDir != "":
		dir = m.CacheDir
	default:
		d, err := cache.DefaultDir(e.getenv)
		if err != nil {
			fmt.Fprintf(e.stderr, "batch: warning: no image cache (%v); give --cache DIR to use one\n", err)
			return nil, nil
		}
		dir = d
	}
	return cache.Open(dir, cache.Options{Now: e.now})
}

// imageCache is what the image cache does for a plan: which jobs it holds
// (priced at 0), and for how much.
type imageCache struct {
	store    *cache.Cache // nil without a cache
	endpoint string       // what its keys name the API by
	held     []bool       // per job of the plan; nil when none is held
	jobs     int          // jobs held
	saved    cost.Credits // their list price
}

// has reports whether the cache holds the i-th job of the plan.
func (c *imageCache) has(i int) bool { return c.held != nil && c.held[i] }

// useCache opens the image cache of a plan or run against endpoint (see
// openImageCache) and marks the jobs it holds: they are priced at 0, so the
// plan's total, its budget check and the run's are what will be bought.
// It reads only the cache's folders, and the entries of hits whose images
// other jobs take.
func (e *env) useCache(ctx context.Context, p *planned, f *planFlags, endpoint string) error {
	store, err := e.openImageCache(f, p.manifest)
	if err != nil || store == nil {
		return err
	}
	p.cache = imageCache{store: store, endpoint: endpoint}
	held := store.Contains
	if p.set.Len() > indexAbove {
		x, err := store.Index(ctx)
		if ctx.Err() != nil {
			return interrupted(p.manifest.Path)
		}
		if err != nil {
			return err
		}
		if x.Len() == 0 {
			return nil
		}
		held = x.Contains
	}
	c := &p.cache
	err = runner.CacheHits(ctx, store, held, endpoint, p.set, func(i int) {
		if c.held == nil {
			c.held = make([]bool, p.set.Len())
		}
		if !c.held[i] {
			c.held[i] = true
			c.jobs++
			c.saved += p.prices[i]
		}
	})
	if ctx.Err() != nil {
		return interrupted(p.manifest.Path)
	}
	if err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	p.total -= c.saved
	r := p.report
	r.TotalCredits, r.TotalUSD = p.total, p.total.USD()
	r.OverBudget = p.budget != nil && p.total > *p.budget
	r.CachedJobs, r.CacheSavedCredits = c.jobs, c.saved
	return nil
}

// configure sets cfg's cache; nothing without one.
func (c *imageCache) configure(cfg *runner.Config) {
	if c.store != nil {
		cfg.Cache, cfg.CacheEndpoint = c.store, c.endpoint
	}
}

// remaining is what a run into out will still buy: st.Remaining (the list
// price of every job the folder does not hold) less the jobs the cache
// holds, which a run takes from it.
func (p *planned) remaining(st runner.Standing, out string) (cost.Credits, error) {
	if p.cache.jobs == 0 {
		return st.Remaining, nil
	}
	buy := make([]cost.Credits, len(p.prices))
	for i, c := range p.prices {
		if !p.cache.has(i) {
			buy[i] = c
		}
	}
	var all runner.Jobs
	if !p.set.whole() {
		all = allJobs(p.manifest)
	}
	bought, err := runner.ReadStanding(out, p.set, buy, all)
	if err != nil {
		return 0, err
	}
	return bought.Remaining, nil
}

// cacheTally counts what the image cache did in a run, as jobs finish, and
// tells its problems on stderr: each damaged entry, and the first failure
// to read or keep an entry (the rest are counted).
type cacheTally struct {
	e      *env
	jobs   int          // jobs whose images came from the cache
	saved  cost.Credits // their list price
	errors int          // cache failures told or counted
}

// add takes in the i-th job's result, whose list price is price.
func (t *cacheTally) add(jr runner.JobResult, price cost.Credits) {
	if jr.Cached {
		t.jobs++
		t.saved += price
	}
	if jr.CacheDamaged != "" {
		t.warn(fmt.Sprintf("job %s: %s; it was bought instead", jr.ID, jr.CacheDamaged))
	}
	if jr.CacheError != "" {
		if t.errors++; t.errors == 1 {
			t.warn(fmt.Sprintf("job %s: %s (the job is unaffected)", jr.ID, jr.CacheError))
		}
	}
}

func (t *cacheTally) warn(msg string) {
	nl := ""
	if t.e.isTerminal {
		nl = "\n" // after the progress line
	}
	fmt.Fprintf(t.e.stderr, "%sbatch: warning: %s\n", nl, msg)
}

// done tells how many cache failures were counted and not shown.
func (t *cacheTally) done() {
	if t.errors > 1 {
		fmt.Fprintf(t.e.stderr, "batch: warning: %d more jobs met a cache failure (not shown)\n", t.errors-1)
	}
}
