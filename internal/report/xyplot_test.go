package report

import (
	"reflect"
	"strings"
	"testing"
)

// mjob is a job of group with vars written "key=value" (none: not from a
// matrix); its id is the group and the values.
func mjob(group string, vars ...string) RunJob {
	j := RunJob{ID: group, Group: group, Status: StatusSucceeded}
	for _, kv := range vars {
		k, v, _ := strings.Cut(kv, "=")
		j.Vars = append(j.Vars, Var{Key: k, Value: v})
		j.ID += "-" + v
	}
	return j
}

// gridText is a grid as text: its label and corner, then a line per row
// with the row label and the cells' job ids ("." for an empty cell).
func gridText(g htmlGrid) string {
	lines := []string{g.Label + " | " + g.Corner + " | " + strings.Join(g.Cols, " ")}
	for _, r := range g.Rows {
		line := r.Label + ":"
		for c := range r.Cells {
			if c == nil {
				line += " ."
			} else {
				line += " " + c.ID
			}
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

func TestMatrixPlots(t *testing.T) {
	tests := []struct {
		name string
		jobs []RunJob
		want []htmlPlot // without their grids
		// wantGrids are each plot's grids, as gridText.
		wantGrids [][]string
	}{
		{
			name: "no matrix",
			jobs: []RunJob{mjob("a"), mjob("b")},
		},
		{
			name: "one key: a single row",
			jobs: []RunJob{mjob("a"), mjob("s", "seed=1"), mjob("s", "seed=2"), mjob("s", "seed=3")},
			want: []htmlPlot{{Group: "s", Keys: []string{"seed"}, Row: -1, Col: 0, Jobs: 3}},
			wantGrids: [][]string{{
				" | seed → | 1 2 3\n: s-1 s-2 s-3",
			}},
		},
		{
			name: "two keys: rows the first, columns the second",
			jobs: []RunJob{
				mjob("m", "subject=fox", "style=anime"), mjob("m", "subject=fox", "style=photo"),
				mjob("m", "subject=cat", "style=anime"), mjob("m", "subject=cat", "style=photo"),
			},
			want: []htmlPlot{{Group: "m", Keys: []string{"subject", "style"}, Row: 0, Col: 1, Jobs: 4,
				Axes: `{"keys":["subject","style"],"values":[["fox","cat"],["anime","photo"]]}`}},
			wantGrids: [][]string{{
				" | subject ↓ style → | anime photo\nfox: m-fox-anime m-fox-photo\ncat: m-cat-anime m-cat-photo",
			}},
		},
		{
			name: "a shard's part: missing cells stay empty",
			jobs: []RunJob{mjob("m", "a=1", "b=x"), mjob("m", "a=2", "b=y")},
			want: []htmlPlot{{Group: "m", Keys: []string{"a", "b"}, Row: 0, Col: 1, Jobs: 2,
				Axes: `{"keys":["a","b"],"values":[["1","2"],["x","y"]]}`}},
			wantGrids: [][]string{{" | a ↓ b → | x y\n1: m-1-x .\n2: . m-2-y"}},
		},
		{
			name: "three keys: a grid per value of the third",
			jobs: []RunJob{
				mjob("m", "ar=1:1", "seed=1", "fmt=jpeg"), mjob("m", "ar=1:1", "seed=1", "fmt=webp"),
				mjob("m", "ar=1:1", "seed=2", "fmt=jpeg"), mjob("m", "ar=1:1", "seed=2", "fmt=webp"),
				mjob("m", "ar=16:9", "seed=1", "fmt=jpeg"), mjob("m", "ar=16:9", "seed=1", "fmt=webp"),
			},
			want: []htmlPlot{{Group: "m", Keys: []string{"ar", "seed", "fmt"}, Row: 0, Col: 1, Jobs: 6,
				Axes: `{"keys":["ar","seed","fmt"],"values":[["1:1","16:9"],["1","2"],["jpeg","webp"]]}`}},
			wantGrids: [][]string{{
				"fmt = jpeg | ar ↓ seed → | 1 2\n1:1: m-1:1-1-jpeg m-1:1-2-jpeg\n16:9: m-16:9-1-jpeg .",
				"fmt = webp | ar ↓ seed → | 1 2\n1:1: m-1:1-1-webp m-1:1-2-webp\n16:9: m-16:9-1-webp .",
			}},
		},
		{
			name: "matrices in order of their first job, other jobs between",
			jobs: []RunJob{mjob("b", "k=1"), mjob("x"), mjob("a", "k=1"), mjob("b", "k=2")},
			want: []htmlPlot{
				{Group: "b", Keys: []string{"k"}, Row: -1, Col: 0, Jobs: 2},
				{Group: "a", Keys: []string{"k"}, Row: -1, Col: 0, Jobs: 1},
			},
			wantGrids: [][]string{{" | k → | 1 2\n: b-1 b-2"}, {" | k → | 1\n: a-1"}},
		},
		{
			name:      "keys that differ between jobs: not a matrix",
			jobs:      []RunJob{mjob("m", "a=1", "b=x"), mjob("m", "b=x", "a=2"), mjob("n", "k=1")},
			want:      []htmlPlot{{Group: "n", Keys: []string{"k"}, Row: -1, Col: 0, Jobs: 1}},
			wantGrids: [][]string{{" | k → | 1\n: n-1"}},
		},
		{
			name: "a job without vars in the group: not a matrix",
			jobs: []RunJob{mjob("m", "a=1"), mjob("m")},
		},
		{
			name: "two jobs with the same values: not a matrix",
			jobs: []RunJob{mjob("m", "a=1"), mjob("m", "a=2"), mjob("m", "a=1")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []htmlPlot
			var gotGrids [][]string
			for _, m := range matrices(tt.jobs) {
				p := m.plot(func(i int) *htmlCell { return &htmlCell{ID: tt.jobs[i].ID} })
				var grids []string
				for _, g := range p.Grids {
					grids = append(grids, gridText(g))
				}
				gotGrids = append(gotGrids, grids)
				p.Grids = nil
				got = append(got, p)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("plots = %+v, want %+v", got, tt.want)
			}
			if !reflect.DeepEqual(gotGrids, tt.wantGrids) {
				t.Errorf("grids = %q, want %q", gotGrids, tt.wantGrids)
			}
		})
	}
}

// TestMatrixCellsAt checks the value indices each cell carries for the
// page's script: the job's value of each key, as an index into the values
// in Axes.
func TestMatrixCellsAt(t *testing.T) {
	jobs := []RunJob{mjob("m", "a=1", "b=x"), mjob("m", "a=2", "b=x"), mjob("m", "a=1", "b=y")}
	ms := matrices(jobs)
	if len(ms) != 1 {
		t.Fatalf("matrices = %d, want 1", len(ms))
	}
	p := ms[0].plot(func(i int) *htmlCell { return &htmlCell{ID: jobs[i].ID} })
	got := map[string]string{}
	for _, g := range p.Grids {
		for _, r := range g.Rows {
			for c := range r.Cells {
				if c != nil {
					got[c.ID] = c.At
				}
			}
		}
	}
	want := map[string]string{"m-1-x": "0,0", "m-2-x": "1,0", "m-1-y": "0,1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("cells' value indices = %v, want %v", got, want)
	}
}
