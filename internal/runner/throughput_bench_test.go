//go:build unix

package runner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/manifest"
	"github.com/batch-tool/batch/internal/sandbox"
	"github.com/batch-tool/batch/internal/stability"
)

// Throughput benchmark settings: jobs per run and requests in flight.
const (
	benchJobs        = 1000
	benchConcurrency = 64
)

// BenchmarkThroughput runs benchJobs v1 jobs (SDXL, 1024×1024) at
// concurrency 64 against an in-process sandbox that never rate-limits,
// with output on tmpfs (/dev/shm, where there is one), two ways:
//
//   - batch: Run with the real stability.Client, as `batch run` does
//     (journal, temp files, hashes, read-back checks, renames, fsyncs);
//   - loop: the least a Go program can do for the same result: a
//     net/http client whose transport keeps 64 idle connections, 64
//     goroutines sending the same requests and writing each answer's body
//     to the same file name.
//
// One op is a whole run of benchJobs jobs; conns/op counts the TCP
// connections the server accepted during a run. The alternating
// sub-benchmark runs both in turn in each op and reports their ratio,
// batch/loop, which a machine shared with other work skews less than two
// ns/op measured minutes apart; batch-cpu/loop-cpu is the same ratio of
// the CPU time the process spent (client, server and runtime alike), which
// other work on the machine skews less still.
func BenchmarkThroughput(b *testing.B) {
	tb := newThroughputBench(b)
	b.Run("batch", func(b *testing.B) {
		tb.conns.Store(0)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			tb.batch(b, i)
		}
		b.ReportMetric(float64(tb.conns.Load())/float64(b.N), "conns/op")
	})
	b.Run("loop", func(b *testing.B) {
		tb.conns.Store(0)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			tb.loop(b, i)
		}
		b.ReportMetric(float64(tb.conns.Load())/float64(b.N), "conns/op")
	})
	b.Run("alternating", func(b *testing.B) {
		var inBatch, inLoop, cpuBatch, cpuLoop time.Duration
		for i := 0; b.Loop(); i++ {
			wall, cpu := tb.batch(b, i)
			inBatch, cpuBatch = inBatch+wall, cpuBatch+cpu
			wall, cpu = tb.loop(b, i)
			inLoop, cpuLoop = inLoop+wall, cpuLoop+cpu
		}
		b.ReportMetric(inBatch.Seconds()/float64(b.N), "batch-s/op")
		b.ReportMetric(inLoop.Seconds()/float64(b.N), "loop-s/op")
		b.ReportMetric(float64(inBatch)/float64(inLoop), "batch/loop")
		b.ReportMetric(float64(cpuBatch)/float64(cpuLoop), "batch-cpu/loop-cpu")
	})
}

// throughputBench is BenchmarkThroughput's server, jobs and clients.
type throughputBench struct {
	url    string
	conns  *atomic.Int64 // connections the server accepted
	jobs   []manifest.Job
	prices []cost.Credits
	root   string // output folders go here, one per run
	client *stability.Client
	// hc and bodies are the minimal loop's client and request bodies.
	hc     *http.Client
	bodies [][]byte
}

func newThroughputBench(b *testing.B) *throughputBench {
	sb, err := sandbox.New(sandbox.Config{RateLimit: -1})
	if err != nil {
		b.Fatal(err)
	}
	tb := &throughputBench{conns: new(atomic.Int64), root: tmpfsDir(b)}
	srv := httptest.NewUnstartedServer(sb)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			tb.conns.Add(1)
		}
	}
	srv.Start()
	b.Cleanup(srv.Close)
	tb.url = srv.URL
	tb.jobs, tb.prices = sdxlJobs(benchJobs)
	if tb.client, err = stability.NewClient(stability.Options{BaseURL: srv.URL, APIKey: "sk-bench", Concurrency: benchConcurrency}); err != nil {
		b.Fatal(err)
	}
	tb.bodies = make([][]byte, len(tb.jobs))
	for i, j := range tb.jobs {
		req, err := RequestFor(j, unresolved)
		if err != nil {
			b.Fatal(err)
		}
		if tb.bodies[i], err = json.Marshal(req.TextToImage); err != nil {
			b.Fatal(err)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = benchConcurrency, benchConcurrency
	tb.hc = &http.Client{Transport: tr}
	b.Cleanup(tr.CloseIdleConnections)
	return tb
}

// batch runs the jobs with Run into a new folder, removes it untimed,
// and returns the run's wall-clock and CPU time.
func (tb *throughputBench) batch(b *testing.B, i int) (wall, cpu time.Duration) {
	cfg := Config{OutDir: filepath.Join(tb.root, "batch"+strconv.Itoa(i)), Rate: Rate{N: 1 << 30, Window: 1e9}, Concurrency: benchConcurrency}
	start, startCPU := time.Now(), cpuTime(b)
	res, err := runJobs(b.Context(), cfg, tb.client, tb.jobs, tb.prices)
	wall, cpu = time.Since(start), cpuTime(b)-startCPU
	if err != nil {
		b.Fatal(err)
	}
	for _, jr := range res.Jobs {
		if jr.Status != Succeeded {
			b.Fatalf("job %s: %s %s", jr.ID, jr.Status, jr.Error)
		}
	}
	tb.remove(b, cfg.OutDir)
	return wall, cpu
}

// loop runs the jobs with minimalLoop into a new folder, removes it
// untimed, and returns the run's wall-clock and CPU time.
func (tb *throughputBench) loop(b *testing.B, i int) (wall, cpu time.Duration) {
	dir := filepath.Join(tb.root, "loop"+strconv.Itoa(i))
	if err := os.MkdirAll(filepath.Join(dir, ImagesDir), 0o755); err != nil {
		b.Fatal(err)
	}
	start, startCPU := time.Now(), cpuTime(b)
	err := minimalLoop(tb.hc, tb.url, filepath.Join(dir, ImagesDir), tb.jobs, tb.bodies)
	wall, cpu = time.Since(start), cpuTime(b)-startCPU
	if err != nil {
		b.Fatal(err)
	}
	tb.remove(b, dir)
	return wall, cpu
}

// cpuTime returns the CPU time the process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (tb *throughputBench) remove(b *testing.B, dir string) {
	b.StopTimer()
	defer b.StartTimer()
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
}

// minimalLoop sends each job's v1 request from benchConcurrency goroutines
// and writes each image to dir/ID.png.
func minimalLoop(hc *http.Client, base, dir string, jobs []manifest.Job, bodies [][]byte) error {
	var next atomic.Int64
	errs := make([]error, benchConcurrency)
	var wg sync.WaitGroup
	for w := range benchConcurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				if err := fetchOne(hc, base+"/v1/generation/"+jobs[i].Engine+"/text-to-image", bodies[i], filepath.Join(dir, jobs[i].ID+".png")); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func fetchOne(hc *http.Client, url string, body []byte, name string) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer sk-bench")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "image/png")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// sdxlJobs returns n SDXL jobs of one 1024×1024 image each, as a manifest
// with only a prompt and a seed per job makes them.
func sdxlJobs(n int) ([]manifest.Job, []cost.Credits) {
	jobs := make([]manifest.Job, n)
	prices := make([]cost.Credits, n)
	for i := range n {
		jobs[i] = manifest.Job{
			ID: fmt.Sprintf("job-%05d", i), Engine: "stable-diffusion-xl-1024-v1-0",
			Prompts: []manifest.Prompt{{Text: fmt.Sprintf("a lighthouse at dusk, number %d", i), Weight: 1}},
			Width:   1024, Height: 1024, Steps: 30, Samples: 1, Seed: uint32(i + 1),
		}
		prices[i] = cost.Credit
	}
	return jobs, prices
}

// tmpfsDir returns a folder removed after the benchmark, on /dev/shm when
// the machine has it, so the disk's fsync latency does not hide the
// client's own costs.
func tmpfsDir(b *testing.B) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		dir, err := os.MkdirTemp("/dev/shm", "batch-bench-")
		if err == nil {
			b.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return b.TempDir()
}
