package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/outdir"
	"github.com/batch-tool/batch/internal/sandbox"
)

// sandboxKey is the bearer token every client sends the bench's sandbox,
// which accepts any; it is not a key to anything.
const sandboxKey = "sk-bench-sandbox"

// runConcurrency is the requests in flight of every client in the run
// section, and the idle connections the keep-alive loop keeps.
const runConcurrency = 64

// unlimitedRate is batch's --rate when the sandbox has no limit: high
// enough never to pace a run on this machine.
const unlimitedRate = "1000000/1s"

// runResult is what one client's run measured, at both ends.
type runResult struct {
	sample
	shown  string // the command, as the document prints it
	server serverStats
}

// client makes the command of one run against url writing to out, with
// bin the batch build it uses (nil for a yardstick).
type client struct {
	name string
	bin  *binary
	out  string // the output folder's name in the work folder
	proc func(url, out string) proc
	// yardstick marks the client the others' times are divided by.
	yardstick bool
	// na, when set, says why the client cannot run here.
	na string
}

// runOnce serves a fresh sandbox with cfg, runs c against it into its
// output folder on tmpfs, removed afterwards, and checks the sandbox
// answered jobs generations.
func (b *bench) runOnce(ctx context.Context, c client, cfg sandbox.Config, jobs int) (runResult, error) {
	out := b.path(c.out)
	if err := os.RemoveAll(out); err != nil {
		return runResult{}, err
	}
	defer os.RemoveAll(out)
	cache := b.path(c.out + "-cache")
	defer os.RemoveAll(cache)
	srv, err := startServer(cfg)
	if err != nil {
		return runResult{}, err
	}
	p := c.proc(srv.url, out)
	p.env = append(p.env, "STABILITY_API_KEY="+sandboxKey)
	var s sample
	if c.bin != nil {
		p.env = append(p.env, "XDG_CACHE_HOME="+cache)
		s = b.batch(ctx, c.bin, p, 1)
	} else {
		s = measure(ctx, p, b.cfg.timeout)
	}
	st, err := srv.stop()
	if err != nil {
		return runResult{}, err
	}
	if s.ok() && st.Generations != jobs {
		s.err = fmt.Errorf("the sandbox answered %d generations, want %d", st.Generations, jobs)
	}
	r := runResult{sample: s, shown: b.shown(p, srv.url), server: st}
	b.logf("%s: %s: %s, %d connections", c.name, r.shown, summary(s), st.conns)
	return r, nil
}

// batchRun is the client of `batch run` with bin on manifest at a
// concurrency and rate, with more flags after those.
func (b *bench) batchRun(bin *binary, manifest string, concurrency int, rate string, more ...string) client {
	return client{name: "batch run", bin: bin, out: "out-" + bin.rev, proc: func(url, out string) proc {
		args := []string{"run", "--api-url", url, "--concurrency", strconv.Itoa(concurrency), "--rate", rate}
		args = append(args, more...)
		return proc{args: append(args, "--out", out, manifest)}
	}}
}

// runSection measures batch run against the keep-alive loop and GNU
// parallel + curl.
func (b *bench) runSection(ctx context.Context) (section, error) {
	began := time.Now()
	n := b.sz.runJobs
	spec := runSpec(n, "")
	if err := b.writeInput(); err != nil {
		return section{}, err
	}
	manifest := b.path(fmt.Sprintf("run-%d.yaml", n))
	if _, err := writeExplicit(manifest, spec); err != nil {
		return section{}, err
	}
	tsv := b.path(fmt.Sprintf("jobs-%d.tsv", n))
	if err := writeJobsTSV(tsv, spec); err != nil {
		return section{}, err
	}
	headers := b.path("curl-headers.txt")
	if err := os.WriteFile(headers, []byte("Authorization: Bearer "+sandboxKey+"\nAccept: image/*\n"), 0o600); err != nil {
		return section{}, err
	}
	defer b.drop(manifest)
	defer b.drop(tsv)
	defer b.drop(headers)

	clients := []client{
		b.batchRun(b.base, manifest, runConcurrency, unlimitedRate),
		b.batchRun(b.head, manifest, runConcurrency, unlimitedRate),
		{name: "keep-alive Go loop", out: "out-loop", yardstick: true, proc: func(url, out string) proc {
			return proc{bin: b.loop, args: []string{"-url", url, "-jobs", tsv, "-out", out, "-service", runService, "-image", b.path(inputName),
				"-concurrency", strconv.Itoa(runConcurrency), "-format", "webp"}}
		}},
		{name: "GNU parallel + curl", out: "out-parallel", na: b.noParallel, proc: func(url, out string) proc {
			return proc{bin: cmp.Or(b.parallel, "parallel"), args: []string{
				"--will-cite", "-j", strconv.Itoa(runConcurrency), "--colsep", `\t`, "-a", tsv,
				"curl", "-sS", "--fail", "--create-dirs", "-o", out + "/{1}.webp", "-H", "@" + headers, "-F", "image=@" + b.path(inputName),
				"--form-string", "prompt={2}", "--form-string", "seed={3}", "--form-string", "output_format=webp",
				url + "/v2beta/stable-image/" + runService,
			}}
		}},
	}
	var w strings.Builder
	fmt.Fprintf(&w, "%s jobs (`%s`) sent at concurrency %d by each client to a sandbox with no rate limit and no latency "+
		"(`batch sandbox --rate-limit -1`), each writing the images to tmpfs. One client at a time, each run against a fresh "+
		"sandbox: %s, each client's best shown; GNU parallel + curl runs once. %s\n\n", commas(n), b.rel(manifest), runConcurrency,
		roundsText(b.sz.runRounds), runManifestText(max(n, slices.Max(b.sz.rssJobs))))
	w.WriteString("- **batch run** writes each image through a temporary file, fsync and rename, keeps a journal and " +
		"writes its reports; `--rate " + unlimitedRate + "` never paces it here.\n")
	w.WriteString("- **keep-alive Go loop** (`bench/cmd/keepalive`): one `http.Transport` with `MaxIdleConnsPerHost` " +
		strconv.Itoa(runConcurrency) + ", the same multipart form (image, prompt, seed, output_format) per job, each answer written to " +
		"`ID.webp`; no journal, no checks beyond the status. It reads the jobs from `" + b.rel(tsv) + "` (id, prompt, seed) " +
		"and the image once.\n")
	w.WriteString("- **GNU parallel + curl**: one curl process per job, so one TCP connection per job. `curl-headers.txt` holds " +
		"the Authorization and `Accept: image/*` headers. Its peak RSS is the largest of parallel and the curls.\n\n")
	t := &table{head: []string{"client", "build", "command", "time", "time ÷ loop", "TCP connections", "peak RSS"}}
	var loop time.Duration
	results := make([]runResult, len(clients))
	for round := range max(b.sz.runRounds, 1) {
		for i, c := range clients {
			switch {
			case c.na != "":
				results[i] = runResult{sample: sample{na: c.na}, shown: b.shown(c.proc(sandboxURL, b.path(c.out)), "")}
				continue
			case round > 0 && (c.bin == nil && !c.yardstick || !results[i].ok()):
				continue // parallel runs once; a client that failed is not run again
			}
			r, err := b.runOnce(ctx, c, unlimited(), n)
			if err != nil {
				return section{}, err
			}
			results[i] = bestRun(round, results[i], r)
		}
	}
	for i, c := range clients {
		if c.yardstick && results[i].ok() {
			loop = results[i].wall
		}
	}
	for i, c := range clients {
		r := results[i]
		rev := "—"
		if c.bin != nil {
			rev = c.bin.rev
		}
		conns := "—"
		if r.ok() {
			conns = commas(int(r.server.conns))
		}
		t.add(c.name, rev, "`"+r.shown+"`", timeCell(r.sample), ratioIfOK(r.sample, loop), conns, rssCell(r.sample))
	}
	w.WriteString(t.String())
	return section{name: "run", title: "Running against a keep-alive loop and GNU parallel", text: w.String(), took: time.Since(began)}, nil
}

// bestRun keeps the better of run r of a client's round and what the
// client's earlier rounds gave (none in round 0): the shorter time and the
// smaller peak RSS, as best does; a failed run is kept as it is.
func bestRun(round int, prev, r runResult) runResult {
	switch {
	case round == 0 || !r.ok():
		return r
	case r.wall < prev.wall:
		prev.wall, prev.server = r.wall, r.server
	}
	if r.rss > 0 && r.rss < prev.rss {
		prev.rss = r.rss
	}
	return prev
}

// roundsText says how many rounds of runs a section makes.
func roundsText(n int) string {
	if n <= 1 {
		return "one round"
	}
	return fmt.Sprintf("%d rounds, the clients in turn in each", n)
}

// ratioIfOK is s's time divided by ref, or "—".
func ratioIfOK(s sample, ref time.Duration) string {
	if !s.ok() {
		return "—"
	}
	return ratio(s.wall.Seconds(), ref.Seconds())
}

// rssSection measures the peak memory of batch run by job count.
func (b *bench) rssSection(ctx context.Context) (section, error) {
	began := time.Now()
	var w strings.Builder
	if err := b.writeInput(); err != nil {
		return section{}, err
	}
	fmt.Fprintf(&w, "`batch run` at concurrency %d against a sandbox with no rate limit (`batch sandbox --rate-limit -1`), images "+
		"on tmpfs; one run each, against a fresh sandbox. %s\n\n", runConcurrency, runManifestText(max(b.sz.runJobs, slices.Max(b.sz.rssJobs))))
	t := &table{head: []string{"jobs", "build", "command", "time", "peak RSS", "TCP connections"}}
	for _, n := range b.sz.rssJobs {
		manifest := b.path(fmt.Sprintf("rss-%d.yaml", n))
		if _, err := writeExplicit(manifest, runSpec(n, "")); err != nil {
			return section{}, err
		}
		for _, bin := range []*binary{b.base, b.head} {
			r, err := b.runOnce(ctx, b.batchRun(bin, manifest, runConcurrency, unlimitedRate), unlimited(), n)
			if err != nil {
				return section{}, err
			}
			conns := "—"
			if r.ok() {
				conns = commas(int(r.server.conns))
			}
			t.add(commas(n), bin.rev, "`"+r.shown+"`", timeCell(r.sample), rssCell(r.sample), conns)
		}
		b.drop(manifest)
	}
	w.WriteString(t.String())
	return section{name: "rss", title: "Peak memory of a run by job count", text: w.String(), took: time.Since(began)}, nil
}

// runManifestText describes the run manifests for the document; jobs is
// the largest run's.
func runManifestText(jobs int) string {
	core := outdir.ExpectedBytes(1536, 1536, "webp") * int64(jobs)
	return fmt.Sprintf("Every job edits the same %d×%d PNG (`%s`, `%s`) with a prompt of about 90 characters and a seed of its "+
		"own, answered in WebP. The small image keeps batch's free-space check (about width × height × 3 bytes for each image "+
		"still to make) within a tmpfs at %s jobs, where generate/core's 1536×1536 answers would ask for %.0f GiB; and batch "+
		"checks a WebP answer by its header, where it inflates a PNG in full, so the figures are of what the clients do rather "+
		"than of decoding.", inputSide, inputSide, inputName, runService, commas(jobs), float64(core)/(1<<30))
}

// unlimited is the sandbox of the run sections: no rate limit, and a
// balance no run here can exhaust.
func unlimited() sandbox.Config {
	return sandbox.Config{RateLimit: -1, Balance: 100_000_000 * cost.Credit}
}

// writeInput writes the runs' image input into the work folder, once.
func (b *bench) writeInput() error {
	path := b.path(inputName)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	return writeInput(path)
}
