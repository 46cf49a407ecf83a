package report

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"iter"
	"slices"
	"strconv"

	"github.com/batch-tool/batch/internal/cost"
)

//go:embed report.html.tmpl
var htmlSource string

// htmlTemplate is parsed once per render: parsing is cheap next to a report,
// and it keeps the package free of mutable globals.
func htmlTemplate() (*template.Template, error) {
	return template.New("report").Parse(htmlSource)
}

// htmlView is what the HTML template renders; every string in it is
// escaped by html/template.
type htmlView struct {
	Kind     string // "Run report" or "Cost plan"
	Title    string
	Manifest string
	Pricing  string
	Shard    string
	Time     string
	Notice   string // e.g. an interrupted run
	Cards    []htmlCard
	Statuses []htmlStatus // nil for a plan
	Charts   []htmlChart
	// Chains, Thumbs, Jobs and Groups are made as the page is written, so
	// that a run's jobs are read one at a time; each is nil when it has
	// none. Thumbs, Jobs and Groups, a row per job or group, are written
	// by htmlRows.
	Chains   iter.Seq[htmlChain]     // pipelines, source images before results
	Plots    []htmlPlot              // matrix entries' images as X/Y plots
	Thumbs   iter.Seq[template.HTML] // images of the jobs no chain or plot shows
	IsRun    bool
	HasDeps  bool // some job takes images from another: the tables get a From column
	Jobs     iter.Seq[template.HTML]
	JobCount int
	Groups   iter.Seq[template.HTML] // job table grouped when there are many jobs
	Collapse bool                    // put the per-job table in a closed <details>
}

// htmlChain is one pipeline, its steps left to right.
type htmlChain struct {
	Last  string // id of its final job
	Steps []htmlStep
}

// htmlStep is one step of a chain: the jobs that stand at it.
type htmlStep struct {
	Jobs []htmlChainJob
}

// htmlChainJob is a job in a chain with its images; Missing when the
// report does not hold it (a job of another shard), known by its id alone.
type htmlChainJob struct {
	ID, Operation, Status, Failure, GenerationID string
	Error, FullError                             string // why it did not succeed: shortened, and whole
	Missing                                      bool
	Images                                       []htmlThumb
}

type htmlCard struct {
	ID, Label, Value, Sub, Class string
}

type htmlStatus struct {
	Name  string
	Count int
}

type htmlChart struct {
	Title               string
	Width, Height, BarH int
	Bars                []htmlBar
}

type htmlBar struct {
	Label, Full, Value          string
	Y, TextY, ValueY, W, ValueX int
}

// htmlThumb is one image: its embedded thumbnail, or a placeholder that
// says why there is none. Either links to the full image.
type htmlThumb struct {
	Src  template.URL // data: URI of the thumbnail; "" for a placeholder
	Href string       // the image's path, relative to the run folder
	Why  string       // why there is no thumbnail, e.g. "missing"
	// Title is the job's generation parameters, shown on hover; "" when it
	// has none.
	Title                                 string
	Job, Status, Credits, Seed, RequestID string
	Width, Height                         int // the image's size, or the job's when the file's is unknown
}

type htmlJob struct {
	ID, Group, From, Status, Failure, Operation, Settings, Error, Credits string
	Attempts                                                              int
	Resumed                                                               bool
}

// settings is a job's size, steps, samples and output format as the HTML
// job table shows them, e.g. "1024x1024 · 30 steps · ×2" or
// "1344x768 (16:9) · webp".
func settings(width, height, steps int, aspect, format string, samples int) string {
	s := sizeText(width, height, aspect)
	if steps > 0 {
		s += " · " + strconv.Itoa(steps) + " steps"
	}
	if samples != 1 {
		s += " · ×" + strconv.Itoa(samples)
	}
	if format != "" {
		s += " · " + format
	}
	return s
}

// thumbSize is the width and height a thumbnail reserves: the job's size,
// or a square when it is unknown (it depends on an input image).
func thumbSize(w, h int) (int, int) {
	if w <= 0 || h <= 0 {
		return 512, 512
	}
	return w, h
}

// WriteRunHTML renders r to w as an HTML page that needs no other file:
// each image is embedded as a thumbnail read from dir, the folder the
// image paths are relative to (the run's output folder; "" is the current
// directory). A PNG or JPEG becomes a JPEG at most 256 pixels on its long
// side; a WebP file (which the standard library cannot decode) is embedded
// as it is up to 256 KiB. An image that cannot be embedded shows as a
// placeholder naming its path and why. Each image links to the full file
// by its path, which opens when the page is saved in dir. The output is
// the same for the same run and image files. It stops with ctx's error
// when ctx is done.
func WriteRunHTML(ctx context.Context, w io.Writer, r *Run, dir string) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	if err := runHTMLFrom(ctx, bw, r, embedder{dir: dir, maxWebP: maxEmbedWebP}); err != nil {
		return fmt.Errorf("run report: html: %w", err)
	}
	return bw.Flush()
}

// runHTML renders r with its images read from the folder ReadRun read it
// from (the current directory for a run built in memory).
func runHTML(w io.Writer, r *Run) error {
	return runHTMLFrom(context.Background(), w, r, embedder{dir: r.dir, maxWebP: maxEmbedWebP})
}

// runHTMLFrom writes r's page to w as it goes: a few passes over the jobs
// learn the page's sums, plots and pipelines, and the page's lists read
// the jobs again as they are written. Nothing is written when ctx is done
// before the images are embedded.
func runHTMLFrom(ctx context.Context, w io.Writer, r *Run, e embedder) error {
	embeds, err := e.embeds(ctx, r)
	if err != nil {
		return err
	}
	var top topCredits // of the groups, unless st.interleaved
	st, err := scanRun(r, func(g *group) error {
		top.add(g.Name, g.Credits)
		return nil
	})
	if err != nil {
		return err
	}
	v := htmlView{
		Kind: "Run report", Title: cmp.Or(r.Name, r.Manifest, "batch"), Manifest: r.Manifest, Pricing: r.Pricing,
		Shard: r.Shard, Time: timeSpan(r), IsRun: true,
		Cards: []htmlCard{
			{ID: "total-charged", Label: "Charged", Value: r.ChargedCredits.String() + " credits",
				Sub: r.ChargedCredits.USD() + " · list price of completed results"},
			{ID: "total-possibly-billed", Label: "Possibly billed", Value: r.PossiblyBilledCredits.String() + " credits",
				Sub: r.PossiblyBilledCredits.USD() + " · outcome unknown"},
			{ID: "total-estimated", Label: "Estimated", Value: r.EstimatedCredits.String() + " credits", Sub: r.EstimatedCredits.USD()},
			budgetCard(r.spent(), r.Budget),
			{ID: "total-jobs", Label: "Jobs", Value: strconv.Itoa(r.Totals.Jobs), Sub: plural(st.images, "image")},
		},
		Statuses: []htmlStatus{
			{StatusSucceeded, r.Totals.Succeeded}, {StatusFailed, r.Totals.Failed},
			{StatusFiltered, r.Totals.Filtered}, {StatusSkipped, r.Totals.Skipped},
		},
	}
	if r.BalanceBefore != nil {
		v.Cards = append(v.Cards, htmlCard{ID: "balance-before", Label: "Balance at start",
			Value: r.BalanceBefore.String() + " credits", Sub: "when the run started"})
	}
	if r.Interrupted {
		v.Notice = "This run was interrupted: rerun it with the same --out to resume."
	}
	if v.Charts, err = runCharts(r, st, &top, "Credits charged"); err != nil {
		return err
	}
	v.HasDeps = st.deps

	// The lists below read the jobs while the template runs; the first
	// error stops them and is returned.
	var readErr error
	read := func(err error) bool {
		if err != nil && readErr == nil {
			readErr = err
		}
		return readErr == nil
	}

	var layout chainLayout
	if st.deps {
		var nodes []chainNode
		err := r.each(func(_ int, j *RunJob) error {
			nodes = append(nodes, chainNode{j.ID, slices.Clone(j.DependsOn)})
			return nil
		})
		if err != nil {
			return err
		}
		layout = chainsOf(nodes)
	}
	var ms []matrix
	if st.vars {
		if ms, err = matricesOf(r, st.interleaved); err != nil {
			return err
		}
	}
	var inPlot []bool
	if len(ms) > 0 {
		inPlot = make([]bool, st.jobs)
	}
	for k := range ms {
		m := &ms[k]
		for _, i := range m.jobs {
			inPlot[i] = true
		}
		v.Plots = append(v.Plots, m.plot(func(i int) *htmlCell {
			j, err := r.job(i)
			if !read(err) {
				return nil
			}
			return plotCell(j, embeds.of(i, &j))
		}))
	}
	alone := func(i int) bool { return !layout.showsJob(i) && (inPlot == nil || !inPlot[i]) }
	thumbsLeft := st.images > 0
	if thumbsLeft && (layout.shown != nil || inPlot != nil) {
		thumbsLeft = false
		err = r.each(func(i int, j *RunJob) error {
			thumbsLeft = thumbsLeft || alone(i) && len(j.Images) > 0
			return nil
		})
		if err != nil {
			return err
		}
	}
	if thumbsLeft {
		v.Thumbs = htmlRows(func(yield func(htmlThumb) bool) {
			errStop := errors.New("stop")
			read(ignore(errStop, r.each(func(i int, j *RunJob) error {
				if !alone(i) {
					return nil
				}
				for _, t := range thumbs(*j, embeds.of(i, j)) {
					if !yield(t) {
						return errStop
					}
				}
				return nil
			})))
		}, func(w *htmlWriter, t htmlThumb) { t.figure(w) })
	}
	if st.jobs > 0 {
		v.JobCount = st.jobs
		v.Jobs = htmlRows(func(yield func(htmlJob) bool) {
			errStop := errors.New("stop")
			read(ignore(errStop, r.each(func(_ int, j *RunJob) error {
				if !yield(htmlJob{ID: j.ID, Group: j.Group, From: fromText(j.DependsOn), Status: j.Status, Failure: j.Failure,
					Operation: j.op(), Settings: settings(j.Width, j.Height, j.Steps, j.AspectRatio, j.OutputFormat, j.Samples),
					Error: j.Error, Credits: j.Credits.String(), Attempts: j.Attempts, Resumed: j.Resumed}) {
					return errStop
				}
				return nil
			})))
		}, func(w *htmlWriter, j htmlJob) { j.row(w, true, v.HasDeps) })
	}
	if len(layout.chains) > 0 {
		v.Chains = func(yield func(htmlChain) bool) {
			for _, c := range layout.chains {
				hc := htmlChain{Steps: make([]htmlStep, len(c.steps))}
				for k, step := range c.steps {
					for _, n := range step {
						cj, err := chainJob(r, st.jobs, embeds, layout.missing, n)
						if !read(err) {
							return
						}
						hc.Steps[k].Jobs = append(hc.Steps[k].Jobs, cj)
					}
				}
				hc.Last = hc.Steps[len(hc.Steps)-1].Jobs[0].ID // the last step holds the final job alone
				if !yield(hc) {
					return
				}
			}
		}
	}
	if st.jobs > MaxJobRows {
		v.Collapse = true
		v.Groups = htmlRows(func(yield func(*group) bool) {
			errStop := errors.New("stop")
			read(ignore(errStop, st.eachGroup(r, byGroup, func(g *group) error {
				if !yield(g) {
					return errStop
				}
				return nil
			})))
		}, func(w *htmlWriter, g *group) { g.row(w, true, v.HasDeps) })
	}
	if err := renderHTML(w, &v); err != nil {
		return err
	}
	return readErr
}

// ignore returns err, or nil when it is target.
func ignore(target, err error) error {
	if errors.Is(err, target) {
		return nil
	}
	return err
}

// runCharts are charts of r's credits charged, as charts draws them from
// the jobs' facts: by group from top, the groups scanRun passed (summed
// again in a pass when some group's jobs are not consecutive), and by
// engine or service from st.ops.
func runCharts(r *Run, st *runStats, top *topCredits, what string) ([]htmlChart, error) {
	if st.jobs == 0 {
		return nil, nil
	}
	if st.interleaved {
		top = &topCredits{}
		err := st.eachGroup(r, byGroup, func(g *group) error {
			top.add(g.Name, g.Credits)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	out := []htmlChart{top.chart(what + " by group")}
	if len(st.ops) > 1 {
		out = append(out, barChart(what+" by engine / service", st.ops))
	}
	return out, nil
}

// thumbs are the thumbnails of a job's images, embeds[k] that of image k.
func thumbs(j RunJob, embeds []thumbnail) []htmlThumb {
	out := make([]htmlThumb, len(j.Images))
	for i, img := range j.Images {
		e := embeds[i]
		w, h := thumbSize(j.Width, j.Height)
		if e.width > 0 && e.height > 0 {
			w, h = e.width, e.height
		}
		out[i] = htmlThumb{Src: e.src, Href: img.Path, Why: e.why, Title: j.Params, Job: j.ID, Status: j.Status,
			RequestID: img.RequestID, Credits: j.Credits.String(), Seed: strconv.FormatUint(uint64(img.Seed), 10), Width: w, Height: h}
	}
	return out
}

// plotCell is job j's cell in its matrix's X/Y plot; embeds are its
// images' thumbnails.
func plotCell(j RunJob, embeds []thumbnail) *htmlCell {
	c := &htmlCell{ID: j.ID, Status: j.Status, Failure: j.Failure, Params: j.Params, Images: thumbs(j, embeds)}
	if c.Params == "" {
		c.Params = j.op() + " · " + settings(j.Width, j.Height, j.Steps, j.AspectRatio, j.OutputFormat, j.Samples)
		if j.Error != "" {
			c.Params += "\n" + j.Error
		}
	}
	return c
}

// chainJob is node n of a chain laid out over r's jobs (of which there
// are jobs) and missing; embeds are the jobs' thumbnails.
func chainJob(r *Run, jobs int, embeds *embeds, missing []string, n int) (htmlChainJob, error) {
	if n >= jobs {
		return htmlChainJob{ID: missing[n-jobs], Missing: true}, nil
	}
	j, err := r.job(n)
	if err != nil {
		return htmlChainJob{}, err
	}
	c := htmlChainJob{ID: j.ID, Operation: j.op(), Status: j.Status, Failure: j.Failure,
		GenerationID: j.GenerationID, Images: thumbs(j, embeds.of(n, &j))}
	if j.Status != StatusSucceeded {
		// The card is narrow; the jobs table has the whole text.
		c.Error, c.FullError = oneLine(j.Error, 140), j.Error
	}
	return c, nil
}

// planHTML renders p as an HTML page. The page lists every job, so it holds
// them all: for plans of a size a browser shows.
func planHTML(buf *bytes.Buffer, p *Plan) error {
	var jobs []PlanJob
	images, deps := 0, false
	err := eachJob(p, func(_ int64, j *PlanJob) error {
		jobs = append(jobs, j.clone())
		images += j.Samples
		deps = deps || len(j.DependsOn) > 0
		return nil
	})
	if err != nil {
		return err
	}
	v := htmlView{
		Kind: "Cost plan", Title: cmp.Or(p.Name, p.Manifest, "batch"), Manifest: p.Manifest, Pricing: p.Pricing, Shard: p.Shard,
		Cards: []htmlCard{
			{ID: "total-credits", Label: "Estimated", Value: p.TotalCredits.String() + " credits", Sub: p.TotalCredits.USD()},
			budgetCard(p.TotalCredits, p.Budget),
			{ID: "total-jobs", Label: "Jobs", Value: strconv.Itoa(len(jobs)), Sub: plural(images, "image")},
		},
	}
	facts := planFacts(jobs)
	v.Charts = charts(facts, "Credits")
	v.HasDeps = deps
	var rows []htmlJob
	for _, j := range jobs {
		rows = append(rows, htmlJob{ID: j.ID, Group: j.Group, From: fromText(j.DependsOn), Operation: j.op(),
			Settings: settings(j.Width, j.Height, j.Steps, j.AspectRatio, j.OutputFormat, j.Samples), Credits: j.Credits.String()})
	}
	if rows != nil {
		v.Jobs = htmlRows(slices.Values(rows), func(w *htmlWriter, j htmlJob) { j.row(w, false, deps) })
		v.JobCount = len(rows)
	}
	v.group(facts)
	return renderHTML(buf, &v)
}

func (v *htmlView) group(facts []jobFacts) {
	if len(facts) > MaxJobRows {
		v.Groups = htmlRows(slices.Values(groups(facts)), func(w *htmlWriter, g *group) { g.row(w, v.IsRun, v.HasDeps) })
		v.Collapse = true
	}
}

func renderHTML(w io.Writer, v *htmlView) error {
	t, err := htmlTemplate()
	if err != nil {
		return err
	}
	return t.Execute(w, v)
}

func budgetCard(total cost.Credits, budget *cost.Credits) htmlCard {
	c := htmlCard{ID: "budget", Label: "Budget"}
	switch {
	case budget == nil:
		c.Value, c.Sub = "none", "no ceiling set"
	case total > *budget:
		c.Value, c.Sub, c.Class = budget.String()+" credits", "over by "+(total-*budget).String(), "over"
	default:
		c.Value, c.Sub, c.Class = budget.String()+" credits", (*budget-total).String()+" left", "ok"
	}
	return c
}

// Chart geometry, in SVG user units: each bar has its label above it, so
// long group and engine names fit.
const (
	chartWidth   = 520
	chartRowH    = 42 // label line, bar and gap
	chartBarH    = 16
	chartBarMaxW = 440 // leaves room for the value after the longest bar
	chartMaxBars = 12  // the rest are summed into one "others" bar
)

// charts returns a bar chart of credits by group, and one by engine or
// service when the jobs use more than one.
func charts(facts []jobFacts, what string) []htmlChart {
	if len(facts) == 0 {
		return nil
	}
	var byGroup, byEngine []namedCredits
	for _, g := range groups(facts) {
		byGroup = append(byGroup, namedCredits{g.Name, g.Credits})
	}
	engineFacts := slices.Clone(facts)
	for i := range engineFacts {
		engineFacts[i].group = engineFacts[i].op
	}
	for _, g := range groups(engineFacts) {
		byEngine = append(byEngine, namedCredits{g.Name, g.Credits})
	}
	out := []htmlChart{barChart(what+" by group", byGroup)}
	if len(byEngine) > 1 {
		out = append(out, barChart(what+" by engine / service", byEngine))
	}
	return out
}

type namedCredits struct {
	name    string
	credits cost.Credits
}

// barChart lays out bars largest first (ties in input order), scaled to the
// largest, with integer geometry so the SVG is the same on every machine.
func barChart(title string, items []namedCredits) htmlChart {
	items = slices.Clone(items)
	slices.SortStableFunc(items, func(a, b namedCredits) int {
		switch {
		case a.credits > b.credits:
			return -1
		case a.credits < b.credits:
			return 1
		}
		return 0
	})
	if len(items) > chartMaxBars {
		var rest cost.Credits
		for _, it := range items[chartMaxBars-1:] {
			rest += it.credits
		}
		n := len(items) - (chartMaxBars - 1)
		items = append(items[:chartMaxBars-1], namedCredits{strconv.Itoa(n) + " others", rest})
	}
	return layoutBars(title, items)
}

// layoutBars lays out items as bars in their order, scaled to the largest.
func layoutBars(title string, items []namedCredits) htmlChart {
	maxC := items[0].credits
	for _, it := range items {
		maxC = max(maxC, it.credits)
	}
	c := htmlChart{Title: title, Width: chartWidth, Height: len(items)*chartRowH + 4, BarH: chartBarH}
	for i, it := range items {
		w := 0
		if maxC > 0 && it.credits > 0 {
			w = max(int(int64(it.credits)*chartBarMaxW/int64(maxC)), 2)
		}
		y := i * chartRowH
		c.Bars = append(c.Bars, htmlBar{
			Label: oneLine(it.name, 70), Full: it.name, Value: it.credits.String(),
			TextY: y + 14, Y: y + 20, ValueY: y + 20 + chartBarH - 3, W: w, ValueX: w + 6,
		})
	}
	return c
}
