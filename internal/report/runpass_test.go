package report

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInterleavedGroups renders a run whose groups' jobs are not
// consecutive (a report edited by hand): its grouped views are those of
// the same jobs in group order (run-big's golden files), from memory and
// from a spill.
func TestInterleavedGroups(t *testing.T) {
	const groups, perGroup = 5, 12
	big := bigRun(groups, perGroup)
	mixed := *big
	mixed.Jobs = nil
	for k := range perGroup { // g00's first job, g01's first, …, g00's second, …
		for g := range groups {
			mixed.Jobs = append(mixed.Jobs, big.Jobs[g*perGroup+k])
		}
	}
	golden := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// part is s from the first start on, up to and with the first end
	// after it.
	part := func(s, start, end string) string {
		i := strings.Index(s, start)
		if i < 0 {
			t.Fatalf("no %q in the page", start)
		}
		n := strings.Index(s[i:], end)
		if n < 0 {
			t.Fatalf("no %q after %q in the page", end, start)
		}
		return s[i : i+n+len(end)]
	}
	for _, r := range []struct {
		name string
		run  *Run
	}{
		{"memory", &mixed},
		{"spill", spilled(t, &mixed)},
	} {
		for _, f := range []struct{ format, golden string }{
			{FormatTable, "run-big.txt.golden"},
			{FormatMarkdown, "run-big.md.golden"},
			{FormatHTML, "run-big.html.golden"},
		} {
			var b bytes.Buffer
			if err := WriteRun(&b, f.format, r.run); err != nil {
				t.Fatal(err)
			}
			got, want := b.String(), golden(f.golden)
			if f.format == FormatHTML {
				// The jobs and images are listed in the report's order.
				for _, sect := range [][2]string{{`<div class="charts">`, "\n</div>"}, {`<table id="groups">`, "</table>"}} {
					if g, w := part(got, sect[0], sect[1]), part(want, sect[0], sect[1]); g != w {
						t.Errorf("%s, %s: %s of interleaved groups =\n%s\nwant (%s)\n%s", r.name, f.format, sect[0], g, f.golden, w)
					}
				}
				continue
			}
			if got != want {
				t.Errorf("%s, %s of interleaved groups =\n%s\nwant (%s)\n%s", r.name, f.format, got, f.golden, want)
			}
		}
	}
}
