package report

import (
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
func writeImage(t *testing.T, path string, w, h int, seed uint32) {
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

// checkScript runs in the page once it has loaded: it makes lazy images
// load, waits for them, and records what rendered in a <pre id=check>.
const checkScript = `<script>
(async () => {
  const imgs = [...document.images];
  for (const i of imgs) i.loading = "eager";
  await Promise.all(imgs.map(i => i.complete ? null :
    new Promise(done => { i.addEventListener("load", done); i.addEventListener("error", done); })));
  const ok = i => i.complete && i.naturalWidth > 0;
  const cards = {};
  for (const c of document.querySelectorAll(".card")) {
    const b = c.getBoundingClientRect();
    cards[c.id] = {text: c.querySelector(".value").textContent, visible: b.width > 0 && b.height > 0};
  }
  const res = {
    loaded: imgs.filter(ok).map(i => i.getAttribute("src")),
    broken: imgs.filter(i => !ok(i)).map(i => i.getAttribute("src")),
    links: [...document.querySelectorAll(".thumbs a")].map(a => a.getAttribute("href")),
    cards,
    bars: [...document.querySelectorAll("svg.chart rect.bar")].map(b => Math.round(b.getBoundingClientRect().width)),
    chainSection: document.getElementById("chains") !== null,
    chains: [...document.querySelectorAll("#chains .chain")].map(c => ({
      last: c.dataset.last,
      steps: [...c.querySelectorAll(".step")].map(s => [...s.querySelectorAll("figure")].map(f => f.dataset.job)),
      lefts: [...c.querySelectorAll(".step")].map(s => Math.round(s.getBoundingClientRect().left)),
      arrows: c.querySelectorAll(".arrow").length,
      images: [...c.querySelectorAll("img")].map(i => ({src: i.getAttribute("src"), width: i.naturalWidth})),
    })),
  };
  const pre = document.createElement("pre");
  pre.id = "check";
  pre.textContent = JSON.stringify(res);
  document.body.append(pre);
})();
</script>`

type browserCheck struct {
	Loaded []string `json:"loaded"`
	Broken []string `json:"broken"`
	Links  []string `json:"links"`
	Cards  map[string]struct {
		Text    string `json:"text"`
		Visible bool   `json:"visible"`
	} `json:"cards"`
	Bars         []int          `json:"bars"`
	ChainSection bool           `json:"chainSection"`
	Chains       []browserChain `json:"chains"`
}

// browserChain is one rendered pipeline row.
type browserChain struct {
	Last   string     `json:"last"`
	Steps  [][]string `json:"steps"` // job ids per step, left to right
	Lefts  []int      `json:"lefts"` // each step's left edge, in CSS pixels
	Arrows int        `json:"arrows"`
	Images []struct {
		Src   string `json:"src"`
		Width int    `json:"width"` // naturalWidth: 0 when it did not load
	} `json:"images"`
}

// renderInBrowser writes r's HTML report into its run folder dir, opens
// it in headless Chromium with checkScript added, and returns what the
// script saw.
func renderInBrowser(t *testing.T, bin, dir string, r *Run) browserCheck {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteRun(f, FormatHTML, r); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(page), "</body>"); n != 1 {
		t.Fatalf("report.html has %d </body> tags, want 1", n)
	}
	// The checker sits beside report.html, so relative image paths resolve
	// exactly as they do for the report itself.
	check := strings.Replace(string(page), "</body>", checkScript+"\n</body>", 1)
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

// TestHTMLInBrowser opens a run's HTML report in headless Chromium and
// checks that the totals render and that every thumbnail loads from the
// run folder.
func TestHTMLInBrowser(t *testing.T) {
	bin := chromium(t)
	dir, r := fixtureRun(t, "run")
	got := renderInBrowser(t, bin, dir, r)

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
	if len(got.Broken) > 0 {
		t.Errorf("images that did not load: %v", got.Broken)
	}
	if !slices.Equal(got.Loaded, wantImages) {
		t.Errorf("loaded images = %v, want %v", got.Loaded, wantImages)
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
}

// TestPipelineHTMLInBrowser opens the HTML report of a pipeline run in
// headless Chromium: each chain shows its jobs' images left to right,
// sources before results, every image loads, and only the job outside
// every chain stays in the plain grid.
func TestPipelineHTMLInBrowser(t *testing.T) {
	bin := chromium(t)
	dir, r := fixtureRun(t, "pipeline-run")
	got := renderInBrowser(t, bin, dir, r)

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
		var srcs []string
		for _, img := range c.Images {
			srcs = append(srcs, img.Src)
			if img.Width == 0 {
				t.Errorf("chain %s: image %s did not load (naturalWidth 0)", c.Last, img.Src)
			}
		}
		if !slices.Equal(srcs, wantImages) {
			t.Errorf("chain %s images = %v, want %v", c.Last, srcs, wantImages)
		}
	}
	if len(got.Broken) > 0 {
		t.Errorf("images that did not load: %v", got.Broken)
	}
	if want := []string{"images/vase.png"}; !slices.Equal(got.Links, want) {
		t.Errorf("grid links = %v, want %v (jobs in no chain)", got.Links, want)
	}
}
