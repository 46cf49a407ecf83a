package manifest

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/batch-tool/batch/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files: testdata/bad/*.err and schema.json")

// TestBad parses each testdata/bad/*.yaml and compares the problems with
// the .err golden file beside it.
func TestBad(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 25 {
		t.Fatalf("found %d bad manifests, want at least 25", len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			// Named by its base name; its image paths are relative to its folder.
			m, err := parse(filepath.Base(file), filepath.Dir(file), data, MaxJobs)
			if err == nil {
				t.Fatalf("Parse(%s) = %d jobs, nil error; want problems", file, m.Len())
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Parse(%s) error %T %v, want *Errors", file, err, err)
			}
			for _, p := range *errs {
				if p.Line < 1 || p.Col < 1 {
					t.Errorf("problem %q has position %d:%d, want both ≥ 1", p.Msg, p.Line, p.Col)
				}
			}
			got := err.Error() + "\n"
			golden.Check(t, strings.TrimSuffix(file, ".yaml")+".err", []byte(got), *update)
		})
	}
}
