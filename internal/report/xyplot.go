package report

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
)

// matrix is one matrix entry of a run: its jobs and, for each, the index
// of its value of each key.
type matrix struct {
	group  string
	keys   []string   // in the manifest's order
	values [][]string // for each key, its values in order of first appearance
	jobs   []int      // indices into the run's jobs, in report order
	at     [][]int    // for each of jobs, its value index of each key
}

// matrices finds the matrix entries among jobs, in order of their first
// job: groups whose jobs all have vars, with the same keys in the same
// order and no two jobs with the same values. A group that breaks this (a
// merge of reports of different manifests) is not a matrix.
func matrices(jobs []RunJob) []matrix {
	var out []matrix
	byGroup := make(map[string]int) // group → index in out, or -1 when it is not a matrix
	for i, j := range jobs {
		n, seen := byGroup[j.Group]
		switch {
		case seen && n < 0:
			continue
		case !seen && len(j.Vars) == 0:
			byGroup[j.Group] = -1
			continue
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
			out[n].group = "" // dropped below
		}
	}
	return slices.DeleteFunc(out, func(m matrix) bool { return m.group == "" })
}

// add adds job i with vars to m; false when its keys differ from m's or
// another job has the same values.
func (m *matrix) add(i int, vars []Var) bool {
	if len(vars) != len(m.keys) {
		return false
	}
	at := make([]int, len(vars))
	for k, v := range vars {
		if v.Key != m.keys[k] {
			return false
		}
		at[k] = slices.Index(m.values[k], v.Value)
		if at[k] < 0 {
			at[k] = len(m.values[k])
			m.values[k] = append(m.values[k], v.Value)
		}
	}
	for _, other := range m.at {
		if slices.Equal(other, at) {
			return false
		}
	}
	m.jobs = append(m.jobs, i)
	m.at = append(m.at, at)
	return true
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
// cell for each value of the column key.
type htmlPlotRow struct {
	Label string
	Cells []*htmlCell // nil where no job of the report has these values
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
// cell returns the cell of the run's job i.
func (m *matrix) plot(cell func(i int) *htmlCell) htmlPlot {
	cells := make([]*htmlCell, len(m.jobs))
	for n, i := range m.jobs {
		cells[n] = cell(i)
		cells[n].At = atText(m.at[n])
	}
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
	p.Grids = m.layout(p.Row, p.Col, cells)
	return p
}

// layout returns m's grids with key row down and key col across (row -1:
// a single row): one grid for each combination of the other keys that
// some job has, ordered by their value indices, key by key. Every grid has
// a row and a column for every value of its keys; cells are the cells of
// m.jobs. The page's script (report.html.tmpl) lays out the same way.
func (m *matrix) layout(row, col int, cells []*htmlCell) []htmlGrid {
	var rest []int
	for k := range m.keys {
		if k != row && k != col {
			rest = append(rest, k)
		}
	}
	restOf := func(at []int) []int {
		r := make([]int, len(rest))
		for n, k := range rest {
			r[n] = at[k]
		}
		return r
	}
	var combos [][]int
	for _, at := range m.at {
		if r := restOf(at); !slices.ContainsFunc(combos, func(c []int) bool { return slices.Equal(c, r) }) {
			combos = append(combos, r)
		}
	}
	slices.SortFunc(combos, slices.Compare)

	rowVals, corner := []string{""}, m.keys[col]+" →"
	if row >= 0 {
		rowVals, corner = m.values[row], m.keys[row]+" ↓ "+corner
	}
	grids := make([]htmlGrid, len(combos))
	for g, combo := range combos {
		grid := &grids[g]
		grid.Corner, grid.Cols = corner, m.values[col]
		var label []string
		for n, k := range rest {
			label = append(label, m.keys[k]+" = "+m.values[k][combo[n]])
		}
		grid.Label = strings.Join(label, " · ")
		grid.Rows = make([]htmlPlotRow, len(rowVals))
		for r, v := range rowVals {
			grid.Rows[r] = htmlPlotRow{Label: v, Cells: make([]*htmlCell, len(m.values[col]))}
		}
		for n, at := range m.at {
			if !slices.Equal(restOf(at), combo) {
				continue
			}
			r := 0
			if row >= 0 {
				r = at[row]
			}
			grid.Rows[r].Cells[at[col]] = cells[n]
		}
	}
	return grids
}

// atText is a job's value indices as the page's script reads them: "1,0".
func atText(at []int) string {
	s := make([]string, len(at))
	for k, v := range at {
		s[k] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}
