package runner

import (
	"cmp"
	"fmt"
	"hash/maphash"
	"slices"

	"github.com/batch-tool/batch/internal/manifest"
)

// Jobs are the jobs of a run, by index from 0 to Len()-1: a whole manifest
// (*manifest.Manifest is one) or a shard of it. Job may build the job anew
// on every call, so a run of a million jobs need not hold them: Run asks
// for a job when it needs it and keeps only a few bytes per job. Job is
// called from several goroutines at once.
type Jobs interface {
	Len() int
	Job(i int) manifest.Job
}

// JobList is Jobs held in a slice, for callers that built their jobs
// themselves.
type JobList []manifest.Job

// Len is the number of jobs.
func (l JobList) Len() int { return len(l) }

// Job returns job i.
func (l JobList) Job(i int) manifest.Job { return l[i] }

// idIndex finds jobs by id without holding their ids: the ids' 64-bit
// hashes, sorted, each with its job's index, 16 bytes a job. A lookup
// checks the id of the job the hash leads to, so a hash shared by two ids
// costs a look at each and is never a wrong answer.
type idIndex struct {
	jobs  Jobs
	seed  maphash.Seed
	slots []idSlot // sorted by hash, then index
}

type idSlot struct {
	hash uint64
	i    int32
}

// newIDIndex indexes the ids of jobs; an id used by two jobs is an error.
// visit, when not nil, is called with each job as it is fetched, in order.
func newIDIndex(jobs Jobs, visit func(i int, j *manifest.Job)) (*idIndex, error) {
	n := jobs.Len()
	if int64(n) > 1<<31-1 {
		return nil, fmt.Errorf("%d jobs: a run takes at most %d", n, 1<<31-1)
	}
	x := &idIndex{jobs: jobs, seed: maphash.MakeSeed(), slots: make([]idSlot, n)}
	for i := range n {
		j := jobs.Job(i)
		x.slots[i] = idSlot{hash: maphash.String(x.seed, j.ID), i: int32(i)}
		if visit != nil {
			visit(i, &j)
		}
	}
	slices.SortFunc(x.slots, func(a, b idSlot) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.i, b.i))
	})
	for k := 1; k < n; k++ {
		if x.slots[k].hash != x.slots[k-1].hash {
			continue
		}
		// A run of equal hashes: compare its ids pairwise (two at most,
		// but for a collision of 64-bit hashes).
		id := jobs.Job(int(x.slots[k].i)).ID
		for p := k - 1; p >= 0 && x.slots[p].hash == x.slots[k].hash; p-- {
			if jobs.Job(int(x.slots[p].i)).ID == id {
				return nil, fmt.Errorf("job id %q is used twice", id)
			}
		}
	}
	return x, nil
}

// find returns the index of the job with this id, and whether there is
// one.
func (x *idIndex) find(id string) (int, bool) {
	h := maphash.String(x.seed, id)
	k, _ := slices.BinarySearchFunc(x.slots, h, func(s idSlot, h uint64) int { return cmp.Compare(s.hash, h) })
	for ; k < len(x.slots) && x.slots[k].hash == h; k++ {
		if i := int(x.slots[k].i); x.jobs.Job(i).ID == id {
			return i, true
		}
	}
	return -1, false
}
