package manifest

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one thing wrong with a manifest, at a position in its file.
type Problem struct {
	File string // the manifest's path, as given to Load or Parse
	Line int    // 1-based line
	Col  int    // 1-based column
	Msg  string // names the field path first, e.g. "jobs[2].matrix.seed: ..."
}

// String renders the problem as FILE:LINE:COL: message.
func (p Problem) String() string {
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Msg)
}

// Errors is every problem found in a manifest, sorted by position. Load and
// Parse return it as a *Errors; match it with errors.As.
type Errors []Problem

// Error renders one problem per line, in position order.
func (e *Errors) Error() string {
	var b strings.Builder
	for i, p := range *e {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// sortProblems orders problems by line, column and message, and drops exact
// repeats (a shared default can break many jobs the same way).
func sortProblems(ps Errors) Errors {
	slices.SortFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col), strings.Compare(a.Msg, b.Msg))
	})
	return slices.Compact(ps)
}
