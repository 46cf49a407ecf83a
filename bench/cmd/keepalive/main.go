// Command keepalive is the bench's yardstick for running: the least a Go
// program can do to send a batch's Stable Image requests and keep the
// answers. It posts one multipart form (prompt, seed, output_format) per job
// at a fixed concurrency over one http.Transport that keeps as many idle
// connections as the concurrency, and writes each answer's bytes to
// OUT/ID.FORMAT. With -image, every request also uploads that file as the
// image input, read once. No journal, no retries, no checks beyond the
// status.
//
// Usage:
//
//	STABILITY_API_KEY=... keepalive -url URL -jobs JOBS.tsv -out DIR [-service generate/core] [-image FILE] [-concurrency 64] [-format webp]
//
// JOBS.tsv has one job a line: id, prompt and seed, separated by tabs.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sync/errgroup"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

// config is the command line.
type config struct {
	url, jobs, out, service, image, format string
	concurrency                            int
}

// job is one line of the jobs file.
type job struct{ id, prompt, seed string }

func run(args []string, getenv func(string) string, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet("keepalive", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.url, "url", "", "API base `URL`, e.g. http://127.0.0.1:8150")
	fs.StringVar(&c.jobs, "jobs", "", "`file` of jobs: id, prompt and seed a line, tab-separated")
	fs.StringVar(&c.out, "out", "", "output `folder` (created)")
	fs.StringVar(&c.service, "service", "generate/core", "Stable Image `service`")
	fs.StringVar(&c.image, "image", "", "`file` uploaded as every request's image input (default: none)")
	fs.StringVar(&c.format, "format", "webp", "output_format sent and the files' extension")
	fs.IntVar(&c.concurrency, "concurrency", 64, "requests in flight, and idle connections kept")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if c.url == "" || c.jobs == "" || c.out == "" || c.concurrency < 1 || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: keepalive -url URL -jobs JOBS.tsv -out DIR [-service S] [-image FILE] [-concurrency N] [-format F]")
		return 2
	}
	n, err := loop(ctx, c, getenv("STABILITY_API_KEY"))
	if err != nil {
		fmt.Fprintf(stderr, "keepalive: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "keepalive: %d images in %s\n", n, c.out)
	return 0
}

// loop sends every job and returns how many images it wrote.
func loop(ctx context.Context, c config, key string) (int, error) {
	if key == "" {
		return 0, errors.New("STABILITY_API_KEY is not set")
	}
	jobs, err := readJobs(c.jobs)
	if err != nil {
		return 0, err
	}
	var img []byte
	if c.image != "" {
		if img, err = os.ReadFile(c.image); err != nil {
			return 0, err
		}
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return 0, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = c.concurrency
	tr.MaxIdleConnsPerHost = c.concurrency
	hc := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	endpoint := strings.TrimSuffix(c.url, "/") + "/v2beta/stable-image/" + c.service
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.concurrency)
	for _, j := range jobs {
		g.Go(func() error { return send(gctx, hc, endpoint, key, c, img, j) })
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return len(jobs), nil
}

// send posts one job, with img as its image input unless it is nil, and
// writes its answer to OUT/ID.FORMAT.
func send(ctx context.Context, hc *http.Client, endpoint, key string, c config, img []byte, j job) error {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if img != nil {
		part, err := mw.CreateFormFile("image", filepath.Base(c.image))
		if err != nil {
			return err
		}
		if _, err := part.Write(img); err != nil {
			return err
		}
	}
	for _, f := range [...][2]string{{"prompt", j.prompt}, {"seed", j.seed}, {"output_format", c.format}} {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			return err
		}
	}
	if err := mw.Close(); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, &body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Accept", "image/*")
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("job %s: %w", j.id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("job %s: %s: %s", j.id, resp.Status, bytes.TrimSpace(msg))
	}
	f, err := os.Create(filepath.Join(c.out, j.id+"."+c.format))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("job %s: %w", j.id, err)
	}
	return f.Close()
}

// readJobs reads the tab-separated jobs file.
func readJobs(path string) ([]job, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var jobs []job
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		parts := strings.Split(sc.Text(), "\t")
		if len(parts) != 3 {
			return nil, fmt.Errorf("%s:%d: want id, prompt and seed separated by tabs", path, line)
		}
		jobs = append(jobs, job{parts[0], parts[1], parts[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return jobs, nil
}
