package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/sandbox"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// latencyValue is a --latency flag: a fixed duration or a range.
type latencyValue struct{ l sandbox.Latency }

func (v *latencyValue) String() string { return v.l.String() }

func (v *latencyValue) Set(s string) error {
	l, err := sandbox.ParseLatency(s)
	if err != nil {
		return err
	}
	v.l = l
	return nil
}

func (e *env) sandbox(ctx context.Context, args []string) error {
	fs := newFlagSet("sandbox", "sandbox [flags]", e.stderr)
	addr := fs.String("addr", "127.0.0.1:8150", "`host:port` to listen on (port 0 picks a free one)")
	pricing := fs.String("pricing", cost.DefaultSheet, "price sheet `ID` the balance goes down by")
	var cfg sandbox.Config
	balance := creditsValue{}
	fs.Var(&balance, "balance", "starting account balance in `credits` (default 1000000)")
	fs.IntVar(&cfg.RateLimit, "rate-limit", sandbox.DefaultRateLimit, "requests allowed per key in any rate window (negative: no limit)")
	fs.DurationVar(&cfg.RateWindow, "rate-window", sandbox.DefaultRateWindow, "the sliding rate-limit window")
	fs.DurationVar(&cfg.Lockout, "lockout", sandbox.DefaultLockout, "how long a key that exceeded the limit gets 429")
	fs.BoolVar(&cfg.RetryAfter, "retry-after", false, "send Retry-After on 429 (the real API sends none)")
	var latency latencyValue
	fs.Var(&latency, "latency", "extra delay per generation: a `duration` (2s) or a uniform range (1s-5s)")
	fs.Float64Var(&cfg.FailRate, "fail-rate", 0, "fraction (0–1) of generations answered 500 (not charged)")
	fs.Float64Var(&cfg.DropRate, "drop-rate", 0, "fraction (0–1) of generations whose connection drops without an answer")
	var words, moderate stringList
	fs.Var(&words, "filter-word", "a `word` whose presence in a prompt makes the images CONTENT_FILTERED (repeatable)")
	fs.Var(&moderate, "moderate-word", "a `word` whose presence in a Stable Image prompt gets 403 content_moderation, not charged (repeatable)")
	asyncDelay := fs.Duration("async-delay", sandbox.DefaultAsyncDelay, "how long an async generation (upscale/creative, edit/replace-background-and-relight) takes; polls get 202 until then (0: done at once)")
	fs.DurationVar(&cfg.ResultLife, "result-life", sandbox.DefaultResultLife, "how long an async result can be fetched once done; then polls get 404 generation_not_found")
	fs.Int64Var(&cfg.Seed, "seed", 1, "seed of the random source for failures, latency, random image seeds and generation ids")
	fs.StringVar(&cfg.Key, "key", "", "the only bearer `token` to accept (default: any non-empty token; a sandbox token, not a real key)")
	verbose := fs.Bool("v", false, "log every request (never the key) to stderr")
	if err := parseFlags(fs, args, 0, 0); err != nil {
		return err
	}
	switch {
	case *asyncDelay < 0:
		return usageErrorf("--async-delay %v is negative", *asyncDelay)
	case *asyncDelay == 0:
		cfg.AsyncDelay = -1 // the Config's way to say "at once"
	default:
		cfg.AsyncDelay = *asyncDelay
	}
	if cfg.ResultLife <= 0 {
		return usageErrorf("--result-life %v must be positive", cfg.ResultLife)
	}
	sheet, err := cost.LookupSheet(*pricing)
	if err != nil {
		return usageErrorf("--pricing: %v", err)
	}
	cfg.Pricer, cfg.Latency, cfg.FilterWords, cfg.ModerateWords = sheet, latency.l, words, moderate
	if balance.c != nil {
		cfg.Balance = *balance.c
		if cfg.Balance == 0 {
			cfg.Balance = -1 // an empty account
		}
	}
	if *verbose {
		cfg.Log = slog.New(slog.NewTextHandler(e.stderr, nil))
	}
	sb, err := startSandbox(cfg, *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "batch: sandbox API on http://%s (pricing %s); Ctrl-C stops it\n", sb.addr, sheet.ID)
	if e.ready != nil {
		e.ready(sb.addr)
	}
	select {
	case err := <-sb.done:
		return fmt.Errorf("sandbox: %w", err)
	case <-ctx.Done():
	}
	return sb.stop(ctx)
}

// checkSandboxFlags refuses --api-url with --sandbox: the in-process
// sandbox serves its own API, so the URL would be ignored without a word.
func checkSandboxFlags(fs *flag.FlagSet) error {
	sandbox, apiURL := false, false
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "sandbox":
			sandbox = f.Value.String() == "true"
		case "api-url":
			apiURL = true
		}
	})
	if sandbox && apiURL {
		return usageErrorf("--api-url and --sandbox: give one (--sandbox runs against an API of its own; for a sandbox elsewhere, start 'batch sandbox' there and pass its --api-url)")
	}
	return nil
}

// runningSandbox is a sandbox API serving on a listener.
type runningSandbox struct {
	addr string // host:port it listens on
	hs   *http.Server
	done chan error // receives what Serve returned
}

// startSandbox serves a sandbox with cfg on addr ("127.0.0.1:0" picks a
// free loopback port).
func startSandbox(cfg sandbox.Config, addr string) (*runningSandbox, error) {
	srv, err := sandbox.New(cfg)
	if err != nil {
		return nil, usageErrorf("sandbox: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	s := &runningSandbox{
		addr: ln.Addr().String(),
		hs:   &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second},
		done: make(chan error, 1),
	}
	go func() { s.done <- s.hs.Serve(ln) }()
	return s, nil
}

// stop lets requests in flight finish (for at most 5 s) and closes the
// server; it works after ctx is cancelled too.
func (s *runningSandbox) stop(ctx context.Context) error {
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := s.hs.Shutdown(shutCtx)
	if err != nil {
		_ = s.hs.Close()
	}
	if serveErr := <-s.done; !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("sandbox: %w", serveErr)
	}
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	return nil
}

var _ flag.Value = (*latencyValue)(nil)
