package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/batch-tool/batch/internal/cache"
	"github.com/batch-tool/batch/internal/cost"
)

// cacheCmd runs 'batch cache stats|prune|verify'.
func (e *env) cacheCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		e.cacheUsage(e.stderr)
		return usageErrorf("cache: give stats, prune or verify")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "stats":
		return e.cacheStats(ctx, rest)
	case "prune":
		return e.cachePrune(ctx, rest)
	case "verify":
		return e.cacheVerify(ctx, rest)
	case "-h", "-help", "--help":
		e.cacheUsage(e.stderr)
		return flag.ErrHelp
	default:
		e.cacheUsage(e.stderr)
		return usageErrorf("cache: unknown command %q (want stats, prune or verify)", sub)
	}
}

func (e *env) cacheUsage(w io.Writer) {
	fmt.Fprint(w, `usage: batch cache stats|prune|verify [flags]

  stats    entries, size, and the credits the cache has saved
  prune    remove entries unused for --older-than D, then the least recently
           used until the cache fits --max-size S
  verify   rehash every image; remove and list damaged entries (exit 1 if any)

Each takes --cache DIR (default: batch/images in the user's cache folder,
e.g. ~/.cache/batch/images). 'batch cache COMMAND -h' lists its flags.
`)
}

// cacheDir returns the cache folder: dir when given (--cache), else the
// default under the user's cache folder.
func (e *env) cacheDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	d, err := cache.DefaultDir(e.getenv)
	if err != nil {
		return "", fmt.Errorf("%w (give --cache DIR)", err)
	}
	return d, nil
}

// openCache parses a cache command's flags (fs, with --cache added here)
// and opens the cache.
func (e *env) openCache(fs *flag.FlagSet, args []string) (*cache.Cache, error) {
	dir := fs.String("cache", "", "the cache `folder` (default: batch/images in the user's cache folder)")
	if err := parseFlags(fs, args, 0, 0); err != nil {
		return nil, err
	}
	d, err := e.cacheDir(*dir)
	if err != nil {
		return nil, err
	}
	return cache.Open(d, cache.Options{Now: e.now})
}

// cacheStatsJSON is the JSON form of 'batch cache stats'.
type cacheStatsJSON struct {
	Dir          string       `json:"dir"`
	Entries      int          `json:"entries"`
	Images       int          `json:"images"`
	Bytes        int64        `json:"bytes"`
	Incomplete   int          `json:"incomplete"`
	Hits         int64        `json:"hits"`
	SavedCredits cost.Credits `json:"saved_credits"`
}

func (e *env) cacheStats(ctx context.Context, args []string) error {
	fs := newFlagSet("cache stats", "cache stats [--cache DIR] [--format text|json]", e.stderr)
	format := &formatValue{name: "text", allowed: []string{"text", "json"}}
	fs.Var(format, "format", "output `format`: text or json")
	c, err := e.openCache(fs, args)
	if err != nil {
		return err
	}
	s, err := c.Stats(ctx)
	if err != nil {
		return err
	}
	if format.name == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(cacheStatsJSON{Dir: c.Dir(), Entries: s.Entries, Images: s.Images, Bytes: s.Bytes,
			Incomplete: s.Incomplete, Hits: s.Hits, SavedCredits: s.Saved})
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 1, ' ', 0)
	fmt.Fprintf(tw, "cache:\t%s\n", c.Dir())
	fmt.Fprintf(tw, "entries:\t%d (%s)\n", s.Entries, plural(s.Images, "image"))
	fmt.Fprintf(tw, "size:\t%s\n", sizeText(s.Bytes))
	fmt.Fprintf(tw, "saved:\t%s credits (%s) by %s\n", s.Saved, s.Saved.USD(), plural64(s.Hits, "hit"))
	if s.Incomplete > 0 {
		fmt.Fprintf(tw, "incomplete:\t%d (prune or verify removes them)\n", s.Incomplete)
	}
	return tw.Flush()
}

func (e *env) cachePrune(ctx context.Context, args []string) error {
	fs := newFlagSet("cache prune", "cache prune [--cache DIR] [--older-than D] [--max-size S] [--dry-run]", e.stderr)
	var age ageValue
	var size sizeValue
	fs.Var(&age, "older-than", "remove entries not used for `D`, e.g. 30d, 12h")
	fs.Var(&size, "max-size", "then remove the least recently used until the cache takes at most `S`, e.g. 10GB, 500MiB (0 empties it)")
	dry := fs.Bool("dry-run", false, "print what would be removed; remove nothing")
	c, err := e.openCache(fs, args)
	if err != nil {
		return err
	}
	if age.d == 0 && size.n == nil {
		fs.Usage()
		return usageErrorf("cache prune: give --older-than D, --max-size S or both (--max-size 0 empties the cache)")
	}
	res, err := c.Prune(ctx, cache.PruneOptions{OlderThan: age.d, MaxBytes: size.n, DryRun: *dry})
	verb, freed := "removed", "freed"
	if *dry {
		verb, freed = "would remove", "would free"
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, r := range res.Removed {
		used, why := "-", "incomplete"
		if !r.LastUsed.IsZero() {
			used = "last used " + r.LastUsed.UTC().Format("2006-01-02 15:04 UTC")
		}
		switch r.Reason {
		case cache.Unused:
			why = "unused for over " + age.text
		case cache.OverSize:
			why = "to fit " + sizeText(*size.n)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", verb, r.Key[:12], plural(r.Images, "image"), sizeText(r.Bytes), used, why)
	}
	if ferr := tw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s %s (%s); %s left, %s\n", freed, sizeText(res.Freed), plural(len(res.Removed), "entry"),
		plural(res.Entries, "entry"), sizeText(res.Bytes))
	if res.Leftovers > 0 {
		fmt.Fprintf(e.stdout, "%s %s of killed runs\n", verb, plural(res.Leftovers, "abandoned write"))
	}
	return nil
}

func (e *env) cacheVerify(ctx context.Context, args []string) error {
	fs := newFlagSet("cache verify", "cache verify [--cache DIR]", e.stderr)
	c, err := e.openCache(fs, args)
	if err != nil {
		return err
	}
	res, err := c.Verify(ctx)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, b := range res.Bad {
		what := "removed"
		if b.RemoveErr != nil {
			what = fmt.Sprintf("could not remove: %v", b.RemoveErr)
		}
		fmt.Fprintf(tw, "damaged\t%s\t%s; %s\n", b.Key[:12], b.Problem, what)
	}
	if ferr := tw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	verdict := "all sound"
	if len(res.Bad) > 0 {
		verdict = fmt.Sprintf("%d damaged, removed", len(res.Bad))
	}
	fmt.Fprintf(e.stdout, "checked %s (%s, %s): %s\n", plural(res.Entries, "entry"), plural(res.Images, "image"), sizeText(res.Bytes), verdict)
	if res.Skipped > 0 {
		fmt.Fprintf(e.stdout, "skipped %s written by another version of batch\n", plural(res.Skipped, "entry"))
	}
	if res.Leftovers > 0 {
		fmt.Fprintf(e.stdout, "removed %s of killed runs\n", plural(res.Leftovers, "abandoned write"))
	}
	if len(res.Bad) > 0 {
		return errReported // exit 1: the disk, or someone, changed images
	}
	return nil
}

// plural returns "1 image", "2 images"; "entry" becomes "entries".
func plural(n int, noun string) string { return plural64(int64(n), noun) }

func plural64(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return strconv.FormatInt(n, 10) + " " + strings.TrimSuffix(noun, "y") + "ies"
	}
	return strconv.FormatInt(n, 10) + " " + noun + "s"
}

// sizeText formats n bytes in binary units with one decimal, e.g.
// "12.3 KiB"; below 1 KiB in bytes.
func sizeText(n int64) string {
	if n < 1024 {
		return plural64(n, "byte")
	}
	v, unit := float64(n)/1024, "KiB"
	for _, u := range []string{"MiB", "GiB", "TiB", "PiB", "EiB"} {
		if v < 1024 {
			break
		}
		v, unit = v/1024, u
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + unit
}

// ageValue is --older-than: a duration of whole days (30d) or weeks (2w),
// or one time.ParseDuration reads (12h, 90m); unset is 0.
type ageValue struct {
	d    time.Duration
	text string
}

func (v *ageValue) String() string { return v.text }

func (v *ageValue) Set(s string) error {
	d, err := parseAge(s)
	if err != nil {
		return err
	}
	v.d, v.text = d, s
	return nil
}

func parseAge(s string) (time.Duration, error) {
	units := map[byte]time.Duration{'d': 24 * time.Hour, 'w': 7 * 24 * time.Hour}
	if len(s) > 1 {
		if unit, ok := units[s[len(s)-1]]; ok {
			n, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
			if err != nil || n < 1 || n > int64(math.MaxInt64/unit) {
				return 0, fmt.Errorf("%q is not a positive number of days or weeks, e.g. 30d", s)
			}
			return time.Duration(n) * unit, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive age, e.g. 30d, 2w, 12h", s)
	}
	return d, nil
}

// sizeValue is --max-size: bytes, with an optional unit, decimal (KB, MB,
// GB, TB) or binary (KiB, MiB, GiB, TiB), e.g. 10GB, 500MiB, 0; unset is nil.
type sizeValue struct {
	n    *int64
	text string
}

func (v *sizeValue) String() string { return v.text }

func (v *sizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	v.n, v.text = &n, s
	return nil
}

func parseSize(s string) (int64, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') })
	if i < 0 {
		i = len(s)
	}
	num, unit := s[:i], strings.ToLower(s[i:])
	mult, ok := map[string]float64{
		"": 1, "b": 1,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	}[unit]
	f, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || f*mult >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is not a size such as 10GB, 500MiB or 0", s)
	}
	return int64(f * mult), nil
}
