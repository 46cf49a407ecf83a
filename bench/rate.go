package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/batch-tool/batch/internal/sandbox"
)

// rateSection measures how much of the rate limit one run, and two runs at
// once on the same key, use, at each latency.
func (b *bench) rateSection(ctx context.Context) (section, error) {
	began := time.Now()
	rs := b.sz.rate
	rate := fmt.Sprintf("%d/%v", rs.limit, rs.window)
	one := b.path(fmt.Sprintf("rate-%d.yaml", rs.jobs))
	halves := [2]string{b.path(fmt.Sprintf("rate-a-%d.yaml", rs.jobs/2)), b.path(fmt.Sprintf("rate-b-%d.yaml", rs.jobs/2))}
	if err := b.writeInput(); err != nil {
		return section{}, err
	}
	if _, err := writeExplicit(one, runSpec(rs.jobs, "")); err != nil {
		return section{}, err
	}
	for i, path := range halves {
		if _, err := writeExplicit(path, runSpec(rs.jobs/2, string(rune('a'+i))+"-")); err != nil {
			return section{}, err
		}
	}
	defer b.drop(one)
	defer b.drop(halves[0])
	defer b.drop(halves[1])

	var w strings.Builder
	scaled := ""
	if rs.limit == 150 && rs.window*6 == rs.lockout && rs.window < 10*time.Second {
		scaled = fmt.Sprintf(" (the API's 150 per 10 s and 60 s lock-out, %g times faster, so a run takes seconds)", float64(10*time.Second)/float64(rs.window))
	}
	fmt.Fprintf(&w, "A sandbox that allows %d requests per key in any %v window and locks the key out for %v when a request "+
		"exceeds that%s, with a fixed latency "+
		"before each answer: `batch sandbox --rate-limit %d --rate-window %v --lockout %v --latency L`. Against it, one run of "+
		"%s jobs (`%s`), and two runs of %s jobs (`%s`, `%s`, other jobs) started at the same moment with the same key, "+
		"each told the account's limit, `--rate %s`. Each run gets `--concurrency %d` (enough to keep the limit busy at the "+
		"longer latency) and `--max-pause %v`, so a lock-out costs what the sandbox's does; two runs at once share one "+
		"`XDG_CACHE_HOME`. The jobs are those of the run section.\n\n",
		rs.limit, rs.window, rs.lockout, scaled, rs.limit, rs.window, rs.lockout,
		commas(rs.jobs), b.rel(one), commas(rs.jobs/2), b.rel(halves[0]), b.rel(halves[1]), rate, rs.concurrency, rs.lockout)
	fmt.Fprintf(&w, "Counted at the sandbox, over every request it received (the balance checks too): **peak** is the most "+
		"requests in any %v window, as a share of the limit (above 100%% the API answers 429 and locks the key out); "+
		"**mean** is the average over the whole %v windows from the first request, which shows how much of the limit the "+
		"runs used. **Time** is until the last run exits; **÷ one** divides it by the one run's time at the same latency and "+
		"build (two runs doing the work of one should take about as long).\n\n", rs.window, rs.window)
	t := &table{head: []string{"latency", "runs", "build", "time", "÷ one", "peak per window", "mean per window", "429s", "images"}}
	for _, lat := range rs.latencies {
		cfg := unlimited()
		cfg.RateLimit, cfg.RateWindow, cfg.Lockout, cfg.Latency = rs.limit, rs.window, rs.lockout, sandbox.Latency{Min: lat, Max: lat}
		for _, bin := range []*binary{b.base, b.head} {
			var oneWall time.Duration
			for _, together := range []int{1, 2} {
				manifests := []string{one}
				if together == 2 {
					manifests = halves[:]
				}
				r, err := b.rateRun(ctx, bin, cfg, rate, manifests)
				if err != nil {
					return section{}, err
				}
				runs := "one"
				if together == 2 {
					runs = "two at once"
				}
				vs := "—"
				if together == 1 && r.ok() {
					oneWall = r.wall
				} else if together == 2 && r.ok() && oneWall > 0 {
					vs = ratio(r.wall.Seconds(), oneWall.Seconds())
				}
				peak, mean := "—", "—"
				if r.na == "" {
					peak, mean = windows(r.server.sends, rs.window, rs.limit)
				}
				images := "—"
				if r.na == "" {
					images = fmt.Sprintf("%d of %d", r.server.Generations, rs.jobs)
				}
				t.add(lat.String(), runs, bin.rev, timeCell(r.sample), vs, peak, mean, strconv.Itoa(r.server.RateLimited), images)
			}
		}
	}
	w.WriteString(t.String())
	w.WriteString("\nThe commands (`L` is the latency above; two at once is the second pair started together):\n\n")
	for _, m := range []string{one, halves[0], halves[1]} {
		p := b.batchRun(b.head, m, rs.concurrency, rate, "--max-pause", rs.lockout.String()).proc(sandboxURL, strings.TrimSuffix(m, ".yaml")+"-out")
		fmt.Fprintf(&w, "- `%s`\n", b.shown(p, ""))
	}
	return section{name: "rate", title: "Rate use with one run and two at once", text: w.String(), took: time.Since(began)}, nil
}

// rateRun serves a fresh sandbox with cfg and runs bin on each manifest at
// once, all with the same key and cache folder; the sample's time is until
// the last exits, its peak memory the largest.
func (b *bench) rateRun(ctx context.Context, bin *binary, cfg sandbox.Config, rate string, manifests []string) (runResult, error) {
	srv, err := startServer(cfg)
	if err != nil {
		return runResult{}, err
	}
	rs := b.sz.rate
	cache := b.path("rate-cache")
	defer os.RemoveAll(cache)
	var procs []proc
	for _, m := range manifests {
		out := strings.TrimSuffix(m, ".yaml") + "-out"
		defer os.RemoveAll(out)
		p := b.batchRun(bin, m, rs.concurrency, rate, "--max-pause", rs.lockout.String()).proc(srv.url, out)
		p.env = []string{"STABILITY_API_KEY=" + sandboxKey, "XDG_CACHE_HOME=" + cache}
		procs = append(procs, p)
	}
	var s sample
	if bin.path == "" {
		s.na = "not built"
	} else if flag := bin.unsupported(ctx, procs[0].args); flag != "" {
		s.na = "no " + flag
	} else {
		s = b.together(ctx, bin, procs)
	}
	st, err := srv.stop()
	if err != nil {
		return runResult{}, err
	}
	b.logf("rate %v, %d run(s), %s: %s, %d requests, %d answered 429", cfg.Latency.Min, len(manifests), bin.rev, summary(s), len(st.sends), st.RateLimited)
	return runResult{sample: s, server: st}, nil
}

// together starts every proc at once with bin and waits for them all.
func (b *bench) together(ctx context.Context, bin *binary, procs []proc) sample {
	var running []*started
	var out sample
	for _, p := range procs {
		p.bin = bin.path
		s, err := start(ctx, p, b.cfg.timeout)
		if err != nil {
			out.err = err
			break
		}
		running = append(running, s)
	}
	for _, r := range running {
		s := r.wait()
		if s.err != nil && out.err == nil {
			out.err = s.err
		}
		out.rss = max(out.rss, s.rss)
	}
	if len(running) > 0 {
		out.wall = time.Since(running[0].start)
	}
	return out
}

// windows returns the most requests in any window-long span as a share of
// limit, and the mean count over the whole windows from the first request.
func windows(sends []time.Time, window time.Duration, limit int) (peak, mean string) {
	if len(sends) == 0 {
		return "—", "—"
	}
	ts := slices.Clone(sends)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	most, lo := 0, 0
	for hi, t := range ts {
		// The window (t-window, t], as the sandbox's limiter counts.
		for !ts[lo].After(t.Add(-window)) {
			lo++
		}
		most = max(most, hi-lo+1)
	}
	peak = fmt.Sprintf("%d (%.0f%%)", most, 100*float64(most)/float64(limit))
	whole := int(ts[len(ts)-1].Sub(ts[0]) / window)
	if whole == 0 {
		return peak, "— (under one window)"
	}
	counted := 0
	end := ts[0].Add(time.Duration(whole) * window)
	for _, t := range ts {
		if t.Before(end) {
			counted++
		}
	}
	m := float64(counted) / float64(whole)
	return peak, fmt.Sprintf("%.0f (%.0f%%)", m, 100*m/float64(limit))
}
