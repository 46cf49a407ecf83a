// Command bench measures batch side by side with its yardsticks and writes
// what it measured as a Markdown document, docs/PERFORMANCE.md:
//
//   - planning against a bare yaml.v3 decode of the same manifest, for
//     explicit and matrix manifests, and a diff of two large manifests;
//   - running against a minimal keep-alive Go loop and GNU parallel + curl,
//     all against the sandbox API with no rate limit;
//   - rate use with one run and with two runs at once on one key, at a short
//     and a long server latency;
//   - the peak memory of a run by job count.
//
// Every batch figure is measured twice, for a base revision (built from
// `git archive`, never checked out) and for the working tree, and both
// appear side by side.
//
// Usage:
//
//	go run ./bench [-o FILE] [-base REV] [-quick] [-only SECTIONS] [-keep]
//
// Run it from anywhere inside the module; it builds what it measures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // a build or a measurement the document cannot do without failed
	exitUsage  = 2
)

// sectionNames returns the -only values, in the document's order.
func sectionNames() []string { return []string{"plan", "run", "rate", "rss"} }

// config is the command line.
type config struct {
	out     string // the document's path; "" writes it to stdout
	base    string // git revision measured as "before"
	quick   bool   // tiny sizes, for the bench's own test
	only    []string
	keep    bool // keep the work folder (manifests and outputs) for rerunning commands by hand
	install bool // install GNU parallel and curl when missing
	timeout time.Duration
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage
	}
	if err := measureAll(ctx, cfg, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return exitFailed
	}
	return exitOK
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.out, "o", "", "write the document to `file` (default: standard output)")
	fs.StringVar(&c.base, "base", "ad29efa", "git `revision` measured as the base, built from git archive")
	fs.BoolVar(&c.quick, "quick", false, "tiny sizes: checks that every section still runs, in seconds; the figures mean nothing")
	only := fs.String("only", "", "comma-separated `sections` to measure: "+strings.Join(sectionNames(), ", ")+" (default: all)")
	fs.BoolVar(&c.keep, "keep", false, "keep the work folder (generated manifests, job lists) to rerun a command by hand")
	fs.BoolVar(&c.install, "install", true, "install Debian's parallel and curl with apt-get when missing")
	fs.DurationVar(&c.timeout, "timeout", 0, "stop any one measured command after this `duration` (default 5m, 2m with -quick)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./bench [flags]\n\nMeasures batch side by side and writes docs/PERFORMANCE.md's text.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return c, errors.New("too many arguments")
	}
	c.only = sectionNames()
	if *only != "" {
		c.only = nil
		for name := range strings.SplitSeq(*only, ",") {
			name = strings.TrimSpace(name)
			if !slices.Contains(sectionNames(), name) {
				fmt.Fprintf(stderr, "bench: -only: unknown section %q (want %s)\n", name, strings.Join(sectionNames(), ", "))
				return c, errors.New("bad -only")
			}
			c.only = append(c.only, name)
		}
	}
	if c.timeout <= 0 {
		c.timeout = 5 * time.Minute
		if c.quick {
			c.timeout = 2 * time.Minute
		}
	}
	return c, nil
}

// bench is one measuring session: the binaries, the work folder, the sizes.
type bench struct {
	cfg    config
	sz     sizes
	stderr io.Writer
	root   string // the module's root folder
	work   string // where manifests and outputs go: tmpfs when there is one
	base   *binary
	head   *binary
	decode string // the yamldecode helper
	loop   string // the keepalive helper
	// parallel is GNU parallel's path, or "" with noParallel saying why.
	parallel, noParallel string
}

// measureAll builds everything, measures the sections asked for and writes
// the document.
func measureAll(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	began := time.Now()
	b := &bench{cfg: cfg, sz: fullSizes(), stderr: stderr}
	if cfg.quick {
		b.sz = quickSizes()
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	b.root = root
	tmp := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		tmp = "/dev/shm"
	}
	b.work, err = os.MkdirTemp(tmp, "batch-bench-")
	if err != nil {
		return err
	}
	if cfg.keep {
		fmt.Fprintf(stderr, "bench: work folder %s (kept)\n", b.work)
	} else {
		defer os.RemoveAll(b.work)
	}
	load0 := loadAverage()
	if err := b.build(ctx); err != nil {
		return err
	}
	if slices.Contains(cfg.only, "run") {
		b.findParallel(ctx)
	}
	var sections []section
	for _, name := range cfg.only {
		if err := ctx.Err(); err != nil {
			return err
		}
		var s section
		var err error
		switch name {
		case "plan":
			s, err = b.planSection(ctx)
		case "run":
			s, err = b.runSection(ctx)
		case "rate":
			s, err = b.rateSection(ctx)
		case "rss":
			s, err = b.rssSection(ctx)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		sections = append(sections, s)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	doc := b.document(ctx, began, load0, sections)
	if cfg.out == "" {
		_, err := io.WriteString(stdout, doc)
		return err
	}
	return writeAtomic(cfg.out, []byte(doc))
}

// logf reports progress on stderr.
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "bench: "+format+"\n", args...)
}

// moduleRoot returns the folder of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module: run the bench from the batch repository")
	}
	return filepath.Dir(gomod), nil
}

// batch measures bin with args: n times, keeping the best, unless bin was
// not built or lacks a flag, which makes the sample n/a.
func (b *bench) batch(ctx context.Context, bin *binary, p proc, n int) sample {
	if bin.path == "" {
		return sample{na: "not built"}
	}
	if flag := bin.unsupported(ctx, p.args); flag != "" {
		return sample{na: "no " + flag}
	}
	p.bin = bin.path
	return best(ctx, p, n, b.cfg.timeout)
}

// shown is the command line as the document prints it: batch for either
// binary, helpers by name, paths relative to the work folder and the
// sandbox at the address `batch sandbox` listens on by default.
func (b *bench) shown(p proc, url string) string {
	name := filepath.Base(p.bin)
	switch {
	case p.bin == "" || strings.HasPrefix(name, "batch-"):
		name = "batch"
	}
	parts := []string{name}
	for _, a := range p.args {
		a = strings.ReplaceAll(a, b.work+string(filepath.Separator), "")
		if url != "" {
			a = strings.ReplaceAll(a, url, sandboxURL)
		}
		if strings.ContainsAny(a, " \t'\"*{}\\$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// sandboxURL is where `batch sandbox` listens by default; the document's
// commands use it in place of the free port the bench's sandbox got.
const sandboxURL = "http://127.0.0.1:8150"

// path returns name inside the work folder.
func (b *bench) path(name string) string { return filepath.Join(b.work, name) }

// writeAtomic writes data to path through a temporary file and a rename.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".performance-*.md")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
