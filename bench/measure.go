package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// proc is one command the bench measures.
type proc struct {
	bin  string
	args []string
	env  []string // added to the bench's environment, less any API key and cache folder
	dir  string   // working folder; "" is the bench's
	// stdout receives the command's standard output; nil discards it.
	stdout io.Writer
}

// sample is what one or more runs of a command measured.
type sample struct {
	wall time.Duration // wall clock from start to exit
	rss  int64         // peak resident memory in bytes; 0 when unknown
	err  error         // why the command did not succeed, if it did not
	na   string        // when set, why the command was not run (n/a)
}

// started is a command that is running.
type started struct {
	cmd     *exec.Cmd
	start   time.Time
	stderr  *tail
	cancel  context.CancelFunc
	ctx     context.Context
	timeout time.Duration
}

// start starts p with a timeout; wait must be called.
func start(ctx context.Context, p proc, timeout time.Duration) (*started, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	cmd := exec.CommandContext(ctx, p.bin, p.args...)
	cmd.Env = append(cleanEnv(), p.env...)
	cmd.Dir = p.dir
	cmd.Stdout = p.stdout
	s := &started{cmd: cmd, stderr: &tail{max: 4 << 10}, cancel: cancel, ctx: ctx, timeout: timeout}
	cmd.Stderr = s.stderr
	cmd.WaitDelay = 5 * time.Second
	s.start = time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	return s, nil
}

// wait waits for the command and returns what it measured.
func (s *started) wait() sample {
	defer s.cancel()
	err := s.cmd.Wait()
	out := sample{wall: time.Since(s.start)}
	if s.cmd.ProcessState != nil {
		out.rss, _ = peakRSS(s.cmd.ProcessState)
	}
	switch {
	case errors.Is(s.ctx.Err(), context.DeadlineExceeded):
		out.err = fmt.Errorf("timed out after %v", s.timeout)
	case err != nil:
		out.err = fmt.Errorf("%w: %s", err, s.stderr.lastLine())
	}
	return out
}

// measure runs p once and returns what it measured.
func measure(ctx context.Context, p proc, timeout time.Duration) sample {
	s, err := start(ctx, p, timeout)
	if err != nil {
		return sample{err: err}
	}
	return s.wait()
}

// best runs p n times and keeps the shortest time and the smallest peak
// memory; the first failure ends it.
func best(ctx context.Context, p proc, n int, timeout time.Duration) sample {
	var out sample
	for i := range n {
		s := measure(ctx, p, timeout)
		if s.err != nil {
			return s
		}
		if i == 0 || s.wall < out.wall {
			out.wall = s.wall
		}
		if i == 0 || (s.rss > 0 && s.rss < out.rss) {
			out.rss = s.rss
		}
	}
	return out
}

// cleanEnv is the bench's environment without an API key, so a real key
// can never reach a command the bench runs, and without the cache folder,
// which every run gets a fresh one of.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "STABILITY_") || strings.HasPrefix(kv, "XDG_CACHE_HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// tail keeps the last max bytes written to it; it is safe for concurrent
// use, as exec may write stderr from its own goroutine.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// lastLine returns the last non-empty line written, or "no output".
func (t *tail) lastLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := bytes.Split(bytes.TrimSpace(t.buf), []byte("\n"))
	if l := bytes.TrimSpace(lines[len(lines)-1]); len(l) > 0 {
		return string(l)
	}
	return "no output"
}
