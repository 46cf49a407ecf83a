package main

import (
	"fmt"
	"slices"
	"testing"

	"github.com/batch-tool/batch/internal/manifest"
)

// jobsOfSet is what the runner takes from a job set.
var _ interface {
	Len() int
	Job(i int) manifest.Job
} = jobSet{}

// seedSweep is a manifest of n ≥ 1 jobs, one per seed.
func seedSweep(t *testing.T, n int) *manifest.Manifest {
	t.Helper()
	text := fmt.Sprintf("version: 1\nservice: generate/core\njobs:\n  - id: sweep\n    prompt: a fox\n    matrix:\n      seed: {from: 1, to: %d}\n", n)
	m, err := manifest.Parse("sweep.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestJobSetShard: the K-th of N shards of a set holds the set's i-th
// jobs with i mod N = K-1, in order, whether the set is all of a
// manifest, a shard already or an explicit list.
func TestJobSetShard(t *testing.T) {
	m := seedSweep(t, 10)
	tests := []struct {
		name string
		set  jobSet
		k, n int
		want []int // manifest indexes
	}{
		{"whole as 1/1", allJobs(m), 1, 1, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"first of 3", allJobs(m), 1, 3, []int{0, 3, 6, 9}},
		{"last of 3", allJobs(m), 3, 3, []int{2, 5, 8}},
		{"one each", allJobs(m), 10, 10, []int{9}},
		{"more shards than jobs", allJobs(m), 12, 12, nil},
		{"a shard's shard", allJobs(m).shard(2, 3), 2, 2, []int{4}},
		{"a shard's shard of one", allJobs(m).shard(1, 3), 1, 2, []int{0, 6}},
		{"a list's shard", pickJobs(m, []int{1, 4, 5, 7, 8}), 2, 2, []int{4, 7}},
		{"a list's empty shard", pickJobs(m, []int{1}), 2, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.set.shard(tt.k, tt.n)
			var got []int
			for i := range s.Len() {
				got = append(got, s.Index(i))
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("shard %d/%d holds %v, want %v", tt.k, tt.n, got, tt.want)
			}
			checkJobs(t, m, s)
		})
	}
}

// checkJobs checks that s builds and yields, with All, the manifest's
// jobs at its indexes, in order.
func checkJobs(t *testing.T, m *manifest.Manifest, s jobSet) {
	t.Helper()
	n := 0
	for i, j := range s.All() {
		if i != n {
			t.Fatalf("All yields position %d after %d", i, n-1)
		}
		want := m.Job(s.Index(i)).ID
		if j.ID != want || s.Job(i).ID != want {
			t.Errorf("job %d is %q (Job: %q), want %q", i, j.ID, s.Job(i).ID, want)
		}
		n++
	}
	if n != s.Len() {
		t.Errorf("All yields %d jobs, Len is %d", n, s.Len())
	}
}

func TestJobSetWhole(t *testing.T) {
	for _, n := range []int{1, 7} {
		m := seedSweep(t, n)
		s := allJobs(m)
		if !s.whole() || s.Len() != m.Len() {
			t.Errorf("allJobs of %d jobs: whole %v, Len %d", m.Len(), s.whole(), s.Len())
		}
		checkJobs(t, m, s)
		if m.Len() > 1 && (s.shard(1, 2).whole() || pickJobs(m, []int{0}).whole()) {
			t.Errorf("a shard or a list of %d jobs says it is the whole manifest", m.Len())
		}
	}
}
