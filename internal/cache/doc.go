// Package cache is a local, content-addressed store of bought images, so
// that the same request is never paid for twice.
//
// # What it holds
//
// An entry is keyed by a 64-digit lower-case hex SHA-256 of exactly what is
// sent (see KeyFor) and holds the images as the API sent them (1 to 16; a v1
// job with samples has several), before batch adds anything of a job's own
// (the parameters text, the record naming the job), and the answer's
// metadata: each image's format, seed, finish reason, request id, SHA-256
// and size, the list price paid for the request and when it was bought.
// Only requests that fix their result belong here (Cacheable): a non-zero
// seed, or a service that takes no seed.
//
// # Layout
//
//	DIR/objects/ab/cdef…/1.png, 2.png, …   the images, named by position and format
//	DIR/objects/ab/cdef…/meta.json         written last; an entry without it is incomplete
//	DIR/tmp/                               entries being written, and entries being removed
//	DIR/hits.log                           one line per hit served: what the cache saved
//
// An entry is written in a folder of its own under tmp/ (meta.json last)
// and renamed into objects/ whole, so a reader sees the complete entry or
// none. Nothing is fsynced: the cache is a copy of images a run's folder
// holds, and a reader checks every image against its SHA-256, so an entry
// that a crash left torn is found and removed, never served, and a run
// never waits on the disk for the cache. Two processes writing the same
// key both rename; the second rename fails because the first made the entry,
// and its folder is dropped: both hold what the same request returned. An
// entry is removed by renaming it out of objects/ first. Hits are appended
// to hits.log one write at a time (atomic on a local filesystem) and mark the
// entry's meta.json as used (its modification time), which prune reads.
// Folders under tmp/ that a killed process left are ignored and removed by
// Prune and Verify once a day old.
//
// A damaged entry (metadata that does not parse, an image missing, of the
// wrong size or whose SHA-256 differs from its metadata) is never served:
// Get, the readers of Open, Link and Verify report it as a *CorruptError,
// remove it, and the caller buys the image again.
//
// # How plan and run use it
//
// The runner computes a job's request key as it does for its journal
// (runner.Key: the engine and JSON body of a v1 request; the service, every
// field and the SHA-256 of every input image of a Stable Image one) and
// derives the cache key with KeyFor(endpoint, requestKey), the endpoint being
// the API base URL the client sends to, so images from a sandbox are never
// served to a run against the real API.
//
//   - plan: for each job with Cacheable(takesSeed, seed), Index(ctx) read
//     once then Index.Contains(key) (or Contains(key), one stat per job, for
//     a few jobs) says whether it is a hit; nothing is hashed. A hit is
//     priced at 0 and its list price counted as saved. A job taking another job's image is keyed
//     by the SHA-256 of the file that job will write: for a cached source,
//     replay its entry (Open) through the runner's image writers into a hash.
//     A hit plan counted may turn out damaged at run time and be bought: the
//     runner reserves its price then like any other job's, so the budget
//     still holds (the job fails if it cannot).
//   - run, hit: Get(key), then for each image Open(entry, i) streamed through
//     the same sink a paid answer goes through (the runner's files carry the
//     job's own record, so they are rarely the cache's bytes), or Link(ctx,
//     entry, i, dst) where OUT's file is the API's bytes as they came (WebP,
//     whose record is a sidecar): a hard link when OUT is on the cache's
//     filesystem, else a verified copy. After the job's files are committed,
//     Served(key, listPrice). A *CorruptError is logged and the job bought.
//   - run, paid: Create(key) before the answer streams in, each image's bytes
//     teed into Writer.Begin's writer as the client hands them to the sink
//     (its writes never fail, so a full cache disk cannot fail a paid job),
//     Writer.End(i, Image) with the answer's metadata, and Writer.Commit(price)
//     once the runner committed the job's files; Writer.Abort otherwise.
//
// A Cache is safe for concurrent use, also by several processes sharing a
// folder; a Writer is used by one goroutine.
package cache
