package main

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/manifest"
)

// selection is what --only, --sample and --shard take of a manifest's jobs;
// the zero value takes them all.
type selection struct {
	only   stringList // job id globs (path.Match), matched against a job's id and its entry's id
	sample int        // how many jobs, spread evenly; 0 means all
	shard  shard
}

// partial reports whether the selection may leave jobs out.
func (s selection) partial() bool {
	return len(s.only) > 0 || s.sample > 0 || s.shard.N > 1
}

// subset names what --only and --sample took, for a report's header, e.g.
// "--only 'hero-*' --sample 12"; "" when neither was given (--shard is the
// report's Shard).
func (s selection) subset() string {
	var parts []string
	for _, p := range s.only {
		parts = append(parts, "--only "+shellQuote(p))
	}
	if s.sample > 0 {
		parts = append(parts, "--sample "+strconv.Itoa(s.sample))
	}
	return strings.Join(parts, " ")
}

// checkOnly reports a malformed --only pattern before anything is read.
func checkOnly(patterns []string) error {
	for _, p := range patterns {
		if _, err := path.Match(strings.ToLower(p), ""); err != nil || strings.TrimSpace(p) == "" {
			return usageErrorf("--only %q: not a job id or glob (use *, ? and [a-z])", p)
		}
	}
	return nil
}

// pick returns the jobs of m the selection takes: the jobs --only names,
// then --sample's evenly spread few of those, then --shard's slice, each
// time with every job the taken ones take images from (a pipeline's
// sources run with their dependents, never without). It stops once ctx is
// done.
func (s selection) pick(ctx context.Context, m *manifest.Manifest) (jobSet, error) {
	set := allJobs(m)
	linked, err := hasLinks(ctx, set)
	if err != nil {
		return jobSet{}, err
	}
	if len(s.only) > 0 {
		idx, err := matching(ctx, set, s.only)
		if err != nil {
			return jobSet{}, err
		}
		set = withSources(m, idx, linked)
	}
	if s.sample > 0 && s.sample < set.Len() {
		set = withSources(m, spread(set, s.sample), linked)
	}
	if s.shard.N > 1 {
		if !linked {
			return set.shard(s.shard.K, s.shard.N), nil
		}
		return chainShard(m, set, s.shard), nil
	}
	return set, nil
}

// hasLinks reports whether any job of set takes an image from another job.
func hasLinks(ctx context.Context, set jobSet) (bool, error) {
	for i, j := range set.All() {
		if i%checkEvery == 0 && ctx.Err() != nil {
			return false, ctx.Err()
		}
		if slices.ContainsFunc(j.Inputs, func(in manifest.Input) bool { return in.From != "" }) {
			return true, nil
		}
	}
	return false, nil
}

// matching returns the manifest indexes of the jobs of set whose id or
// entry id matches one of the globs; a glob that matches no job is an
// error, so a typo never runs nothing quietly.
func matching(ctx context.Context, set jobSet, globs []string) ([]int, error) {
	lower := make([]string, len(globs))
	for k, g := range globs {
		lower[k] = strings.ToLower(g)
	}
	hit := make([]bool, len(globs))
	var idx []int
	for i, j := range set.All() {
		if i%checkEvery == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		took := false
		for k, g := range lower {
			if globMatch(g, j.ID) || globMatch(g, j.Base) {
				hit[k], took = true, true
			}
		}
		if took {
			idx = append(idx, set.Index(i))
		}
	}
	for k, ok := range hit {
		if !ok {
			return nil, usageErrorf("--only %q matches no job of the manifest", globs[k])
		}
	}
	return idx, nil
}

// globMatch reports whether id matches the lower-case glob.
func globMatch(glob, id string) bool {
	ok, _ := path.Match(glob, strings.ToLower(id))
	return ok
}

// spread returns the manifest indexes of n jobs of set (0 < n < set.Len())
// spread evenly over it: the middle job of each of n equal parts. The same
// n over the same manifest always takes the same jobs.
func spread(set jobSet, n int) []int {
	idx := make([]int, n)
	for k := range n {
		idx[k] = set.Index(int((2*int64(k) + 1) * int64(set.Len()) / (2 * int64(n))))
	}
	return idx
}

// withSources is the jobs of m at the ascending manifest indexes idx and,
// when linked, every job they take images from, directly or through other
// jobs.
func withSources(m *manifest.Manifest, idx []int, linked bool) jobSet {
	if !linked {
		return pickJobs(m, idx)
	}
	in := make(map[int]bool, len(idx))
	queue := slices.Clone(idx)
	for _, i := range idx {
		in[i] = true
	}
	for len(queue) > 0 {
		i := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		for _, input := range m.Job(i).Inputs {
			if input.From != "" && !in[input.FromIndex] {
				in[input.FromIndex] = true
				queue = append(queue, input.FromIndex)
			}
		}
	}
	all := make([]int, 0, len(in))
	for i := range in {
		all = append(all, i)
	}
	slices.Sort(all)
	return pickJobs(m, all)
}

// chainShard is the k-th of n slices of set when jobs take images from
// other jobs: whole chains (the jobs joined by image inputs) go to one
// shard, the i-th chain (by its first job) to shard i mod n + 1, so no shard
// waits on, or buys again, another shard's image.
func chainShard(m *manifest.Manifest, set jobSet, s shard) jobSet {
	pos := make(map[int]int32, set.Len()) // manifest index → position in set
	for i := range set.Len() {
		pos[set.Index(i)] = int32(i)
	}
	parent := make([]int32, set.Len())
	for i := range parent {
		parent[i] = int32(i)
	}
	var find func(int32) int32
	find = func(x int32) int32 {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	for i, j := range set.All() {
		for _, in := range j.Inputs {
			if in.From == "" {
				continue
			}
			src, ok := pos[in.FromIndex]
			if !ok {
				continue
			}
			a, b := find(int32(i)), find(src)
			if a != b {
				parent[max(a, b)] = min(a, b) // the root is the chain's first job
			}
		}
	}
	chain := make(map[int32]int, set.Len()) // root → chain number, in order of first job
	var idx []int
	for i := range set.Len() {
		r := find(int32(i))
		c, ok := chain[r]
		if !ok {
			c = len(chain)
			chain[r] = c
		}
		if c%s.N == s.K-1 {
			idx = append(idx, set.Index(i))
		}
	}
	return pickJobs(m, idx)
}

// sampleFlag is a --sample flag: a positive number of jobs.
type sampleFlag struct{ n *int }

func (v sampleFlag) String() string {
	if v.n == nil || *v.n == 0 {
		return ""
	}
	return strconv.Itoa(*v.n)
}

func (v sampleFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return fmt.Errorf("%q is not a positive number of jobs", s)
	}
	*v.n = n
	return nil
}
