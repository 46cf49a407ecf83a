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

	"github.com/batch-tool/batch/internal/catalog"
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
	s := mustSheet(t, "dreamstudio-2022")
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
	s := mustSheet(t, "dreamstudio-2022")
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
	// The formula of le-si/platform packages/app/src/Pricing/index.tsx @ 18a7190,
	// worked by hand, credits per image.
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
	// 5.4e-6 (le-si/platform Pricing/index.tsx @ 8ae0b92) is 2.5 × 2.16e-6:
	// 512²@30 is 0.5 to one decimal.
	s := mustSheet(t, "v1-2023")
	got, err := s.ImagePrice("stable-diffusion-xl-beta-v2-2-2", 512, 512, 30)
	if err != nil || got.Fixed(1) != "0.5" || got != 500132 { // 92617 × 5.4e-6 = 0.5001318
		t.Errorf("ImagePrice(xl-beta, 512x512, 30) = %v, %v, want 0.500132", got, err)
	}
}

func TestV1_2023SDXLSteps(t *testing.T) {
	// 100 × (0.0122 + 0.000127·s + 0.000000623·s²), or the three exact step
	// counts, to 3 decimals; size does not matter.
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
	tests := []struct{ sheet, engine, want string }{
		{"v1-2023", "stable-diffusion-v1-6",
			`no price for engine "stable-diffusion-v1-6" in sheet "v1-2023" (it prices stable-diffusion-v1, stable-diffusion-v1-5, ` +
				`stable-diffusion-512-v2-0, stable-diffusion-512-v2-1, stable-diffusion-768-v2-0, stable-diffusion-768-v2-1, ` +
				`stable-diffusion-xl-beta-v2-2-2, stable-diffusion-xl-1024-v0-9, stable-diffusion-xl-1024-v1-0); ` +
				`price it with --pricing sdxl-2024 (also priced by dreamstudio-2022)`},
		// Retired 2024-10-11, after sdxl-2024 took effect: not priced, but not retired either.
		{"sdxl-2024", "stable-diffusion-xl-beta-v2-2-2",
			`no price for engine "stable-diffusion-xl-beta-v2-2-2" in sheet "sdxl-2024" (it prices stable-diffusion-xl-1024-v1-0, ` +
				`stable-diffusion-v1-6); price it with --pricing v1-2023 (also priced by dreamstudio-2022)`},
		// No hint for an engine the API never had: "*" would price a typo.
		{"sdxl-2024", "no-such-engine",
			`no price for engine "no-such-engine" in sheet "sdxl-2024" (it prices stable-diffusion-xl-1024-v1-0, stable-diffusion-v1-6)`},
		{"stability-2025-08", "no-such-engine",
			`no price for engine "no-such-engine" in sheet "stability-2025-08" (it prices stable-diffusion-xl-1024-v1-0)`},
	}
	for _, tt := range tests {
		_, err := mustSheet(t, tt.sheet).ImagePrice(tt.engine, 512, 512, 30)
		if !errors.Is(err, ErrNoPrice) || errors.Is(err, ErrRetired) {
			t.Fatalf("ImagePrice(%s) on %s error = %v, want ErrNoPrice and not ErrRetired", tt.engine, tt.sheet, err)
		}
		if err.Error() != tt.want {
			t.Errorf("ImagePrice(%s) on %s error =\n%s\nwant\n%s", tt.engine, tt.sheet, err, tt.want)
		}
	}
}

func TestImagePriceRetired(t *testing.T) {
	tests := []struct{ sheet, engine, want string }{
		{"stability-2025-08", "stable-diffusion-v1-6",
			"stable-diffusion-v1-6 was retired 2025-07-24; price it with --pricing sdxl-2024 (also priced by dreamstudio-2022)"},
		{"stability-2025-08", "stable-diffusion-xl-beta-v2-2-2",
			"stable-diffusion-xl-beta-v2-2-2 was retired 2024-10-11; price it with --pricing v1-2023 (also priced by dreamstudio-2022)"},
		{"stability-2025-08", "stable-diffusion-768-v2-1",
			"stable-diffusion-768-v2-1 was retired 2025-02-18; price it with --pricing v1-2023 (also priced by dreamstudio-2022)"},
		{"sdxl-2024", "stable-diffusion-v1-5",
			"stable-diffusion-v1-5 was retired 2023-11-15; price it with --pricing v1-2023 (also priced by dreamstudio-2022)"},
		{"sdxl-2024", "stable-diffusion-v1",
			"stable-diffusion-v1 was retired 2024-03-15; price it with --pricing v1-2023 (also priced by dreamstudio-2022)"},
	}
	for _, tt := range tests {
		got, err := mustSheet(t, tt.sheet).ImagePrice(tt.engine, 512, 512, 30)
		if !errors.Is(err, ErrRetired) || !errors.Is(err, ErrNoPrice) {
			t.Fatalf("ImagePrice(%s) on %s = %v, %v, want ErrRetired and ErrNoPrice", tt.engine, tt.sheet, got, err)
		}
		if err.Error() != tt.want {
			t.Errorf("ImagePrice(%s) on %s error =\n%s\nwant\n%s", tt.engine, tt.sheet, err, tt.want)
		}
	}
	// Before its retirement an engine is priced as usual.
	for _, tt := range []struct{ sheet, engine string }{
		{"sdxl-2024", "stable-diffusion-v1-6"},
		{"v1-2023", "stable-diffusion-v1-5"},
		{"dreamstudio-2022", "stable-diffusion-v1-5"},
	} {
		if _, err := mustSheet(t, tt.sheet).ImagePrice(tt.engine, 512, 512, 30); err != nil {
			t.Errorf("ImagePrice(%s) on %s: %v", tt.engine, tt.sheet, err)
		}
	}
}

// Every engine's retirement agrees with every sheet: a sheet that took
// effect after it refuses the engine, one that took effect before prices it
// when it has a rule, and some sheet prices every engine.
func TestRetirementAcrossSheets(t *testing.T) {
	for _, e := range engine.All() {
		priced := false
		for _, s := range Sheets() {
			_, err := s.ImagePrice(e.ID, e.DefaultSize[0], e.DefaultSize[1], e.DefaultSteps)
			retired := e.Retired != "" && s.EffectiveFrom > e.Retired
			if got := errors.Is(err, ErrRetired); got != retired {
				t.Errorf("%s on %s (from %s, retired %q): error %v, want retired %v", e.ID, s.ID, s.EffectiveFrom, e.Retired, err, retired)
			}
			priced = priced || err == nil
		}
		if !priced {
			t.Errorf("no sheet prices %s", e.ID)
		}
	}
}

func TestImagePriceBadInput(t *testing.T) {
	s := mustSheet(t, "dreamstudio-2022")
	for _, in := range [][3]int{{0, 512, 50}, {512, -512, 50}, {512, 512, 0}, {1 << 21, 512, 50}} {
		if got, err := s.ImagePrice("stable-diffusion-v1-5", in[0], in[1], in[2]); err == nil {
			t.Errorf("ImagePrice(%v) = %v, want an error", in, got)
		}
	}
}

func TestLookupSheet(t *testing.T) {
	s, err := LookupSheet("")
	if err != nil || s.ID != "stability-2025-08" {
		t.Fatalf(`LookupSheet("") = %v, %v, want stability-2025-08`, s, err)
	}
	_, err = LookupSheet("dreamstudio-2021")
	if err == nil {
		t.Fatal("LookupSheet(dreamstudio-2021) succeeded, want an error")
	}
	for _, id := range []string{"stability-2025-08", "sdxl-2024", "v1-2023", "dreamstudio-2022"} {
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
		if i > 0 {
			newer := sheets[i-1]
			if s.EffectiveFrom > newer.EffectiveFrom {
				t.Errorf("Sheets() not newest first: %s before %s", newer.ID, s.ID)
			}
			if s.EffectiveTo == "" || s.EffectiveTo >= newer.EffectiveFrom {
				t.Errorf("sheet %s ends %q, not before %s starts", s.ID, s.EffectiveTo, newer.ID)
			}
		}
		if s.Title == "" || s.Source == "" || s.Notes == "" {
			t.Errorf("sheet %s lacks a title, source or notes", s.ID)
		}
		for _, r := range s.Rules {
			if r.Source == "" {
				t.Errorf("sheet %s: a %s rule has no source", s.ID, r.Kind)
			}
			if (r.Engines == nil) == (r.Services == nil) {
				t.Errorf("sheet %s: a rule names engines %v and services %v; want exactly one kind", s.ID, r.Engines, r.Services)
			}
			for _, e := range r.Engines {
				if _, known := engine.Lookup(e); !known && !isPattern(e) {
					t.Errorf("sheet %s names unknown engine %q", s.ID, e)
				}
			}
			for _, sv := range r.Services {
				if _, known := catalog.Lookup(sv); !known && !isPattern(sv) {
					t.Errorf("sheet %s names unknown service %q", s.ID, sv)
				}
			}
		}
	}
	if want := "stability-2025-08 sdxl-2024 v1-2023 dreamstudio-2022"; strings.Join(ids, " ") != want {
		t.Errorf("Sheets() = %v, want %s", ids, want)
	}
	if sheets[0].ID != DefaultSheet || sheets[0].EffectiveTo != "" {
		t.Errorf("the current sheet (first, with no end) is %s ending %q, want the default %s", sheets[0].ID, sheets[0].EffectiveTo, DefaultSheet)
	}
}

// The default sheet prices every engine still served at its date, at the
// engine's default size and steps.
func TestDefaultSheetPricesServedEngines(t *testing.T) {
	s := mustSheet(t, DefaultSheet)
	served := 0
	for _, e := range engine.All() {
		if e.Retired != "" && e.Retired < s.EffectiveFrom {
			continue
		}
		served++
		if _, err := s.ImagePrice(e.ID, e.DefaultSize[0], e.DefaultSize[1], e.DefaultSteps); err != nil {
			t.Errorf("default sheet cannot price %s at its defaults: %v", e.ID, err)
		}
	}
	if served == 0 {
		t.Error("no engine is served at the default sheet's date")
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

func TestSheetsAreFreshCopies(t *testing.T) {
	a := mustSheet(t, "dreamstudio-2022")
	a.Rules[0].Engines[0] = "changed"
	a.Rules = nil
	if _, err := mustSheet(t, "dreamstudio-2022").ImagePrice("stable-diffusion-v1-5", 512, 512, 50); err != nil {
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
	b.WriteString("\n")
	o, err = ReadOverrides("testdata/overrides/services.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b.WriteString(mustSheet(t, "dreamstudio-2022").WithOverrides(o).Describe())
	checkGolden(t, "describe.golden", b.String())
}

// Engine, service and model patterns are path.Match patterns; "*" stays
// within one path element, so it never matches a service.
func TestMatchAny(t *testing.T) {
	tests := []struct {
		patterns []string
		name     string
		want     bool
	}{
		{[]string{"stable-diffusion-xl-*", "esrgan-v1-x2plus"}, "stable-diffusion-xl-1024-v1-0", true},
		{[]string{"stable-diffusion-xl-*", "esrgan-v1-x2plus"}, "esrgan-v1-x2plus", true},
		{[]string{"stable-diffusion-xl-*", "esrgan-v1-x2plus"}, "stable-diffusion-v1-5", false},
		{[]string{"*"}, "generate/core", false},
		{[]string{"edit/*"}, "edit/inpaint", true},
		{[]string{"edit/*"}, "upscale/fast", false},
		{[]string{"sd3.5-large*"}, "sd3.5-large-turbo", true},
		{[]string{"*"}, "", false},
	}
	for _, tt := range tests {
		if got := matchAny(tt.patterns, tt.name); got != tt.want {
			t.Errorf("matchAny(%q, %q) = %v, want %v", tt.patterns, tt.name, got, tt.want)
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
