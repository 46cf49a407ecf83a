package cache

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/batch-tool/batch/internal/cost"
)

// state is what a folder under objects/ holds.
type state int

const (
	complete     state = iota
	incomplete         // no meta.json: removed by Prune and Verify
	unreadable         // meta.json does not parse or does not fit: likewise
	otherVersion       // written by a batch with another meta.json version
)

// entryInfo is what a walk over objects/ finds of one entry's folder.
type entryInfo struct {
	key      string
	bytes    int64     // every file in the folder, meta.json included
	images   int       // from meta.json; 0 unless complete
	lastUsed time.Time // meta.json's modification time; zero without one
	raw      []byte    // meta.json; nil without one
	state    state
	problem  string // unreadable: what is wrong
}

// walk calls fn for each entry's folder under objects/, in key order.
func (c *Cache) walk(ctx context.Context, fn func(entryInfo) error) error {
	top := filepath.Join(c.dir, objectsDir)
	fans, err := os.ReadDir(top)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read cache: %w", err)
	}
	for _, fan := range fans {
		if !fan.IsDir() || len(fan.Name()) != 2 || !ValidKey(fan.Name()+strings.Repeat("0", 62)) {
			continue
		}
		names, err := os.ReadDir(filepath.Join(top, fan.Name()))
		if err != nil {
			return fmt.Errorf("read cache: %w", err)
		}
		for _, d := range names {
			key := fan.Name() + d.Name()
			if !d.IsDir() || !ValidKey(key) {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			info, err := c.inspect(key)
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed while we looked
			}
			if err != nil {
				return err
			}
			if err := fn(info); err != nil {
				return err
			}
		}
	}
	return nil
}

// inspect sizes key's folder and reads its metadata, without reading
// images.
func (c *Cache) inspect(key string) (entryInfo, error) {
	dir := c.entryDir(key)
	info := entryInfo{key: key}
	files, err := os.ReadDir(dir)
	if err != nil {
		return info, err
	}
	for _, f := range files {
		if fi, err := f.Info(); err == nil && fi.Mode().IsRegular() {
			info.bytes += fi.Size()
		}
	}
	fi, err := os.Stat(filepath.Join(dir, metaFile))
	if errors.Is(err, fs.ErrNotExist) {
		info.state = incomplete
		return info, nil
	}
	if err != nil {
		return info, fmt.Errorf("read cache entry %s: %w", short(key), err)
	}
	info.lastUsed = fi.ModTime()
	data, err := readMax(filepath.Join(dir, metaFile))
	if errors.Is(err, fs.ErrNotExist) {
		return info, err
	}
	if err != nil {
		return info, fmt.Errorf("read cache entry %s: %w", short(key), err)
	}
	info.raw = data
	m, err := decodeMeta(data)
	if err == nil && m.Version != metaVersion {
		info.state = otherVersion
		return info, nil
	}
	if err == nil {
		err = m.check(key)
	}
	var d damage
	if errors.As(err, &d) {
		info.state, info.problem = unreadable, d.problem
		return info, nil
	}
	info.images = len(m.Images)
	return info, nil
}

// readMax reads at most maxMeta+1 bytes of the file name.
func readMax(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxMeta+1))
}

// cleanTmp removes what is left under tmp/: folders of entries being
// removed, and folders of writes untouched for staleAfter (their writer
// died). It returns how many it removed (or, with dryRun, would remove).
func (c *Cache) cleanTmp(dryRun bool) (int, error) {
	tmp := filepath.Join(c.dir, tmpDir)
	names, err := os.ReadDir(tmp)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read cache: %w", err)
	}
	n := 0
	for _, d := range names {
		name := filepath.Join(tmp, d.Name())
		if !strings.HasPrefix(d.Name(), "dead-") && !c.stale(name) {
			continue
		}
		n++
		if dryRun {
			continue
		}
		if err := os.RemoveAll(name); err != nil {
			return n, fmt.Errorf("remove cache leftover: %w", err)
		}
	}
	return n, nil
}

// stale reports whether the writer of the folder name has not marked it
// (Writer.touch) for staleAfter.
func (c *Cache) stale(name string) bool {
	fi, err := os.Lstat(name)
	return err == nil && c.now().Sub(fi.ModTime()) > staleAfter
}

// Stats are a cache's contents and what it saved.
type Stats struct {
	Entries int   // entries held
	Images  int   // their images (entries of another batch version not counted)
	Bytes   int64 // the entries' files, metadata included; a hard-linked image counts whole
	// Incomplete counts folders that hold no usable entry: entries without
	// readable metadata, and writes abandoned a day ago or more. Prune and
	// Verify remove them.
	Incomplete int
	Hits       int64        // entries served in place of a request, ever (hits.log)
	Saved      cost.Credits // the list prices of those requests, micro-credits
}

// Stats reads the cache's contents and hits.log; it changes nothing. A
// cache that does not exist is empty.
func (c *Cache) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	err := c.walk(ctx, func(e entryInfo) error {
		switch e.state {
		case complete, otherVersion:
			s.Entries++
			s.Images += e.images
			s.Bytes += e.bytes
		default:
			s.Incomplete++
		}
		return nil
	})
	if err != nil {
		return Stats{}, err
	}
	left, err := c.cleanTmp(true)
	if err != nil {
		return Stats{}, err
	}
	s.Incomplete += left
	s.Hits, s.Saved, err = c.hits()
	if err != nil {
		return Stats{}, err
	}
	return s, nil
}

// hits sums hits.log: lines "UNIX-SECONDS MICRO-CREDITS KEY". A line cut
// short (a crash mid-write, a filesystem without atomic appends) is skipped.
func (c *Cache) hits() (int64, cost.Credits, error) {
	f, err := os.Open(filepath.Join(c.dir, hitsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read cache hits: %w", err)
	}
	defer f.Close()
	var n int64
	var saved cost.Credits
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 || !ValidKey(fields[2]) {
			continue
		}
		if _, err := strconv.ParseInt(fields[0], 10, 64); err != nil {
			continue
		}
		price, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil || price < 0 {
			continue
		}
		n++
		saved += cost.Credits(price)
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("read cache hits: %w", err)
	}
	return n, saved, nil
}

// Reason is why Prune removed an entry.
type Reason int

// The reasons, in the order Prune applies them.
const (
	// Incomplete: the entry's folder has no metadata or metadata that does
	// not parse; nothing could be served from it.
	Incomplete Reason = iota + 1
	// Unused: not used (written or served) for PruneOptions.OlderThan.
	Unused
	// OverSize: among the least recently used while the cache was over
	// PruneOptions.MaxBytes.
	OverSize
)

func (r Reason) String() string {
	switch r {
	case Incomplete:
		return "incomplete"
	case Unused:
		return "unused"
	case OverSize:
		return "over size"
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

// PruneOptions say what Prune removes; the zero value removes only
// incomplete entries and leftovers.
type PruneOptions struct {
	// OlderThan removes entries not used (written or served) for longer
	// than this; 0 sets no age limit.
	OlderThan time.Duration
	// MaxBytes, when not nil, then removes the least recently used entries
	// until the rest take at most *MaxBytes bytes (0 empties the cache).
	MaxBytes *int64
	// DryRun reports what would be removed and removes nothing.
	DryRun bool
}

// Removed is an entry Prune removed.
type Removed struct {
	Key      string
	Images   int       // 0 for an incomplete entry
	Bytes    int64     // the entry's files
	LastUsed time.Time // zero for an entry without metadata
	Reason   Reason
}

// PruneResult is what Prune did.
type PruneResult struct {
	Removed   []Removed // in the order removed: incomplete, then unused, then over size, least recently used first
	Freed     int64     // bytes of the removed entries
	Entries   int       // entries left
	Bytes     int64     // their bytes
	Leftovers int       // abandoned writes and removals under tmp/ deleted
}

// Prune removes incomplete entries, then those unused for o.OlderThan,
// then the least recently used until the cache fits o.MaxBytes (ties by
// key), and the leftovers of killed processes. An entry a concurrent run
// is reading stays readable to it (on Unix; elsewhere Prune fails).
func (c *Cache) Prune(ctx context.Context, o PruneOptions) (PruneResult, error) {
	if o.OlderThan < 0 {
		return PruneResult{}, fmt.Errorf("prune: negative age %v", o.OlderThan)
	}
	if o.MaxBytes != nil && *o.MaxBytes < 0 {
		return PruneResult{}, fmt.Errorf("prune: negative size %d", *o.MaxBytes)
	}
	var res PruneResult
	var keep []entryInfo
	err := c.walk(ctx, func(e entryInfo) error {
		if e.state == incomplete || e.state == unreadable {
			return c.pruneOne(&res, e, Incomplete, o.DryRun)
		}
		e.raw = nil // a million entries need not hold their metadata
		keep = append(keep, e)
		return nil
	})
	if err != nil {
		return res, err
	}
	slices.SortFunc(keep, func(a, b entryInfo) int {
		return cmp.Or(a.lastUsed.Compare(b.lastUsed), strings.Compare(a.key, b.key))
	})
	var total int64
	for _, e := range keep {
		total += e.bytes
	}
	now := c.now()
	for len(keep) > 0 {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		e := keep[0]
		why := OverSize
		if o.OlderThan > 0 && now.Sub(e.lastUsed) > o.OlderThan {
			why = Unused
		} else if o.MaxBytes == nil || total <= *o.MaxBytes {
			break // sorted by last use: the rest are younger, and the cache fits
		}
		if err := c.pruneOne(&res, e, why, o.DryRun); err != nil {
			return res, err
		}
		total -= e.bytes
		keep = keep[1:]
	}
	res.Entries, res.Bytes = len(keep), total
	if res.Leftovers, err = c.cleanTmp(o.DryRun); err != nil {
		return res, err
	}
	return res, nil
}

// pruneOne removes e (unless dryRun) and records it in res.
func (c *Cache) pruneOne(res *PruneResult, e entryInfo, why Reason, dryRun bool) error {
	if !dryRun {
		if err := c.remove(c.entryDir(e.key)); err != nil {
			return fmt.Errorf("prune %s: %w", short(e.key), err)
		}
	}
	res.Removed = append(res.Removed, Removed{Key: e.key, Images: e.images, Bytes: e.bytes, LastUsed: e.lastUsed, Reason: why})
	res.Freed += e.bytes
	return nil
}

// Bad is a damaged entry Verify found.
type Bad struct {
	Key     string
	Problem string // what is wrong, as in CorruptError
	// RemoveErr is why the entry could not be removed; nil when it was.
	RemoveErr error
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	Entries int   // entries checked, the bad ones included
	Images  int   // images hashed, damaged ones included
	Bytes   int64 // their bytes, as their metadata gives them
	Bad     []Bad // damaged entries, removed, in key order
	// Skipped counts entries written by a batch with another metadata
	// version, left alone.
	Skipped   int
	Leftovers int // abandoned writes and removals under tmp/ deleted
}

// Verify rehashes every image of every entry against its metadata and
// removes the damaged entries (and incomplete ones), listing them, and the
// leftovers of killed processes.
func (c *Cache) Verify(ctx context.Context) (VerifyResult, error) {
	var res VerifyResult
	buf := make([]byte, copyBuffer)
	err := c.walk(ctx, func(info entryInfo) error {
		switch info.state {
		case otherVersion:
			res.Skipped++
			return nil
		case incomplete:
			res.Entries++
			res.Bad = append(res.Bad, Bad{Key: info.key, Problem: "no metadata", RemoveErr: c.remove(c.entryDir(info.key))})
			return nil
		case unreadable:
			err := c.corrupt(info.key, info.raw, info.problem)
			if ce, ok := errors.AsType[*CorruptError](err); ok {
				res.Entries++
				res.Bad = append(res.Bad, Bad{Key: ce.Key, Problem: ce.Problem, RemoveErr: ce.RemoveErr})
			}
			return nil // else replaced while we looked
		}
		res.Entries++
		e, err := c.Get(info.key)
		for i := 0; err == nil && i < len(e.Images); i++ {
			err = c.hashImage(ctx, e, i, buf)
			if _, bad := errors.AsType[*CorruptError](err); err == nil || bad {
				res.Images++
				res.Bytes += e.Images[i].Bytes
			}
		}
		var ce *CorruptError
		switch {
		case errors.As(err, &ce):
			res.Bad = append(res.Bad, Bad{Key: ce.Key, Problem: ce.Problem, RemoveErr: ce.RemoveErr})
		case errors.Is(err, ErrMiss):
			res.Entries-- // removed or replaced while we looked
		case err != nil:
			return err
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	if res.Leftovers, err = c.cleanTmp(false); err != nil {
		return res, err
	}
	return res, nil
}

// hashImage reads image i of e whole, which checks it.
func (c *Cache) hashImage(ctx context.Context, e Entry, i int, buf []byte) error {
	r, err := c.Open(e, i)
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.CopyBuffer(io.Discard, ctxReader{ctx, r}, buf)
	return err
}
