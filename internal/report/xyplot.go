package report

import (
	"encoding/binary"
	"encoding/json"
	"iter"
	"slices"
	"strconv"
	"strings"
)

// matrix is one matrix entry of a run: its jobs and, for each, the index
// of its value of each key, in a few bytes a job.
type matrix struct {
	group  string
	keys   []string   // in the manifest's order
	values [][]string // for each key, its values in order of first appearance
	jobs   []int32    // indices into the run's jobs, in report order
	// at holds, for each of jobs, its value index of each key: job n's of
	// key k at n*len(keys)+k.
	at  []int32
	bad bool // a job broke the matrix: it is dropped
}

// matrices finds the matrix entries among jobs, in order of their first
// job: groups whose jobs all have vars, with the same keys in the same
// order and no two jobs with the same values. A group that breaks this (a
// merge of reports of different manifests) is not a matrix.
func matrices(jobs []RunJob) []matrix {
	ms, _ := matricesOf(&Run{Jobs: jobs}, true)
	return ms
}

// matricesOf finds the matrix entries of r's jobs in one pass, as matrices
// does. Unless interleaved (some group's jobs are not consecutive), it
// remembers only the groups that may be matrices.
func matricesOf(r *Run, interleaved bool) ([]matrix, error) {
	var out []matrix
	byGroup := make(map[string]int) // group → index in out, or -1 when it is not a matrix
	prev := ""
	err := r.each(func(i int, j *RunJob) error {
		n, seen := byGroup[j.Group]
		if !seen && !interleaved && i > 0 && j.Group == prev {
			seen, n = true, -1 // a group without vars goes on
		}
		prev = j.Group
		switch {
		case seen && n < 0:
			return nil
		case !seen && len(j.Vars) == 0:
			if interleaved {
				byGroup[j.Group] = -1
			}
			return nil
		case !seen:
			m := matrix{group: j.Group, values: make([][]string, len(j.Vars))}
			for _, v := range j.Vars {
				m.keys = append(m.keys, v.Key)
			}
			n = len(out)
			byGroup[j.Group] = n
			out = append(out, m)
		}
		if !out[n].add(i, j.Vars) {
			byGroup[j.Group] = -1
			out[n].bad = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(out, func(m matrix) bool { return m.bad || m.repeats() }), nil
}

// add adds job i with vars to m; false when its keys differ from m's.
func (m *matrix) add(i int, vars []Var) bool {
	if len(vars) != len(m.keys) {
		return false
	}
	for k, v := range vars {
		if v.Key != m.keys[k] {
			return false
		}
	}
	for k, v := range vars {
		at := slices.Index(m.values[k], v.Value)
		if at < 0 {
			at = len(m.values[k])
			m.values[k] = append(m.values[k], v.Value)
		}
		m.at = append(m.at, int32(at))
	}
	m.jobs = append(m.jobs, int32(i))
	return true
}

// atOf is job n's value indices, one per key.
func (m *matrix) atOf(n int) []int32 {
	k := len(m.keys)
	return m.at[n*k : (n+1)*k]
}

// repeats reports whether two of m's jobs have the same values.
func (m *matrix) repeats() bool {
	order := make([]int32, len(m.jobs))
	for n := range order {
		order[n] = int32(n)
	}
	slices.SortFunc(order, func(a, b int32) int { return slices.Compare(m.atOf(int(a)), m.atOf(int(b))) })
	for n := 1; n < len(order); n++ {
		if slices.Equal(m.atOf(int(order[n-1])), m.atOf(int(order[n]))) {
			return true
		}
	}
	return false
}

// htmlPlot is a matrix entry's images laid out as an X/Y plot: rows by one
// key, columns by another, and one grid for each combination of the other
// keys. The page's script lays it out again when the reader picks other
// keys; the server's layout is the first two keys.
type htmlPlot struct {
	Group string
	Keys  []string // the matrix keys, in the manifest's order
	// Row and Col are the indices in Keys of the keys the rows and the
	// columns show; Row is -1 when there is one key (a single row).
	Row, Col int
	// Axes is {"keys": [...], "values": [[...], ...]} as JSON, for the
	// page's script; "" when there is one key and nothing to choose.
	Axes  string
	Jobs  int
	Grids []htmlGrid
}

// htmlGrid is one table of an X/Y plot.
type htmlGrid struct {
	Label  string // the other keys' values, e.g. "seed = 1 · cfg_scale = 7"; "" when there are none
	Corner string // names the row and column keys
	Cols   []string
	Rows   []htmlPlotRow
}

// htmlPlotRow is one row of an X/Y grid: a value of the row key, and a
// cell for each value of the column key (nil where no job of the report has
// these values), made as the page is written.
type htmlPlotRow struct {
	Label string
	Cells iter.Seq[*htmlCell]
}

// htmlCell is one job of a matrix entry in its X/Y grid.
type htmlCell struct {
	ID, Status, Failure string
	At                  string // the job's value index of each key, e.g. "1,0"
	// Params is the job's generation parameters (its prompt and settings),
	// or its settings when it has none, shown on hover and in its details.
	Params string
	Images []htmlThumb
}

// plot lays m out by its first two keys (one row when it has one key);
// cell returns the cell of the run's job i, called as the page is written.
func (m *matrix) plot(cell func(i int) *htmlCell) htmlPlot {
	p := htmlPlot{Group: m.group, Keys: m.keys, Row: 0, Col: 1, Jobs: len(m.jobs)}
	if len(m.keys) == 1 {
		p.Row, p.Col = -1, 0
	} else {
		axes, _ := json.Marshal(struct { // strings always encode
			Keys   []string   `json:"keys"`
			Values [][]string `json:"values"`
		}{m.keys, m.values})
		p.Axes = string(axes)
	}
	p.Grids = m.layout(p.Row, p.Col, func(n int) *htmlCell {
		c := cell(int(m.jobs[n]))
		if c != nil {
			c.At = atText(m.atOf(n))
		}
		return c
	})
	return p
}

// layout returns m's grids with key row down and key col across (row -1:
// a single row): one grid for each combination of the other keys that
// some job has, ordered by their value indices, key by key. Every grid has
// a row and a column for every value of its keys; cell(n) makes the cell
// of m.jobs[n]. The page's script (report.html.tmpl) lays out the same
// way.
func (m *matrix) layout(row, col int, cell func(n int) *htmlCell) []htmlGrid {
	var rest []int
	for k := range m.keys {
		if k != row && k != col {
			rest = append(rest, k)
		}
	}
	// Each job's combination of the other keys' values, numbered in
	// order of first appearance, then sorted.
	restKey := func(n int) string {
		b := make([]byte, 0, 4*len(rest))
		for _, k := range rest {
			b = binary.BigEndian.AppendUint32(b, uint32(m.atOf(n)[k]))
		}
		return string(b)
	}
	comboAt := map[string]int32{}
	var combos [][]int32
	comboOf := make([]int32, len(m.jobs))
	for n := range m.jobs {
		key := restKey(n)
		c, ok := comboAt[key]
		if !ok {
			c = int32(len(combos))
			comboAt[key] = c
			r := make([]int32, len(rest))
			for x, k := range rest {
				r[x] = m.atOf(n)[k]
			}
			combos = append(combos, r)
		}
		comboOf[n] = c
	}
	order := make([]int32, len(combos)) // combination → its grid
	byValues := make([]int32, len(combos))
	for c := range byValues {
		byValues[c] = int32(c)
	}
	slices.SortFunc(byValues, func(a, b int32) int { return slices.Compare(combos[a], combos[b]) })
	for g, c := range byValues {
		order[c] = int32(g)
	}

	rowVals, corner := []string{""}, m.keys[col]+" →"
	if row >= 0 {
		rowVals, corner = m.values[row], m.keys[row]+" ↓ "+corner
	}
	cols := len(m.values[col])
	grids := make([]htmlGrid, len(combos))
	cells := make([][]int32, len(combos)) // per grid: the job at each row and column, -1 for none
	for g, c := range byValues {
		grid := &grids[g]
		grid.Corner, grid.Cols = corner, m.values[col]
		var label []string
		for x, k := range rest {
			label = append(label, m.keys[k]+" = "+m.values[k][combos[c][x]])
		}
		grid.Label = strings.Join(label, " · ")
		cells[g] = make([]int32, len(rowVals)*cols)
		for x := range cells[g] {
			cells[g][x] = -1
		}
	}
	for n := range m.jobs {
		at := m.atOf(n)
		r := 0
		if row >= 0 {
			r = int(at[row])
		}
		cells[order[comboOf[n]]][r*cols+int(at[col])] = int32(n)
	}
	for g := range grids {
		grid := &grids[g]
		grid.Rows = make([]htmlPlotRow, len(rowVals))
		for r, v := range rowVals {
			line := cells[g][r*cols : (r+1)*cols]
			grid.Rows[r] = htmlPlotRow{Label: v, Cells: func(yield func(*htmlCell) bool) {
				for _, n := range line {
					var c *htmlCell
					if n >= 0 {
						c = cell(int(n))
					}
					if !yield(c) {
						return
					}
				}
			}}
		}
	}
	return grids
}

// atText is a job's value indices as the page's script reads them: "1,0".
func atText(at []int32) string {
	s := make([]string, len(at))
	for k, v := range at {
		s[k] = strconv.Itoa(int(v))
	}
	return strings.Join(s, ",")
}
