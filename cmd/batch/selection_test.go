package main

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/batch-tool/batch/internal/manifest"
)

// selectionManifest is a pipeline (hero → cut) followed by a six-row
// matrix: eight jobs, hero-cut being the only chain of two.
const selectionManifest = `version: 1
service: generate/core
jobs:
  - id: hero
    prompt: a red fox
    seed: 1
  - id: cut
    service: edit/remove-background
    image: {from: hero}
  - id: sweep
    prompt: a {animal}
    seed: 7
    matrix:
      animal: [cat, dog, owl, bee, elk, yak]
`

func setIDs(s jobSet) []string {
	var ids []string
	for _, j := range s.All() {
		ids = append(ids, j.ID)
	}
	return ids
}

func TestSelectionPick(t *testing.T) {
	m, err := manifest.Parse("sel.yaml", []byte(selectionManifest))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		sel  selection
		want []string
	}{
		{"all", selection{}, []string{"hero", "cut", "sweep-cat", "sweep-dog", "sweep-owl", "sweep-bee", "sweep-elk", "sweep-yak"}},
		{"only an id", selection{only: []string{"sweep-owl"}}, []string{"sweep-owl"}},
		{"only a glob, any case", selection{only: []string{"SWEEP-[cd]*"}}, []string{"sweep-cat", "sweep-dog"}},
		{"only an entry id", selection{only: []string{"sweep"}}, []string{"sweep-cat", "sweep-dog", "sweep-owl", "sweep-bee", "sweep-elk", "sweep-yak"}},
		{"only patterns add up", selection{only: []string{"hero", "sweep-yak"}}, []string{"hero", "sweep-yak"}},
		{"only a dependent brings its source", selection{only: []string{"cut"}}, []string{"hero", "cut"}},
		{"sample 2: the middles of two halves", selection{sample: 2}, []string{"sweep-cat", "sweep-elk"}},
		{"sample 4 takes cut, so hero too", selection{sample: 4}, []string{"hero", "cut", "sweep-dog", "sweep-bee", "sweep-yak"}},
		{"sample at least all is all", selection{sample: 8}, []string{"hero", "cut", "sweep-cat", "sweep-dog", "sweep-owl", "sweep-bee", "sweep-elk", "sweep-yak"}},
		{"sample of only", selection{only: []string{"sweep"}, sample: 3}, []string{"sweep-dog", "sweep-bee", "sweep-yak"}},
		{"shard keeps a chain whole", selection{shard: shard{1, 2}}, []string{"hero", "cut", "sweep-dog", "sweep-bee", "sweep-yak"}},
		{"the other shard", selection{shard: shard{2, 2}}, []string{"sweep-cat", "sweep-owl", "sweep-elk"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := tt.sel.pick(t.Context(), m)
			if err != nil {
				t.Fatal(err)
			}
			if got := setIDs(set); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			again, _ := tt.sel.pick(t.Context(), m)
			if !slices.Equal(setIDs(again), setIDs(set)) {
				t.Errorf("a second pick took %q, the first %q", setIDs(again), setIDs(set))
			}
		})
	}
}

// TestShardsOfAPipelineCoverIt checks that the shards of a pipeline take
// every job exactly once, each with its sources.
func TestShardsOfAPipelineCoverIt(t *testing.T) {
	m, err := manifest.Parse("sel.yaml", []byte(selectionManifest))
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 9; n++ {
		seen := map[string]int{}
		for k := 1; k <= n; k++ {
			set, err := selection{shard: shard{k, n}}.pick(t.Context(), m)
			if err != nil {
				t.Fatal(err)
			}
			ids := setIDs(set)
			if slices.Contains(ids, "cut") && !slices.Contains(ids, "hero") {
				t.Errorf("shard %d/%d has cut without its source hero: %q", k, n, ids)
			}
			for _, id := range ids {
				seen[id]++
			}
		}
		if len(seen) != m.Len() {
			t.Errorf("%d shards took %d distinct jobs, want %d", n, len(seen), m.Len())
		}
		for id, c := range seen {
			if c != 1 {
				t.Errorf("%d shards took %s %d times", n, id, c)
			}
		}
	}
}

func TestSpreadIsEven(t *testing.T) {
	m, err := manifest.Parse("seeds.yaml", []byte("version: 1\nservice: generate/core\njobs:\n  - id: s\n    prompt: a fox\n    matrix:\n      seed: {from: 1, to: 1000}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 3, 10, 999} {
		idx := spread(allJobs(m), n)
		if len(idx) != n || !slices.IsSorted(idx) || len(slices.Compact(slices.Clone(idx))) != n {
			t.Fatalf("spread(1000, %d) = %v: want %d distinct ascending indexes", n, idx, n)
		}
		for k, i := range idx {
			// Part k is [k·1000/n, (k+1)·1000/n) on the real line; job i
			// covers [i, i+1).
			if (i+1)*n <= k*1000 || i*n >= (k+1)*1000 {
				t.Errorf("spread(1000, %d)[%d] = %d, outside its part [%d/%d, %d/%d)", n, k, i, k*1000, n, (k+1)*1000, n)
			}
		}
	}
}

func TestOnlyErrors(t *testing.T) {
	m, err := manifest.Parse("sel.yaml", []byte(selectionManifest))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkOnly([]string{"sweep-["}); err == nil || !strings.Contains(err.Error(), `--only "sweep-["`) {
		t.Errorf("a malformed glob: got %v, want an error naming it", err)
	}
	_, err = selection{only: []string{"hero", "heros"}}.pick(t.Context(), m)
	var ue *usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), `--only "heros" matches no job`) {
		t.Errorf("a glob matching nothing: got %v, want a usage error naming it", err)
	}
}

// TestShardBudgetShares checks that shards split a manifest's budget in
// proportion to their estimates, so that together they can never spend
// more than it, and that every shard refuses when all of them together are
// over it.
func TestShardBudgetShares(t *testing.T) {
	manifest := func(budget string) string {
		return "version: 1\nservice: generate/core\nbudget: " + budget + "\njobs:\n  - id: s\n    prompt: a {animal}\n    seed: 7\n    matrix:\n      animal: [cat, dog, owl, bee, elk]\n"
	}
	dir := t.TempDir()
	tests := []struct {
		budget string
		code   int
		shares []string // each shard's budget line
	}{
		{"16", 0, []string{"Budget: 6.4 credits, 0.4 left", "Budget: 6.4 credits, 0.4 left", "Budget: 3.2 credits, 0.2 left"}},
		{"15", 0, []string{"Budget: 6.0 credits, 0.0 left", "Budget: 6.0 credits, 0.0 left", "Budget: 3.0 credits, 0.0 left"}},
		{"10", 3, []string{"(all 3 shards together)", "(all 3 shards together)", "(all 3 shards together)"}},
	}
	for _, tt := range tests {
		path := writeFile(t, dir, "m"+tt.budget+".yaml", manifest(tt.budget))
		for k, want := range tt.shares {
			res := batchCmd(t, nil, "plan", "--shard", strconv.Itoa(k+1)+"/3", path)
			if res.code != tt.code || !strings.Contains(res.stdout+res.stderr, want) {
				t.Errorf("budget %s, shard %d/3: exit %d, want %d, and output with %q:\n%s%s", tt.budget, k+1, res.code, tt.code, want, res.stdout, res.stderr)
			}
		}
	}
}
