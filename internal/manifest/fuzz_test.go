package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that Parse never panics, and that every problem it
// reports has a real position.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/bad/*.yaml", "testdata/good/*.yaml", "../../examples/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parse("fuzz.yaml", "testdata/good", data, 10_000) // bigger matrices are slow, not interesting
		if err == nil {
			if m == nil || m.Len() == 0 {
				t.Fatalf("Parse() = %v, nil error; want jobs", m)
			}
			return
		}
		var errs *Errors
		if !errors.As(err, &errs) || len(*errs) == 0 {
			t.Fatalf("Parse() error %T %v, want a non-empty *Errors", err, err)
		}
		for _, p := range *errs {
			if p.Line < 1 || p.Col < 1 {
				t.Errorf("problem %q at %d:%d, want a position ≥ 1:1", p.Msg, p.Line, p.Col)
			}
		}
	})
}
