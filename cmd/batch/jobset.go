package main

import (
	"iter"

	"github.com/batch-tool/batch/internal/manifest"
)

// jobSet is the jobs a command works on, named by their indexes in the
// manifest: all of them, every N-th from the K-th (a shard, --shard K/N), or
// an explicit ascending list of indexes. It holds no job: Job builds the
// i-th from the manifest when asked, so a set of millions of jobs takes a
// few words (8 bytes a job with an explicit list). It satisfies the
// runner's Jobs interface (Len and Job).
type jobSet struct {
	m      *manifest.Manifest
	n      int   // how many jobs
	first  int   // manifest index of job 0, when idx is nil
	stride int   // manifest indexes from one job to the next, when idx is nil
	idx    []int // manifest index of each job, ascending; nil when first and stride say
}

// allJobs is every job of m.
func allJobs(m *manifest.Manifest) jobSet {
	return jobSet{m: m, n: m.Len(), stride: 1}
}

// pickJobs is the jobs of m at the manifest indexes idx, which must be
// ascending and below m.Len().
func pickJobs(m *manifest.Manifest, idx []int) jobSet {
	return jobSet{m: m, n: len(idx), idx: idx}
}

// shard returns the k-th of n slices of s (1 ≤ k ≤ n): the i-th job of s
// (0-based) is in slice i mod n + 1, so every slice gets a fair share of
// every matrix.
func (s jobSet) shard(k, n int) jobSet {
	if s.idx != nil {
		var idx []int
		for i := k - 1; i < len(s.idx); i += n {
			idx = append(idx, s.idx[i])
		}
		return pickJobs(s.m, idx)
	}
	count := 0
	if s.n >= k {
		count = (s.n-k)/n + 1
	}
	return jobSet{m: s.m, n: count, first: s.first + (k-1)*s.stride, stride: s.stride * n}
}

// Len is the number of jobs in s.
func (s jobSet) Len() int { return s.n }

// Index is the manifest index of the i-th job of s, 0 ≤ i < Len().
func (s jobSet) Index(i int) int {
	if s.idx != nil {
		return s.idx[i]
	}
	return s.first + i*s.stride
}

// Job builds the i-th job of s, 0 ≤ i < Len(), from the manifest.
func (s jobSet) Job(i int) manifest.Job { return s.m.Job(s.Index(i)) }

// whole reports whether s is every job of its manifest.
func (s jobSet) whole() bool {
	return s.idx == nil && s.first == 0 && s.stride == 1 && s.n == s.m.Len()
}

// All yields every job of s with its position in s, in order; in one pass
// over the manifest (manifest.All) when s is all of it.
func (s jobSet) All() iter.Seq2[int, manifest.Job] {
	if s.whole() {
		return s.m.All()
	}
	return func(yield func(int, manifest.Job) bool) {
		for i := range s.n {
			if !yield(i, s.Job(i)) {
				return
			}
		}
	}
}
