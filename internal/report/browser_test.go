package report

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// chromium returns the path of a headless-capable Chromium: $BATCH_CHROMIUM,
// else Debian's /usr/bin/chromium. It skips the test when there is none,
// except under CI (CI=true), where a missing browser is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	path := os.Getenv("BATCH_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no chromium at %s (set BATCH_CHROMIUM, or apt-get install chromium): %v", path, err)
		}
		t.Skipf("no chromium at %s (set BATCH_CHROMIUM, or apt-get install chromium); skipping the browser test", path)
	}
	return path
}

// runChromium runs a headless Chromium with args plus the flags that keep
// it off the network and away from the user's profile, and returns stdout.
func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--user-data-dir=" + t.TempDir(),
	}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\nstderr:\n%s", args, err, stderr.String())
	}
	return out
}

// writeImage writes a w×h gradient, tinted by seed, creating folders: a
// JPEG for a .jpg path, else a PNG (Chromium sniffs the type, so a .webp
// path holding a PNG still loads; Go has no WebP encoder).
func writeImage(t testing.TB, path string, w, h int, seed uint32) {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.NRGBA{R: uint8(40 + 180*x/w), G: uint8(60 + 25*seed%160), B: uint8(200 - 150*y/h), A: 255})
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	encode := func() error { return png.Encode(f, img) }
	if strings.HasSuffix(path, ".jpg") {
		encode = func() error { return jpeg.Encode(f, img, nil) }
	}
	if err := encode(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// fixtureRun copies the run report in folder src (under testdata) into a
// temporary run folder and writes a real image for every image it lists.
func fixtureRun(t *testing.T, src string) (string, *Run) {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join("testdata", src, RunFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, RunFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	r := mustReadRun(t, dir)
	for _, j := range r.Jobs {
		for _, img := range j.Images {
			writeImage(t, filepath.Join(dir, filepath.FromSlash(img.Path)), j.Width/16, j.Height/16, img.Seed)
		}
	}
	return dir, r
}

// checkScript runs in the page once it has loaded: it waits for every
// image, reads what rendered, clicks each X/Y cell's details, changes each
// X/Y plot's keys as a reader would, and records it all in a <pre id=check>.
const checkScript = `<script>
(async () => {
  const imgs = [...document.images];
  await Promise.all(imgs.map(i => i.complete ? null :
    new Promise(done => { i.addEventListener("load", done); i.addEventListener("error", done); })));
  const href = e => e.closest("a")?.getAttribute("href") ?? "";
  const image = i => ({href: href(i), data: i.getAttribute("src").startsWith("data:image/"), width: i.complete ? i.naturalWidth : 0});
  const cards = {};
  for (const c of document.querySelectorAll(".card")) {
    const b = c.getBoundingClientRect();
    cards[c.id] = {text: c.querySelector(".value").textContent, visible: b.width > 0 && b.height > 0};
  }
  const plots = () => [...document.querySelectorAll(".xy")].map(p => ({
    group: p.dataset.group,
    grids: [...p.querySelectorAll(".xy-grid")].map(g => ({
      label: g.querySelector("h3")?.textContent ?? "",
      corner: g.querySelector("th.xy-corner").textContent,
      cols: [...g.querySelectorAll("thead th:not(.xy-corner)")].map(th => th.textContent),
      rows: [...g.querySelectorAll("tbody tr")].map(tr => ({
        label: tr.querySelector("th").textContent,
        cells: [...tr.querySelectorAll("td")].map(td => td.querySelector("figure")?.dataset.job ?? ""),
      })),
    })),
  }));
  const res = {
    images: imgs.map(image),
    placeholders: [...document.querySelectorAll("a.noimg")].map(a => a.getAttribute("href")),
    links: [...document.querySelectorAll(".thumbs a")].map(a => a.getAttribute("href")),
    cards,
    bars: [...document.querySelectorAll("svg.chart rect.bar")].map(b => Math.round(b.getBoundingClientRect().width)),
    chainSection: document.getElementById("chains") !== null,
    chains: [...document.querySelectorAll("#chains .chain")].map(c => ({
      last: c.dataset.last,
      steps: [...c.querySelectorAll(".step")].map(s => [...s.querySelectorAll("figure")].map(f => f.dataset.job)),
      lefts: [...c.querySelectorAll(".step")].map(s => Math.round(s.getBoundingClientRect().left)),
      arrows: c.querySelectorAll(".arrow").length,
      images: [...c.querySelectorAll("img")].map(image),
    })),
    plots: plots(),
    cells: [...document.querySelectorAll("figure.xy-cell")].map(f => {
      const d = f.querySelector("details"), pre = d.querySelector("pre");
      const hidden = !d.open && !pre.checkVisibility();
      d.querySelector("summary").click();
      return {job: f.dataset.job, title: f.title, imgTitles: [...f.querySelectorAll("img")].map(i => i.title),
        hidden, shown: d.open && pre.checkVisibility() && pre.getBoundingClientRect().height > 0, text: pre.textContent};
    }),
  };
  // Rows take the columns' key (the script swaps the two), then the
  // columns take the last key (with two keys: the rows' key, so they swap
  // back).
  const choose = (pick) => {
    for (const p of document.querySelectorAll(".xy[data-axes]")) {
      const sel = [...p.querySelectorAll("select")], s = sel[pick(sel)[0]];
      s.value = pick(sel)[1];
      s.dispatchEvent(new Event("change"));
    }
    return plots();
  };
  res.swapped = choose(sel => [0, sel[1].value]);
  res.last = choose(sel => [1, String(sel[1].options.length - 1)]);
  const pre = document.createElement("pre");
  pre.id = "check";
  pre.textContent = JSON.stringify(res);
  document.body.append(pre);
})();
</script>`

type browserCheck struct {
	Images       []browserImage `json:"images"`
	Placeholders []string       `json:"placeholders"` // links of images shown as placeholders
	Links        []string       `json:"links"`        // the plain grid's links
	Cards        map[string]struct {
		Text    string `json:"text"`
		Visible bool   `json:"visible"`
	} `json:"cards"`
	Bars         []int          `json:"bars"`
	ChainSection bool           `json:"chainSection"`
	Chains       []browserChain `json:"chains"`
	Plots        []browserPlot  `json:"plots"`   // as rendered
	Cells        []browserCell  `json:"cells"`   // every X/Y cell, clicked
	Swapped      []browserPlot  `json:"swapped"` // after the rows took the columns' key
	Last         []browserPlot  `json:"last"`    // then the columns took the last key
}

// browserImage is one <img> of the page.
type browserImage struct {
	Href  string `json:"href"`  // the link around it: the full image's path
	Data  bool   `json:"data"`  // its src is a data:image/ URI
	Width int    `json:"width"` // naturalWidth: 0 when it did not load
}

// browserChain is one rendered pipeline row.
type browserChain struct {
	Last   string         `json:"last"`
	Steps  [][]string     `json:"steps"` // job ids per step, left to right
	Lefts  []int          `json:"lefts"` // each step's left edge, in CSS pixels
	Arrows int            `json:"arrows"`
	Images []browserImage `json:"images"`
}

// browserPlot is one rendered X/Y plot.
type browserPlot struct {
	Group string        `json:"group"`
	Grids []browserGrid `json:"grids"`
}

// browserGrid is one table of an X/Y plot: its labels, and the job id of
// each cell ("" for an empty one), row by row.
type browserGrid struct {
	Label  string   `json:"label"`
	Corner string   `json:"corner"`
	Cols   []string `json:"cols"`
	Rows   []struct {
		Label string   `json:"label"`
		Cells []string `json:"cells"`
	} `json:"rows"`
}

// browserCell is an X/Y cell: its hover text, and its details before and
// after a click.
type browserCell struct {
	Job       string   `json:"job"`
	Title     string   `json:"title"`
	ImgTitles []string `json:"imgTitles"`
	Hidden    bool     `json:"hidden"` // the details were closed before the click
	Shown     bool     `json:"shown"`  // open, with the text laid out, after it
	Text      string   `json:"text"`
}

// renderInBrowser writes r's HTML report, with its images read from the
// folder ReadRun read it from, into a folder of its own (so no image file
// sits beside it), opens it in headless Chromium with checkScript added,
// and returns what the script saw.
func renderInBrowser(t *testing.T, bin string, r *Run) browserCheck {
	t.Helper()
	dir := t.TempDir()
	var page bytes.Buffer
	if err := WriteRun(&page, FormatHTML, r); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.html"), page.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(page.String(), "</body>"); n != 1 {
		t.Fatalf("report.html has %d </body> tags, want 1", n)
	}
	check := strings.Replace(page.String(), "</body>", checkScript+"\n</body>", 1)
	if err := os.WriteFile(filepath.Join(dir, "check.html"), []byte(check), 0o644); err != nil {
		t.Fatal(err)
	}

	dom := runChromium(t, bin, "--window-size=1280,4000", "--virtual-time-budget=15000", "--dump-dom",
		"file://"+filepath.Join(dir, "check.html"))
	m := regexp.MustCompile(`(?s)<pre id="check">(.*?)</pre>`).FindSubmatch(dom)
	if m == nil {
		t.Fatalf("the check script left no result; DOM:\n%s", dom)
	}
	var got browserCheck
	if err := json.Unmarshal([]byte(html.UnescapeString(string(m[1]))), &got); err != nil {
		t.Fatalf("parse check result %s: %v", m[1], err)
	}

	// BATCH_SCREENSHOT=file.png saves a picture of the report for a person
	// to look at (the last report a test renders wins).
	if shot := os.Getenv("BATCH_SCREENSHOT"); shot != "" {
		abs, err := filepath.Abs(shot)
		if err != nil {
			t.Fatal(err)
		}
		runChromium(t, bin, "--window-size=1280,1800", "--virtual-time-budget=5000", "--screenshot="+abs,
			"file://"+filepath.Join(dir, "report.html"))
		if _, err := os.Stat(abs); errors.Is(err, fs.ErrNotExist) {
			t.Errorf("chromium wrote no screenshot to %s", abs)
		}
	}
	return got
}

// checkEmbedded checks that images, in page order, are the thumbnails of
// the image files want (paths relative to the run folder): each embedded
// as a data: URI, loaded, and linked to its file.
func checkEmbedded(t *testing.T, what string, images []browserImage, want []string) {
	t.Helper()
	var hrefs []string
	for _, img := range images {
		hrefs = append(hrefs, img.Href)
		if !img.Data || img.Width == 0 {
			t.Errorf("%s: image %s: data URI %v, naturalWidth %d; want an embedded image that loads", what, img.Href, img.Data, img.Width)
		}
	}
	if !slices.Equal(hrefs, want) {
		t.Errorf("%s: images = %v, want %v", what, hrefs, want)
	}
}

// imagePaths lists the image paths of jobs, in report order.
func imagePaths(jobs []RunJob) []string {
	var out []string
	for _, j := range jobs {
		for _, img := range j.Images {
			out = append(out, img.Path)
		}
	}
	return out
}

// TestHTMLInBrowser opens a run's HTML report, saved outside the run
// folder, in headless Chromium and checks that the totals render and that
// every thumbnail is embedded and loads.
func TestHTMLInBrowser(t *testing.T) {
	bin := chromium(t)
	_, r := fixtureRun(t, "run")
	got := renderInBrowser(t, bin, r)

	wantCards := map[string]string{
		"total-charged":         r.ChargedCredits.String() + " credits",
		"total-possibly-billed": r.PossiblyBilledCredits.String() + " credits",
		"total-estimated":       r.EstimatedCredits.String() + " credits",
		"budget":                r.Budget.String() + " credits",
		"balance-before":        r.BalanceBefore.String() + " credits",
	}
	for _, id := range slices.Sorted(maps.Keys(wantCards)) {
		c, ok := got.Cards[id]
		switch {
		case !ok:
			t.Errorf("card %s missing from the rendered page", id)
		case c.Text != wantCards[id] || !c.Visible:
			t.Errorf("card %s = %q (visible %v), want %q visible", id, c.Text, c.Visible, wantCards[id])
		}
	}
	wantImages := imagePaths(r.Jobs)
	checkEmbedded(t, "page", got.Images, wantImages)
	if len(got.Placeholders) > 0 {
		t.Errorf("placeholders %v, want every image embedded", got.Placeholders)
	}
	if !slices.Equal(got.Links, wantImages) {
		t.Errorf("thumbnail links = %v, want %v", got.Links, wantImages)
	}
	if len(got.Bars) == 0 || slices.Max(got.Bars) == 0 {
		t.Errorf("chart bar widths = %v, want at least one visible bar", got.Bars)
	}
	if got.ChainSection {
		t.Errorf("a run without dependencies shows a pipelines section")
	}
	if len(got.Plots) > 0 {
		t.Errorf("a run without a matrix shows X/Y plots %+v", got.Plots)
	}
}

// TestPipelineHTMLInBrowser opens the HTML report of a pipeline run in
// headless Chromium: each chain shows its jobs' images left to right,
// sources before results, every image is embedded and loads, and only the
// job outside every chain stays in the plain grid.
func TestPipelineHTMLInBrowser(t *testing.T) {
	bin := chromium(t)
	_, r := fixtureRun(t, "pipeline-run")
	got := renderInBrowser(t, bin, r)

	if !got.ChainSection {
		t.Fatal("the pipeline report has no pipelines section (#chains)")
	}
	want := []struct {
		last  string
		steps [][]string
	}{
		{"teapot-cutout-4x", [][]string{{"teapot"}, {"teapot-cutout"}, {"teapot-cutout-4x"}}}, // generate → remove-background → upscale/fast
		{"teapot-big", [][]string{{"teapot"}, {"teapot-big"}}},                                // async upscale/creative
		{"teapot-styled", [][]string{{"teapot", "shelf-teal"}, {"teapot-styled"}}},            // two sources
		{"lamp-relit", [][]string{{"lamp"}, {"lamp-relit"}}},                                  // failed source, skipped result
	}
	if len(got.Chains) != len(want) {
		t.Fatalf("rendered %d chains %+v, want %d", len(got.Chains), got.Chains, len(want))
	}
	byID := make(map[string]RunJob)
	for _, j := range r.Jobs {
		byID[j.ID] = j
	}
	for i, w := range want {
		c := got.Chains[i]
		if c.Last != w.last || !slices.EqualFunc(c.Steps, w.steps, slices.Equal) {
			t.Errorf("chain %d = %s %v, want %s %v", i, c.Last, c.Steps, w.last, w.steps)
			continue
		}
		if c.Arrows != len(w.steps)-1 {
			t.Errorf("chain %s has %d arrows, want %d", c.Last, c.Arrows, len(w.steps)-1)
		}
		if !slices.IsSorted(c.Lefts) || len(slices.Compact(slices.Clone(c.Lefts))) != len(c.Lefts) {
			t.Errorf("chain %s: step left edges %v, want them strictly increasing (left to right)", c.Last, c.Lefts)
		}
		var wantImages []string
		for _, step := range w.steps {
			for _, id := range step {
				wantImages = append(wantImages, imagePaths([]RunJob{byID[id]})...)
			}
		}
		checkEmbedded(t, "chain "+c.Last, c.Images, wantImages)
	}
	for _, img := range got.Images {
		if !img.Data || img.Width == 0 {
			t.Errorf("image %s: data URI %v, naturalWidth %d; want an embedded image that loads", img.Href, img.Data, img.Width)
		}
	}
	if want := []string{"images/vase.png"}; !slices.Equal(got.Links, want) {
		t.Errorf("grid links = %v, want %v (jobs in no chain)", got.Links, want)
	}
}

// grid is a want for browserGrid: the label, the corner, the column labels,
// then each row as its label followed by its cells' job ids.
func grid(label, corner string, cols []string, rows ...[]string) browserGrid {
	g := browserGrid{Label: label, Corner: corner, Cols: cols}
	for _, r := range rows {
		g.Rows = append(g.Rows, struct {
			Label string   `json:"label"`
			Cells []string `json:"cells"`
		}{r[0], r[1:]})
	}
	return g
}

// TestMatrixHTMLInBrowser opens the report of a run with two matrix
// entries (two keys, and three) and a plain job, written outside its run
// folder: every image (PNG, JPEG, WebP, translucent, larger than a
// thumbnail) is embedded and loads; each matrix is an X/Y plot whose rows,
// columns and labels follow its keys, and follow the reader's choice of
// keys; each cell shows its job's parameters on hover and, when clicked,
// in its details.
func TestMatrixHTMLInBrowser(t *testing.T) {
	bin := chromium(t)
	r := mustReadRun(t, filepath.Join("testdata", "matrix-run"))
	got := renderInBrowser(t, bin, r)

	// The plots' order is checked below; here, that every image is there.
	byHref := func(a, b browserImage) int { return strings.Compare(a.Href, b.Href) }
	checkEmbedded(t, "page", slices.SortedFunc(slices.Values(got.Images), byHref), slices.Sorted(slices.Values(imagePaths(r.Jobs))))
	if len(got.Placeholders) > 0 {
		t.Errorf("placeholders %v, want every image embedded", got.Placeholders)
	}
	if want := []string{"images/hero.png"}; !slices.Equal(got.Links, want) {
		t.Errorf("plain grid links = %v, want %v (the jobs in no matrix)", got.Links, want)
	}

	subjects := []string{"fox", "lighthouse", "teapot"}
	styles := []string{"photographic", "anime"}
	stylesByRow := browserPlot{Group: "styles", Grids: []browserGrid{grid("", "subject ↓ style_preset →", styles,
		[]string{"fox", "styles-fox-photographic", "styles-fox-anime"},
		[]string{"lighthouse", "styles-lighthouse-photographic", "styles-lighthouse-anime"},
		[]string{"teapot", "styles-teapot-photographic", "styles-teapot-anime"})}}
	stylesSwapped := browserPlot{Group: "styles", Grids: []browserGrid{grid("", "style_preset ↓ subject →", subjects,
		[]string{"photographic", "styles-fox-photographic", "styles-lighthouse-photographic", "styles-teapot-photographic"},
		[]string{"anime", "styles-fox-anime", "styles-lighthouse-anime", "styles-teapot-anime"})}}
	ratios, seeds, formats := []string{"1:1", "16:9"}, []string{"1", "2"}, []string{"jpeg", "webp"}
	var sizes, sizesSwapped, sizesLast browserPlot
	sizes.Group, sizesSwapped.Group, sizesLast.Group = "sizes", "sizes", "sizes"
	for _, f := range formats {
		sizes.Grids = append(sizes.Grids, grid("output_format = "+f, "aspect_ratio ↓ seed →", seeds,
			[]string{"1:1", "sizes-1x1-1-" + f, "sizes-1x1-2-" + f},
			[]string{"16:9", "sizes-16x9-1-" + f, "sizes-16x9-2-" + f}))
		sizesSwapped.Grids = append(sizesSwapped.Grids, grid("output_format = "+f, "seed ↓ aspect_ratio →", ratios,
			[]string{"1", "sizes-1x1-1-" + f, "sizes-16x9-1-" + f},
			[]string{"2", "sizes-1x1-2-" + f, "sizes-16x9-2-" + f}))
	}
	for _, a := range []string{"1x1", "16x9"} {
		label := map[string]string{"1x1": "1:1", "16x9": "16:9"}[a]
		sizesLast.Grids = append(sizesLast.Grids, grid("aspect_ratio = "+label, "seed ↓ output_format →", formats,
			[]string{"1", "sizes-" + a + "-1-jpeg", "sizes-" + a + "-1-webp"},
			[]string{"2", "sizes-" + a + "-2-jpeg", "sizes-" + a + "-2-webp"}))
	}
	for _, step := range []struct {
		name      string
		got, want []browserPlot
	}{
		{"as rendered", got.Plots, []browserPlot{stylesByRow, sizes}},
		{"rows set to the columns' key", got.Swapped, []browserPlot{stylesSwapped, sizesSwapped}},
		{"columns set to the last key", got.Last, []browserPlot{stylesByRow, sizesLast}},
	} {
		if !reflect.DeepEqual(step.got, step.want) {
			t.Errorf("X/Y plots %s:\n got %+v\nwant %+v", step.name, step.got, step.want)
		}
	}

	byID := make(map[string]RunJob)
	for _, j := range r.Jobs {
		byID[j.ID] = j
	}
	var cells []string
	for _, c := range got.Cells {
		cells = append(cells, c.Job)
		j := byID[c.Job]
		want := j.Params
		if want == "" { // a failed job has no parameters: its settings and error instead
			want = "generate/core · 1024x1024\n" + j.Error
		}
		if c.Title != want {
			t.Errorf("cell %s: hover text %q, want %q", c.Job, c.Title, want)
		}
		for _, title := range c.ImgTitles {
			if title != j.Params {
				t.Errorf("cell %s: image hover text %q, want %q", c.Job, title, j.Params)
			}
		}
		if !c.Hidden || !c.Shown || c.Text != want {
			t.Errorf("cell %s: details hidden before the click %v, shown after it %v, text %q; want hidden, then shown with %q",
				c.Job, c.Hidden, c.Shown, c.Text, want)
		}
	}
	var wantCells []string
	for _, j := range r.Jobs {
		if len(j.Vars) > 0 {
			wantCells = append(wantCells, j.ID)
		}
	}
	slices.Sort(cells)
	slices.Sort(wantCells)
	if !slices.Equal(cells, wantCells) {
		t.Errorf("X/Y cells = %v, want %v", cells, wantCells)
	}
}
