package cost

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/batch-tool/batch/internal/engine"
	"github.com/batch-tool/batch/internal/golden"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// checkGolden compares got with testdata/name, or rewrites it under -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	golden.Check(t, "testdata/"+name, []byte(got), *update)
}

func mustSheet(t testing.TB, id string) *Sheet {
	t.Helper()
	s, err := LookupSheet(id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// seedCell is one cell of the seed's credit table.
type seedCell struct {
	width, height, steps int
	credits              Credits
}

// readSeedTable parses the Markdown table in testdata/seed-table.md.
func readSeedTable(t *testing.T) []seedCell {
	t.Helper()
	f, err := os.Open("testdata/seed-table.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var sizes [][2]int
	var cells []seedCell
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "| --") {
			continue
		}
		cols := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cols {
			cols[i] = strings.TrimSpace(cols[i])
		}
		if cols[0] == "Steps" {
			for _, c := range cols[1:] {
				var w, h int
				if _, err := fmt.Sscanf(c, "%d × %d", &w, &h); err != nil {
					t.Fatalf("table header %q: %v", c, err)
				}
				sizes = append(sizes, [2]int{w, h})
			}
			continue
		}
		steps, err := strconv.Atoi(cols[0])
		if err != nil {
			t.Fatalf("table row %q: %v", line, err)
		}
		for i, c := range cols[1:] {
			credits, err := ParseCredits(c)
			if err != nil {
				t.Fatalf("table cell %q: %v", c, err)
			}
			cells = append(cells, seedCell{sizes[i][0], sizes[i][1], steps, credits})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(cells) != 36 {
		t.Fatalf("read %d cells from the seed table, want 36", len(cells))
	}
	return cells
}

func TestDreamStudio2022MatchesSeedTable(t *testing.T) {
	s := mustSheet(t, DefaultSheet)
	for _, c := range readSeedTable(t) {
		for _, eng := range []string{"stable-diffusion-v1-5", "stable-diffusion-xl-beta-v2-2-2"} {
			got, err := s.ImagePrice(eng, c.width, c.height, c.steps)
			if err != nil || got != c.credits {
				t.Errorf("ImagePrice(%s, %dx%d, %d steps) = %v, %v, want %v", eng, c.width, c.height, c.steps, got, err, c.credits)
			}
		}
	}
}

func TestDreamStudio2022BetweenAndOutsideKnots(t *testing.T) {
	s := mustSheet(t, DefaultSheet)
	tests := []struct {
		engine               string
		width, height, steps int
		want                 string
	}{
		// 640×640 = 409600 px lies on the 512×768–512×1024 segment:
		// 2.4 + 1.4 × 16384/131072 = 2.575, at 50 steps; rounded half-up.
		{"stable-diffusion-v1-5", 640, 640, 50, "2.6"},
		// SDXL 1.0 sizes sit inside the knots: 1216×832 = 1011712 px,
		// 6.6 + 2.8 × 225280/262144 = 9.0063…, × 30/50 = 5.4038 → 5.4.
		{"stable-diffusion-xl-1024-v1-0", 1216, 832, 30, "5.4"},
		{"stable-diffusion-xl-1024-v1-0", 1024, 1024, 30, "5.6"},
	}
	for _, tt := range tests {
		got, err := s.ImagePrice(tt.engine, tt.width, tt.height, tt.steps)
		if err != nil || got.String() != tt.want {
			t.Errorf("ImagePrice(%s, %dx%d, %d) = %v, %v, want %s", tt.engine, tt.width, tt.height, tt.steps, got, err, tt.want)
		}
	}
	for _, size := range [][2]int{{320, 320}, {512, 448}, {1536, 1536}} {
		got, err := s.ImagePrice("stable-diffusion-v1-6", size[0], size[1], 30)
		if !errors.Is(err, ErrNoPrice) || !strings.Contains(err.Error(), "outside the table") {
			t.Errorf("ImagePrice(v1-6, %dx%d) = %v, %v, want ErrNoPrice outside the table", size[0], size[1], got, err)
		}
	}
}

func TestV1_2023SD(t *testing.T) {
	// pricing-research.md §1.3, "Example values", credits per image.
	s := mustSheet(t, "v1-2023")
	tests := []struct {
		width, height, steps int
		want                 string
	}{
		{512, 512, 30, "0.2001"},
		{512, 512, 50, "0.3334"},
		{768, 768, 30, "0.9078"},
		{1024, 1024, 30, "1.8987"},
		{1024, 1024, 50, "3.1646"},
		{1024, 1024, 150, "9.4937"},
	}
	for _, eng := range []string{"stable-diffusion-v1", "stable-diffusion-v1-5", "stable-diffusion-512-v2-1", "stable-diffusion-768-v2-1"} {
		for _, tt := range tests {
			got, err := s.ImagePrice(eng, tt.width, tt.height, tt.steps)
			if err != nil || got.Fixed(4) != tt.want {
				t.Errorf("ImagePrice(%s, %dx%d, %d) = %v, %v, want %s to 4 decimals", eng, tt.width, tt.height, tt.steps, got, err, tt.want)
			}
		}
	}
	// 92617 × 2.16e-6 = 0.20005272 exactly: rounded up, once, to 0.200053.
	if got, err := s.ImagePrice("stable-diffusion-v1-5", 512, 512, 30); err != nil || got != 200053 {
		t.Errorf("ImagePrice(v1-5, 512x512, 30) = %d µcredits, %v, want 200053", int64(got), err)
	}
}

func TestV1_2023SDXLBeta(t *testing.T) {
	// 5.4e-6 is 2.5 × 2.16e-6; CONTRACT.md §10 gives 512²@30 = 0.5.
	s := mustSheet(t, "v1-2023")
	got, err := s.ImagePrice("stable-diffusion-xl-beta-v2-2-2", 512, 512, 30)
	if err != nil || got.Fixed(1) != "0.5" || got != 500132 { // 92617 × 5.4e-6 = 0.5001318
		t.Errorf("ImagePrice(xl-beta, 512x512, 30) = %v, %v, want 0.500132", got, err)
	}
}

func TestV1_2023SDXLSteps(t *testing.T) {
	// pricing-research.md §2.3, to 3 decimals; size does not matter.
	s := mustSheet(t, "v1-2023")
	want := map[int]string{10: "1.353", 20: "1.499", 25: "1.576", 29: "1.641", 30: "1.600", 31: "1.674",
		40: "1.800", 50: "2.000", 75: "2.523", 100: "3.113", 150: "4.527"}
	for _, eng := range []string{"stable-diffusion-xl-1024-v0-9", "stable-diffusion-xl-1024-v1-0"} {
		for _, size := range [][2]int{{1024, 1024}, {1536, 640}} {
			for steps, w := range want {
				got, err := s.ImagePrice(eng, size[0], size[1], steps)
				if err != nil || got.Fixed(3) != w {
					t.Errorf("ImagePrice(%s, %dx%d, %d) = %v, %v, want %s", eng, size[0], size[1], steps, got, err, w)
				}
			}
		}
	}
}

func TestSDXL2024(t *testing.T) {
	s := mustSheet(t, "sdxl-2024")
	want := map[int]string{10: "0.9", 30: "0.9", 40: "1.2", 50: "1.5", 100: "3.0", 150: "4.5"}
	for _, eng := range []string{"stable-diffusion-xl-1024-v1-0", "stable-diffusion-v1-6"} {
		for steps, w := range want {
			got, err := s.ImagePrice(eng, 1024, 1024, steps)
			if err != nil || got.String() != w {
				t.Errorf("ImagePrice(%s, 1024x1024, %d) = %v, %v, want %s", eng, steps, got, err, w)
			}
		}
	}
	// 31 steps: 0.9 × 31/30 = 0.93 exactly.
	if got, _ := s.ImagePrice("stable-diffusion-v1-6", 512, 512, 31); got.String() != "0.93" {
		t.Errorf("ImagePrice(v1-6, 512x512, 31) = %v, want 0.93", got)
	}
	if !strings.Contains(s.Notes, "2025-07-24") {
		t.Errorf("sdxl-2024 notes do not record SD 1.6's withdrawal on 2025-07-24: %q", s.Notes)
	}
}

func TestImagePriceUnknownEngine(t *testing.T) {
	tests := []struct{ sheet, engine string }{
		{"v1-2023", "stable-diffusion-v1-6"},
		{"sdxl-2024", "stable-diffusion-v1-5"},
		{"sdxl-2024", "no-such-engine"},
	}
	for _, tt := range tests {
		_, err := mustSheet(t, tt.sheet).ImagePrice(tt.engine, 512, 512, 30)
		if !errors.Is(err, ErrNoPrice) {
			t.Fatalf("ImagePrice(%s) on %s error = %v, want ErrNoPrice", tt.engine, tt.sheet, err)
		}
		if msg := err.Error(); !strings.Contains(msg, strconv.Quote(tt.engine)) || !strings.Contains(msg, strconv.Quote(tt.sheet)) {
			t.Errorf("error %q does not name engine %q and sheet %q", msg, tt.engine, tt.sheet)
		}
	}
}

func TestImagePriceBadInput(t *testing.T) {
	s := mustSheet(t, DefaultSheet)
	for _, in := range [][3]int{{0, 512, 50}, {512, -512, 50}, {512, 512, 0}, {1 << 21, 512, 50}} {
		if got, err := s.ImagePrice("stable-diffusion-v1-5", in[0], in[1], in[2]); err == nil {
			t.Errorf("ImagePrice(%v) = %v, want an error", in, got)
		}
	}
}

func TestLookupSheet(t *testing.T) {
	s, err := LookupSheet("")
	if err != nil || s.ID != DefaultSheet {
		t.Fatalf(`LookupSheet("") = %v, %v, want %s`, s, err, DefaultSheet)
	}
	_, err = LookupSheet("dreamstudio-2021")
	if err == nil {
		t.Fatal("LookupSheet(dreamstudio-2021) succeeded, want an error")
	}
	for _, id := range []string{"dreamstudio-2022", "v1-2023", "sdxl-2024"} {
		if !strings.Contains(err.Error(), id) {
			t.Errorf("error %q does not list %s", err, id)
		}
	}
}

func TestEmbeddedSheets(t *testing.T) {
	sheets := Sheets()
	var ids []string
	for i, s := range sheets {
		ids = append(ids, s.ID)
		if i > 0 && s.EffectiveFrom < sheets[i-1].EffectiveFrom {
			t.Errorf("Sheets() not sorted by date: %s before %s", sheets[i-1].ID, s.ID)
		}
		if s.EffectiveTo != "" && i+1 < len(sheets) && s.EffectiveTo >= sheets[i+1].EffectiveFrom {
			t.Errorf("sheet %s ends %v, not before %s starts", s.ID, s.EffectiveTo, sheets[i+1].ID)
		}
		if s.Title == "" || s.Source == "" || s.Notes == "" {
			t.Errorf("sheet %s lacks a title, source or notes", s.ID)
		}
		for _, r := range s.Rules {
			if r.Source == "" {
				t.Errorf("sheet %s: a %s rule has no source", s.ID, r.Kind)
			}
			for _, e := range r.Engines {
				if _, known := engine.Lookup(e); !known && !isPattern(e) {
					t.Errorf("sheet %s names unknown engine %q", s.ID, e)
				}
			}
		}
	}
	if want := "dreamstudio-2022 v1-2023 sdxl-2024"; strings.Join(ids, " ") != want {
		t.Errorf("Sheets() = %v, want %s", ids, want)
	}
	// The default table prices every engine at its default size and steps.
	for _, e := range engine.All() {
		if _, err := mustSheet(t, DefaultSheet).ImagePrice(e.ID, e.DefaultSize[0], e.DefaultSize[1], e.DefaultSteps); err != nil {
			t.Errorf("default sheet cannot price %s at its defaults: %v", e.ID, err)
		}
	}
}

func TestEmbeddedFileNamesMatchIDs(t *testing.T) {
	files, err := fs.Glob(embedded, "sheets/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no embedded sheets: %v", err)
	}
	for _, name := range files {
		data, err := embedded.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		s, err := parseSheet(name, data, false)
		if err != nil {
			t.Fatal(err)
		}
		if want := "sheets/" + s.ID + ".yaml"; name != want {
			t.Errorf("sheet %q is in %s, want %s", s.ID, name, want)
		}
	}
}

func isPattern(s string) bool { return strings.ContainsAny(s, `*?[\`) }

func TestSheetsAreFreshCopies(t *testing.T) {
	a := mustSheet(t, DefaultSheet)
	a.Rules[0].Engines[0] = "changed"
	a.Rules = nil
	if _, err := mustSheet(t, DefaultSheet).ImagePrice("stable-diffusion-v1-5", 512, 512, 50); err != nil {
		t.Fatalf("changing one sheet changed another: %v", err)
	}
}

func TestDescribe(t *testing.T) {
	var b strings.Builder
	for _, s := range Sheets() {
		b.WriteString(s.Describe())
		b.WriteString("\n")
	}
	o, err := ReadOverrides("testdata/overrides/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b.WriteString(mustSheet(t, "sdxl-2024").WithOverrides(o).Describe())
	checkGolden(t, "describe.golden", b.String())
}

// Engine patterns are path.Match patterns.
func TestRuleMatchesPatterns(t *testing.T) {
	r := Rule{Engines: []string{"stable-diffusion-xl-*", "esrgan-v1-x2plus"}}
	for eng, want := range map[string]bool{
		"stable-diffusion-xl-1024-v1-0": true,
		"esrgan-v1-x2plus":              true,
		"stable-diffusion-v1-5":         false,
	} {
		if got := r.matches(eng); got != want {
			t.Errorf("matches(%s) = %v, want %v", eng, got, want)
		}
	}
}

// A Sheet is shared by the runner's workers; run with -race.
func TestImagePriceConcurrent(t *testing.T) {
	s := mustSheet(t, "v1-2023")
	want, err := s.ImagePrice("stable-diffusion-xl-1024-v1-0", 1024, 1024, 37)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for range 50 {
				if got, err := s.ImagePrice("stable-diffusion-xl-1024-v1-0", 1024, 1024, 37); err != nil || got != want {
					errs <- fmt.Errorf("ImagePrice = %v, %v, want %v", got, err, want)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
