package runner

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/outdir"
	"github.com/batch-tool/batch/internal/stability"
)

// recovery is what a run finds in its output folder before it sends
// anything: what the journal says, with its damage skipped, and what it
// lost, rebuilt from the images on disk.
type recovery struct {
	// state[i] says, in a byte, what the journal (or an image on disk)
	// records of job i with its current Key: finished for good
	// (recResumed, with recSucceeded set for a success), submitted to an
	// async service and not fetched (recPending: a run polls it), or
	// neither; recChanged marks the jobs listed in changed. A job taking
	// an image from a job not resumed as succeeded is neither resumed nor
	// pending: its Key depends on an image not made yet. The entry is
	// entry(the job's id).
	state []recState
	// log is what the journal says, appends included: per job id, its
	// last line that is not an attempt. The appends are log's unwritten
	// lines, to add before anything is sent (see writeAppends): jobs
	// rebuilt from their images on disk, and requests an earlier run left
	// in flight, settled as possibly billed.
	log *journalLog
	// saved holds where the lines are of resumed and pending jobs that a
	// line appended later (settling a request left in flight) replaced in
	// log; nil when none did.
	saved    map[idSum]lineRef
	warnings []string
	keep     int64 // for journal.mend
	newline  bool  // for journal.mend
	// charged and possibly are what earlier runs spent, as the journal
	// records it with appends: charged, and possibly billed (attempts with
	// unknown outcome, requests left in flight, generations not fetched).
	charged, possibly cost.Credits
	// held is the part of possibly that the generations of pending jobs
	// count; a run holds their prices instead until it fetches them.
	held cost.Credits

	// changed lists, in manifest order, the indexes of the jobs whose
	// files in the folder, or generation submitted and not fetched, answer
	// another request than the job's current one (see Standing.Changed).
	changed []int
	// gens is, per job id, its generations submitted and not fetched, by
	// generation id.
	gens map[string]map[string]entry
	// origin is the manifest of the journal's last run line.
	origin Origin
}

// recState is what the journal records of one job; see recovery.state.
type recState uint8

const (
	recResumed recState = 1 << iota
	recSucceeded
	recPending
	recChanged
)

// entry returns the journal entry that makes the job with this id resumed
// or pending, read again from the journal.
func (rec *recovery) entry(id string) (entry, error) {
	if at, ok := rec.saved[sumID(id)]; ok {
		return rec.log.line(at)
	}
	return rec.log.last(id)
}

// writeAppends appends the lines recovery added to jnl, in order; from
// then on they are read from the journal as every other line.
func (rec *recovery) writeAppends(jnl *journal) error {
	l := rec.log
	for k, e := range l.unwritten {
		at, err := jnl.appendAt(e)
		if err != nil {
			return err
		}
		was := unwrittenRef(k)
		if id := sumID(e.ID); l.jobs[id].at == was {
			j := l.jobs[id]
			j.at = at
			l.jobs[id] = j
		}
		for id, ref := range rec.saved {
			if ref == was {
				rec.saved[id] = at
			}
		}
	}
	l.unwritten = nil
	return nil
}

// pendingJobs lists the indexes of the pending jobs, in manifest order.
func (rec *recovery) pendingJobs() []int {
	var out []int
	for i, st := range rec.state {
		if st&recPending != 0 {
			out = append(out, i)
		}
	}
	return out
}

// recoverOut reads the journal src of the output folder outDir, as a
// stream, for jobs (priced as in Run, with g their graph and sums their
// input files' hashes) and works out what is done, what is pending and
// what earlier runs spent. It skips damaged lines with a warning each. A
// job the journal does not record as finished or pending whose images are
// all on disk with a record of its current Key (see imageRecord) is taken
// as done and gets a rebuilt entry charging its price (nothing when a line
// the journal replaced charged it already). An attempt line that no later
// line of its job follows (a request in flight when its run stopped) gets
// a failed entry counting it as possibly billed. now stamps those entries.
// It writes nothing. The error is the journal's, when it cannot be read.
func recoverOut(outDir string, src journalSource, jobs Jobs, g *graph, sums map[string]string, prices []cost.Credits, now time.Time) (*recovery, error) {
	l, err := parseJournal(src)
	if err != nil {
		return nil, err
	}
	rec := &recovery{state: make([]recState, jobs.Len()), log: l,
		warnings: l.warnings, keep: l.keep, newline: l.newline}
	disk := &diskImages{outDir: outDir}
	defer disk.close()
	var rebuilt, unrecognised int
	var problem, readErr error
	// imagesOf returns the images of a source resumed as succeeded: its
	// last line's.
	imagesOf := func(from string) []Image {
		e, err := l.last(from)
		if err != nil && readErr == nil {
			readErr = err
		}
		return e.Images
	}
	gens := l.openGens()
	n := jobs.Len()
	if l.keep == 0 && disk.none() {
		// A fresh folder: no journal line and no image on disk, so no job
		// is done, pending or changed, and none needs its Key.
		n = 0
	}
	for k := range n {
		i := g.at(k)
		jb := jobs.Job(i)
		j := &jb
		l.mark(j.ID)
		known := true
		for _, s := range g.sources(i) {
			known = known && rec.state[s]&recSucceeded != 0
		}
		if !known {
			// Its Key waits for its sources' new images: when one of them
			// changed, what the folder holds of this job answers another
			// request too.
			if jn, _ := l.job(j.ID); jn.held || len(gens[j.ID]) > 0 {
				for _, s := range g.sources(i) {
					rec.state[i] |= rec.state[s] & recChanged
				}
			}
			continue
		}
		// every source is resumed as succeeded: its entry is its last
		files, err := resolveInputs(outDir, j, sums, imagesOf)
		switch {
		case readErr != nil:
			return nil, readErr
		case err != nil:
			continue // the job fails when it starts, with this error
		}
		_, key, err := requestKey(*j, files)
		if err != nil {
			continue // as above
		}
		jn, journaled := l.job(j.ID)
		switch ks := sumKey(key); {
		case journaled && jn.resumes(ks):
			rec.state[i] |= resumedState(jn.kind == lineSucceeded)
			continue
		case journaled && jn.pending(ks):
			rec.state[i] |= recPending
			continue
		}
		images, err := disk.find(j, key)
		switch {
		case errors.Is(err, errOtherRequest):
			rec.state[i] |= recChanged // an image of the job's earlier request, which the journal lost
		case err != nil && !journaled:
			if unrecognised++; problem == nil {
				problem = err
			}
		}
		if images == nil {
			if l.heldOther(j.ID, key, gens) {
				rec.state[i] |= recChanged
			}
			continue
		}
		r := rebuiltEntry(j, key, prices[i], images, l, now)
		l.addUnwritten(r)
		l.mark(j.ID)
		rec.state[i] |= resumedState(r.Status == Succeeded)
		rebuilt++
	}
	if rebuilt > 0 {
		rec.warnings = append(rec.warnings, fmt.Sprintf("journal rebuilt %d entries from images on disk", rebuilt))
	}
	if unrecognised > 0 {
		rec.warnings = append(rec.warnings, fmt.Sprintf("%d image file(s) on disk are not recognised as the results of their jobs, which the journal does not hold (written for other settings or by an older batch; first: %v): those jobs run again", unrecognised, problem))
	}
	rec.keepEntries(g, l)
	rec.settleInFlight(l, now)
	for i, st := range rec.state {
		if st&recChanged != 0 {
			rec.changed = append(rec.changed, i)
		}
	}
	rec.gens, rec.origin = gens, l.origin

	price := func(id string) cost.Credits {
		if i, ok := g.ids.find(id); ok {
			return prices[i]
		}
		return 0
	}
	rec.charged, rec.possibly = l.books.totals(price)
	for _, i := range rec.pendingJobs() {
		e, err := rec.entry(jobs.Job(i).ID)
		if err != nil {
			return nil, err
		}
		if s, ok := l.books.gens[e.GenerationID]; ok {
			rec.held += genPrice(s, price)
		}
	}
	return rec, nil
}

// resumedState is the state of a job resumed with an entry that succeeded
// or (succeeded false) was filtered.
func resumedState(succeeded bool) recState {
	if succeeded {
		return recResumed | recSucceeded
	}
	return recResumed
}

// keepEntries saves, before settleInFlight appends a line for each request
// left in flight, where the entries are of the resumed or pending jobs
// those lines would replace in the log (a job whose request changed, was
// sent and never answered, then changed back).
func (rec *recovery) keepEntries(g *graph, l *journalLog) {
	for id := range l.books.open {
		i, ok := g.ids.find(id)
		if !ok || rec.state[i]&(recResumed|recPending) == 0 {
			continue
		}
		if rec.saved == nil {
			rec.saved = map[idSum]lineRef{}
		}
		jn, _ := l.job(id)
		rec.saved[sumID(id)] = jn.at
	}
}

// settleInFlight appends a failed entry for each attempt line that no
// later line of its job follows: its request was in flight when its run
// stopped, so it counts as possibly billed, and a later attempt of the job
// must not replace it.
func (rec *recovery) settleInFlight(l *journalLog, now time.Time) {
	ids := slices.Sorted(maps.Keys(l.books.open))
	if len(ids) == 0 {
		return
	}
	var lost cost.Credits
	for _, id := range ids {
		a := l.books.open[id]
		s := entry{ID: id, Key: a.Key, Status: Failed, Failure: FailUnknown, Unknown: a.Unknown + a.Price, Attempts: a.Attempts,
			Error: "a run stopped while this request was in flight: its outcome is unknown", Time: now}
		lost += s.Unknown
		l.addUnwritten(s)
	}
	named := ids
	if len(named) > 5 {
		named = append(slices.Clip(named[:5]), fmt.Sprintf("%d more", len(ids)-5))
	}
	rec.warnings = append(rec.warnings, fmt.Sprintf("%d request(s) were in flight when an earlier run stopped (jobs %s): their %v credits count as possibly billed",
		len(ids), strings.Join(named, ", "), lost))
}

// rebuiltEntry is the entry of job j found done on disk, with images, by
// a run whose journal l lost it.
func rebuiltEntry(j *manifest.Job, key string, price cost.Credits, images []Image, l *journalLog, now time.Time) entry {
	e := entry{ID: j.ID, Key: key, Credits: price, Attempts: 1, Images: images, Params: Parameters(*j, images[0].Seed), Rebuilt: true, Time: now}
	e.Status, e.Error = outcome(images)
	if l.superseded[jobKey{sumID(j.ID), sumKey(key)}] {
		e.Credits = 0 // the line that recorded these images charged them
	}
	if a, ok := l.books.open[j.ID]; ok {
		// this entry replaces the attempt line: keep what it counted
		e.Unknown, e.Attempts = a.Unknown, max(a.Attempts, 1)
		if a.Key != key {
			e.Unknown += a.Price // that request made no image of this one
		}
	}
	return e
}

// diskImages looks up image files in an output folder's images/ and
// filtered/, listing both once, when first asked. Not safe for concurrent
// use.
type diskImages struct {
	outDir string
	names  map[string]bool // "images/NAME" and "filtered/NAME" on disk
	dir    *outdir.Dir     // nil when no image is on disk
	err    error           // the folder could not be opened: nothing is found
}

func (d *diskImages) load() {
	if d.names != nil {
		return
	}
	d.names = map[string]bool{}
	for _, sub := range []string{ImagesDir, FilteredDir} {
		f, err := os.Open(filepath.Join(d.outDir, sub))
		if err != nil {
			continue
		}
		names, _ := f.Readdirnames(-1)
		f.Close()
		for _, n := range names {
			d.names[sub+"/"+n] = true
		}
	}
	if len(d.names) > 0 {
		d.dir, d.err = outdir.OpenDir(d.outDir)
	}
}

// none reports whether neither images/ nor filtered/ holds a file.
func (d *diskImages) none() bool {
	d.load()
	return len(d.names) == 0
}

func (d *diskImages) close() {
	if d.dir != nil {
		d.dir.Close()
	}
}

// find returns job j's images when every one of them is on disk with a
// record of j and key: image k under images/, or under filtered/ when it
// was content filtered. It returns nil and no error when an image file is
// missing, and an error when one is there but is not recognised.
func (d *diskImages) find(j *manifest.Job, key string) ([]Image, error) {
	d.load()
	if d.dir == nil {
		return nil, d.err
	}
	format, err := outputFormat(*j)
	if err != nil {
		return nil, nil // Run refuses the job first
	}
	names := imageNames(j, format)
	images := make([]Image, 0, len(names))
	for k, name := range names {
		img, err := d.image(j, key, k, name, format)
		if img == nil {
			return nil, err
		}
		images = append(images, *img)
	}
	return images, nil
}

// imageNames are the file names of job j's images in format, in order.
func imageNames(j *manifest.Job, format fileFormat) []string {
	n := 1 // a Stable Image answer holds one image
	if j.Service == "" {
		n = max(j.Samples, 1)
	}
	names := make([]string, n)
	for k := range n {
		names[k] = imageName(j.ID, k, j.Samples, format.ext)
	}
	return names
}

// errOtherRequest is wrapped by the error of an image on disk whose
// record is of its job's earlier request: the job changed since it ran.
var errOtherRequest = errors.New("its record is of another request of its job")

// image returns image k of job j, stored under name, when its file is on
// disk with a record of j and key.
func (d *diskImages) image(j *manifest.Job, key string, k int, name string, format fileFormat) (*Image, error) {
	var problem error
	for _, sub := range []string{ImagesDir, FilteredDir} {
		rel := sub + "/" + name
		if !d.names[rel] {
			continue
		}
		rec, sum, err := readRecord(d.dir, rel, format)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			problem = err
			continue
		case rec.ID == j.ID && rec.Key != key:
			problem = fmt.Errorf("%s: %w", rel, errOtherRequest)
			continue
		case rec.ID != j.ID || rec.Image != k+1:
			problem = fmt.Errorf("%s: its record is of another image", rel)
			continue
		}
		img := &Image{Path: rel, Seed: fixedSeed(j), FinishReason: stability.FinishSuccess, SHA256: sum, RequestID: rec.RequestID}
		if rec.Seed != nil {
			img.Seed = *rec.Seed
		}
		if sub == FilteredDir {
			img.FinishReason = stability.FinishContentFiltered
		}
		return img, nil
	}
	return nil, problem
}

// fixedSeed is the seed job j sets, 0 when the API chooses one.
func fixedSeed(j *manifest.Job) uint32 {
	if j.Service == "" {
		return j.Seed
	}
	v, _ := j.Param("seed")
	n, _ := strconv.ParseUint(v, 10, 32)
	return uint32(n)
}

// Standing is what an output folder holds for a manifest's jobs before a
// run, as Run counts it: its journal read with damaged lines skipped, jobs
// it lost rebuilt from their images on disk, and requests an earlier run
// left in flight counted as possibly billed. Amounts are in credits.
type Standing struct {
	// Remaining is what the run would still pay for at list price: every
	// job but those finished for good with their current Key and those
	// submitted to an async service and not fetched (a run only polls
	// them). A job taking an image from a job not finished yet counts in
	// full.
	Remaining cost.Credits
	// Charged is what earlier runs on the folder were charged: every line
	// of the journal, for any job (failed ones and jobs no longer in the
	// manifest included), plus the price of each job rebuilt from disk.
	Charged cost.Credits
	// PossiblyBilled is what earlier runs possibly spent besides: attempts
	// whose outcome is unknown, requests in flight when a run stopped, and
	// async generations submitted and not fetched.
	PossiblyBilled cost.Credits
	// Changed lists, in manifest order, the ids of the jobs whose images
	// in the folder, or async generation submitted and not fetched,
	// answer another request than the job's current one: a setting, a
	// prompt or an input file changed since they ran, or a job whose image
	// they take changed. A run makes them again, replacing their images;
	// nil when none.
	Changed []string
	// Removed lists, sorted, the ids of the jobs that the folder holds
	// images or an async generation submitted and not fetched of, and that
	// are neither among the jobs nor among the manifest's jobs
	// ReadStanding was given; nil when none.
	Removed []string
	// Origin is the manifest the folder's last run started from, as its
	// journal records it; the zero Origin when none is recorded (a fresh
	// folder, or runs of a batch that did not record it).
	Origin Origin
}

// Spent is Charged + PossiblyBilled: what earlier runs count against the
// budget.
func (s Standing) Spent() cost.Credits { return s.Charged + s.PossiblyBilled }

// ReadStanding reads the output folder outDir (it writes nothing) and
// returns what it holds for jobs, priced as in Run: Run sends nothing for
// the jobs Remaining leaves out, and starts with Charged and
// PossiblyBilled counted against its budget. all is every job of the
// manifest when jobs are only some of them (a shard; nil for a whole
// manifest): what the folder holds of the others is not Removed. A
// missing journal and images folder mean a fresh folder. It reads every
// input file, to key jobs on their content, and the images on disk of
// jobs the journal lacks.
func ReadStanding(outDir string, jobs Jobs, prices []cost.Credits, all Jobs) (Standing, error) {
	if len(prices) != jobs.Len() {
		return Standing{}, fmt.Errorf("%d prices for %d jobs", len(prices), jobs.Len())
	}
	sums := map[string]string{}
	var inputErr error
	g, err := newGraph(jobs, func(_ int, j *manifest.Job) {
		if inputErr == nil {
			inputErr = addInputs(sums, nil, j)
		}
	})
	switch {
	case err != nil:
		return Standing{}, err
	case inputErr != nil:
		return Standing{}, inputErr
	}
	src := journalSource{path: filepath.Join(outDir, JournalFile), r: strings.NewReader("")}
	f, err := outdir.OpenFile(src.path, os.O_RDONLY)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return Standing{}, fmt.Errorf("read journal: %w", err)
	default:
		defer f.Close()
		if src.size, err = f.Seek(0, io.SeekEnd); err != nil {
			return Standing{}, fmt.Errorf("read journal: %w", err)
		}
		src.r = f
	}
	rec, err := recoverOut(outDir, src, jobs, g, sums, prices, time.Time{})
	if err != nil {
		return Standing{}, err
	}
	removed, err := rec.removed(g, all)
	if err != nil {
		return Standing{}, err
	}
	st := Standing{Charged: rec.charged, PossiblyBilled: rec.possibly, Removed: removed, Origin: rec.origin}
	for i, s := range rec.state {
		if s&(recResumed|recPending) == 0 {
			st.Remaining += prices[i]
		}
	}
	for _, i := range rec.changed {
		st.Changed = append(st.Changed, jobs.Job(i).ID)
	}
	return st, nil
}

// Remaining returns ReadStanding's Remaining for a whole manifest: the
// credits of the jobs a run with this output folder would still pay for.
func Remaining(outDir string, jobs Jobs, prices []cost.Credits) (cost.Credits, error) {
	st, err := ReadStanding(outDir, jobs, prices, nil)
	return st.Remaining, err
}
