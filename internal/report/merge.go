package report

import (
	"cmp"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/cost"
)

// Merge combines the reports of several shards of one manifest into one
// report: jobs in manifest order (by Index), credits and totals summed, the
// earliest start and latest finish. The balance at start is the shards'
// when they all read the same one, and none when they differ: shards run
// against different accounts or sandboxes, or one after another, and no
// single figure (let alone a sum) is the balance the whole run started
// from. A job id found in two shards is an error, as are shards priced
// under different sheets.
//
// Image paths stay relative to each shard's folder when all shards share one
// folder; otherwise each is prefixed with its shard's folder (as given to
// ReadRun), so a report rendered in the current directory still finds them.
// Merge does not modify its arguments.
func Merge(runs ...*Run) (*Run, error) {
	if len(runs) == 0 {
		return nil, errors.New("merge reports: no reports")
	}
	first := runs[0]
	out := &Run{
		Manifest:  first.Manifest,
		Name:      first.Name,
		Pricing:   first.Pricing,
		Budget:    first.Budget,
		StartedAt: first.StartedAt, FinishedAt: first.FinishedAt,
		BalanceBefore: first.BalanceBefore,
		dir:           first.dir,
	}
	sameDir := true
	for _, r := range runs[1:] {
		sameDir = sameDir && filepath.Clean(r.dir) == filepath.Clean(first.dir)
	}
	seen := make(map[string]string) // job id → shard that has it
	for i, r := range runs {
		name := shardName(r, i)
		if r.Pricing != first.Pricing {
			return nil, fmt.Errorf("merge reports: %s is priced under %q, %s under %q", name, r.Pricing, shardName(first, 0), first.Pricing)
		}
		if !sameCredits(r.Budget, out.Budget) {
			out.Budget = nil // shards disagree: no single budget to show
		}
		if !sameCredits(r.BalanceBefore, out.BalanceBefore) {
			out.BalanceBefore = nil // likewise for the balance at start
		}
		if !r.StartedAt.IsZero() && (out.StartedAt.IsZero() || r.StartedAt.Before(out.StartedAt)) {
			out.StartedAt = r.StartedAt
		}
		if r.FinishedAt.After(out.FinishedAt) {
			out.FinishedAt = r.FinishedAt
		}
		out.EstimatedCredits += r.EstimatedCredits
		out.ChargedCredits += r.ChargedCredits
		out.PossiblyBilledCredits += r.PossiblyBilledCredits
		out.CachedJobs += r.CachedJobs
		out.CacheSavedCredits += r.CacheSavedCredits
		out.Interrupted = out.Interrupted || r.Interrupted
		out.Totals.add(r.Totals)
		err := r.each(func(_ int, jp *RunJob) error {
			j := jp.clone() // Rows reuse jp
			if other, dup := seen[j.ID]; dup {
				return fmt.Errorf("merge reports: job %s is in both %s and %s", j.ID, other, name)
			}
			seen[j.ID] = name
			if !sameDir && r.dir != "" {
				j.Images = rebase(j.Images, r.dir)
			}
			out.Jobs = append(out.Jobs, j)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if !sameDir {
		out.dir = ""
	}
	slices.SortStableFunc(out.Jobs, func(a, b RunJob) int { return cmp.Compare(a.Index, b.Index) })
	out.Shard = mergedShards(runs)
	return out, nil
}

func (t *Totals) add(u Totals) {
	t.Jobs += u.Jobs
	t.Succeeded += u.Succeeded
	t.Failed += u.Failed
	t.Filtered += u.Filtered
	t.Skipped += u.Skipped
}

func sameCredits(a, b *cost.Credits) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

// shardName names a report in errors: its folder, else its shard, else its
// position.
func shardName(r *Run, i int) string {
	switch {
	case r.dir != "":
		return r.dir
	case r.Shard != "":
		return "shard " + r.Shard
	}
	return "report " + strconv.Itoa(i+1)
}

// rebase returns a copy of imgs with each path under dir.
func rebase(imgs []Image, dir string) []Image {
	out := slices.Clone(imgs)
	for i := range out {
		out[i].Path = path.Join(filepath.ToSlash(dir), out[i].Path)
	}
	return out
}

// mergedShards is the Shard of a merged report: "" when the shards make up
// the whole manifest (or none was a shard), else the list of shards merged.
func mergedShards(runs []*Run) string {
	var ks []string
	have := make(map[string]bool)
	n := ""
	complete := true
	for _, r := range runs {
		if r.Shard == "" {
			return ""
		}
		_, m, ok := strings.Cut(r.Shard, "/")
		if n == "" {
			n = m
		}
		complete = complete && ok && m == n
		if !have[r.Shard] {
			have[r.Shard] = true
			ks = append(ks, r.Shard)
		}
	}
	if total, err := strconv.Atoi(n); complete && err == nil && len(have) == total {
		return ""
	}
	slices.Sort(ks)
	return strings.Join(ks, ",")
}
