package runner

// The image cache, seen from a run: a cacheable job whose request the
// cache holds is written into OUT from it without a request; every paid,
// successful answer of a cacheable request is added to it. See package
// cache for what an entry holds and how it is kept safe.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"

	"github.com/batch-tool/batch/internal/cache"
	"github.com/batch-tool/batch/internal/catalog"
	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/pngtext"
	"github.com/batch-tool/batch/internal/stability"
)

// Cache is the store of bought images a run reads before it buys a
// cacheable request and adds each paid, successful answer of one to.
// *cache.Cache satisfies it; it must be safe for concurrent use.
type Cache interface {
	// Get returns the entry of key: cache.ErrMiss when there is none, a
	// *cache.CorruptError for a damaged one (removed).
	Get(key string) (cache.Entry, error)
	// Open reads image i of an entry, checking its hash: a damaged image
	// ends in a *cache.CorruptError instead of io.EOF.
	Open(e cache.Entry, i int) (io.ReadCloser, error)
	// Link puts image i of an entry at dst, a hard link where it can,
	// and syncs dst's folder.
	Link(ctx context.Context, e cache.Entry, i int, dst string) (bool, error)
	// Create starts the entry of key.
	Create(key string) (*cache.Writer, error)
	// Served records that key's entry saved a request of list price price.
	Served(key string, price cost.Credits) error
}

var _ Cache = (*cache.Cache)(nil)

// Cacheable reports whether a job's request fixes its result, the only
// requests the cache serves and keeps: a v1 job with a non-zero seed; a
// Stable Image job whose service takes a seed and that sets a non-zero
// one, or whose service takes none (upscale/fast, remove-background). A
// seed of 0, or none, lets the API pick one at random.
func Cacheable(j manifest.Job) bool {
	if j.Service == "" {
		return cache.Cacheable(true, uint64(j.Seed))
	}
	op, ok := catalog.Lookup(j.Service)
	if !ok {
		return false
	}
	_, takesSeed := op.Field("seed")
	var seed uint64
	if v, ok := j.Param("seed"); ok {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return false
		}
		seed = s
	}
	return cache.Cacheable(takesSeed, seed)
}

// fromCache serves job i from Config.Cache when the cache holds its
// request, whose journal Key is key: each image replayed through the same
// writer a paid answer goes through (so OUT's files carry the job's own
// record), or hard-linked when OUT's file is the API's bytes (WebP); then
// the job is journaled as succeeded, cached, with 0 credits, and the hit
// recorded in the cache. It reports false when the job is to be bought:
// not cacheable, not in the cache, or its entry damaged (removed by the
// cache, and told in res.CacheDamaged) or unreadable (res.CacheError). A
// file that cannot be written into OUT fails the job and stops the run,
// as for a paid answer.
func (r *run) fromCache(i int, job *manifest.Job, key string, res *JobResult) (event, bool) {
	if r.cfg.Cache == nil || !Cacheable(*job) {
		return event{}, false
	}
	ckey, err := cache.KeyFor(r.cfg.CacheEndpoint, key)
	if err != nil {
		res.CacheError = err.Error()
		return event{}, false
	}
	e, err := r.cfg.Cache.Get(ckey)
	if err != nil {
		cacheTrouble(res, "read", err)
		return event{}, false
	}
	format, err := outputFormat(*job)
	if err != nil || len(e.Images) != max(job.Samples, 1) {
		return event{}, false // an entry that cannot be this job's: buy it
	}
	var images []Image
	if format.name == "webp" {
		images, err = r.linkCached(job, key, format, e)
	} else {
		images, err = r.replayCached(job, key, format, e)
	}
	if lf, ok := errors.AsType[*localFailure](err); ok {
		err := fmt.Errorf("cached but not saved: %w", lf.err)
		r.failLocal(fmt.Errorf("job %s: %w", job.ID, err))
		return event{i: i, res: failed(*res, FailLocal, err)}, true
	}
	if err != nil {
		cacheTrouble(res, "read", err)
		return event{}, false
	}
	res.Cached, res.Images, res.Credits = true, images, 0
	res.Params = Parameters(*job, images[0].Seed)
	res.Status, res.Error = outcome(images)
	if res.Status == Failed {
		res.Failure = FailAnswer
	}
	ev := r.record(i, key, *res, 0)
	// The hit's record only feeds 'batch cache stats': losing it costs
	// nothing, so its error is dropped.
	_ = r.cfg.Cache.Served(ckey, r.prices[i])
	return ev, true
}

// cacheTrouble tells in res what went wrong with the cache in doing what
// ("read", "keep"), unless it is a plain miss.
func cacheTrouble(res *JobResult, what string, err error) {
	switch {
	case errors.Is(err, cache.ErrMiss):
	case errors.As(err, new(*cache.CorruptError)):
		res.CacheDamaged = err.Error()
	default:
		res.CacheError = fmt.Sprintf("cache %s: %v", what, err)
	}
}

// localFailure is a file of OUT that could not be written while a cached
// entry was materialised: a failure here, not the cache's.
type localFailure struct{ err error }

func (e *localFailure) Error() string { return e.err.Error() }
func (e *localFailure) Unwrap() error { return e.err }

// artifactOf is the answer's metadata of a cached image.
func artifactOf(img cache.Image) stability.Artifact {
	return stability.Artifact{Seed: img.Seed, FinishReason: img.FinishReason, RequestID: img.RequestID, Format: img.Format}
}

// replayCached writes the images of entry e into OUT for job (journal Key
// key) through the writer of a paid answer, and commits them.
func (r *run) replayCached(job *manifest.Job, key string, format fileFormat, e cache.Entry) ([]Image, error) {
	sink := &attemptFiles{folder: r.folder, job: *job, format: format, key: key, failWrite: r.cfg.failWrite, bufs: &r.images}
	for k, img := range e.Images {
		if err := r.replayImage(sink, e, k, img); err != nil {
			sink.discard()
			if sink.local != nil {
				return nil, &localFailure{sink.local}
			}
			return nil, err
		}
	}
	images, err := sink.commit()
	if err != nil {
		return nil, &localFailure{err}
	}
	return images, nil
}

// replayImage streams image k of e into sink.
func (r *run) replayImage(sink stability.Sink, e cache.Entry, k int, img cache.Image) error {
	w, err := sink.Begin(k)
	if err != nil {
		return err
	}
	rc, err := r.cfg.Cache.Open(e, k)
	if err != nil {
		return err
	}
	_, err = io.Copy(w, rc)
	rc.Close()
	if err != nil {
		return err
	}
	return sink.End(k, artifactOf(img))
}

// linkCached puts the images of entry e, in a format whose files in OUT are
// the API's bytes as they came (WebP, whose record is a sidecar), into OUT
// for job (journal Key key): each record written beside its image, then
// the image linked from the cache (copied across filesystems).
func (r *run) linkCached(job *manifest.Job, key string, format fileFormat, e cache.Entry) ([]Image, error) {
	d := r.folder.out
	images := make([]Image, 0, len(e.Images))
	for k, img := range e.Images {
		folder := ImagesDir
		if img.FinishReason == stability.FinishContentFiltered {
			folder = FilteredDir
		}
		rel := folder + "/" + imageName(job.ID, k, job.Samples, format.ext)
		if err := d.MkdirAll(folder); err != nil {
			return nil, &localFailure{err}
		}
		if r.cfg.failWrite != nil {
			if err := r.cfg.failWrite(rel); err != nil {
				return nil, &localFailure{err}
			}
		}
		a := artifactOf(img)
		mark, _, err := newImageMark(format, imageRecord{ID: job.ID, Key: key, Image: k + 1}, io.Discard)
		if err == nil {
			err = mark.end(a)
		}
		if err != nil {
			return nil, err
		}
		if err := mark.writeSidecar(d, rel, img.SHA256); err != nil {
			return nil, &localFailure{err}
		}
		// Local work bounded by the image's size: finished even after an
		// interrupt, as a request in flight is.
		// Link syncs the folder once the image is in place, which makes
		// the record's name durable too.
		if _, err := r.cfg.Cache.Link(context.Background(), e, k, filepath.Join(r.cfg.OutDir, filepath.FromSlash(rel))); err != nil {
			return nil, err
		}
		images = append(images, Image{Path: rel, Seed: a.Seed, FinishReason: a.FinishReason, SHA256: img.SHA256, RequestID: a.RequestID})
	}
	return images, nil
}

// keeper keeps the answer of a paid, cacheable request in Config.Cache:
// the images the client streams into the job's files are teed, as the API
// sent them, into a new entry per attempt, committed once the job's files
// are and the job succeeded, dropped otherwise. When the job's files are
// the API's bytes as they came (WebP, whose record is a sidecar), nothing
// is teed: the committed files are added to the entry as they are, hard
// links where the cache's filesystem allows. A failure of the cache never
// fails the job: it is told in JobResult.CacheError. A nil *keeper keeps
// nothing. It is used by one goroutine.
type keeper struct {
	c      Cache
	key    string        // the cache key
	format string        // the job's output format, for an artifact that names none
	outDir string        // where the job's files are, for link
	link   bool          // the job's files are the API's bytes: added at commit, not teed
	w      *cache.Writer // the entry of the attempt answering; nil before its first image
	err    error         // the first failure of the cache; nothing more is kept after it
}

// keeper returns the keeper of job's paid answers (journal Key key); nil
// when there is no cache or the job is not cacheable.
func (r *run) keeper(job *manifest.Job, key string) *keeper {
	if r.cfg.Cache == nil || !Cacheable(*job) {
		return nil
	}
	k := &keeper{c: r.cfg.Cache, outDir: r.cfg.OutDir}
	k.key, k.err = cache.KeyFor(r.cfg.CacheEndpoint, key)
	if format, err := outputFormat(*job); err == nil {
		k.format, k.link = format.name, format.name == "webp"
	}
	return k
}

// sink returns the sink of one attempt: files, with each image teed into
// the attempt's cache entry unless the keeper links them. An earlier
// attempt's entry is dropped.
func (k *keeper) sink(files *attemptFiles) stability.Sink {
	if k == nil {
		return files
	}
	k.drop()
	if k.link {
		return files
	}
	return &teeSink{files: files, k: k}
}

// fail records err as the keeper's failure, if it is the first, and drops
// the entry.
func (k *keeper) fail(err error) {
	if k.err == nil {
		k.err = err
	}
	k.drop()
}

// drop aborts the entry being written, if any.
func (k *keeper) drop() {
	if k != nil && k.w != nil {
		k.w.Abort()
		k.w = nil
	}
}

// begin returns the writer of image i's bytes in the entry, creating the
// entry at the first image; nil when nothing is kept.
func (k *keeper) begin(i int) io.Writer {
	if k.err != nil {
		return nil
	}
	if i == 0 {
		w, err := k.c.Create(k.key)
		if err != nil {
			k.fail(err)
			return nil
		}
		k.w = w
	}
	if k.w == nil {
		return nil
	}
	cw, err := k.w.Begin(i)
	if err != nil {
		k.fail(err)
		return nil
	}
	return cw
}

// end finishes image i of the entry with the answer's metadata.
func (k *keeper) end(i int, a stability.Artifact) {
	if k.err != nil || k.w == nil {
		return
	}
	format := a.Format
	if format == "" {
		format = k.format
	}
	if err := k.w.End(i, cache.Image{Format: format, Seed: a.Seed, FinishReason: a.FinishReason, RequestID: a.RequestID}); err != nil {
		k.fail(err)
	}
}

// commit adds the entry to the cache, at list price price, when res, the
// job's result once its files were committed, succeeded; otherwise it
// drops it. It returns res, with CacheError set when the entry could not
// be kept.
func (k *keeper) commit(price cost.Credits, res JobResult) JobResult {
	if k == nil {
		return res
	}
	defer k.drop()
	if res.Status != Succeeded {
		return res
	}
	if k.link && k.err == nil {
		k.addFiles(res.Images)
	}
	if k.err == nil && k.w != nil {
		_, err := k.w.Commit(price)
		k.w = nil
		// ErrMiss: another writer's entry of another version of batch
		// stands there, or was removed again; nothing to do.
		if err != nil && !errors.Is(err, cache.ErrMiss) {
			k.err = err
		}
	}
	if k.err != nil {
		res.CacheError = fmt.Sprintf("paid images not kept in the cache: %v", k.err)
	}
	return res
}

// addFiles starts the entry with the job's committed images, which are the
// API's bytes as they came.
func (k *keeper) addFiles(images []Image) {
	w, err := k.c.Create(k.key)
	if err != nil {
		k.fail(err)
		return
	}
	k.w = w
	for i, img := range images {
		ci := cache.Image{Format: k.format, Seed: img.Seed, FinishReason: img.FinishReason, RequestID: img.RequestID, SHA256: img.SHA256}
		if err := w.AddFile(i, filepath.Join(k.outDir, filepath.FromSlash(img.Path)), ci); err != nil {
			k.fail(err)
			return
		}
	}
}

// teeSink is the sink of an attempt whose answer is also kept in the
// cache: the job's files get every byte first; the cache entry's writer
// never fails (see cache.Writer.Begin), so it cannot fail the attempt.
type teeSink struct {
	files *attemptFiles
	k     *keeper
}

func (t *teeSink) Begin(i int) (io.Writer, error) {
	w, err := t.files.Begin(i)
	if err != nil {
		return nil, err
	}
	if cw := t.k.begin(i); cw != nil {
		return io.MultiWriter(w, cw), nil
	}
	return w, nil
}

func (t *teeSink) End(i int, a stability.Artifact) error {
	if err := t.files.End(i, a); err != nil {
		return err
	}
	t.k.end(i, a)
	return nil
}

// CacheHits calls hit with the position in jobs of every job a run against
// endpoint (the API base URL of the cache keys, see Config.CacheEndpoint)
// would take from c instead of buying, as Run decides it: a cacheable job
// whose cache key held reports (an Index's Contains, or c's), its input
// files hashed to key it. A job taking another job's image is keyed by the
// file its source writes into OUT, so it is a hit only when every source
// is one and the file can be worked out: the source's entry replayed
// through the image writer of a run into a hash (a damaged entry is
// removed, as Get does, and the source's dependents count as bought). A
// job whose key cannot be computed (an input that cannot be read) counts
// as bought. hit is called at most once per job, in no particular order;
// CacheHits stops once ctx is done.
func CacheHits(ctx context.Context, c Cache, held func(key string) bool, endpoint string, jobs Jobs, hit func(i int)) error {
	n := jobs.Len()
	hits := make([]uint64, (n+63)/64)
	isHit := func(i int) bool { return hits[i/64]&(1<<(i%64)) != 0 }
	setHit := func(i int) {
		hits[i/64] |= 1 << (i % 64)
		hit(i)
	}
	sums := map[string]string{} // input file → SHA-256, each file read once
	// keyOf is the journal Key of j, its sources' images from images; ""
	// when it cannot be computed.
	keyOf := func(j *manifest.Job, images func(from string) []Image) string {
		if addInputs(sums, nil, j) != nil {
			return ""
		}
		files, err := resolveInputs("", j, sums, images)
		if err != nil {
			return ""
		}
		_, key, err := requestKey(*j, files)
		if err != nil {
			return ""
		}
		return key
	}
	heldKey := func(key string) bool {
		ckey, err := cache.KeyFor(endpoint, key)
		return err == nil && held(ckey)
	}
	// The jobs without sources, in one pass.
	linked := false
	for i := range n {
		if i%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		j := jobs.Job(i)
		if len(j.DependsOn()) > 0 {
			linked = true
			continue
		}
		if Cacheable(j) {
			if key := keyOf(&j, nil); key != "" && heldKey(key) {
				setHit(i)
			}
		}
	}
	if !linked {
		return nil
	}
	// Then the jobs with sources, each after its sources.
	g, err := newGraph(jobs, nil)
	if err != nil {
		return err
	}
	keys := map[int]string{}    // journal Key of each hit some job takes images from
	images := map[int][]Image{} // the files those hits write
	imagesOf := func(s int) []Image {
		if imgs, ok := images[s]; ok {
			return imgs
		}
		imgs, err := replaySums(c, endpoint, jobs.Job(s), keys[s])
		if err != nil {
			imgs = nil // damaged or gone: its dependents are bought
		}
		images[s] = imgs
		return imgs
	}
	for k := range n {
		if k%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		i := g.at(k)
		srcs, deps := g.sources(i), g.dependents(i)
		if len(srcs) == 0 && len(deps) == 0 {
			continue
		}
		j := jobs.Job(i)
		if len(srcs) == 0 {
			if isHit(i) {
				keys[i] = keyOf(&j, nil)
			}
			continue
		}
		known := Cacheable(j)
		for _, s := range srcs {
			known = known && isHit(int(s)) && imagesOf(int(s)) != nil
		}
		if !known {
			continue
		}
		deps2 := j.DependsOn()
		key := keyOf(&j, func(from string) []Image {
			for p, id := range deps2 {
				if id == from && p < len(srcs) {
					return images[int(srcs[p])]
				}
			}
			return nil
		})
		if key != "" && heldKey(key) {
			setHit(i)
			if len(deps) > 0 {
				keys[i] = key
			}
		}
	}
	return nil
}

// replaySums returns the images job (journal Key key) would write into OUT
// from its cache entry, each with the SHA-256 of its file as a run writes
// it.
func replaySums(c Cache, endpoint string, job manifest.Job, key string) ([]Image, error) {
	ckey, err := cache.KeyFor(endpoint, key)
	if err != nil {
		return nil, err
	}
	e, err := c.Get(ckey)
	if err != nil {
		return nil, err
	}
	format, err := outputFormat(job)
	if err != nil {
		return nil, err
	}
	if len(e.Images) != max(job.Samples, 1) {
		return nil, fmt.Errorf("cache entry of job %s holds %d images", job.ID, len(e.Images))
	}
	out := make([]Image, len(e.Images))
	for k, img := range e.Images {
		sum := img.SHA256 // WebP: OUT's file is the API's bytes
		if format.name != "webp" {
			if sum, err = replaySum(c, e, k, job, key, format); err != nil {
				return nil, err
			}
		}
		out[k] = Image{Path: ImagesDir + "/" + imageName(job.ID, k, job.Samples, format.ext), Seed: img.Seed, FinishReason: img.FinishReason, SHA256: sum, RequestID: img.RequestID}
	}
	return out, nil
}

// replaySum returns the SHA-256 of the file image k of e becomes when a
// run writes it for job (journal Key key) in format: the same writers as
// attemptFiles' Begin and End (the record, then the parameters text of a
// PNG), into a hash. TestReplaySumMatchesRun holds the two together.
func replaySum(c Cache, e cache.Entry, k int, job manifest.Job, key string, format fileFormat) (string, error) {
	h := sha256.New()
	mark, w, err := newImageMark(format, imageRecord{ID: job.ID, Key: key, Image: k + 1}, h)
	if err != nil {
		return "", err
	}
	var png *pngtext.Writer
	if format.text {
		png = pngtext.NewWriter(w, "parameters")
		w = png
	}
	rc, err := c.Open(e, k)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(w, rc)
	rc.Close()
	if err != nil {
		return "", err
	}
	img := e.Images[k]
	if png != nil {
		png.SetText(Parameters(job, img.Seed))
		if err := png.Close(); err != nil {
			return "", err
		}
	}
	if err := mark.end(artifactOf(img)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
