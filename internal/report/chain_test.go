package report

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// chainText writes a layout as "a → b,c → d" per chain, with missing jobs
// as "?id", and the jobs no chain shows.
func chainText(jobs []RunJob, l chainLayout) (chainsText []string, grid []string) {
	name := func(n int) string {
		if n >= len(jobs) {
			return "?" + l.missing[n-len(jobs)]
		}
		return jobs[n].ID
	}
	for _, c := range l.chains {
		var steps []string
		for _, s := range c.steps {
			var ids []string
			for _, n := range s {
				ids = append(ids, name(n))
			}
			steps = append(steps, strings.Join(ids, ","))
		}
		chainsText = append(chainsText, strings.Join(steps, " → "))
	}
	for i, j := range jobs {
		if !l.showsJob(i) {
			grid = append(grid, j.ID)
		}
	}
	return chainsText, grid
}

// jobsOf builds run jobs from "id<dep,dep" specs: "up<gen" takes images
// from gen, "gen" from nothing.
func jobsOf(specs ...string) []RunJob {
	out := make([]RunJob, len(specs))
	for i, s := range specs {
		id, deps, _ := strings.Cut(s, "<")
		out[i] = RunJob{Index: i, ID: id}
		if deps != "" {
			out[i].DependsOn = strings.Split(deps, ",")
		}
	}
	return out
}

func TestChains(t *testing.T) {
	tests := []struct {
		name   string
		jobs   []RunJob
		chains []string
		grid   []string
	}{
		{"no dependencies", jobsOf("a", "b"), nil, []string{"a", "b"}},
		{"three steps", jobsOf("cut<gen", "gen", "up<cut", "other"), []string{"gen → cut → up"}, []string{"other"}},
		{"a source with two dependents shows in both",
			jobsOf("gen", "fast<gen", "creative<gen", "bg<creative"),
			[]string{"gen → fast", "gen → creative → bg"}, nil},
		{"two sources in one step", jobsOf("a", "b", "c<a,b"), []string{"a,b → c"}, nil},
		// d takes images from a and from b, which takes a's: a stands
		// before b, not beside it.
		{"diamond by longest path", jobsOf("a", "b<a", "d<b,a"), []string{"a → b → d"}, nil},
		{"sources of different depths", jobsOf("a", "b<a", "x", "d<b,x"), []string{"a → b,x → d"}, nil},
		{"source from another shard", jobsOf("up<gen-7", "cut<up"), []string{"?gen-7 → up → cut"}, nil},
		{"self and repeats ignored", jobsOf("a", "b<a,a,b"), []string{"a → b"}, nil},
		{"cycle is cut and every job shows", jobsOf("a<b", "b<a", "z"), []string{"b → a"}, []string{"z"}},
		{"cycle feeding a chain", jobsOf("a<c", "b<a", "c<b", "d<c"), []string{"a → b → c → d"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotChains, gotGrid := chainText(tt.jobs, chains(tt.jobs))
			if !slices.Equal(gotChains, tt.chains) || !slices.Equal(gotGrid, tt.grid) {
				t.Errorf("chains = %q, grid %q; want %q, grid %q", gotChains, gotGrid, tt.chains, tt.grid)
			}
		})
	}
}

// TestChainsLong lays out a chain far longer than any real pipeline: the
// walk is iterative, so depth is bounded by memory, not the stack.
func TestChainsLong(t *testing.T) {
	const n = 100_000
	specs := []string{"j0"}
	for i := 1; i < n; i++ {
		specs = append(specs, fmt.Sprintf("j%d<j%d", i, i-1))
	}
	l := chains(jobsOf(specs...))
	if len(l.chains) != 1 {
		t.Fatalf("chains of a %d-job line: %d chains, want 1", n, len(l.chains))
	}
	if len(l.chains[0].steps) != n {
		t.Fatalf("chain of a %d-job line has %d steps, want %d", n, len(l.chains[0].steps), n)
	}
	for k, s := range l.chains[0].steps {
		if len(s) != 1 || s[0] != k {
			t.Fatalf("step %d = %v, want [%d]", k, s, k)
		}
	}
}
