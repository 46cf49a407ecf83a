package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/batch-tool/batch/internal/cost"
	"github.com/batch-tool/batch/internal/runner"
)

// newFlagSet returns a flag set that reports to stderr and shows the
// command's synopsis above its flags.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: batch %s\n\nflags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, flags before or after the positional arguments
// (as in "batch run MANIFEST --sandbox"; "--" ends the flags), and checks
// the number of positional arguments. Errors from here exit 2 (flag has
// already printed its own message).
func parseFlags(fs *flag.FlagSet, args []string, minArgs, maxArgs int) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return fmt.Errorf("%w: %w", errReported, &usageError{err.Error()})
		}
		rest := fs.Args()
		// flag stops at "--" too; then everything after it is positional.
		if len(rest) == 0 || len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	// Parse once more so fs.Args() holds exactly the positional arguments.
	if err := fs.Parse(append([]string{"--"}, positional...)); err != nil {
		return err
	}
	if n := fs.NArg(); n < minArgs || (maxArgs >= 0 && n > maxArgs) {
		fs.Usage()
		switch {
		case n < minArgs:
			return usageErrorf("%s: missing argument", fs.Name())
		default:
			return usageErrorf("%s: too many arguments", fs.Name())
		}
	}
	return nil
}

// formatValue is a --format flag restricted to a list of names.
type formatValue struct {
	name    string
	allowed []string
}

func (f *formatValue) String() string { return f.name }

func (f *formatValue) Set(s string) error {
	if !slices.Contains(f.allowed, s) {
		return fmt.Errorf("unknown format %q (want %s)", s, strings.Join(f.allowed, ", "))
	}
	f.name = s
	return nil
}

// creditsValue is an optional amount of credits given on the command line.
type creditsValue struct{ c *cost.Credits }

func (v *creditsValue) String() string {
	if v == nil || v.c == nil {
		return ""
	}
	return v.c.String()
}

func (v *creditsValue) Set(s string) error {
	c, err := cost.ParseCredits(s)
	if err != nil {
		return err
	}
	if c < 0 {
		return fmt.Errorf("%s is negative", s)
	}
	v.c = &c
	return nil
}

// percentValue is an optional percentage given on the command line: nil
// when unset, so -h shows no made-up default.
type percentValue struct{ p *float64 }

func (v *percentValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}

func (v *percentValue) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !(f >= 0) || math.IsInf(f, 0) { // !(f >= 0) refuses NaN too
		return fmt.Errorf("%q is not a percentage of 0 or more", s)
	}
	v.p = &f
	return nil
}

// missingInput marks an input the command line names that does not exist
// (a manifest, a run folder, a plan file) as a mistake in the command line,
// which exits 2; other errors pass through.
func missingInput(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return &invalidError{err}
	}
	return err
}

// shard selects the K-th of N deterministic slices of the expanded jobs;
// the zero value selects everything.
type shard struct{ K, N int }

func (s *shard) String() string {
	if s.N == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.K, s.N)
}

func (s *shard) Set(v string) error {
	k, n, ok := strings.Cut(v, "/")
	ki, err1 := strconv.Atoi(k)
	ni, err2 := strconv.Atoi(n)
	if !ok || err1 != nil || err2 != nil || ni < 1 || ki < 1 || ki > ni {
		return fmt.Errorf("%q is not K/N with 1 ≤ K ≤ N", v)
	}
	s.K, s.N = ki, ni
	return nil
}

// rateValue is a --rate flag: a request limit written N/DURATION, e.g.
// 150/10s; the zero value means unset.
type rateValue struct{ runner.Rate }

func (r *rateValue) String() string {
	if r.N == 0 {
		return ""
	}
	return r.Rate.String()
}

func (r *rateValue) Set(s string) error {
	v, err := runner.ParseRate(s)
	if err != nil {
		return err
	}
	r.Rate = v
	return nil
}

// concurrencyValue is --concurrency: a positive number of jobs in flight, or
// 0 for auto.
type concurrencyValue struct {
	n   int
	set bool
}

func (c *concurrencyValue) String() string {
	if !c.set || c.n == 0 {
		return "auto"
	}
	return strconv.Itoa(c.n)
}

func (c *concurrencyValue) Set(s string) error {
	n, err := parseConcurrency(s)
	if err != nil {
		return err
	}
	c.n, c.set = n, true
	return nil
}

func parseConcurrency(s string) (int, error) {
	if s == "auto" || s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("concurrency %q is not auto or a positive number", s)
	}
	return n, nil
}
