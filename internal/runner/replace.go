package runner

// A folder holds one manifest's run. A rerun whose manifest changed a job
// (its Key differs from the one its images answer) or dropped it would
// otherwise overwrite or orphan files without a word; Standing names those
// jobs and the manifest the folder's last run came from, so the caller can
// stop before sending anything, and Config.Replace moves their files aside
// instead of deleting them. The journal keeps every money line: what was
// charged or possibly billed for a replaced job still counts against the
// budget.

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/outdir"
)

// ReplacedDir holds, under the output folder, the files of replaced jobs:
// one folder per run that replaced some (see Replaced.Dir).
const ReplacedDir = "replaced"

// Origin is the manifest a run started from, as the journal records it.
// The zero Origin is none.
type Origin struct {
	// Manifest is the manifest file's absolute path.
	Manifest string `json:"manifest"`
	// FromOut is the manifest's path relative to the output folder,
	// slash-separated ("../../cats.yaml"), so that a folder moved or
	// checked out elsewhere together with its manifest still matches; ""
	// when there is none (another volume).
	FromOut string `json:"manifest_from_out,omitempty"`
	// Name is the manifest's name; "" when it has none.
	Name string `json:"name,omitempty"`
}

// NewOrigin returns the Origin of the manifest at path, whose name is name
// ("" for none), for a run into outDir.
func NewOrigin(path, name, outDir string) (Origin, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Origin{}, fmt.Errorf("manifest path: %w", err)
	}
	out, err := filepath.Abs(outDir)
	if err != nil {
		return Origin{}, fmt.Errorf("output folder path: %w", err)
	}
	o := Origin{Manifest: abs, Name: name}
	if rel, err := filepath.Rel(out, abs); err == nil {
		o.FromOut = filepath.ToSlash(rel)
	}
	return o, nil
}

// Same reports whether o and p are the same manifest: the same absolute
// path, or the same path relative to the output folder. The zero Origin is
// the same as no other.
func (o Origin) Same(p Origin) bool {
	return o.Manifest != "" && o.Manifest == p.Manifest || o.FromOut != "" && o.FromOut == p.FromOut
}

// String is the manifest's path, followed by its name when it has one:
// `/work/cats.yaml ("cats")`.
func (o Origin) String() string {
	if o.Name == "" {
		return o.Manifest
	}
	return o.Manifest + " (" + strconv.Quote(o.Name) + ")"
}

// Replaced is what a run with Config.Replace moved before it sent
// anything.
type Replaced struct {
	// Dir is the folder the files moved to, slash-separated and relative to
	// the output folder: "replaced/20261125T120000Z" (the run's start, by
	// Config.Now, in UTC), with "-2", "-3"… when that one exists. Below it
	// each file keeps its path: images/cat.png moves to
	// replaced/20261125T120000Z/images/cat.png. "" when no file was on
	// disk.
	Dir string
	// Changed and Removed are the ids of the jobs replaced, as Standing
	// lists them; nil when none.
	Changed, Removed []string
	// Files counts the files moved, WebP records included.
	Files int
}

// openGens returns, per job id, its generations submitted and not
// fetched, by generation id.
func (l *journalLog) openGens() map[string]map[string]entry {
	gens := map[string]map[string]entry{}
	for id, e := range l.books.gens {
		if gens[e.ID] == nil {
			gens[e.ID] = map[string]entry{}
		}
		gens[e.ID][id] = e
	}
	return gens
}

// heldOther reports whether the folder holds images or a generation of the
// job id that answer another request than key's.
func (l *journalLog) heldOther(id, key string, gens map[string]map[string]entry) bool {
	if j, _ := l.job(id); j.held && l.heldKey(sumID(id), j) != sumKey(key) {
		return true
	}
	for _, e := range gens[id] {
		if e.Key != key {
			return true
		}
	}
	return false
}

// removed returns, sorted, the ids of jobs the folder holds images or
// generations of that are neither in g nor among all (the manifest's jobs;
// nil when g has them all). It reads again the line of each job that the
// folder holds images of and that is not among the run's, for its id.
func (rec *recovery) removed(g *graph, all Jobs) ([]string, error) {
	var ids []string
	for _, j := range rec.log.jobs {
		if !j.held || j.inRun {
			continue
		}
		e, err := rec.log.line(j.at)
		if err != nil {
			return nil, err
		}
		if _, ok := g.ids.find(e.ID); !ok {
			ids = append(ids, e.ID)
		}
	}
	for id := range rec.gens {
		if _, ok := g.ids.find(id); !ok {
			ids = append(ids, id)
		}
	}
	if len(ids) > 0 && all != nil {
		// Only now, and only for a shard, are the manifest's ids looked
		// at: a folder holding only the run's jobs costs nothing more.
		x, err := newIDIndex(all, nil)
		ids = slices.DeleteFunc(ids, func(id string) bool {
			_, ok := x.find(id)
			return err == nil && ok
		})
	}
	if len(ids) == 0 {
		return nil, nil
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// replace moves the files of the changed and removed jobs rec found into a
// new folder under OUT/replaced/, then journals each of those jobs as
// replaced, so that no later line resumes it, and records the lines in
// rec.log. What the folder holds of those jobs is read from the journal
// again, rec's appends written (see writeAppends). A generation of one that was submitted and not fetched is
// abandoned: its line counts its price as possibly billed, as the journal
// did. Files move first and their folders are synced before any line is
// written: a crash in between leaves the jobs held by the journal, and the
// next replace finds their files gone and only journals them. Nothing is
// deleted.
func replace(outDir string, jobs Jobs, g *graph, prices []cost.Credits, rec *recovery, jnl *journal, all Jobs, now time.Time) (Replaced, error) {
	var rp Replaced
	removed, err := rec.removed(g, all)
	if err != nil {
		return rp, err
	}
	rp.Removed = removed
	for _, i := range rec.changed {
		rp.Changed = append(rp.Changed, jobs.Job(i).ID)
	}
	if rp.Changed == nil && rp.Removed == nil {
		return rp, nil
	}
	d, err := outdir.OpenDir(outDir)
	if err != nil {
		return rp, err
	}
	defer d.Close()
	mv := &mover{outDir: outDir, d: d, stamp: now.UTC().Format("20060102T150405Z"), touched: map[string]bool{}}
	ids := slices.Concat(rp.Changed, rp.Removed)
	want := make(map[idSum]bool, len(ids))
	for _, id := range ids {
		want[sumID(id)] = true
	}
	holdings, err := rec.log.holdings(jnl.committed(), want)
	if err != nil {
		return rp, err
	}
	for k, id := range ids {
		var paths []string
		if h := holdings[sumID(id)]; h != nil {
			paths = slices.Clone(h.paths)
		}
		if k < len(rp.Changed) {
			// the names the job's current request writes, which a run
			// would overwrite, whatever the journal says
			jb := jobs.Job(rec.changed[k])
			j := &jb
			if format, err := outputFormat(*j); err == nil {
				for _, name := range imageNames(j, format) {
					paths = append(paths, ImagesDir+"/"+name, FilteredDir+"/"+name)
				}
			}
		}
		for _, p := range paths {
			if err := mv.move(p); err != nil {
				return rp, err
			}
		}
	}
	if err := mv.sync(); err != nil {
		return rp, err
	}
	rp.Dir, rp.Files = mv.dir, mv.files

	price := func(id string) cost.Credits {
		if i, ok := g.ids.find(id); ok {
			return prices[i]
		}
		return 0
	}
	for _, id := range ids {
		base := entry{ID: id, Status: replaced, Replaced: mv.dir, Time: now.UTC()}
		if h := holdings[sumID(id)]; h != nil {
			base.Key = h.key
		}
		lines := []entry{base}
		if gens := rec.gens[id]; len(gens) > 0 {
			lines = lines[:0]
			for _, gid := range slices.Sorted(maps.Keys(gens)) {
				s := gens[gid]
				e := base
				e.Key, e.GenerationID, e.Unknown = s.Key, gid, genPrice(s, price)
				lines = append(lines, e)
			}
		}
		for _, e := range lines {
			at, err := jnl.appendAt(e)
			if err != nil {
				return rp, err
			}
			rec.log.note(e, at)
		}
	}
	return rp, nil
}

// mover moves files of an output folder into one new folder under
// replaced/, keeping their paths below it.
type mover struct {
	outDir  string
	d       *outdir.Dir
	stamp   string
	dir     string          // the folder, chosen when the first file moves
	touched map[string]bool // folders whose entries changed, to sync
	files   int
}

// move moves the file rel (slash-separated, relative to the output
// folder) and its WebP record, those of them on disk. Only a file right
// inside images/ or filtered/ is moved: a journal names no other.
func (m *mover) move(rel string) error {
	dir, base := path.Split(rel)
	if dir != ImagesDir+"/" && dir != FilteredDir+"/" || base == "" || base == "." || base == ".." || path.Clean(rel) != rel {
		return nil
	}
	for _, name := range []string{rel, rel + sidecarExt} {
		if _, err := os.Lstat(filepath.Join(m.outDir, filepath.FromSlash(name))); errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return fmt.Errorf("replace %s: %w", name, err)
		}
		if m.dir == "" {
			if err := m.pick(); err != nil {
				return err
			}
		}
		to := m.dir + "/" + name
		if err := m.d.MkdirAll(path.Dir(to)); err != nil {
			return err
		}
		if err := m.d.Rename(name, to); err != nil {
			return err
		}
		m.touched[path.Dir(name)], m.touched[path.Dir(to)] = true, true
		m.files++
	}
	return nil
}

// pick chooses the folder: replaced/STAMP, or STAMP-2, STAMP-3… when it
// exists.
func (m *mover) pick() error {
	for n := 1; ; n++ {
		name := ReplacedDir + "/" + m.stamp
		if n > 1 {
			name += "-" + strconv.Itoa(n)
		}
		_, err := os.Lstat(filepath.Join(m.outDir, filepath.FromSlash(name)))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			m.dir = name
			m.touched["."], m.touched[ReplacedDir], m.touched[name] = true, true, true
			return nil
		case err != nil:
			return fmt.Errorf("replace: %w", err)
		}
	}
}

// sync makes the moves durable.
func (m *mover) sync() error {
	for _, folder := range slices.Sorted(maps.Keys(m.touched)) {
		if err := m.d.SyncFolder(folder); err != nil {
			return err
		}
	}
	return nil
}
